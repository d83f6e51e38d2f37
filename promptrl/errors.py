"""Errors a user can cause and fix. The CLI prints them as one line (no traceback)."""


class UserError(Exception):
    """Bad input from the user: the message names the problem and the fix."""


class PredictionError(Exception):
    """A prediction failed (LM error after retries, or output that fails validation).

    Caught by fit/evaluate: the example scores 0 and is counted as a failure.
    """


class LanguageModelUnavailable(UserError):
    """The LM endpoint cannot be used at all (unreachable, bad credentials, unknown model)."""
