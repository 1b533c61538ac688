"""The alert: what detection raises and a detection engineer triages.

Alerts have deterministic ids (rule, entities, time bucket), so repeats of the
same activity aggregate into one row: ``event_count`` adds up, ``first_seen``
and ``last_seen`` widen, and the ``status`` an analyst set is kept.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

__all__ = ["SEVERITIES", "Alert"]

SEVERITIES = ("info", "low", "medium", "high", "critical")


class Alert(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    alert_id: str
    rule_id: str
    title: str
    description: str = ""
    attack_techniques: tuple[str, ...] = ()
    severity: Literal["info", "low", "medium", "high", "critical"]
    risk_score: Annotated[int, msgspec.Meta(ge=0, le=100)]
    src_ip: str | None = None
    dst_ip: str | None = None
    event_count: Annotated[int, msgspec.Meta(ge=1)] = 1
    first_seen: datetime
    last_seen: datetime
    sample_event_ids: tuple[str, ...] = ()
