"""CTI snapshots: the indicators current at refresh time, as one versioned Parquet file.

The refresh job writes a snapshot; the event pipeline's stage 6 reads the
newest one and builds its `cti.index.IndicatorIndex` from it. Parquet keeps
the million-row file small and lets a worker read straight into Arrow
columns, which is what the index is built from, without a Python object per
indicator.

A snapshot is immutable once published: its name carries its version
(``snapshot-20260120T080000123456Z.parquet``, a UTC timestamp that sorts as
text), it is written to a hidden temporary file in the same directory and
then renamed over (``os.replace`` is atomic within one file system), so a
reader sees either the whole file or no file. That is also why caches may key
on ``(path, version)``. Older versions beyond ``keep`` are removed after the
new one is in place. The file's key-value metadata carries the version, the
indicator count and the creation time, so a reader learns them from the
footer without reading the rows.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cti.indicators import Indicator, IndicatorType
from schemas.errors import NotFoundError, ValidationError

__all__ = [
    "SNAPSHOT_SCHEMA",
    "SnapshotRef",
    "indicators_to_table",
    "latest_snapshot",
    "read_snapshot",
    "snapshot_version",
    "write_snapshot",
]

_TIMESTAMP = pa.timestamp("us", tz="UTC")
_STRINGS = pa.list_(pa.string())

SNAPSHOT_SCHEMA = pa.schema(
    [
        pa.field("type", pa.string(), nullable=False),
        pa.field("value", pa.string(), nullable=False),
        pa.field("confidence", pa.uint8(), nullable=False),
        pa.field("tlp", pa.string(), nullable=False),
        pa.field("valid_from", _TIMESTAMP),
        pa.field("valid_until", _TIMESTAMP),
        pa.field("revoked", pa.bool_(), nullable=False),
        # One entry per source: the feed's name, and at the same position the feed's reference.
        pa.field("sources", _STRINGS, nullable=False),
        pa.field("references", _STRINGS, nullable=False),
        pa.field("tags", _STRINGS, nullable=False),
        pa.field("techniques", _STRINGS, nullable=False),
    ]
)

# File-level (Parquet key-value) metadata keys.
META_VERSION = b"otsec.snapshot.version"
META_INDICATORS = b"otsec.snapshot.indicators"
META_CREATED_AT = b"otsec.snapshot.created_at"

_NAME = re.compile(r"snapshot-(\d{8}T\d{12}Z)\.parquet")
_VERSION_FORMAT = "%Y%m%dT%H%M%S%fZ"
_KNOWN_TYPES = pa.array([t.value for t in IndicatorType])


class SnapshotRef(msgspec.Struct, frozen=True):
    """Where a published snapshot is, its version, and how many indicators it holds.

    Small and picklable: this, not the index, is what a DoFn is given.
    """

    path: str
    version: str
    indicators: int


def snapshot_version(when: datetime) -> str:
    """The sortable version text of a UTC instant: ``YYYYMMDDTHHMMSSffffffZ``."""
    if when.tzinfo is None:
        raise ValueError("a snapshot time must be timezone-aware")
    return when.astimezone(UTC).strftime(_VERSION_FORMAT)


def indicators_to_table(indicators: Iterable[Indicator]) -> pa.Table:
    """The snapshot table of ``indicators``, built column by column.

    One pass appends each field to its own list and Arrow converts each list
    once, which is several times faster than a list of row dicts for a
    million indicators.
    """
    types: list[str] = []
    values: list[str] = []
    confidences: list[int] = []
    tlps: list[str] = []
    valid_from: list[datetime | None] = []
    valid_until: list[datetime | None] = []
    revoked: list[bool] = []
    sources: list[list[str]] = []
    references: list[list[str | None]] = []
    tags: list[tuple[str, ...]] = []
    techniques: list[tuple[str, ...]] = []
    for indicator in indicators:
        types.append(indicator.type)  # a StrEnum: Arrow stores its text
        values.append(indicator.value)
        confidences.append(indicator.confidence)
        tlps.append(indicator.tlp)
        valid_from.append(indicator.valid_from)
        valid_until.append(indicator.valid_until)
        revoked.append(indicator.revoked)
        sources.append([source.feed for source in indicator.sources])
        references.append([source.reference for source in indicator.sources])
        tags.append(indicator.tags)
        techniques.append(indicator.techniques)
    columns = [types, values, confidences, tlps, valid_from, valid_until, revoked]
    columns += [sources, references, tags, techniques]
    return pa.Table.from_arrays(
        [
            pa.array(column, type=field.type)
            for column, field in zip(columns, SNAPSHOT_SCHEMA, strict=True)
        ],
        schema=SNAPSHOT_SCHEMA,
    )


def _conform(table: pa.Table, where: str) -> pa.Table:
    """``table`` with exactly the snapshot columns, in order and with their types.

    Raises:
        ValidationError: On a missing column or a column that cannot be cast.
    """
    missing = [name for name in SNAPSHOT_SCHEMA.names if name not in table.column_names]
    if missing:
        raise ValidationError(
            f"{where} is not a CTI snapshot: missing column(s) {', '.join(missing)}",
            source=where,
        )
    table = table.select(SNAPSHOT_SCHEMA.names)
    if table.schema.remove_metadata().equals(SNAPSHOT_SCHEMA):
        return table
    wrong = [
        f"{field.name} is {table.schema.field(field.name).type}, not {field.type}"
        for field in SNAPSHOT_SCHEMA
        if not _compatible(table.schema.field(field.name).type, field.type)
    ]
    if wrong:
        raise ValidationError(f"{where} is not a CTI snapshot: {'; '.join(wrong)}", source=where)
    try:
        return table.cast(SNAPSHOT_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as error:
        raise ValidationError(
            f"{where} is not a CTI snapshot: columns do not have the snapshot types ({error})",
            source=where,
        ) from None


def _compatible(actual: pa.DataType, expected: pa.DataType) -> bool:
    """Whether a column of type ``actual`` holds what ``expected`` means, up to width.

    Text stays text and integers stay integers (a cast that would turn numbers
    into strings hides a wrong file); timestamps must carry a time zone.
    """
    if actual.equals(expected) or pa.types.is_null(actual):
        return True
    if pa.types.is_string(expected):
        return pa.types.is_string(actual) or pa.types.is_large_string(actual)
    if pa.types.is_list(expected):
        is_list = pa.types.is_list(actual) or pa.types.is_large_list(actual)
        return is_list and _compatible(actual.value_type, expected.value_type)
    if pa.types.is_integer(expected):
        return pa.types.is_integer(actual)
    if pa.types.is_timestamp(expected):
        return pa.types.is_timestamp(actual) and actual.tz is not None
    return False


def _check_values(table: pa.Table, where: str) -> None:
    """Reject a table whose types or confidences no index could interpret."""
    if "type" in table.column_names:
        unknown = pc.invert(pc.is_in(table.column("type"), value_set=_KNOWN_TYPES))
        if pc.any(unknown).as_py():
            bad = pc.filter(table.column("type"), unknown)[0].as_py()
            raise ValidationError(
                f"{where}: unknown indicator type {bad!r}", field="type", source=where
            )
    if "confidence" in table.column_names and table.num_rows:
        highest = pc.max(table.column("confidence")).as_py()
        if highest is not None and highest > 100:
            raise ValidationError(
                f"{where}: confidence {highest} is above 100", field="confidence", source=where
            )


def _versions(directory: str) -> list[tuple[str, str]]:
    """``(version, file name)`` of every published snapshot in ``directory``, oldest first."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = [(match.group(1), name) for name in names if (match := _NAME.fullmatch(name))]
    return sorted(found)


def write_snapshot(
    directory: str, table: pa.Table, *, keep: int = 5, now: datetime | None = None
) -> SnapshotRef:
    """Publish ``table`` as a new snapshot version in ``directory``, atomically.

    Args:
        directory: Where snapshots live; created if missing.
        table: The indicators, with the `SNAPSHOT_SCHEMA` columns (others are dropped).
        keep: How many versions to leave in the directory, this one included.
        now: The creation time, which is also the version (default: the clock).
            If that version is already published, the next free microsecond is
            used, so a published file is never replaced.

    Returns:
        The reference to the published file.

    Raises:
        ValidationError: When ``table`` does not have the snapshot columns.
        ValueError: When ``keep`` is below 1.
    """
    if keep < 1:
        raise ValueError("keep must be at least 1")
    table = _conform(table, "snapshot table")
    _check_values(table, "snapshot table")
    created = (now or datetime.now(UTC)).astimezone(UTC)
    os.makedirs(directory, exist_ok=True)
    published = {version for version, _ in _versions(directory)}
    while snapshot_version(created) in published:
        created += timedelta(microseconds=1)
    version = snapshot_version(created)
    table = table.replace_schema_metadata(
        {
            META_VERSION: version.encode(),
            META_INDICATORS: str(table.num_rows).encode(),
            META_CREATED_AT: created.isoformat().encode(),
        }
    )
    path = os.path.join(directory, f"snapshot-{version}.parquet")
    # Hidden and not ending in .parquet: no reader mistakes it for a snapshot.
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".snapshot-", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as sink:
            pq.write_table(table, sink, compression="zstd")
            sink.flush()
            os.fsync(sink.fileno())
        # mkstemp makes the file private (0600); event jobs often run as another user and
        # read the directory from a shared volume: readable by all, as umask allows.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o644 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise
    _fsync_directory(directory)
    _prune(directory, keep=keep, protect=version)
    return SnapshotRef(path=path, version=version, indicators=table.num_rows)


def _fsync_directory(directory: str) -> None:
    """Make the rename durable: without this a crash can forget the new directory entry."""
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass  # some file systems cannot fsync a directory; the rename is still atomic
    finally:
        os.close(handle)


def _prune(directory: str, *, keep: int, protect: str) -> None:
    versions = _versions(directory)
    for version, name in versions[: max(0, len(versions) - keep)]:
        if version != protect:
            with contextlib.suppress(FileNotFoundError):  # another writer pruned it first
                os.remove(os.path.join(directory, name))


def _ref_of_file(path: str) -> SnapshotRef:
    """A reference to one snapshot file, from its footer.

    Raises:
        ValidationError: When the file is not Parquet or carries no version.
    """
    try:
        metadata = pq.read_metadata(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise ValidationError(f"{path} is not a CTI snapshot ({error})", source=path) from None
    keys = metadata.metadata or {}
    version = keys.get(META_VERSION, b"").decode()
    if not version:
        match = _NAME.fullmatch(os.path.basename(path))
        if match is None:
            raise ValidationError(f"{path} is not a CTI snapshot (no version)", source=path)
        version = match.group(1)
    return SnapshotRef(path=path, version=version, indicators=metadata.num_rows)


def latest_snapshot(directory_or_file: str) -> SnapshotRef | None:
    """The newest snapshot in a directory, or a reference to one given file.

    Temporary files of writes in progress are ignored. ``None`` when the
    directory holds no snapshot or does not exist (yet): the refresh job may
    not have run.

    Raises:
        ValidationError: When the newest snapshot (or the given file) is not a snapshot.
    """
    if os.path.isfile(directory_or_file):
        return _ref_of_file(directory_or_file)
    # Newest first; a version pruned between listing and reading falls through to the next.
    for _, name in reversed(_versions(directory_or_file)):
        path = os.path.join(directory_or_file, name)
        if os.path.exists(path):
            try:
                return _ref_of_file(path)
            except ValidationError:
                if os.path.exists(path):
                    raise
    return None


def read_snapshot(
    ref_or_path: SnapshotRef | str, *, columns: Sequence[str] | None = None
) -> pa.Table:
    """The indicator table of a snapshot, checked against `SNAPSHOT_SCHEMA`.

    Args:
        ref_or_path: A `SnapshotRef` or the path of a snapshot file.
        columns: Read only these snapshot columns (the index needs seven of eleven).

    Raises:
        NotFoundError: When the file does not exist.
        ValidationError: When the file is not a snapshot (not Parquet, wrong
            columns or types, unknown indicator types, or another version than
            the reference names).
    """
    path = ref_or_path.path if isinstance(ref_or_path, SnapshotRef) else os.fspath(ref_or_path)
    if not os.path.isfile(path):
        raise NotFoundError(f"CTI snapshot {path} does not exist", source=path)
    try:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
    except (pa.ArrowInvalid, OSError) as error:
        raise ValidationError(f"{path} is not a CTI snapshot ({error})", source=path) from None
    _conform(schema.empty_table(), path)  # the columns and types, before reading any rows
    metadata = schema.metadata or {}
    if isinstance(ref_or_path, SnapshotRef):
        stored = metadata.get(META_VERSION, ref_or_path.version.encode()).decode()
        if stored != ref_or_path.version:
            raise ValidationError(
                f"{path} holds version {stored}, not {ref_or_path.version}", source=path
            )
    wanted = list(SNAPSHOT_SCHEMA.names if columns is None else columns)
    unknown = [name for name in wanted if name not in SNAPSHOT_SCHEMA.names]
    if unknown:
        raise ValueError(f"not snapshot columns: {', '.join(unknown)}")
    try:
        table = parquet.read(columns=wanted)
    except (pa.ArrowInvalid, OSError) as error:
        raise ValidationError(f"{path} is not a CTI snapshot ({error})", source=path) from None
    target = pa.schema([SNAPSHOT_SCHEMA.field(name) for name in wanted])
    if not table.schema.remove_metadata().equals(target):
        try:
            table = table.cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as error:
            raise ValidationError(f"{path} is not a CTI snapshot ({error})", source=path) from None
    _check_values(table, path)
    return table.replace_schema_metadata(metadata)
