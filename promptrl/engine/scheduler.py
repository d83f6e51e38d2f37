"""Pacing calls: retries with backoff (tenacity) and an adaptive window of calls in flight.

One retry policy and one error classification serve every transport, so a timeout, a 429 or a
5xx is handled and accounted the same whether the call went through litellm or the lean client.
"""

from __future__ import annotations

import asyncio
import collections
import random
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tenacity import AsyncRetrying

_TRANSIENT = ("Timeout", "RateLimit", "ServiceUnavailable", "InternalServer", "APIError", "BadGateway")
_OVERLOAD = ("Timeout", "RateLimit", "ServiceUnavailable")
MAX_WAIT_S = 60.0


def is_connection_error(error: BaseException | None) -> bool:
    """A refused or reset connection, whatever wraps it (litellm reports it as APIConnectionError or
    InternalServerError("Connection error") depending on the provider): look through the chain."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        name = type(error).__name__
        if "ConnectError" in name or "ConnectionError" in name or "Connection error" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def is_transient_error(error: BaseException) -> bool:
    """An error that may pass on the next call (timeouts, rate limits, 5xx), as opposed to a
    setting that can never work (unknown provider, missing key, unreadable model file)."""
    return any(t in type(error).__name__ for t in _TRANSIENT) and not is_connection_error(error)


# litellm reports a provider it does not know, or a model it cannot map, as a plain BadRequestError.
_CONFIGURATION_MESSAGES = ("LLM Provider NOT provided", "Unmapped LLM provider", "Invalid model name")


_REQUEST_ERRORS = ("BadRequest", "ContextWindowExceeded", "ContentPolicy", "UnprocessableEntity")
REQUEST_STATUS = (400, 409, 413, 422)


def status_of(error: BaseException) -> int | None:
    """The HTTP status of a transport error (ours, litellm's or the openai SDK's), if it has one."""
    for name in ("status_code", "status"):
        value = getattr(error, name, None)
        if isinstance(value, int):
            return value
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None) if response is not None else None


def _about_one_request(error: BaseException) -> bool:
    return status_of(error) in REQUEST_STATUS or any(t in type(error).__name__ for t in _REQUEST_ERRORS)


def _names_a_bad_setting(error: BaseException) -> bool:
    return any(text in str(error) for text in _CONFIGURATION_MESSAGES)


def is_request_error(error: BaseException) -> bool:
    """A refusal of this one request (context length, content filter, a malformed body): the next
    request may well pass. Told by its HTTP status or class, never by when it happens."""
    return _about_one_request(error) and not _names_a_bad_setting(error)


def is_configuration_error(error: BaseException) -> bool:
    """A setting that can never work, whenever it shows: a provider or model litellm cannot map
    (it says so in a BadRequestError), or any error that is neither transient nor about one request
    (a model file that does not load, a malformed endpoint URL)."""
    return _names_a_bad_setting(error) or not (is_retryable(error) or _about_one_request(error))


def is_retryable(error: BaseException) -> bool:
    return is_transient_error(error) or is_connection_error(error)


def retry_after(error: BaseException | None) -> float | None:
    """The server's Retry-After (seconds), from our own errors or from litellm's."""
    value = getattr(error, "retry_after", None)
    if value is None:
        for holder in (getattr(error, "response", None), error):
            headers = getattr(holder, "headers", None) or getattr(holder, "litellm_response_headers", None)
            if headers is not None:
                try:
                    value = headers.get("retry-after") or headers.get("Retry-After")
                except AttributeError:
                    value = None
            if value is not None:
                break
    try:
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


def backoff(attempt: int, error: BaseException | None) -> float:
    """Retry-After when the server gives one, else exponential backoff with jitter."""
    given = retry_after(error)
    if given is not None:
        return min(given, MAX_WAIT_S)
    return min(MAX_WAIT_S, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)


def retrying(num_retries: int, before_sleep=None, attempts_before: int = 0) -> "AsyncRetrying":
    """Up to `num_retries` more attempts; `attempts_before` made already (the backoff keeps doubling)."""
    # Imported on the first retry: a call that succeeds at once never needs it.
    from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

    return AsyncRetrying(
        stop=stop_after_attempt(num_retries + 1),
        retry=retry_if_exception(is_retryable),
        wait=lambda state: backoff(attempts_before + state.attempt_number, state.outcome.exception()),
        before_sleep=before_sleep,
        reraise=True,
    )


async def run_all(coroutines) -> list:
    """Run coroutines concurrently, results in order. When one fails, the others are cancelled -
    or, for BudgetReached, allowed to finish (their calls are already paid) - and waited for, so
    every call is accounted before the error goes up (asyncio.gather alone leaves them running)."""
    from promptrl.errors import BudgetReached

    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException as error:
        if not isinstance(error, BudgetReached):
            for task in tasks:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def is_overload(error: BaseException) -> bool:
    return any(t in type(error).__name__ for t in _OVERLOAD) or retry_after(error) is not None


class AdaptiveLimiter:
    """A window of calls in flight that grows by one per window of successes and halves on
    overload (429, 503, timeouts, Retry-After) - AIMD, as TCP does - between 1 and `maximum`."""

    def __init__(self, maximum: int):
        self.maximum = maximum
        self.limit = float(maximum)
        self.in_flight = 0
        self.peak = 0  # most calls in flight at once
        self.lowest = maximum
        self.decreases = 0
        self._paused_until = 0.0
        self._last_decrease = 0.0
        self._latency = 0.0  # moving average of successful call latency (s)
        self._waiters: collections.deque = collections.deque()

    def slot(self) -> "_Slot":
        """`async with limiter.slot():` one call in flight."""
        return _Slot(self)

    def _release(self) -> None:
        self.in_flight -= 1
        self._wake()

    async def _acquire(self) -> None:
        # Single-threaded event loop: the check and the increment cannot interleave with another task.
        if self.in_flight < max(1, int(self.limit)) and not self._waiters:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # _wake counts us in before it resolves the future
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.in_flight -= 1
                self._wake()
            raise

    def _wake(self) -> None:
        while self._waiters and self.in_flight < max(1, int(self.limit)):
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
                waiter.set_result(None)

    def on_success(self, latency: float) -> None:
        self._latency = latency if not self._latency else 0.9 * self._latency + 0.1 * latency
        if self.limit < self.maximum:
            self.limit = min(self.maximum, self.limit + 1.0 / self.limit)
            self._wake()

    def on_error(self, error: BaseException) -> None:
        if not is_overload(error):
            return
        now = time.monotonic()
        given = retry_after(error)
        if given:
            self._paused_until = max(self._paused_until, now + min(given, MAX_WAIT_S))
        # Halve at most once per typical call duration: a burst of 429s is one congestion signal.
        if now - self._last_decrease >= max(self._latency, 0.05):
            self.limit = max(1.0, self.limit / 2)
            self.lowest = min(self.lowest, int(self.limit))
            self.decreases += 1
            self._last_decrease = now

    def report(self) -> dict:
        return {"maximum": self.maximum, "peak_in_flight": self.peak, "lowest_limit": self.lowest,
                "final_limit": int(self.limit), "decreases": self.decreases}


class _Slot:
    __slots__ = ("limiter",)

    def __init__(self, limiter: AdaptiveLimiter):
        self.limiter = limiter

    async def __aenter__(self):
        limiter = self.limiter
        await limiter._acquire()
        pause = limiter._paused_until - time.monotonic()
        if pause > 0:  # the server asked for a break (Retry-After)
            try:
                await asyncio.sleep(pause)
            except BaseException:
                limiter._release()
                raise

    async def __aexit__(self, *exc) -> None:
        self.limiter._release()
