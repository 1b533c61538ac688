"""DirectRunner defaults: run in this process, download nothing.

The in-memory FnApi runner keeps every stage in one process, which is what lets
the CLI show progress and what keeps a run from reaching for the network (this
machine, and many plant networks, have none).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Sequence

__all__ = ["DIRECT_DEFAULTS", "batch_gc", "with_direct_defaults"]

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


@contextlib.contextmanager
def batch_gc(threshold: int = 50_000) -> Iterator[None]:
    """Collect garbage less often while a batch job runs in this process.

    Every record allocates a handful of short-lived objects; with Python's default
    threshold (700 allocations) the cyclic collector runs thousands of times a second
    and costs about a fifth of the run, although otsec's records cannot form cycles.
    Objects alive before the job are frozen out of the collector's scans.
    """
    previous = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(threshold, previous[1], previous[2])
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()
