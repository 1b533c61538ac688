"""`IndicatorIndex`: stage 6's lookup structure, built once per worker and snapshot version.

Stage 6 asks, for every event, whether its addresses, domain names, URLs or
hashes are known indicators. With a million indicators in a snapshot, an
object per indicator would cost gigabytes across a worker's processes, so the
index keeps *columns* and row ids:

* the row's type, confidence and TLP as small numpy arrays and its value and
  feed names as the Arrow arrays read from the snapshot, from which `match`
  builds a `CtiMatch` only for the rare hit;
* IPv4 addresses as a sorted ``uint32`` array (with the row of each), so a
  batch of event addresses is matched with one `numpy.searchsorted`;
* CIDR networks flattened into sorted non-overlapping ranges of the most
  specific network (`cti.prefix`), so longest-prefix match is one more
  binary search;
* domains, URLs, hashes, CVEs and JA3 fingerprints in dicts from canonical
  text to row (a hash probe per lookup; a domain name probes each of its
  label suffixes, most specific first);
* IPv6 addresses in a dict keyed by the 128-bit int (they are few).

Revoked indicators and those whose ``valid_until`` has passed when the index
is built never enter these structures, so they never match; an indicator that
expires while an index is in use keeps matching until the next snapshot
version is loaded (the refresh interval bounds that). When two rows carry the
same ``(type, value)`` (the refresh job merges them, so only a hand-made file
does), the first row wins.

`index_for` keeps one index per snapshot ``(path, version)`` for the whole
process, so every DoFn instance in a worker shares it, and a new snapshot
version builds a new one while the old stays usable until released. An index
pickles as its `SnapshotRef` and unpickles through `index_for`; DoFns should
be given the `SnapshotRef`, never the index.
"""

from __future__ import annotations

import socket
import sys
import threading
from bisect import bisect_left
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from cti.indicators import IndicatorType, canonical_domain, canonical_url
from cti.prefix import NO_ROW, PrefixTable4, PrefixTable6
from cti.snapshot import META_VERSION, SnapshotRef, read_snapshot
from schemas.errors import ValidationError
from schemas.event import CtiMatch

__all__ = ["INDEX_COLUMNS", "IndicatorIndex", "clear_index_cache", "index_for"]

# The snapshot columns an index needs; `IndicatorIndex.load` reads only these.
INDEX_COLUMNS = ("type", "value", "confidence", "tlp", "valid_until", "revoked", "sources")

_TYPES = tuple(IndicatorType)
_CODE = {kind.value: code for code, kind in enumerate(_TYPES)}
_EXACT_TEXT_TYPES = (
    IndicatorType.URL,
    IndicatorType.MD5,
    IndicatorType.SHA1,
    IndicatorType.SHA256,
    IndicatorType.CVE,
    IndicatorType.JA3,
)
_ADDRESS_TYPES = (IndicatorType.IPV4, IndicatorType.IPV6, IndicatorType.CIDR)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NEVER = np.iinfo(np.int64).max
_BAD_ADDRESS = (OSError, ValueError, TypeError)  # what inet_pton raises on anything but an address

# The value texts of some rows of the snapshot (build time only).
_Texts = Callable[[npt.NDArray[np.intp]], list[str]]

_pack4 = partial(socket.inet_pton, socket.AF_INET)
_pack6 = partial(socket.inet_pton, socket.AF_INET6)


def _ipv6_int(text: str) -> int | None:
    """The 128-bit value of an IPv6 address text (a zone id is ignored), or None."""
    if not isinstance(text, str):
        return None
    try:
        return int.from_bytes(_pack6(text.partition("%")[0]), "big")
    except _BAD_ADDRESS:
        return None


def _pack_ipv4(texts: Sequence[str]) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.intp] | None]:
    """IPv4 address texts as ``uint32``, and which positions they came from.

    ``inet_pton`` accepts exactly the dotted quads that `ipaddress` accepts
    (no ``10.1`` shorthand, no leading zeros), unlike ``inet_aton``. When every
    text is an IPv4 address -- the usual event batch -- the conversion runs at
    C speed in one ``join``; otherwise the positions of the IPv4 ones are
    returned as well, and the caller handles the rest.
    """
    try:
        packed = b"".join(map(_pack4, texts))
        positions = None
    except _BAD_ADDRESS:
        parts: list[bytes] = []
        kept: list[int] = []
        for position, text in enumerate(texts):
            try:
                parts.append(_pack4(text))
            except _BAD_ADDRESS:
                continue
            kept.append(position)
        packed = b"".join(parts)
        positions = np.asarray(kept, dtype=np.intp)
    return np.frombuffer(packed, dtype=">u4").astype(np.uint32), positions


def _array(table: pa.Table, name: str) -> pa.Array:
    """One column as a single Arrow array (zero-copy when it has one chunk)."""
    column = table.column(name)
    if column.num_chunks == 1:
        return column.chunk(0)
    if column.num_chunks == 0:
        return pa.array([], type=column.type)
    return column.combine_chunks()


def _codes(array: pa.Array) -> tuple[npt.NDArray[np.int32], list[str]]:
    """Dictionary codes of a string column and the text of each code."""
    encoded = pc.fill_null(array, "").dictionary_encode()
    return (
        encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32, copy=False),
        encoded.dictionary.to_pylist(),
    )


def _first_wins(keys: list[Any], rows: list[int]) -> dict[Any, int]:
    # Built back to front, so the first row of a repeated key is the one left.
    return dict(zip(reversed(keys), reversed(rows), strict=True))


class IndicatorIndex:
    """Exact, longest-prefix and domain-suffix lookups over one snapshot's indicators.

    Row ids are the rows of the table the index was built from; `match` turns
    one into the `CtiMatch` an event carries.

    Attributes:
        version: The snapshot version this index was built from.
        built_at: The time validity was judged against.
        rows: Rows in the source table.
        excluded: Rows left out because revoked or expired at ``built_at``.
        invalid: Rows left out because their value is not of their type.
    """

    def __init__(self) -> None:
        # Use `from_table` or `load`; this only declares the attributes.
        self.version = ""
        self.built_at = _EPOCH
        self.rows = 0
        self.excluded = 0
        self.invalid = 0
        self._indexed = 0
        self._ref: SnapshotRef | None = None
        self._type_codes: npt.NDArray[np.int8] = np.empty(0, dtype=np.int8)
        self._confidence: npt.NDArray[np.uint8] = np.empty(0, dtype=np.uint8)
        self._tlp_codes: npt.NDArray[np.int32] = np.empty(0, dtype=np.int32)
        self._tlp_names: list[str] = []
        self._values: pa.Array = pa.array([], type=pa.string())
        self._sources: pa.Array = pa.array([], type=pa.list_(pa.string()))
        self._ipv4_keys: npt.NDArray[np.uint32] = np.empty(0, dtype=np.uint32)
        self._ipv4_rows: npt.NDArray[np.int32] = np.empty(0, dtype=np.int32)
        self._ipv4_keys_view = self._ipv4_keys.data
        self._ipv4_rows_view = self._ipv4_rows.data
        self._ipv6: dict[int, int] = {}
        self._cidr4 = PrefixTable4([], [], [])
        self._cidr6 = PrefixTable6([], [], [])
        self._domains: dict[str, int] = {}
        self._exact: dict[IndicatorType, dict[str, int]] = {}

    # Building

    @classmethod
    def from_table(
        cls, table: pa.Table, *, version: str | None = None, now: datetime | None = None
    ) -> IndicatorIndex:
        """Build the index from a snapshot table (at least the `INDEX_COLUMNS`).

        Args:
            table: The snapshot's indicators, as `cti.snapshot.read_snapshot` returns them.
            version: The snapshot version (default: the table's metadata, else "").
            now: Indicators with ``valid_until <= now`` are left out (default: the clock).

        Raises:
            ValidationError: When the table lacks a column the index needs.
            ValueError: When ``now`` is not timezone-aware.
        """
        missing = [name for name in INDEX_COLUMNS if name not in table.column_names]
        if missing:
            raise ValidationError(f"an indicator index needs column(s) {', '.join(missing)}")
        if now is None:
            now = datetime.now(UTC)
        elif now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        if version is None:
            version = ((table.schema.metadata or {}).get(META_VERSION) or b"").decode()
        index = cls()
        index.version = version
        index.built_at = now
        index.rows = table.num_rows
        index._build(table, now)
        return index

    @classmethod
    def load(cls, ref: SnapshotRef, *, now: datetime | None = None) -> IndicatorIndex:
        """Read the snapshot ``ref`` names (only the columns the index needs) and build on it.

        Raises:
            NotFoundError: When the snapshot file is gone.
            ValidationError: When the file is not a snapshot of that version.
        """
        table = read_snapshot(ref, columns=INDEX_COLUMNS)
        index = cls.from_table(table, version=ref.version, now=now)
        index._ref = ref
        return index

    def _build(self, table: pa.Table, now: datetime) -> None:
        type_codes, type_names = _codes(_array(table, "type"))
        to_code = np.array([_CODE.get(name, -1) for name in type_names] or [-1], dtype=np.int8)
        self._type_codes = to_code[type_codes]
        self._confidence = (
            _array(table, "confidence").cast(pa.uint8()).to_numpy(zero_copy_only=False)
        )
        self._tlp_codes, self._tlp_names = _codes(_array(table, "tlp"))
        self._values = _array(table, "value")
        self._sources = _array(table, "sources")

        revoked = pc.fill_null(_array(table, "revoked"), False).to_numpy(zero_copy_only=False)
        until = pc.fill_null(_array(table, "valid_until").cast(pa.int64()), _NEVER)
        now_us = (now - _EPOCH) // timedelta(microseconds=1)
        active = ~revoked & (until.to_numpy(zero_copy_only=False) > now_us)
        self.excluded = int(np.count_nonzero(~active))
        self.invalid = int(np.count_nonzero(active & (self._type_codes < 0)))

        def rows_of(kind: IndicatorType) -> npt.NDArray[np.intp]:
            return np.flatnonzero(active & (self._type_codes == _CODE[kind.value]))

        def texts(rows: npt.NDArray[np.intp]) -> list[str]:
            return self._values.take(pa.array(rows, type=pa.int64())).to_pylist()

        self._build_ipv4(rows_of(IndicatorType.IPV4), texts)
        self._build_ipv6(rows_of(IndicatorType.IPV6), texts)
        self._build_cidr(rows_of(IndicatorType.CIDR), texts)
        domain_rows = rows_of(IndicatorType.DOMAIN)
        self._domains = _first_wins(
            [name.rstrip(".").lower() for name in texts(domain_rows)], domain_rows.tolist()
        )
        for kind in _EXACT_TEXT_TYPES:
            rows = rows_of(kind)
            self._exact[kind] = _first_wins(
                [_query_text(kind, value) for value in texts(rows)], rows.tolist()
            )
        self._indexed = (
            len(self._ipv4_keys)
            + len(self._ipv6)
            + self._cidr4.networks
            + self._cidr6.networks
            + len(self._domains)
            + sum(len(values) for values in self._exact.values())
        )

    def _build_ipv4(self, rows: npt.NDArray[np.intp], texts: _Texts) -> None:
        addresses, positions = _pack_ipv4(texts(rows))
        if positions is not None:
            self.invalid += len(rows) - len(positions)
            rows = rows[positions]
        order = np.argsort(addresses, kind="stable")  # stable: the first row of a repeat first
        keys, key_rows = addresses[order], rows[order]
        first = np.ones(len(keys), dtype=bool)
        first[1:] = keys[1:] != keys[:-1]
        self._ipv4_keys = keys[first]
        self._ipv4_rows = key_rows[first].astype(np.int32)
        # Zero-copy views for `bisect` in lookup_ip: a quarter of a scalar searchsorted's cost.
        self._ipv4_keys_view = self._ipv4_keys.data
        self._ipv4_rows_view = self._ipv4_rows.data

    def _build_ipv6(self, rows: npt.NDArray[np.intp], texts: _Texts) -> None:
        keys: list[int] = []
        kept: list[int] = []
        for row, text in zip(rows.tolist(), texts(rows), strict=True):
            value = _ipv6_int(text)
            if value is None:
                self.invalid += 1
            else:
                keys.append(value)
                kept.append(row)
        self._ipv6 = _first_wins(keys, kept)

    def _build_cidr(self, rows: npt.NDArray[np.intp], texts: _Texts) -> None:
        v4: tuple[list[int], list[int], list[int]] = ([], [], [])
        v6: tuple[list[int], list[int], list[int]] = ([], [], [])
        for row, text in zip(rows.tolist(), texts(rows), strict=True):
            address, _, length = text.partition("/")
            pack, bits, target = (_pack6, 128, v6) if ":" in address else (_pack4, 32, v4)
            try:
                start = int.from_bytes(pack(address), "big")
            except _BAD_ADDRESS:
                self.invalid += 1
                continue
            if not (length.isascii() and length.isdigit() and int(length) <= bits):
                self.invalid += 1
                continue
            host_bits = bits - int(length)
            start = start >> host_bits << host_bits  # a value with host bits set means its network
            target[0].append(start)
            target[1].append(start | ((1 << host_bits) - 1))
            target[2].append(row)
        self._cidr4 = PrefixTable4(*v4)
        self._cidr6 = PrefixTable6(*v6)

    # Lookups

    def lookup_ip(self, ip: str) -> tuple[int, ...]:
        """Rows an address matches: the exact address indicator, then the most specific CIDR.

        Either may be missing; anything that is not an address matches nothing.
        """
        try:
            address = int.from_bytes(_pack4(ip), "big")
        except _BAD_ADDRESS:
            return self._lookup_ipv6(ip)
        keys = self._ipv4_keys_view
        found = bisect_left(keys, address)
        exact = (
            self._ipv4_rows_view[found] if found < len(keys) and keys[found] == address else NO_ROW
        )
        return _rows(exact, self._cidr4.lookup_one(address))

    def _lookup_ipv6(self, ip: str) -> tuple[int, ...]:
        address = _ipv6_int(ip)
        if address is None:
            return ()
        return _rows(self._ipv6.get(address, NO_ROW), self._cidr6.lookup_one(address))

    def lookup_ips(self, ips: Sequence[str]) -> list[tuple[int, ...]]:
        """`lookup_ip` for a batch, vectorized for IPv4 (the bulk of event addresses)."""
        result: list[tuple[int, ...]] = [()] * len(ips)
        if not result:
            return result
        addresses, positions = _pack_ipv4(ips)
        exact = self._exact_ipv4(addresses)
        covering = self._cidr4.lookup(addresses)
        hits = np.flatnonzero((exact >= 0) | (covering >= 0))
        places = hits if positions is None else positions[hits]
        for place, row, network in zip(
            places.tolist(), exact[hits].tolist(), covering[hits].tolist(), strict=True
        ):
            result[place] = _rows(row, network)
        if positions is not None:
            is_ipv4 = np.zeros(len(ips), dtype=bool)
            is_ipv4[positions] = True
            for place in np.flatnonzero(~is_ipv4).tolist():
                result[place] = self._lookup_ipv6(ips[place])
        return result

    def _exact_ipv4(self, addresses: npt.NDArray[np.uint32]) -> npt.NDArray[np.int64]:
        keys = self._ipv4_keys
        if not len(keys):
            return np.full(len(addresses), NO_ROW, dtype=np.int64)
        found = np.minimum(np.searchsorted(keys, addresses), len(keys) - 1)
        return np.where(keys[found] == addresses, self._ipv4_rows[found], NO_ROW).astype(np.int64)

    def lookup_domain(self, name: str) -> tuple[int, ...]:
        """The row of the most specific domain indicator ``name`` is or is under, if any.

        ``a.b.evil.example`` matches ``b.evil.example`` before ``evil.example``;
        ``notevil.example`` matches neither (suffixes are cut at label boundaries).
        """
        if not isinstance(name, str):
            return ()
        name = name.strip().rstrip(".")
        if name.isascii():
            name = name.lower()
        else:
            try:
                name = canonical_domain(name)  # the xn-- form the indicators are stored in
            except ValidationError:
                return ()
        domains = self._domains
        dot = -1
        while True:
            row = domains.get(name[dot + 1 :])
            if row is not None:
                return (row,)
            dot = name.find(".", dot + 1)
            if dot < 0:
                return ()

    def lookup_value(self, kind: IndicatorType | str, value: str) -> tuple[int, ...]:
        """Rows an event value of type ``kind`` matches (a URL, hash, CVE or JA3 exactly).

        Address types go to `lookup_ip`, domains to `lookup_domain`.

        Raises:
            ValueError: When ``kind`` is not an indicator type.
        """
        kind = IndicatorType(kind)
        if kind in _ADDRESS_TYPES:
            return self.lookup_ip(value)
        if kind is IndicatorType.DOMAIN:
            return self.lookup_domain(value)
        if not isinstance(value, str):
            return ()
        values = self._exact.get(kind, {})
        row = values.get(value)
        if row is None:
            if kind is IndicatorType.URL:
                try:
                    row = values.get(canonical_url(value))
                except ValidationError:
                    return ()
            else:
                row = values.get(_query_text(kind, value))
        return () if row is None else (row,)

    def match(self, row: int, field: str) -> CtiMatch:
        """The `CtiMatch` an event's ``field`` carries for indicator ``row``."""
        return CtiMatch(
            field=field,
            type=_TYPES[int(self._type_codes[row])].value,
            value=self._values[row].as_py(),
            confidence=int(self._confidence[row]),
            tlp=self._tlp_names[int(self._tlp_codes[row])],
            sources=tuple(self._sources[row].as_py() or ()),
        )

    # Introspection

    def __len__(self) -> int:
        """The number of indicators that can match (distinct, neither revoked nor expired)."""
        return self._indexed

    def __repr__(self) -> str:
        return (
            f"IndicatorIndex(version={self.version!r}, indexed={self._indexed}, "
            f"excluded={self.excluded}, invalid={self.invalid})"
        )

    def memory_bytes(self) -> int:
        """Approximate bytes the index holds: arrays exactly, dicts by their objects' sizes."""
        arrays = (
            self._type_codes,
            self._confidence,
            self._tlp_codes,
            self._ipv4_keys,
            self._ipv4_rows,
        )
        total = sum(array.nbytes for array in arrays)
        total += self._values.nbytes + self._sources.nbytes
        total += self._cidr4.nbytes() + self._cidr6.nbytes()
        int_size = sys.getsizeof(2**40)
        total += sys.getsizeof(self._ipv6) + len(self._ipv6) * (sys.getsizeof(2**127) + int_size)
        for values in (self._domains, *self._exact.values()):
            total += sys.getsizeof(values) + sum(map(sys.getsizeof, values))
            total += len(values) * int_size
        return total

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # A million-indicator index must never travel in a pickle: it travels as its
        # snapshot reference and is rebuilt (or found) in the receiving process.
        if self._ref is None:
            raise TypeError(
                "an IndicatorIndex built from an in-memory table cannot be pickled; "
                "give the DoFn a SnapshotRef and call index_for(ref) in the worker"
            )
        return index_for, (self._ref,)


def _rows(exact: int, network: int) -> tuple[int, ...]:
    if exact >= 0:
        return (exact, network) if network >= 0 else (exact,)
    return (network,) if network >= 0 else ()


def _query_text(kind: IndicatorType, value: str) -> str:
    """The canonical text of a hash, CVE or JA3 value (URLs are left as they are)."""
    if kind is IndicatorType.URL:
        return value
    return value.strip().upper() if kind is IndicatorType.CVE else value.strip().lower()


# The process-wide cache: one index per snapshot (path, version), shared by every DoFn.
_CACHE_SIZE = 2
_cache: dict[tuple[str, str], IndicatorIndex] = {}
_cache_lock = threading.Lock()
_build_locks: dict[tuple[str, str], threading.Lock] = {}


def index_for(ref: SnapshotRef) -> IndicatorIndex:
    """The process's index of snapshot ``ref``, built on first use.

    Threads asking for the same version wait for one build; asking for another
    version builds that one without blocking lookups on the indexes already
    handed out. Only the newest `_CACHE_SIZE` versions stay cached; an evicted
    index lives on while a caller still holds it.

    Raises:
        NotFoundError: When the snapshot file is gone.
        ValidationError: When the file is not a snapshot of that version.
    """
    key = (ref.path, ref.version)
    with _cache_lock:
        index = _cache.get(key)
        if index is not None:
            return index
        build_lock = _build_locks.setdefault(key, threading.Lock())
    with build_lock:
        with _cache_lock:
            index = _cache.get(key)
        if index is not None:
            return index
        try:
            index = IndicatorIndex.load(ref)
        except BaseException:
            with _cache_lock:
                _build_locks.pop(key, None)
            raise
        with _cache_lock:
            # Cached before the build lock goes, so a later caller finds it instead of rebuilding.
            _cache[key] = index
            _build_locks.pop(key, None)
            for old in sorted(_cache, key=lambda k: (k[1], k[0]))[:-_CACHE_SIZE]:
                del _cache[old]
        return index


def clear_index_cache() -> None:
    """Forget every cached index (tests; a worker that wants its memory back)."""
    with _cache_lock:
        _cache.clear()
