"""The dead letter: a record a stage could not process, kept whole so it can be replayed."""

from __future__ import annotations

import hashlib
import traceback as _traceback
from datetime import UTC, datetime

import msgspec

from schemas.errors import OtsecError, UnexpectedError
from schemas.records import RawLine, SourcePosition

__all__ = ["PIPELINE_VERSION", "DeadLetter", "dead_letter_from_error"]

PIPELINE_VERSION = "0.1.0"


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A failed record with everything needed to understand and replay it.

    ``payload`` holds the original bytes (JSON encodes them as base64, a
    faithful encoding); ``context`` the Zeek header a TSV line needs to be
    decoded again. ``id`` is derived from the stage, the source position and the
    payload, so running the same input twice does not duplicate dead letters.
    """

    id: str
    stage: str
    error_class: str
    message: str
    payload: bytes
    source: SourcePosition
    failed_at: datetime
    retriable: bool
    attempts: int = 1
    field: str | None = None
    record_kind: str | None = None
    context: str | None = None
    traceback: str | None = None
    pipeline_version: str = PIPELINE_VERSION


def _dead_letter_id(stage: str, source: SourcePosition, payload: bytes) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(stage.encode())
    digest.update(b"\0")
    digest.update(str(source).encode("utf-8", "surrogateescape"))
    digest.update(b"\0")
    digest.update(payload)
    return digest.hexdigest()


def dead_letter_from_error(
    stage: str,
    error: BaseException,
    origin: RawLine,
    *,
    record_kind: str | None = None,
    payload: bytes | None = None,
    attempts: int = 1,
) -> DeadLetter:
    """Turn an exception raised while processing ``origin`` into a dead letter.

    Errors of the otsec hierarchy keep their class, message and field; anything
    else is an `UnexpectedError` with its full traceback.

    Args:
        stage: The stage that failed.
        error: What it raised.
        origin: The raw line the record came from (payload and position).
        record_kind: The record kind when Decode got that far.
        payload: The bytes to keep when they differ from ``origin.payload``
            (a later stage keeps the encoded event it received).
        attempts: How many times the record has been tried.
    """
    if isinstance(error, OtsecError):
        error_class = error.error_class
        message = error.message
        field = error.field
        retriable = error.retriable
        trace = None if not isinstance(error, UnexpectedError) else _format(error)
    else:
        error_class = UnexpectedError.__name__
        message = f"{type(error).__name__}: {error}"
        field = None
        retriable = False
        trace = _format(error)
    body = origin.payload if payload is None else payload
    context = None
    if origin.context:
        context = b"\n".join(origin.context).decode("utf-8", "backslashreplace")
    return DeadLetter(
        id=_dead_letter_id(stage, origin.source, body),
        stage=stage,
        error_class=error_class,
        message=message,
        field=field,
        payload=body,
        source=origin.source,
        failed_at=datetime.now(UTC),
        retriable=retriable,
        attempts=attempts,
        record_kind=record_kind,
        context=context,
        traceback=trace,
    )


def _format(error: BaseException) -> str:
    return "".join(_traceback.format_exception(error))
