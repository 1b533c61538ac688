"""Kinesis source: `ReadFromKinesis` reads a Kinesis data stream as `RawLine`s, unbounded.

Beam's Python SDK has no native Kinesis source (its ``ReadDataFromKinesis`` is a
cross-language wrapper around the deprecated Java SDK v1 reader), so this is a
splittable DoFn on boto3.

Shape: ``Impulse -> Map(the stream's config) -> ParDo(_ReadKinesisFn)``. The
element is the stream; the restriction (`KinesisRestriction`) is a slice of the
stream's hash-key space and the progress of every shard that starts in it: one
`ShardCheckpoint` per shard, holding the last sequence number emitted, how to
start when nothing was read yet, the shard's watermark and, once it is closed,
its ending sequence number. The initial restriction is split into one per open
shard (each owning that shard's hash range), so shards are read in parallel; a
runner checkpoint (``defer_remainder``) hands back the restriction as it stands,
and a resumed read continues *after* each shard's last sequence number: no record
is lost or emitted twice by the source.

Resharding: shards are listed (``ListShards``) when a read starts, every
``discover_seconds`` and whenever a shard ends. A new shard is adopted by the
restriction whose range holds its starting hash key and read from
``TRIM_HORIZON``. A shard is read only when none of its parents is still being
read by the same restriction: after a split both children wait for the parent to
be drained (``NextShardIterator`` absent, or the ending sequence number read). A
merge child whose other parent belongs to another restriction, or children at
start whose closed ancestor another restriction reads, wait only until that
parent is closed: per-key order across restrictions is not guaranteed (Beam does
not order elements anyway; Dedupe drops redeliveries by ``event_id``), and the
watermark stays correct because each restriction holds its own. Set
``ordered=true`` to read the whole stream in one restriction, parents strictly
before children, at the cost of parallelism.

Start positions: ``TRIM_HORIZON`` (the default: nothing retained is skipped),
``LATEST`` and ``AT_TIMESTAMP``. A ``LATEST`` shard is pinned when its first
iterator is taken: the checkpoint then says ``AT_TIMESTAMP`` (that time minus
the idle allowance), so a restart before the shard's first record loses nothing
put after the job started (a few records put just before may be read).

Errors: ``ProvisionedThroughputExceededException`` and other throttling or
transient failures back the shard off (exponential, jittered; the other shards
keep reading) and are counted; an ``ExpiredIteratorException`` takes a fresh
iterator after the checkpointed sequence number. Credentials, authorization and
missing-stream errors fail the read loudly (`AuthenticationError`,
`AuthorizationError`, `NotFoundError`): a source has no record to dead-letter.

Watermark: per shard the ``ApproximateArrivalTimestamp`` of the last record
read; a shard that is caught up (an empty answer with ``MillisBehindLatest`` 0)
moves to now minus ``idle_allowance`` seconds, so windows close on idle shards.
The restriction's watermark is the minimum over the shards it may read.

Output: one Kinesis record's ``Data`` may hold several newline-separated lines
(sensors batch them). With ``split_lines`` (the default) each line becomes one
`RawLine` at ``SourcePosition(uri="kinesis://STREAM", shard, sequence, line=N,
offset=byte offset in the record)``, as Decode expects one record per
`RawLine`; blank lines and Zeek ``#open``/``#close``/``##`` lines are counted,
not emitted, and Zeek header directives inside a record become the ``context``
of the data lines after them, as in files. Every `RawLine` carries the record's
``ApproximateArrivalTimestamp`` as its element timestamp.

Bounded reads for tests and replays: ``max_records=N`` stops after N Kinesis
records, ``stop_when_caught_up=true`` once every shard is caught up. The
``read.in``/``read.out`` counters count lines as the file source does;
``kinesis.*`` metrics count records, calls, throttling, expired iterators and
shards, with ``MillisBehindLatest`` as a distribution and a gauge.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import apache_beam as beam
import msgspec
from apache_beam import coders
from apache_beam.io.iobase import RestrictionProgress, RestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.metrics import Metrics
from apache_beam.transforms.core import RestrictionProvider, WatermarkEstimatorProvider
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp

from schemas.errors import (
    AuthenticationError,
    AuthorizationError,
    ExternalAPIError,
    NotFoundError,
    UnexpectedError,
    ValidationError,
)
from schemas.records import RawLine, SourcePosition
from transforms._stage import METRICS_NAMESPACE, StageCounters
from transforms.decode import is_zeek_comment, zeek_directive

__all__ = [
    "KinesisReadConfig",
    "KinesisRestriction",
    "ReadFromKinesis",
    "ShardCheckpoint",
    "ShardInfo",
    "StartPosition",
    "initial_restriction",
    "plan_discovery",
    "readable_shards",
    "record_lines",
    "split_restriction",
]

_log = logging.getLogger("otsec.kinesis")

MAX_HASH_KEY = 2**128 - 1
_STREAM_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class StartPosition(StrEnum):
    """Where a shard is read from when no record of it has been read yet."""

    TRIM_HORIZON = "TRIM_HORIZON"
    LATEST = "LATEST"
    AT_TIMESTAMP = "AT_TIMESTAMP"


# ---------------------------------------------------------------------------------------
# Configuration


@dataclasses.dataclass(frozen=True)
class KinesisReadConfig:
    """Which stream to read, from where, and how.

    Args:
        stream: The Kinesis data stream name.
        region: AWS region (``AWS_REGION``/``AWS_DEFAULT_REGION`` when built from a URI).
        endpoint: Endpoint URL (a ``moto_server`` on 127.0.0.1 in tests); None: AWS's.
        start: Where shards present at start are read from.
        timestamp: For ``AT_TIMESTAMP``: read records that arrived at or after it.
        limit: Records per ``GetRecords`` call (1-10,000).
        split_lines: One `RawLine` per newline-separated line of a record, not per record.
        max_records: Stop after this many Kinesis records (a bounded read).
        stop_when_caught_up: Stop once every shard is caught up (a bounded read).
        poll_seconds: Wait between polls of a caught-up shard.
        checkpoint_seconds: Longest stretch one ``process`` call reads before handing
            its progress back to the runner (also bounds how long sinks buffer).
        idle_allowance_seconds: How far behind the wall clock an idle shard's
            watermark stays (covers clock skew and Kinesis' visibility delay).
        discover_seconds: How often shards are listed to notice resharding.
        backoff_base_seconds: First wait after throttling; doubles per attempt.
        backoff_max_seconds: Longest wait after throttling.
        ordered: Read the whole stream in one restriction (strict parent-then-child
            order across merges; no parallelism).

    Raises:
        ValueError: On a bad stream name, endpoint, limit, interval or start position.
    """

    stream: str
    region: str
    endpoint: str | None = None
    start: StartPosition = StartPosition.TRIM_HORIZON
    timestamp: datetime | None = None
    limit: int = 100
    split_lines: bool = True
    max_records: int | None = None
    stop_when_caught_up: bool = False
    poll_seconds: float = 1.0
    checkpoint_seconds: float = 2.0
    idle_allowance_seconds: float = 5.0
    discover_seconds: float = 10.0
    backoff_base_seconds: float = 0.25
    backoff_max_seconds: float = 10.0
    ordered: bool = False

    def __post_init__(self) -> None:
        if not _STREAM_NAME.match(self.stream):
            raise ValueError(
                f"stream name {self.stream!r} must be 1-128 letters, digits, '_', '.' or '-'"
            )
        if not self.region:
            raise ValueError("a region is required (region=... or AWS_REGION)")
        if self.endpoint is not None and urlsplit(self.endpoint).scheme not in ("http", "https"):
            raise ValueError(f"endpoint {self.endpoint!r} must be an http(s) URL")
        object.__setattr__(self, "start", StartPosition(self.start))
        if (self.start is StartPosition.AT_TIMESTAMP) != (self.timestamp is not None):
            raise ValueError("timestamp is required with start=at_timestamp, and only then")
        if self.timestamp is not None and self.timestamp.tzinfo is None:
            object.__setattr__(self, "timestamp", self.timestamp.replace(tzinfo=UTC))
        if not 1 <= self.limit <= 10_000:
            raise ValueError(f"limit must be 1-10000 records per GetRecords, got {self.limit}")
        if self.max_records is not None and self.max_records < 1:
            raise ValueError(f"max_records must be positive, got {self.max_records}")
        for name in ("poll_seconds", "checkpoint_seconds", "discover_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("idle_allowance_seconds", "backoff_base_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.backoff_max_seconds < self.backoff_base_seconds:
            raise ValueError("backoff_max_seconds must be >= backoff_base_seconds")

    @property
    def uri(self) -> str:
        """The stream's URI as it appears in source positions: ``kinesis://STREAM``."""
        return f"kinesis://{self.stream}"

    @property
    def bounded(self) -> bool:
        return self.max_records is not None or self.stop_when_caught_up

    @classmethod
    def from_uri(cls, uri: str, environ: Mapping[str, str] | None = None) -> KinesisReadConfig:
        """Parse ``kinesis://STREAM?region=R&endpoint=URL&start=...&timestamp=ISO&limit=N``.

        Other keys: ``max_records``, ``stop_when_caught_up``, ``split_lines``,
        ``ordered``, ``poll_seconds``, ``checkpoint_seconds``, ``idle_allowance``,
        ``discover_seconds``, ``backoff_seconds``, ``backoff_max_seconds``. Unknown
        or repeated keys are rejected. Credentials never go in the URI: boto3 reads
        them from the standard AWS environment on each worker.

        Raises:
            ValidationError: Naming the offending key (``field``).
        """
        env = os.environ if environ is None else environ
        parts = urlsplit(uri)
        if parts.scheme != "kinesis" or not parts.netloc:
            raise ValidationError(f"{uri}: expected kinesis://STREAM?...", field="--input")
        if parts.path not in ("", "/") or parts.fragment:
            raise ValidationError(f"{uri}: a Kinesis URI has no path", field="--input")
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False)
        query: dict[str, str] = {}
        for key, value in pairs:
            if key in query:
                raise ValidationError(f"{uri}: {key} given twice", field=key)
            query[key] = value
        unknown = sorted(set(query) - _URI_KEYS)
        if unknown:
            raise ValidationError(
                f"{uri}: unknown option {unknown[0]!r} (known: {', '.join(sorted(_URI_KEYS))})",
                field=unknown[0],
            )
        kwargs: dict[str, Any] = {
            "stream": parts.netloc,
            "region": query.get("region") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
        }
        try:
            if "endpoint" in query:
                kwargs["endpoint"] = query["endpoint"]
            if "start" in query:
                kwargs["start"] = _start_position(query["start"])
            if "timestamp" in query:
                kwargs["timestamp"] = _parse_time(query["timestamp"])
            for key, attr, kind in _URI_NUMBERS:
                if key in query:
                    kwargs[attr] = kind(query[key])
            for key in ("stop_when_caught_up", "split_lines", "ordered"):
                if key in query:
                    kwargs[key] = _parse_bool(query[key], key)
            if kwargs["region"] is None:
                raise ValueError("a region is required (region=... or AWS_REGION)")
            return cls(**kwargs)
        except ValueError as error:
            raise ValidationError(f"{uri}: {error}", field="--input") from None


_URI_NUMBERS: tuple[tuple[str, str, type], ...] = (
    ("limit", "limit", int),
    ("max_records", "max_records", int),
    ("poll_seconds", "poll_seconds", float),
    ("checkpoint_seconds", "checkpoint_seconds", float),
    ("idle_allowance", "idle_allowance_seconds", float),
    ("discover_seconds", "discover_seconds", float),
    ("backoff_seconds", "backoff_base_seconds", float),
    ("backoff_max_seconds", "backoff_max_seconds", float),
)
_URI_KEYS = frozenset(
    {"region", "endpoint", "start", "timestamp", "stop_when_caught_up", "split_lines", "ordered"}
    | {key for key, _, _ in _URI_NUMBERS}
)


def _start_position(value: str) -> StartPosition:
    try:
        return StartPosition(value.upper())
    except ValueError:
        raise ValueError(
            f"start must be trim_horizon, latest or at_timestamp, got {value!r}"
        ) from None


def _parse_time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace(" ", "+"))  # '+' arrives as ' ' in a query
    except ValueError:
        raise ValueError(f"timestamp {value!r} is not ISO 8601") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _parse_bool(value: str, key: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE or lowered == "":
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{key} must be true or false, got {value!r}")


# ---------------------------------------------------------------------------------------
# Restriction: what one reader owns and how far it got


class ShardInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A shard as ``ListShards`` describes it."""

    shard_id: str
    start_hash: int
    end_hash: int
    parents: tuple[str, ...] = ()
    ending_sequence: str | None = None

    @property
    def closed(self) -> bool:
        return self.ending_sequence is not None

    @classmethod
    def from_api(cls, shard: Mapping[str, Any]) -> ShardInfo:
        keys = shard["HashKeyRange"]
        return cls(
            shard_id=shard["ShardId"],
            start_hash=int(keys["StartingHashKey"]),
            end_hash=int(keys["EndingHashKey"]),
            parents=tuple(
                shard[k] for k in ("ParentShardId", "AdjacentParentShardId") if shard.get(k)
            ),
            ending_sequence=shard.get("SequenceNumberRange", {}).get("EndingSequenceNumber"),
        )


class ShardCheckpoint(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One shard's progress inside a restriction.

    Hash keys are decimal strings: they exceed msgpack's 64-bit integers.
    ``watermark`` is seconds since the epoch (None: nothing known yet).
    """

    shard_id: str
    start_hash: str
    parents: tuple[str, ...] = ()
    after_sequence: str | None = None
    start: StartPosition = StartPosition.TRIM_HORIZON
    start_time: float | None = None
    watermark: float | None = None
    ending_sequence: str | None = None


class KinesisRestriction(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The hash-key range ``[low, high]`` one reader owns, its shards, and what is done.

    ``finished`` holds shards drained (or, for ``LATEST``, closed before the read
    began) so that they are never adopted again; ``records`` counts the Kinesis
    records claimed (for ``max_records``); ``done`` marks a restriction with
    nothing left (a bounded read's end, or the primary of a checkpoint).
    """

    low: str = "0"
    high: str = str(MAX_HASH_KEY)
    shards: tuple[ShardCheckpoint, ...] = ()
    finished: tuple[str, ...] = ()
    records: int = 0
    done: bool = False

    def owns(self, hash_key: int) -> bool:
        return int(self.low) <= hash_key <= int(self.high)

    def shard(self, shard_id: str) -> ShardCheckpoint | None:
        for checkpoint in self.shards:
            if checkpoint.shard_id == shard_id:
                return checkpoint
        return None


_restriction_encoder = msgspec.msgpack.Encoder()
_restriction_decoder = msgspec.msgpack.Decoder(KinesisRestriction)


class _RestrictionCoder(coders.Coder):  # type: ignore[misc]
    """msgpack for restrictions: compact in runner state, and readable by the next version."""

    def encode(self, value: KinesisRestriction) -> bytes:
        return _restriction_encoder.encode(value)

    def decode(self, encoded: bytes) -> KinesisRestriction:
        return _restriction_decoder.decode(encoded)

    def is_deterministic(self) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


def initial_restriction(
    shards: Sequence[ShardInfo], config: KinesisReadConfig
) -> KinesisRestriction:
    """The whole stream at start: every listed shard with the configured start position.

    With ``LATEST`` closed shards hold nothing new and are marked finished.
    """
    start_time = config.timestamp.timestamp() if config.timestamp is not None else None
    active: list[ShardCheckpoint] = []
    finished: list[str] = []
    for info in sorted(shards, key=lambda s: s.shard_id):
        if config.start is StartPosition.LATEST and info.closed:
            finished.append(info.shard_id)
            continue
        active.append(
            ShardCheckpoint(
                shard_id=info.shard_id,
                start_hash=str(info.start_hash),
                parents=info.parents,
                start=config.start,
                start_time=start_time,
                ending_sequence=info.ending_sequence,
            )
        )
    return KinesisRestriction(shards=tuple(active), finished=tuple(finished))


def split_restriction(restriction: KinesisRestriction) -> list[KinesisRestriction]:
    """Split a restriction into one per open shard, each owning that shard's hash range.

    Open shards (no ending sequence number) partition the hash-key space; every
    shard goes to the part whose range holds its starting hash key. Every part
    keeps the ``finished`` list (shard ids only; it only stops re-adoption).
    """
    starts = sorted({int(cp.start_hash) for cp in restriction.shards if cp.ending_sequence is None})
    bounds = [int(restriction.low)] + [key for key in starts if key > int(restriction.low)]
    if len(bounds) < 2:
        return [restriction]
    parts: list[KinesisRestriction] = []
    for index, low in enumerate(bounds):
        high = bounds[index + 1] - 1 if index + 1 < len(bounds) else int(restriction.high)
        owned = tuple(cp for cp in restriction.shards if low <= int(cp.start_hash) <= high)
        parts.append(_replace(restriction, low=str(low), high=str(high), shards=owned, records=0))
    return parts


def _replace(struct: Any, **changes: Any) -> Any:
    """`msgspec.structs.replace`, typed loosely for mypy."""
    return msgspec.structs.replace(struct, **changes)


def _later(mark: float, previous: float | None) -> float:
    """A watermark never moves back."""
    return mark if previous is None else max(mark, previous)


def readable_shards(restriction: KinesisRestriction) -> list[ShardCheckpoint]:
    """The shards that may be read now: those none of whose parents this restriction still reads."""
    active = {cp.shard_id for cp in restriction.shards}
    return [cp for cp in restriction.shards if not any(p in active for p in cp.parents)]


def plan_discovery(restriction: KinesisRestriction, listed: Sequence[ShardInfo]) -> list[_Claim]:
    """What a fresh shard listing changes: closed shards, new shards, expired finished ids."""
    listed_ids = {info.shard_id for info in listed}
    claims: list[_Claim] = []
    for info in listed:
        checkpoint = restriction.shard(info.shard_id)
        if checkpoint is not None and info.closed and checkpoint.ending_sequence is None:
            claims.append(_Closed(info.shard_id, info.ending_sequence or "0"))
    known = {cp.shard_id for cp in restriction.shards} | set(restriction.finished)
    new = tuple(
        ShardCheckpoint(
            shard_id=info.shard_id,
            start_hash=str(info.start_hash),
            parents=info.parents,
            start=StartPosition.TRIM_HORIZON,
            ending_sequence=info.ending_sequence,
        )
        for info in sorted(listed, key=lambda s: s.shard_id)
        if info.shard_id not in known and restriction.owns(info.start_hash)
    )
    if new:
        claims.append(_Adopt(new))
    expired = tuple(shard_id for shard_id in restriction.finished if shard_id not in listed_ids)
    if expired:
        claims.append(_Forget(expired))
    return claims


def restriction_watermark(restriction: KinesisRestriction) -> float | None:
    """The lowest watermark of the shards that may be read now (None if any is unknown)."""
    marks = [cp.watermark for cp in readable_shards(restriction)]
    if not marks or any(mark is None for mark in marks):
        return None
    return min(mark for mark in marks if mark is not None)


# Claims: every change to a restriction goes through the tracker, so a checkpoint
# taken at any moment holds exactly what was emitted.


class _Read(msgspec.Struct, frozen=True):
    shard_id: str
    sequence: str
    arrival: float


class _Idle(msgspec.Struct, frozen=True):
    shard_id: str
    watermark: float


class _Pin(msgspec.Struct, frozen=True):
    shard_id: str
    start_time: float


class _Closed(msgspec.Struct, frozen=True):
    shard_id: str
    ending_sequence: str


class _Finish(msgspec.Struct, frozen=True):
    shard_id: str


class _Adopt(msgspec.Struct, frozen=True):
    shards: tuple[ShardCheckpoint, ...]


class _Forget(msgspec.Struct, frozen=True):
    shard_ids: tuple[str, ...]


class _Stop(msgspec.Struct, frozen=True):
    pass


_Claim = _Read | _Idle | _Pin | _Closed | _Finish | _Adopt | _Forget | _Stop


def apply_claim(restriction: KinesisRestriction, claim: _Claim) -> KinesisRestriction:
    """The restriction after ``claim`` (pure; the tracker calls it under its lock)."""
    if isinstance(claim, _Stop):
        return _replace(restriction, done=True)
    if isinstance(claim, _Adopt):
        return _replace(restriction, shards=restriction.shards + claim.shards)
    if isinstance(claim, _Forget):
        gone = set(claim.shard_ids)
        return _replace(
            restriction, finished=tuple(s for s in restriction.finished if s not in gone)
        )
    if isinstance(claim, _Finish):
        return _replace(
            restriction,
            shards=tuple(cp for cp in restriction.shards if cp.shard_id != claim.shard_id),
            finished=(*restriction.finished, claim.shard_id),
        )
    changed: list[ShardCheckpoint] = []
    records = restriction.records
    for cp in restriction.shards:
        if cp.shard_id == claim.shard_id:
            if isinstance(claim, _Read):
                cp = _replace(
                    cp,
                    after_sequence=claim.sequence,
                    watermark=_later(claim.arrival, cp.watermark),
                )
                records += 1
            elif isinstance(claim, _Idle):
                cp = _replace(cp, watermark=_later(claim.watermark, cp.watermark))
            elif isinstance(claim, _Pin):
                cp = _replace(cp, start=StartPosition.AT_TIMESTAMP, start_time=claim.start_time)
            elif isinstance(claim, _Closed):
                cp = _replace(cp, ending_sequence=claim.ending_sequence)
        changed.append(cp)
    return _replace(restriction, shards=tuple(changed), records=records)


class _KinesisTracker(RestrictionTracker):  # type: ignore[misc]
    """Tracks one restriction; only self-checkpoints (``defer_remainder``) split it.

    A runner-initiated split of an unbounded multi-shard restriction would have
    to move live shards away from the running ``process`` call, so it is refused.
    """

    def __init__(self, restriction: KinesisRestriction) -> None:
        self._restriction = restriction
        self._checkpointed = False

    def current_restriction(self) -> KinesisRestriction:
        return self._restriction

    def try_claim(self, position: _Claim) -> bool:
        if self._checkpointed or self._restriction.done:
            return False
        if (
            isinstance(position, _Read | _Idle | _Pin | _Closed | _Finish)
            and self._restriction.shard(position.shard_id) is None
        ):
            raise ValueError(f"claim for shard {position.shard_id} this restriction lacks")
        self._restriction = apply_claim(self._restriction, position)
        return True

    def try_split(
        self, fraction_of_remainder: float
    ) -> tuple[KinesisRestriction, KinesisRestriction] | None:
        if fraction_of_remainder != 0 or self._checkpointed or self._restriction.done:
            return None
        residual = self._restriction
        primary = _replace(residual, shards=(), finished=(), done=True)
        self._restriction = primary
        self._checkpointed = True
        return primary, residual

    def check_done(self) -> None:
        if not self._restriction.done:
            raise ValueError(
                "Kinesis restriction left unfinished: process() must defer or claim a stop"
            )

    def current_progress(self) -> RestrictionProgress:
        return RestrictionProgress(
            completed=float(self._restriction.records),
            remaining=float(len(self._restriction.shards)),
        )

    def is_bounded(self) -> bool:
        return False


# ---------------------------------------------------------------------------------------
# Records to raw lines


def record_lines(
    data: bytes, *, uri: str, shard: str, sequence: str, counters: Counter[str] | None = None
) -> list[RawLine]:
    """The `RawLine`s of one Kinesis record: one per data line, positioned in the record.

    Zeek directive lines set the ``context`` of the data lines after them (within
    this record only); blank lines and Zeek comments are counted in ``counters``
    (``blank_lines``, ``header_lines``) and skipped, as the file source does.
    """
    lines: list[RawLine] = []
    directives: dict[bytes, bytes] = {}
    context: tuple[bytes, ...] | None = None
    offset = 0
    for number, raw in enumerate(data.split(b"\n"), start=1):
        start = offset
        offset += len(raw) + 1
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if line.startswith(b"#"):
            directive = zeek_directive(line)
            if directive is not None:
                directives[directive] = line
                context = tuple(directives.values())
            if directive is not None or is_zeek_comment(line):
                if counters is not None:
                    counters["header_lines"] += 1
                continue
        if not line.strip():
            # The empty piece after a final newline is not a line at all.
            if counters is not None and not (start == len(data) and number > 1):
                counters["blank_lines"] += 1
            continue
        lines.append(
            RawLine(
                payload=line,
                source=SourcePosition(
                    uri=uri, shard=shard, sequence=sequence, line=number, offset=start
                ),
                context=context,
            )
        )
    return lines


# ---------------------------------------------------------------------------------------
# Talking to Kinesis

_THROTTLED = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "ThrottlingException",
        "KMSThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
    }
)
_TRANSIENT = frozenset(
    {
        "InternalFailure",
        "InternalFailureException",
        "InternalServerError",
        "InternalError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "KMSInternalException",
    }
)
_AUTHENTICATION = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "InvalidClientTokenId",
    }
)
_AUTHORIZATION = frozenset({"AccessDeniedException", "KMSAccessDeniedException"})


class _Retriable(Exception):
    """A call failed in a way that waiting fixes (throttling, 5xx, network)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class _ExpiredIterator(Exception):
    pass


class _ShardGone(Exception):
    pass


def _call(operation: str, fn: Any, stream: str, **kwargs: Any) -> Any:
    """Call boto3 and translate its failures into otsec's errors or retriable signals."""
    import botocore.exceptions as bce

    try:
        return fn(**kwargs)
    except bce.ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        message = (
            f"{operation} on {stream}: {code}: {error.response.get('Error', {}).get('Message', '')}"
        )
        if code in _THROTTLED:
            raise _Retriable("throttled", message) from None
        if code == "ExpiredIteratorException":
            raise _ExpiredIterator(message) from None
        if code in _TRANSIENT or status >= 500:
            raise _Retriable("transient", message) from None
        if code in _AUTHENTICATION:
            raise AuthenticationError(message, stage="read", source=f"kinesis://{stream}") from None
        if code in _AUTHORIZATION:
            raise AuthorizationError(message, stage="read", source=f"kinesis://{stream}") from None
        if code == "ResourceNotFoundException":
            if operation == "ListShards":
                raise NotFoundError(message, stage="read", source=f"kinesis://{stream}") from None
            raise _ShardGone(message) from None
        raise UnexpectedError(message, stage="read", source=f"kinesis://{stream}") from None
    except (bce.ConnectionError, bce.HTTPClientError) as error:
        raise _Retriable("transient", f"{operation} on {stream}: {error}") from None
    except bce.NoCredentialsError as error:
        raise AuthenticationError(
            f"{operation} on {stream}: {error}", stage="read", source=f"kinesis://{stream}"
        ) from None


_SESSION_LOCK = threading.Lock()
_SESSION: Any = None


def make_client(config: KinesisReadConfig) -> Any:
    """A boto3 Kinesis client; credentials come from the standard AWS chain.

    botocore's own retries are off: throttling is handled per shard here, so one
    throttled shard never stalls the others and every retry is counted. One
    boto3 session per process serves every client (loading the service model
    once); sessions are not thread-safe, so creation holds a lock.
    """
    import boto3
    from botocore.config import Config

    global _SESSION
    with _SESSION_LOCK:
        if _SESSION is None:
            _SESSION = boto3.session.Session()
        return _SESSION.client(
            "kinesis",
            region_name=config.region,
            endpoint_url=config.endpoint,
            config=Config(
                retries={"mode": "standard", "total_max_attempts": 1},
                connect_timeout=5,
                read_timeout=30,
            ),
        )


def list_shards(client: Any, stream: str) -> list[ShardInfo]:
    """Every shard ``ListShards`` reports for ``stream``, following ``NextToken``."""
    shards: list[ShardInfo] = []
    kwargs: dict[str, Any] = {"StreamName": stream}
    while True:
        response = _call("ListShards", client.list_shards, stream, **kwargs)
        shards.extend(ShardInfo.from_api(s) for s in response.get("Shards", ()))
        token = response.get("NextToken")
        if not token:
            return shards
        kwargs = {"NextToken": token}


def list_shards_with_retries(
    client: Any, config: KinesisReadConfig, attempts: int = 5
) -> list[ShardInfo]:
    """`list_shards`, waiting out throttling a few times (used where no loop retries)."""
    for attempt in range(1, attempts + 1):
        try:
            return list_shards(client, config.stream)
        except _Retriable as error:
            if attempt == attempts:
                raise ExternalAPIError(str(error), stage="read", source=config.uri) from None
            time.sleep(_backoff(config, attempt))
    raise AssertionError("unreachable")


def _backoff(config: KinesisReadConfig, attempt: int) -> float:
    """Exponential backoff with equal jitter: at least half the ceiling, never zero."""
    ceiling = min(config.backoff_max_seconds, config.backoff_base_seconds * 2 ** (attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class _Batch(msgspec.Struct):
    records: list[dict[str, Any]]
    millis_behind: int | None
    next_iterator: str | None
    iterator_taken_at: float | None


@dataclasses.dataclass
class _ShardState:
    """What a reader keeps in memory per shard between calls (never checkpointed)."""

    iterator: str | None = None
    iterator_after: str | None = None
    attempts: int = 0
    not_before: float = 0.0
    next_poll: float = 0.0
    caught_up: bool = False


class _Metrics:
    """Per-call counts, committed to Beam metrics on `flush` (like `StageCounters`)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.totals: Counter[str] = Counter()  # everything flushed so far, for logs and tests
        self.behind: list[int] = []
        self._distribution = Metrics.distribution(METRICS_NAMESPACE, "kinesis.millis_behind_latest")
        self._gauge = Metrics.gauge(METRICS_NAMESPACE, "kinesis.millis_behind_latest")

    def flush(self) -> None:
        for name, count in self.counts.items():
            Metrics.counter(METRICS_NAMESPACE, f"kinesis.{name}").inc(count)
        self.totals.update(self.counts)
        self.counts.clear()
        for value in self.behind:
            self._distribution.update(value)
        if self.behind:
            self._gauge.set(max(self.behind))  # the worst lag this call saw
        self.behind.clear()


class _ShardReader:
    """``GetShardIterator``/``GetRecords`` for one stream, with per-shard iterators and backoff."""

    def __init__(self, config: KinesisReadConfig, client: Any, metrics: _Metrics) -> None:
        self.config = config
        self.client = client
        self.metrics = metrics
        self.shards: dict[str, _ShardState] = {}

    def state(self, shard_id: str) -> _ShardState:
        return self.shards.setdefault(shard_id, _ShardState())

    def _iterator(self, cp: ShardCheckpoint) -> str:
        args: dict[str, Any] = {"StreamName": self.config.stream, "ShardId": cp.shard_id}
        if cp.after_sequence is not None:
            args.update(
                ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=cp.after_sequence
            )
        elif cp.start is StartPosition.AT_TIMESTAMP:
            args.update(
                ShardIteratorType="AT_TIMESTAMP",
                Timestamp=datetime.fromtimestamp(cp.start_time or 0.0, UTC),
            )
        else:
            args.update(ShardIteratorType=str(cp.start))
        response = _call(
            "GetShardIterator", self.client.get_shard_iterator, self.config.stream, **args
        )
        return response["ShardIterator"]  # type: ignore[no-any-return]

    def fetch(self, cp: ShardCheckpoint) -> _Batch | None:
        """One ``GetRecords`` for ``cp``; None when the shard must wait (backing off).

        Raises:
            _ShardGone: The shard no longer exists (trimmed by retention).
            OtsecError: Credentials, permissions or an unexpected answer.
        """
        state = self.state(cp.shard_id)
        taken_at: float | None = None
        for attempt in (1, 2):
            try:
                if state.iterator is None or state.iterator_after != cp.after_sequence:
                    taken_at = time.time()
                    state.iterator = self._iterator(cp)
                    state.iterator_after = cp.after_sequence
                    self.metrics.counts["shard_iterators"] += 1
                self.metrics.counts["get_records_calls"] += 1
                response = _call(
                    "GetRecords",
                    self.client.get_records,
                    self.config.stream,
                    ShardIterator=state.iterator,
                    Limit=self.config.limit,
                )
            except _ExpiredIterator:
                # Iterators live five minutes; a fresh one starts at the checkpoint.
                self.metrics.counts["expired_iterators"] += 1
                state.iterator = None
                if attempt == 2:
                    self._back_off(state, "expired iterator twice in a row")
                    return None
                continue
            except _Retriable as error:
                self.metrics.counts[
                    "throttled" if error.kind == "throttled" else "transient_errors"
                ] += 1
                self._back_off(state, str(error))
                return None
            state.attempts = 0
            millis = response.get("MillisBehindLatest")
            if millis is not None:
                self.metrics.behind.append(int(millis))
            return _Batch(
                records=response.get("Records", []),
                millis_behind=millis,
                next_iterator=response.get("NextShardIterator"),
                iterator_taken_at=taken_at,
            )
        return None  # pragma: no cover - the loop always returns

    def _back_off(self, state: _ShardState, reason: str) -> None:
        state.attempts += 1
        delay = _backoff(self.config, state.attempts)
        state.not_before = time.monotonic() + delay  # from the failure, not the call's start
        state.caught_up = False
        # Occasional throttling is normal on a busy stream; only persistence is news.
        level = logging.WARNING if state.attempts >= 3 else logging.INFO
        _log.log(level, "%s: backing off %.2fs (attempt %d)", reason, delay, state.attempts)

    def advanced(self, shard_id: str, after: str | None, iterator: str | None) -> None:
        """Remember the iterator that continues after ``after`` (the claimed position)."""
        state = self.state(shard_id)
        state.iterator = iterator
        state.iterator_after = after

    def forget(self, shard_id: str) -> None:
        self.shards.pop(shard_id, None)


def _drained(cp: ShardCheckpoint, batch: _Batch) -> bool:
    """Whether a shard has nothing left: closed and read to its end."""
    if batch.next_iterator is None:
        return True  # Kinesis' own signal for a closed shard read to the end
    if cp.ending_sequence is None or batch.records or batch.millis_behind:
        return False
    # Emulators may keep handing out iterators past the end; the ending sequence decides.
    return cp.after_sequence is None or int(cp.after_sequence) >= int(cp.ending_sequence)


# ---------------------------------------------------------------------------------------
# Beam


class _KinesisRestrictionProvider(RestrictionProvider):  # type: ignore[misc]
    """Initial restriction from ``ListShards``; split into one restriction per open shard."""

    def __init__(self) -> None:
        self._client: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]

    def initial_restriction(self, element: KinesisReadConfig) -> KinesisRestriction:
        if self._client is None:
            self._client = make_client(element)
        return initial_restriction(list_shards_with_retries(self._client, element), element)

    def split(
        self, element: KinesisReadConfig, restriction: KinesisRestriction
    ) -> Iterator[KinesisRestriction]:
        if element.ordered or element.max_records is not None:
            # One restriction keeps lineage order strict, and max_records exact.
            yield restriction
            return
        yield from split_restriction(restriction)

    def create_tracker(self, restriction: KinesisRestriction) -> _KinesisTracker:
        return _KinesisTracker(restriction)

    def restriction_size(
        self, element: KinesisReadConfig, restriction: KinesisRestriction
    ) -> float:
        return float(max(1, len(restriction.shards)))

    def restriction_coder(self) -> coders.Coder:
        return _RestrictionCoder()

    def truncate(self, element: KinesisReadConfig, restriction: KinesisRestriction) -> None:
        return None  # draining an unbounded read: stop where it is


class _KinesisWatermarks(WatermarkEstimatorProvider):  # type: ignore[misc]
    def initial_estimator_state(
        self, element: KinesisReadConfig, restriction: KinesisRestriction
    ) -> Timestamp | None:
        mark = restriction_watermark(restriction)
        return None if mark is None else Timestamp.of(mark)

    def create_watermark_estimator(
        self, estimator_state: Timestamp | None
    ) -> ManualWatermarkEstimator:
        return ManualWatermarkEstimator(estimator_state)


_RESTRICTION_PARAM = beam.DoFn.RestrictionParam(_KinesisRestrictionProvider())
_WATERMARK_PARAM = beam.DoFn.WatermarkEstimatorParam(_KinesisWatermarks())


class _ReadKinesisFn(beam.DoFn):  # type: ignore[misc]
    """Reads the shards of one restriction; see the module docstring."""

    def __init__(self, config: KinesisReadConfig) -> None:
        super().__init__()
        self._config = config

    def setup(self) -> None:
        self._metrics = _Metrics()
        self._counters = StageCounters("read")
        self._reader = _ShardReader(self._config, make_client(self._config), self._metrics)
        self._next_discovery: dict[tuple[str, str], float] = {}
        self._discovery_retry: dict[tuple[str, str], float] = {}

    def teardown(self) -> None:
        reader = getattr(self, "_reader", None)
        if reader is not None and hasattr(reader.client, "close"):
            reader.client.close()

    @beam.DoFn.unbounded_per_element()
    def process(
        self,
        element: KinesisReadConfig,
        tracker: Any = _RESTRICTION_PARAM,
        watermark_estimator: Any = _WATERMARK_PARAM,
    ) -> Iterator[TimestampedValue]:
        try:
            yield from self._read(element, tracker, watermark_estimator)
        finally:
            self._metrics.flush()
            self._counters.flush()

    def _read(
        self, config: KinesisReadConfig, tracker: Any, watermark_estimator: Any
    ) -> Iterator[TimestampedValue]:
        """Read rounds over the shards until a round finds nothing new or time is up.

        Then the remainder is deferred, so a bundle ends soon after the reader
        catches up (sinks flush) and the runner can checkpoint; the deferral asks
        to resume when the next shard is due. Runners that resume at once (the
        DirectRunner's) find nothing due yet, so a call first waits, at most
        ``poll_seconds``, for the earliest shard to be due.
        """
        reader = self._reader
        deadline = time.monotonic() + config.checkpoint_seconds
        rediscover = False
        extra = self._counters.extra
        restriction: KinesisRestriction = tracker.current_restriction()
        key = (restriction.low, restriction.high)
        wait = min(self._next_due(restriction, key, False), time.monotonic() + config.poll_seconds)
        time.sleep(max(0.0, wait - time.monotonic()))
        while True:
            restriction = tracker.current_restriction()
            if restriction.done:
                return
            if config.max_records is not None and restriction.records >= config.max_records:
                tracker.try_claim(_Stop())
                return
            listing_unchanged = False
            if self._discovery_due(key, rediscover):
                changed = self._discover(config, tracker, restriction, key)
                if changed is None:
                    return
                listing_unchanged = not changed
                rediscover = False
                restriction = tracker.current_restriction()

            read_any = False
            for cp in readable_shards(restriction):
                state = reader.state(cp.shard_id)
                now = time.monotonic()
                if now < state.not_before or (state.caught_up and now < state.next_poll):
                    continue
                try:
                    batch = reader.fetch(cp)
                except _ShardGone as gone:
                    _log.error(
                        "%s: shard %s is gone (retention?): %s", config.uri, cp.shard_id, gone
                    )
                    self._metrics.counts["shards_lost"] += 1
                    reader.forget(cp.shard_id)
                    if not tracker.try_claim(_Finish(cp.shard_id)):
                        return
                    rediscover = True
                    continue
                if batch is None:
                    continue
                last = cp.after_sequence
                for record in batch.records:
                    if (
                        config.max_records is not None
                        and tracker.current_restriction().records >= config.max_records
                    ):
                        reader.forget(cp.shard_id)
                        tracker.try_claim(_Stop())
                        return
                    sequence = record["SequenceNumber"]
                    arrival = record["ApproximateArrivalTimestamp"].timestamp()
                    if not tracker.try_claim(_Read(cp.shard_id, sequence, arrival)):
                        reader.forget(cp.shard_id)
                        return
                    last = sequence
                    data: bytes = record["Data"]
                    self._metrics.counts["records"] += 1
                    self._metrics.counts["bytes"] += len(data)
                    for line in self._lines(config, cp.shard_id, sequence, data, extra):
                        self._counters.inputs += 1
                        self._counters.outputs += 1
                        yield TimestampedValue(line, arrival)
                reader.advanced(cp.shard_id, last, batch.next_iterator)
                read_any = read_any or bool(batch.records)
                if (
                    batch.iterator_taken_at is not None
                    and cp.start is StartPosition.LATEST
                    and cp.after_sequence is None
                ):
                    pinned = batch.iterator_taken_at - config.idle_allowance_seconds
                    if not tracker.try_claim(_Pin(cp.shard_id, pinned)):
                        return
                current = tracker.current_restriction().shard(cp.shard_id)
                if current is not None and _drained(current, batch):
                    _log.info("%s: shard %s drained", config.uri, cp.shard_id)
                    self._metrics.counts["shards_finished"] += 1
                    reader.forget(cp.shard_id)
                    if not tracker.try_claim(_Finish(cp.shard_id)):
                        return
                    rediscover = True
                elif not batch.records and batch.millis_behind == 0:
                    state.caught_up = True
                    state.next_poll = time.monotonic() + config.poll_seconds
                    idle_mark = time.time() - config.idle_allowance_seconds
                    if not tracker.try_claim(_Idle(cp.shard_id, idle_mark)):
                        return
                else:
                    state.caught_up = False

            self._advance_watermark(tracker.current_restriction(), watermark_estimator, config)
            restriction = tracker.current_restriction()
            if (
                config.stop_when_caught_up
                and not read_any
                and not rediscover
                and all(reader.state(cp.shard_id).caught_up for cp in restriction.shards)
            ):
                # Caught up; a fresh listing must confirm no shard closed or appeared
                # (emulators signal a closed shard only through ListShards).
                if listing_unchanged:
                    tracker.try_claim(_Stop())
                    return
                rediscover = True
            now = time.monotonic()
            if rediscover and self._discovery_due(key, rediscover):
                continue  # a shard ended (or a bounded read wants confirmation): list now
            if read_any and now < deadline:
                continue
            self._metrics.counts["checkpoints"] += 1
            delay = (
                0.0 if read_any else max(0.0, self._next_due(restriction, key, rediscover) - now)
            )
            tracker.defer_remainder(Duration.of(delay))
            return

    def _discovery_due(self, key: tuple[str, str], rediscover: bool) -> bool:
        now = time.monotonic()
        if now < self._discovery_retry.get(key, 0.0):
            return False  # ListShards was throttled: wait even if a listing is wanted
        return rediscover or now >= self._next_discovery.get(key, 0.0)

    def _discover(
        self,
        config: KinesisReadConfig,
        tracker: Any,
        restriction: KinesisRestriction,
        key: tuple[str, str],
    ) -> bool | None:
        """List shards and claim what changed.

        Returns:
            Whether the listing changed the restriction (True when it could not be
            listed); None if a claim was refused (the call must end).
        """
        now = time.monotonic()
        try:
            listed = list_shards(self._reader.client, config.stream)
        except _Retriable as error:
            self._metrics.counts["throttled"] += 1
            _log.warning("%s: shard discovery deferred: %s", config.uri, error)
            self._discovery_retry[key] = time.monotonic() + _backoff(config, 1)
            return True
        self._next_discovery[key] = now + config.discover_seconds
        claims = plan_discovery(restriction, listed)
        for claim in claims:
            if isinstance(claim, _Adopt):
                self._metrics.counts["shards_started"] += len(claim.shards)
                _log.info(
                    "%s: adopting shards %s",
                    config.uri,
                    ", ".join(s.shard_id for s in claim.shards),
                )
            if not tracker.try_claim(claim):
                return None
        return bool(claims)

    def _next_due(
        self, restriction: KinesisRestriction, key: tuple[str, str], rediscover: bool
    ) -> float:
        """When something is next worth doing: a shard due for a poll, or a listing."""
        dues = [
            max(state.not_before, state.next_poll if state.caught_up else 0.0)
            for state in (self._reader.state(cp.shard_id) for cp in readable_shards(restriction))
        ]
        listing = self._next_discovery.get(key, 0.0)
        if rediscover:
            listing = min(listing, self._discovery_retry.get(key, 0.0))
        dues.append(max(listing, self._discovery_retry.get(key, 0.0)))
        return min(dues)

    @staticmethod
    def _advance_watermark(
        restriction: KinesisRestriction, estimator: Any, config: KinesisReadConfig
    ) -> None:
        if readable_shards(restriction):
            mark = restriction_watermark(restriction)
        else:
            # Nothing to read here (all shards of this range finished): idle.
            mark = time.time() - config.idle_allowance_seconds
        if mark is None:
            return
        current = estimator.current_watermark()
        target = Timestamp.of(mark)
        if current is None or target > current:
            estimator.set_watermark(target)

    @staticmethod
    def _lines(
        config: KinesisReadConfig, shard: str, sequence: str, data: bytes, extra: Counter[str]
    ) -> Iterable[RawLine]:
        if config.split_lines:
            return record_lines(
                data, uri=config.uri, shard=shard, sequence=sequence, counters=extra
            )
        return (
            RawLine(
                payload=data, source=SourcePosition(uri=config.uri, shard=shard, sequence=sequence)
            ),
        )


def _config_element(_: bytes, config: KinesisReadConfig) -> KinesisReadConfig:
    return config


class ReadFromKinesis(beam.PTransform):  # type: ignore[misc]
    """Read a Kinesis data stream as `RawLine`s (unbounded unless told to stop).

    Each line carries its record's ``ApproximateArrivalTimestamp`` as its element
    timestamp and its stream, shard, sequence number and line as its source::

        lines = pipeline | "ReadKinesis" >> ReadFromKinesis(
            "kinesis://ot-sensors?region=eu-west-1&start=latest")

    Args:
        config: A `KinesisReadConfig`, or a ``kinesis://STREAM?...`` URI.

    Raises:
        ValidationError: When ``config`` is a URI that does not parse.
    """

    def __init__(self, config: KinesisReadConfig | str) -> None:
        super().__init__()
        self._config = KinesisReadConfig.from_uri(config) if isinstance(config, str) else config

    @property
    def config(self) -> KinesisReadConfig:
        return self._config

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "Impulse" >> beam.Impulse()
            | "Stream" >> beam.Map(_config_element, self._config)
            | "ReadShards" >> beam.ParDo(_ReadKinesisFn(self._config)).with_output_types(RawLine)
        )
