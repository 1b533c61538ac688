"""Retries with exponential backoff and full jitter, for database writes and feed fetches.

Only errors that say a retry could succeed (``retriable``) are retried; the
last one is re-raised so the caller can dead-letter what it could not write.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from schemas.errors import OtsecError

__all__ = ["RetryPolicy", "call_with_retries"]

T = TypeVar("T")


class RetryPolicy:
    """How often and how patiently to retry.

    Args:
        attempts: Total tries, the first one included (the architecture's 3).
        base_delay: Seconds before the second try; doubles each time.
        max_delay: Upper bound of one wait.
    """

    def __init__(self, attempts: int = 3, base_delay: float = 0.2, max_delay: float = 5.0) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        if base_delay < 0 or max_delay < 0:
            raise ValueError("delays must be >= 0")
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay

    def delay(self, attempt: int, hint: float | None = None) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based).

        A server's hint (``Retry-After``) is honoured, capped at ``max_delay``.
        """
        if hint is not None:
            return min(max(hint, 0.0), self.max_delay)
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return random.uniform(0, ceiling)


def call_with_retries(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    on_retry: Callable[[int, OtsecError], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn`` until it succeeds, it raises a non-retriable error, or tries run out.

    Args:
        fn: The operation; it raises `OtsecError` subclasses for failures it understands.
        policy: Attempts and delays.
        on_retry: Called with the try number and the error before each wait (for metrics).
        sleep: The wait (tests pass a fake clock).

    Raises:
        OtsecError: The last error, when it is not retriable or no tries are left.
    """
    attempt = 1
    while True:
        try:
            return fn()
        except OtsecError as error:
            if not error.retriable or attempt >= policy.attempts:
                raise
            if on_retry is not None:
                on_retry(attempt, error)
            sleep(policy.delay(attempt, getattr(error, "retry_after", None)))
            attempt += 1
