"""A real Kinesis endpoint for tests: moto's server on a free 127.0.0.1 port.

`MotoKinesis` runs ``moto.server.ThreadedMotoServer`` (the same Flask app that
``moto_server`` runs) inside the test process and talks to it over HTTP with
boto3, exactly as the reader does. Two things the real service does and moto
does not are supplied here, each in a context manager that one test turns on:

- `aws_resharding`: moto 5 routes records put after a split to the closed
  parent (its key lookup ignores whether a shard is open) and copies a merged
  parents' records into the child. AWS keeps a closed shard's records where they
  are and sends new records to the open children; the patch makes moto do that.
- `inject_errors`: moto never throttles and never expires an iterator. The
  patch makes the server itself answer the next N calls of one action with an
  AWS error (``ProvisionedThroughputExceededException``,
  ``ExpiredIteratorException``), so the error travels over HTTP and through
  botocore's parsing like the real one, and records when each call came in.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3

# moto accepts any credentials; these keep boto3 from looking for real ones.
for _name, _value in (
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_SESSION_TOKEN", "testing"),
    ("AWS_DEFAULT_REGION", "eu-west-1"),
):
    os.environ.setdefault(_name, _value)

REGION = "eu-west-1"


class MotoKinesis:
    """moto's server on 127.0.0.1 with helpers to create streams and put records."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.client = boto3.session.Session().client(
            "kinesis", region_name=REGION, endpoint_url=self.endpoint
        )

    def stop(self) -> None:
        self._server.stop()

    def create_stream(self, name: str, shards: int = 2) -> list[dict[str, Any]]:
        self.client.create_stream(StreamName=name, ShardCount=shards)
        return self.shards(name)

    def shards(self, name: str) -> list[dict[str, Any]]:
        return list(self.client.list_shards(StreamName=name)["Shards"])

    def put(self, name: str, data: bytes, shard: dict[str, Any] | None = None) -> dict[str, str]:
        """Put one record, into ``shard`` (by its starting hash key) if given."""
        extra: dict[str, str] = {}
        if shard is not None:
            extra["ExplicitHashKey"] = shard["HashKeyRange"]["StartingHashKey"]
        response = self.client.put_record(
            StreamName=name, Data=data, PartitionKey=hashlib.md5(data).hexdigest(), **extra
        )
        return {"shard": response["ShardId"], "sequence": response["SequenceNumber"]}


@contextmanager
def aws_resharding() -> Iterator[None]:
    """Make moto split and merge shards as AWS does (see the module docstring)."""
    from moto.kinesis.exceptions import InvalidArgumentError
    from moto.kinesis.models import Shard, Stream

    def shard_for_key(self: Stream, partition_key: str, explicit_hash_key: str) -> Shard | None:
        if explicit_hash_key:
            key = int(explicit_hash_key)
        else:
            key = int(hashlib.md5(partition_key.encode()).hexdigest(), 16)
        for shard in self.shards.values():
            if shard.is_open and shard.starting_hash <= key <= shard.ending_hash:
                return shard
        return None

    def next_id(self: Stream) -> int:
        return max(shard._shard_id for shard in self.shards.values()) + 1

    def split_shard(self: Stream, shard_to_split: str, new_starting_hash_key: str) -> None:
        parent = self.shards[shard_to_split]
        middle = int(new_starting_hash_key)
        if not parent.is_open or not parent.starting_hash < middle <= parent.ending_hash:
            raise InvalidArgumentError(f"cannot split {shard_to_split} at {middle}")
        first = next_id(self)
        for offset, (low, high) in enumerate(
            ((parent.starting_hash, middle - 1), (middle, parent.ending_hash))
        ):
            child = Shard(first + offset, low, high, parent=parent.shard_id)
            self.shards[child.shard_id] = child
        parent.is_open = False  # it keeps its records; new ones go to the children

    def merge_shards(self: Stream, shard_to_merge: str, adjacent_shard_to_merge: str) -> None:
        one, other = self.shards[shard_to_merge], self.shards[adjacent_shard_to_merge]
        low, high = sorted((one, other), key=lambda s: s.starting_hash)
        if low.ending_hash + 1 != high.starting_hash or not (one.is_open and other.is_open):
            raise InvalidArgumentError(f"{shard_to_merge} and {adjacent_shard_to_merge}")
        child = Shard(
            next_id(self),
            low.starting_hash,
            high.ending_hash,
            parent=one.shard_id,
            adjacent_parent=other.shard_id,
        )
        self.shards[child.shard_id] = child
        one.is_open = other.is_open = False

    saved = {
        name: getattr(Stream, name) for name in ("get_shard_for_key", "split_shard", "merge_shards")
    }
    Stream.get_shard_for_key = shard_for_key  # type: ignore[method-assign,assignment]
    Stream.split_shard = split_shard  # type: ignore[method-assign]
    Stream.merge_shards = merge_shards  # type: ignore[method-assign]
    try:
        yield
    finally:
        for name, method in saved.items():
            setattr(Stream, name, method)


@dataclass
class ErrorLog:
    """When each call of the patched action reached the server, and which failed."""

    remaining: int
    calls: list[float] = field(default_factory=list)
    failed: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextmanager
def inject_errors(action: str, code: str, times: int) -> Iterator[ErrorLog]:
    """Make the server answer the next ``times`` calls of ``action`` with AWS error ``code``.

    Args:
        action: The response method, e.g. ``get_records``.
        code: The AWS error code botocore will see.
        times: How many calls fail before the server answers normally again.
    """
    from moto.core.exceptions import JsonRESTError
    from moto.kinesis.responses import KinesisResponse

    original = getattr(KinesisResponse, action)
    log = ErrorLog(remaining=times)

    def failing(self: KinesisResponse) -> Any:
        now = time.monotonic()
        with log.lock:
            log.calls.append(now)
            fail = log.remaining > 0
            if fail:
                log.remaining -= 1
                log.failed.append(now)
        if fail:
            raise JsonRESTError(code, f"{code} injected by the test")
        return original(self)

    setattr(KinesisResponse, action, failing)
    try:
        yield log
    finally:
        setattr(KinesisResponse, action, original)
