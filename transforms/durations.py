"""Durations as people write them in flags and files: ``90s``, ``15m``, ``1h``, ``7d``."""

from __future__ import annotations

import re

from schemas.errors import ValidationError

__all__ = ["parse_duration"]

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str | int | float) -> float:
    """Seconds in ``text`` (a bare number is seconds).

    Raises:
        ValidationError: On anything else, or a duration that is not positive.
    """
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _DURATION.fullmatch(str(text))
        if match is None:
            raise ValidationError(
                f"not a duration: {text!r} (write e.g. 90s, 15m, 1h or 7d)", field="duration"
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]
    if seconds <= 0:
        raise ValidationError(f"a duration must be positive, got {text!r}", field="duration")
    return seconds
