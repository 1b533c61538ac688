"""Publish sensor files to a Kinesis stream, as sensors do: ``otsec publish``.

Each Kinesis record carries a batch of one file's lines (``lines_per_record``),
preceded by the Zeek header lines seen so far in that file (``#separator``,
``#fields``, ``#types``...), so every record decodes on its own: the reader
(`transforms.kinesis.record_lines`) takes a record's directives as the context
of the data lines after them. JSON files need no header. Records go out with
``PutRecords`` (up to 500 records or 5 MiB per call); the records a call reports
as failed (throttled) are sent again with backoff, so either every line is in
the stream or the command fails and says how many were not.

Used by the tests and the streaming benchmark to feed the streaming job, and by
users to replay captured sensor files into a stream.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Iterator, Sequence

from schemas.errors import ExternalAPIError
from transforms.kinesis import KinesisReadConfig, _call, _Retriable, make_client

__all__ = ["PublishReport", "file_records", "publish_files", "put_records"]

_MAX_BATCH_RECORDS = 500
_MAX_BATCH_BYTES = 5 << 20
_MAX_RECORD_BYTES = 1 << 20


@dataclasses.dataclass
class PublishReport:
    """What a publish sent."""

    files: int = 0
    lines: int = 0
    records: int = 0
    bytes: int = 0
    retried: int = 0
    seconds: float = 0.0


def file_records(path: str, lines_per_record: int) -> Iterator[tuple[bytes, int]]:
    """``(record data, data lines in it)`` for one file, each record self-contained."""
    headers: dict[bytes, bytes] = {}
    batch: list[bytes] = []
    size = 0

    def record() -> tuple[bytes, int]:
        head = b"".join(line + b"\n" for line in headers.values())
        return head + b"".join(line + b"\n" for line in batch), len(batch)

    with open(path, "rb") as handle:
        for raw in handle:
            line = raw.rstrip(b"\n")
            if line.startswith(b"#"):
                if batch:
                    yield record()
                    batch, size = [], 0
                if line.startswith((b"#open", b"#close")):
                    continue
                key = line.split(b"\t", 1)[0].split(b" ", 1)[0]
                headers[key] = line
                continue
            if not line.strip():
                continue
            if batch and (
                len(batch) >= lines_per_record or size + len(line) + 1 > _MAX_RECORD_BYTES // 2
            ):
                yield record()
                batch, size = [], 0
            batch.append(line)
            size += len(line) + 1
    if batch:
        yield record()


def put_records(
    client: object,
    stream: str,
    entries: Sequence[tuple[bytes, str]],
    report: PublishReport,
    attempts: int = 8,
) -> None:
    """One ``PutRecords`` batch, resending the records the service failed.

    Raises:
        ExternalAPIError: Records still failed after ``attempts`` calls.
    """
    pending = [{"Data": data, "PartitionKey": key} for data, key in entries]
    put = client.put_records  # type: ignore[attr-defined]
    for attempt in range(1, attempts + 1):
        try:
            response = _call("PutRecords", put, stream, StreamName=stream, Records=pending)
        except _Retriable:  # the whole call was throttled or failed in transit
            report.retried += len(pending)
        else:
            if not response.get("FailedRecordCount"):
                return
            pending = [
                entry
                for entry, result in zip(pending, response["Records"], strict=True)
                if "ErrorCode" in result
            ]
            report.retried += len(pending)
        time.sleep(min(5.0, 0.1 * 2**attempt) * random.uniform(0.5, 1.0))
    raise ExternalAPIError(
        f"{len(pending)} records to kinesis://{stream} still failed after {attempts} attempts"
    )


def publish_files(
    paths: Sequence[str],
    config: KinesisReadConfig,
    *,
    lines_per_record: int = 100,
    progress: Callable[[PublishReport], None] | None = None,
) -> PublishReport:
    """Put every line of ``paths`` into the stream of ``config``; returns the counts."""
    if lines_per_record < 1:
        raise ValueError(f"lines_per_record must be positive, got {lines_per_record}")
    client = make_client(config)
    report = PublishReport()
    started = time.monotonic()
    batch: list[tuple[bytes, str]] = []
    batch_bytes = 0

    def flush() -> None:
        nonlocal batch, batch_bytes
        if batch:
            put_records(client, config.stream, batch, report)
            batch, batch_bytes = [], 0
            if progress is not None:
                progress(report)

    for path in paths:
        report.files += 1
        for number, (data, lines) in enumerate(file_records(path, lines_per_record)):
            if len(batch) >= _MAX_BATCH_RECORDS or batch_bytes + len(data) > _MAX_BATCH_BYTES:
                flush()
            batch.append((data, f"{path}:{number}"))
            batch_bytes += len(data)
            report.records += 1
            report.lines += lines
            report.bytes += len(data)
    flush()
    report.seconds = time.monotonic() - started
    return report
