"""Durations as people write them in flags and files: ``30s``, ``15m``, ``1h``, ``1d``, ``1h30m``.

One parser for every duration otsec reads: rule windows, feed schedules, ``--every``.
"""

from __future__ import annotations

import re

from schemas.errors import ValidationError

__all__ = ["parse_duration"]

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, field: str = "every") -> float:
    """Seconds in ``text``: numbers each followed by s, m, h or d, written together.

    Raises:
        ValidationError: On anything else (a bare number too: the unit is not guessed), or on
            a duration of zero; ``field`` names the setting in the error.
    """
    spec = text.strip().lower() if isinstance(text, str) else ""
    parts = _DURATION_PART.findall(spec)
    if not parts or "".join(number + unit for number, unit in parts) != spec:
        raise ValidationError(
            f"duration {text!r} is not a number followed by s, m, h or d (e.g. 15m, 1h30m)",
            field=field,
        )
    seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    if seconds <= 0:
        raise ValidationError(f"duration {text!r} must be longer than zero", field=field)
    return seconds
