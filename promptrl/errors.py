"""Errors a user can cause and fix. The CLI prints them as one line (no traceback)."""


def one_line(text, width: int = 300) -> str:
    """`text` on one line, at most `width` characters, cut at a word (marked ' ...'): a server's
    error page or JSON dump inside a message stays readable."""
    text = " ".join(str(text).split())
    if len(text) <= width:
        return text
    cut = text[:width - 4]
    space = cut.rfind(" ")
    return (cut[:space] if space > width // 2 else cut).rstrip() + " ..."


class UserError(Exception):
    """Bad input from the user: the message names the problem and the fix."""


class PredictionError(Exception):
    """A prediction failed. Caught by fit/evaluate, never fatal.

    `infrastructure=True`: the provider gave no answer (timeout, 429, 5xx, reset, after retries) -
    not the program's fault, so the example is left out of the scores and counted apart
    (`infra_failures`). Otherwise the program got an answer that is not one (output that fails
    validation, a per-request 400 such as a prompt over the context length): it scores 0 and is
    counted in `failures`.
    """

    def __init__(self, message: str, infrastructure: bool = False):
        super().__init__(message)
        self.infrastructure = infrastructure


class LanguageModelUnavailable(UserError):
    """The LM endpoint cannot be used at all (unreachable, bad credentials, unknown model), or it
    is down (the circuit breaker tripped): the run stops, whatever it had done is kept."""


class FailureBudgetExceeded(UserError):
    """Too many calls of a phase got no answer from the provider for its scores to mean anything."""


class BudgetReached(Exception):
    """A spending limit (budget.max_calls, max_tokens, max_cost) was reached: no new call starts.
    Not an error: the run stops cleanly with status `budget_reached`."""
