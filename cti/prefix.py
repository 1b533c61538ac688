"""Longest-prefix match of addresses against CIDR networks, as a sorted table of ranges.

CIDR blocks either nest or are disjoint, never overlap partially. So a set of
networks, however deeply nested, can be *flattened* once into sorted,
non-overlapping address ranges, each labelled with the most specific network
that covers it: a /24 inside a /16 splits the /16 into the part before the
/24, the /24 itself, and the part after. Longest-prefix match then becomes
"find the range whose start is the last one <= the address" -- one binary
search per address instead of one probe per prefix length or a walk down a
trie of Python objects.

For IPv4 the ranges are two ``uint32`` arrays, and `numpy.searchsorted`
looks up a whole batch of addresses in one vectorized call (the event
pipeline looks up source and destination of every event). IPv6 networks in
threat intelligence are few, and 128-bit integers do not fit a numpy dtype,
so that table uses Python ints and `bisect`.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["PrefixTable4", "PrefixTable6", "flatten_networks"]

NO_ROW = -1


def flatten_networks(
    starts: Sequence[int], ends: Sequence[int], rows: Sequence[int]
) -> tuple[list[int], list[int], list[int]]:
    """Nested or disjoint networks as sorted, non-overlapping ranges of the most specific one.

    Args:
        starts: First address of each network.
        ends: Last address of each network (inclusive).
        rows: The indicator row of each network.

    Returns:
        ``(starts, ends, rows)`` of the flattened ranges, sorted by start. When
        the same network appears twice, the lower row wins.

    Raises:
        ValueError: When two ranges overlap without one containing the other
            (impossible for CIDR networks).
    """
    order = sorted(range(len(starts)), key=lambda i: (starts[i], -ends[i], rows[i]))
    out_starts: list[int] = []
    out_ends: list[int] = []
    out_rows: list[int] = []

    def emit(first: int, last: int, row: int) -> None:
        if first <= last:
            out_starts.append(first)
            out_ends.append(last)
            out_rows.append(row)

    # The stack holds the networks that contain the current position, outermost first.
    stack: list[tuple[int, int, int]] = []
    position = 0  # the first address not yet emitted
    for i in order:
        start, end, row = starts[i], ends[i], rows[i]
        while stack and stack[-1][1] < start:
            _, closed_end, closed_row = stack.pop()
            emit(position, closed_end, closed_row)
            position = closed_end + 1
        if stack:
            outer_start, outer_end, outer_row = stack[-1]
            if (outer_start, outer_end) == (start, end):
                continue  # the same network again: the first row stays
            if end > outer_end:
                raise ValueError(f"ranges overlap partially at {start}")
            emit(position, start - 1, outer_row)  # the part of the outer one before this one
        position = start
        stack.append((start, end, row))
    while stack:
        _, closed_end, closed_row = stack.pop()
        emit(position, closed_end, closed_row)
        position = closed_end + 1
    return out_starts, out_ends, out_rows


class PrefixTable4:
    """IPv4 longest-prefix match over flattened ranges in ``uint32`` arrays."""

    __slots__ = ("_ends_view", "_rows_view", "_starts_view", "ends", "networks", "rows", "starts")

    def __init__(self, starts: Sequence[int], ends: Sequence[int], rows: Sequence[int]) -> None:
        """Build from each network's first and last address (as ints) and its row."""
        flat_starts, flat_ends, flat_rows = flatten_networks(starts, ends, rows)
        self.starts = np.asarray(flat_starts, dtype=np.uint32)
        self.ends = np.asarray(flat_ends, dtype=np.uint32)
        self.rows = np.asarray(flat_rows, dtype=np.int32)
        self.networks = len(set(zip(starts, ends, strict=True)))
        # Zero-copy views for one-address lookups: `bisect` over a memoryview costs
        # about a quarter of a scalar `np.searchsorted` call.
        self._starts_view = self.starts.data
        self._ends_view = self.ends.data
        self._rows_view = self.rows.data

    def __len__(self) -> int:
        """The number of flattened ranges."""
        return len(self.starts)

    def lookup(self, addresses: npt.NDArray[np.uint32]) -> npt.NDArray[np.int64]:
        """The row of the most specific network covering each address, or -1."""
        if not len(self.starts):
            return np.full(len(addresses), NO_ROW, dtype=np.int64)
        # The last range starting at or before the address; it covers it if it has not ended.
        index = np.searchsorted(self.starts, addresses, side="right") - 1
        safe = np.maximum(index, 0)
        covered = (index >= 0) & (addresses <= self.ends[safe])
        return np.where(covered, self.rows[safe], NO_ROW).astype(np.int64, copy=False)

    def lookup_one(self, address: int) -> int:
        """The row of the most specific network covering ``address``, or -1."""
        index = bisect_right(self._starts_view, address) - 1
        if index >= 0 and address <= self._ends_view[index]:
            return int(self._rows_view[index])
        return NO_ROW

    def nbytes(self) -> int:
        return int(self.starts.nbytes + self.ends.nbytes + self.rows.nbytes)


class PrefixTable6:
    """IPv6 longest-prefix match over flattened ranges of Python ints, searched with `bisect`."""

    __slots__ = ("ends", "networks", "rows", "starts")

    def __init__(self, starts: Sequence[int], ends: Sequence[int], rows: Sequence[int]) -> None:
        """Build from each network's first and last address (as ints) and its row."""
        self.starts, self.ends, self.rows = flatten_networks(starts, ends, rows)
        self.networks = len(set(zip(starts, ends, strict=True)))

    def __len__(self) -> int:
        """The number of flattened ranges."""
        return len(self.starts)

    def lookup_one(self, address: int) -> int:
        """The row of the most specific network covering ``address``, or -1."""
        index = bisect_right(self.starts, address) - 1
        if index >= 0 and address <= self.ends[index]:
            return self.rows[index]
        return NO_ROW

    def nbytes(self) -> int:
        """Approximate: three lists of ints (IPv6 ints take 44 bytes, small rows 28)."""
        return len(self.starts) * (3 * 8 + 2 * 44 + 28)
