"""What every feed parser shares: the parse context, the entry collector, time parsing.

A feed is a list of entries (a CSV line, a STIX indicator, a MISP attribute, a
KEV entry). Each entry ends as exactly one of: indexed (one or more
indicators), skipped (deliberately not indexed, e.g. a pattern that does not
reduce to observables) or a dead letter that keeps its original bytes, so
``entries == indexed + skipped + len(dead_letters)`` for every feed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime

import msgspec

from cti.indicators import Indicator, merge
from schemas.dead_letter import DeadLetter, dead_letter_from_error
from schemas.errors import ValidationError
from schemas.records import RawLine, SourcePosition

__all__ = ["STAGE", "TECHNIQUE_ID", "Collector", "ParseContext", "parse_time"]

STAGE = "cti.parse"
# ATT&CK technique ids, Enterprise (T1566, T1566.001) and ICS (T0855) alike.
TECHNIQUE_ID = re.compile(r"\bT\d{4}(?:\.\d{3})?\b")


class ParseContext(msgspec.Struct, frozen=True, kw_only=True):
    """The feed-level defaults and identity every entry of one feed is parsed with.

    Args:
        feed: The feed's name (each indicator's source).
        kind: The feed type (``stix``, ``misp``...), the dead letters' record kind.
        confidence: For entries that carry none.
        tlp: For entries that carry none.
        now: The refresh time, stamped on dead letters.
    """

    feed: str
    kind: str
    confidence: int
    tlp: str
    now: datetime


class Collector:
    """Indicators of one feed, merged by key, with its skipped count and dead letters."""

    def __init__(self, context: ParseContext) -> None:
        self.context = context
        self.entries = 0
        self.indexed = 0
        self.skipped = 0
        self.dead_letters: list[DeadLetter] = []
        # False once a whole document of the feed could not be read: then this run
        # does not hold the feed's complete content, and nothing may expire because of it.
        self.complete = True
        self._indicators: dict[tuple[str, str], Indicator] = {}

    @property
    def indicators(self) -> list[Indicator]:
        return list(self._indicators.values())

    def entry(
        self,
        payload: bytes,
        source: SourcePosition,
        parse: Callable[[], Sequence[Indicator] | None],
    ) -> None:
        """Parse one entry: its indicators are kept, None counts it skipped, errors dead-letter it.

        Any exception is the entry's, not the feed's: it becomes a dead letter
        (a `ValidationError` with its message, anything else an `UnexpectedError`
        with its traceback) and the feed goes on.
        """
        self.entries += 1
        try:
            found = parse()
        except Exception as error:  # one bad entry must not stop the feed: dead-letter it
            self._reject(error, payload, source)
            return
        if not found:
            self.skipped += 1
            return
        self.indexed += 1
        for indicator in found:
            self.add(indicator)

    def add(self, indicator: Indicator) -> None:
        known = self._indicators.get(indicator.key)
        self._indicators[indicator.key] = indicator if known is None else merge(known, indicator)

    def skip(self) -> None:
        """Count an entry that is deliberately not indexed without parsing it."""
        self.entries += 1
        self.skipped += 1

    def reject_entry(self, error: BaseException, payload: bytes, source: SourcePosition) -> None:
        """Count an entry that cannot even be read as one (not an object, wrong shape)."""
        self.entries += 1
        self._reject(error, payload, source)

    def _reject(self, error: BaseException, payload: bytes, source: SourcePosition) -> None:
        """A dead letter for an entry already counted."""
        letter = dead_letter_from_error(
            STAGE, error, RawLine(payload=payload, source=source), record_kind=self.context.kind
        )
        self.dead_letters.append(msgspec.structs.replace(letter, failed_at=self.context.now))

    def reject_document(self, error: BaseException, payload: bytes, source: SourcePosition) -> None:
        """A dead letter for a whole document of a multi-document feed (counted as one entry).

        The feed's other documents are still read, but the run no longer holds the
        feed's complete content (`complete` turns False).
        """
        self.complete = False
        self.reject_entry(error, payload, source)


def parse_time(value: object, field: str) -> datetime | None:
    """A UTC datetime from an ISO 8601 text, a date, or POSIX seconds (int or digits).

    Naive times are UTC (feeds write ``2024-04-04 07:03:03`` meaning UTC).

    Raises:
        ValidationError: On anything else, naming ``field``.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        found = value
    elif isinstance(value, date):
        found = datetime(value.year, value.month, value.day)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        found = _from_epoch(float(value), field)
    elif isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            found = _from_epoch(float(text), field)
        else:
            try:
                found = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            except ValueError:
                raise ValidationError(f"{field}: not a time: {value!r}", field=field) from None
    else:
        raise ValidationError(f"{field}: not a time: {value!r}", field=field)
    return found.replace(tzinfo=UTC) if found.tzinfo is None else found.astimezone(UTC)


def _from_epoch(seconds: float, field: str) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise ValidationError(f"{field}: not a time: {seconds!r}", field=field) from None
