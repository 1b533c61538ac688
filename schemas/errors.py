"""The one error hierarchy of otsec.

Every failure a stage, feed client or sink can meet is one of these classes.
Each carries the context an operator needs at 3 a.m. (stage, field, feed,
source position) and says whether a retry could succeed; the dead-letter
machinery turns them into `DeadLetter` records without losing that context.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "ERROR_CLASSES",
    "AuthenticationError",
    "AuthorizationError",
    "DatabaseError",
    "ExternalAPIError",
    "NotFoundError",
    "OtsecError",
    "UnexpectedError",
    "ValidationError",
]


class OtsecError(Exception):
    """Base class: a failure with the context needed to act on it.

    Args:
        message: What was wrong, in words an operator understands.
        stage: The pipeline stage that failed (``decode``, ``validate``...).
        field: The record field at fault, when one is.
        feed: The CTI feed at fault, when one is.
        source: Where the record came from (``file:line`` or stream position).
    """

    status: ClassVar[int] = 500
    retriable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        stage: str | None = None,
        field: str | None = None,
        feed: str | None = None,
        source: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.stage = stage
        self.field = field
        self.feed = feed
        self.source = source

    @property
    def error_class(self) -> str:
        return type(self).__name__

    def __str__(self) -> str:
        where = [
            f"{name}={value}"
            for name, value in (
                ("stage", self.stage),
                ("field", self.field),
                ("feed", self.feed),
                ("source", self.source),
            )
            if value
        ]
        return f"{self.message} ({', '.join(where)})" if where else self.message


class ValidationError(OtsecError):
    """Malformed or schema-violating input: dead letter, never retried."""

    status = 400


class AuthenticationError(OtsecError):
    """Bad or missing credentials for a feed or a database."""

    status = 401


class AuthorizationError(OtsecError):
    """Credentials were accepted but do not allow the operation."""

    status = 403


class NotFoundError(OtsecError):
    """A referenced thing (feed URL, table, input path) does not exist."""

    status = 404


class DatabaseError(OtsecError):
    """A ClickHouse or PostgreSQL failure or time-out; retried, then dead-lettered."""

    retriable = True


class ExternalAPIError(OtsecError):
    """A feed server answered 5xx or 429 or timed out; retried, then the feed fails."""

    retriable = True


class UnexpectedError(OtsecError):
    """Anything else: a bug. Dead-lettered with its full traceback."""


ERROR_CLASSES: dict[str, type[OtsecError]] = {
    cls.__name__: cls
    for cls in (
        ValidationError,
        AuthenticationError,
        AuthorizationError,
        NotFoundError,
        DatabaseError,
        ExternalAPIError,
        UnexpectedError,
    )
}
