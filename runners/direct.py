"""DirectRunner defaults: run in this process, download nothing.

The in-memory FnApi runner keeps every stage in one process, which is what lets
the CLI show progress and what keeps a run from reaching for the network (this
machine, and many plant networks, have none).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["DIRECT_DEFAULTS", "with_direct_defaults"]

DIRECT_DEFAULTS: dict[str, str] = {
    "runner": "DirectRunner",
    "direct_running_mode": "in_memory",
    "direct_num_workers": "1",
}


def with_direct_defaults(beam_args: Sequence[str]) -> list[str]:
    """Add the DirectRunner defaults the user did not set to ``beam_args``."""
    given = {arg.split("=", 1)[0].lstrip("-") for arg in beam_args if arg.startswith("--")}
    extra = [f"--{name}={value}" for name, value in DIRECT_DEFAULTS.items() if name not in given]
    return [*beam_args, *extra]
