"""Benchmark of stage 6's indicator index: build time, memory, lookup rates, snapshot I/O.

The synthetic snapshot has the mix a large deployment sees (about 60 % IPv4
addresses, 10 % CIDR networks nested up to three deep, 20 % domains of which
a third are subdomains of others, 10 % SHA-256), built column-wise with numpy
and Arrow so that a million rows take a second, not a minute. Event
addresses are mostly misses (plant-internal 10/8 traffic), with some exact
and some CIDR hits, as in real event streams.

The index's memory is measured in a child process that only loads the
snapshot, since a process that already generated the table keeps that memory
in its allocator's free lists and would under-report the growth. Timings and
memory figures are medians of ``repeat`` runs.

    python -m beam_pipelines.bench_cti --indicators 1000000
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from cti.index import IndicatorIndex
from cti.indicators import TLP_LEVELS
from cti.snapshot import SNAPSHOT_SCHEMA, SnapshotRef, read_snapshot, write_snapshot

__all__ = ["measure_index", "synthetic_indicators"]

BATCH = 100_000  # event addresses per lookup_ips call, about a bundle's worth
TARGET_BUILD_S = 10.0
TARGET_RSS_MB = 500.0
TARGET_LOOKUPS_PER_S = 1_000_000
_NOW = datetime(2026, 1, 20, tzinfo=UTC)
_FEEDS = ("feodo", "urlhaus", "misp", "taxii-isac", "kev")
_TLDS = ("com", "net", "org", "ru", "example", "xn--p1ai", "io")


def _rss_mb(key: str = "VmRSS") -> float:
    """This process's resident (``VmRSS``) or peak resident (``VmHWM``) memory in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no {key} in /proc/self/status")


def _dotted(addresses: npt.NDArray[np.uint32]) -> pa.Array:
    """IPv4 texts of ``uint32`` addresses, formatted by Arrow instead of a Python loop."""
    octets = [pa.array((addresses >> shift) & 0xFF).cast(pa.string()) for shift in (24, 16, 8, 0)]
    return pc.binary_join_element_wise(*octets, ".")


def _strings(prefix: str, numbers: npt.NDArray[np.int64], suffix: pa.Array | str) -> pa.Array:
    """``prefix + str(number) + suffix`` per row, by Arrow."""
    return pc.binary_join_element_wise(prefix, pa.array(numbers).cast(pa.string()), suffix, "")


def _hex_digests(rng: np.random.Generator, count: int, width: int = 32) -> pa.Array:
    """``count`` random lower-case hex digests of ``width`` bytes, as one Arrow buffer."""
    raw = rng.integers(0, 256, size=(count, width), dtype=np.uint8)
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    text = np.empty((count, 2 * width), dtype=np.uint8)
    text[:, 0::2] = digits[raw >> 4]
    text[:, 1::2] = digits[raw & 0x0F]
    offsets = np.arange(0, 2 * width * (count + 1), 2 * width, dtype=np.int32)
    return pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(text.tobytes()))


def _unique_public_ipv4(rng: np.random.Generator, count: int) -> npt.NDArray[np.uint32]:
    """Distinct addresses outside 10/8, where the benchmark's event traffic lives."""
    found = np.empty(0, dtype=np.uint32)
    while len(found) < count:
        more = rng.integers(0x0B000000, 0xE0000000, size=count * 11 // 10, dtype=np.uint32)
        found = np.unique(np.concatenate([found, more]))
    return rng.permutation(found)[:count]


def _nested_networks(
    rng: np.random.Generator, count: int
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
    """``count`` distinct networks in three generations, each inside one of the previous.

    Parents are /12 to /20, children 2-8 bits longer, grandchildren 2-8 bits
    longer again (at most /30), all outside 10/8.
    """

    def network(
        start: npt.NDArray[np.int64], length: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.int64]:
        return start >> (32 - length) << (32 - length)

    parents = max(1, count // 20)
    lengths = [rng.integers(12, 21, size=parents)]
    starts = [network(rng.integers(0x0B000000, 0xE0000000, size=parents), lengths[0])]
    for share in (0.35, 0.7):  # oversampled: a few children repeat and are dropped below
        size = max(1, int(count * share))
        pick = rng.integers(0, len(starts[-1]), size=size)
        outer_start, outer_length = starts[-1][pick], lengths[-1][pick]
        length = np.minimum(outer_length + rng.integers(2, 9, size=size), 30)
        offset = rng.integers(0, 2**32, size=size) % (1 << (32 - outer_length))
        starts.append(network(outer_start + offset, length))
        lengths.append(length)
    all_starts, all_lengths = np.concatenate(starts), np.concatenate(lengths)
    _, first = np.unique(all_starts * 64 + all_lengths, return_index=True)
    kept = np.sort(first)[:count]  # in generation order, so every kept child's parent is kept
    return all_starts[kept].astype(np.uint32), all_lengths[kept]


def synthetic_indicators(n: int, seed: int = 7) -> pa.Table:
    """A deterministic snapshot table of ``n`` indicators in a realistic mix.

    About 60 % IPv4, 10 % CIDR (nested up to three deep), 20 % domains (a third
    of them subdomains of other indicator domains), 10 % SHA-256; 2 % revoked
    and 3 % expired at 2026-01-20, so the index has something to exclude.
    """
    rng = np.random.default_rng(seed)
    n_cidr, n_domain = n // 10, n // 5
    n_sha = n // 10
    n_ipv4 = n - n_cidr - n_domain - n_sha

    ipv4 = _dotted(_unique_public_ipv4(rng, n_ipv4))
    net_starts, net_lengths = _nested_networks(rng, n_cidr)
    cidr = pc.binary_join_element_wise(
        _dotted(net_starts), pa.array(net_lengths).cast(pa.string()), "/"
    )
    tlds = pa.array(_TLDS).take(pa.array(rng.integers(0, len(_TLDS), size=n_domain)))
    n_base = n_domain - n_domain // 3
    base = _strings("host", rng.permutation(n_base * 4)[:n_base], "")
    base = pc.binary_join_element_wise(base, tlds[:n_base], ".")
    parents = base.take(pa.array(rng.integers(0, n_base, size=n_domain - n_base)))
    subdomains = pc.binary_join_element_wise(
        _strings("c2-", np.arange(n_domain - n_base), ""), parents, "."
    )
    domain = pa.concat_arrays([base, subdomains])
    sha256 = _hex_digests(rng, n_sha)

    kinds = np.repeat(np.arange(4), [len(ipv4), len(cidr), len(domain), len(sha256)])
    total = len(kinds)
    type_names = pa.array(["ipv4", "cidr", "domain", "sha256"]).take(pa.array(kinds))
    values = pa.concat_arrays([ipv4, cidr.cast(pa.string()), domain, sha256])

    fate = rng.random(total)
    until = _NOW + timedelta(days=1)
    until_us = until.timestamp() * 1e6 + rng.integers(0, 400, size=total) * 86_400e6
    until_us = np.where(fate < 0.03, (_NOW - timedelta(days=1)).timestamp() * 1e6, until_us)
    valid_until = pa.array(until_us.astype(np.int64), mask=fate > 0.5).cast(
        pa.timestamp("us", tz="UTC")
    )
    since = (_NOW - timedelta(days=365)).timestamp() * 1e6
    valid_from = pa.array(
        (since + rng.integers(0, 300, size=total) * 86_400e6).astype(np.int64)
    ).cast(pa.timestamp("us", tz="UTC"))

    feed_count = rng.integers(1, 3, size=total)
    offsets = np.concatenate([[0], np.cumsum(feed_count)]).astype(np.int32)
    first_feed = rng.integers(0, len(_FEEDS), size=total)
    second_feed = (first_feed + rng.integers(1, len(_FEEDS), size=total)) % len(_FEEDS)
    feed_codes = np.empty(offsets[-1], dtype=np.int64)
    feed_codes[offsets[:-1]] = first_feed
    two = feed_count == 2
    feed_codes[offsets[:-1][two] + 1] = second_feed[two]
    feed_names = pa.array(_FEEDS).take(pa.array(feed_codes))
    references = pc.if_else(
        pa.array(rng.random(offsets[-1]) < 0.3),
        pa.nulls(int(offsets[-1]), pa.string()),
        _strings("ref-", np.arange(offsets[-1]), ""),
    )
    empty = pa.ListArray.from_arrays(np.zeros(total + 1, dtype=np.int32), pa.array([], pa.string()))
    technique_offsets = np.concatenate([[0], np.cumsum(fate < 0.05)]).astype(np.int32)

    table = pa.Table.from_arrays(
        [
            type_names,
            values,
            pa.array(rng.integers(20, 101, size=total, dtype=np.uint8)),
            pa.array(TLP_LEVELS[:3]).take(pa.array(rng.integers(0, 3, size=total))),
            valid_from,
            valid_until,
            pa.array(fate > 0.98),
            pa.ListArray.from_arrays(offsets, feed_names),
            pa.ListArray.from_arrays(offsets, references),
            empty,
            pa.ListArray.from_arrays(
                technique_offsets, pa.array(["T0883"] * int(technique_offsets[-1]), pa.string())
            ),
        ],
        schema=SNAPSHOT_SCHEMA,
    )
    return table.take(pa.array(rng.permutation(total)))


def _event_addresses(table: pa.Table, count: int, seed: int) -> list[str]:
    """Event addresses: 85 % plant-internal misses, 10 % random, 5 % known bad."""
    rng = np.random.default_rng(seed)
    internal = rng.integers(0x0A000000, 0x0B000000, size=count, dtype=np.uint32)
    public = rng.integers(0x0B000000, 0xE0000000, size=count, dtype=np.uint32)
    choice = rng.random(count)
    addresses = np.where(choice < 0.85, internal, public)
    texts = _dotted(addresses).to_pylist()
    known = pc.filter(table.column("value"), pc.equal(table.column("type"), "ipv4"))
    bad = known.take(pa.array(rng.integers(0, len(known), size=count))).to_pylist()
    return [b if c >= 0.95 else t for t, b, c in zip(texts, bad, choice.tolist(), strict=True)]


def _domain_queries(table: pa.Table, count: int, seed: int) -> list[str]:
    """Queried names: 90 % unknown (multi-label), 10 % under indicator domains."""
    rng = np.random.default_rng(seed)
    known = pc.filter(table.column("value"), pc.equal(table.column("type"), "domain"))
    under = known.take(pa.array(rng.integers(0, len(known), size=count))).to_pylist()
    names = []
    for i, (parent, roll) in enumerate(zip(under, rng.random(count).tolist(), strict=True)):
        names.append(f"www.{parent}" if roll < 0.1 else f"srv{i}.plant{i % 97}.corp.example")
    return names


def _median_seconds(run: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    seconds = []
    result = None
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def _load_in_child(ref: SnapshotRef) -> dict[str, float]:
    """Load the snapshot into a fresh interpreter and report what the index costs there."""
    code = (
        "import json, sys;"
        "from beam_pipelines.bench_cti import _child_memory;"
        "print(json.dumps(_child_memory(sys.argv[1], sys.argv[2], int(sys.argv[3]))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, ref.path, ref.version, str(ref.indicators)],
        check=True,
        capture_output=True,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    return json.loads(done.stdout)


def _child_memory(path: str, version: str, indicators: int) -> dict[str, float]:
    before = _rss_mb()
    started = time.perf_counter()
    index = IndicatorIndex.load(SnapshotRef(path=path, version=version, indicators=indicators))
    seconds = time.perf_counter() - started
    gc.collect()
    pa.default_memory_pool().release_unused()
    return {
        "load_s": round(seconds, 3),
        "rss_increase_mb": round(_rss_mb() - before, 1),
        "peak_rss_increase_mb": round(_rss_mb("VmHWM") - before, 1),
        "memory_bytes_mb": round(index.memory_bytes() / 2**20, 1),
        "indexed": len(index),
    }


def measure_index(n: int = 1_000_000, lookups: int = 1_000_000, repeat: int = 3) -> dict[str, Any]:
    """Build, memory, lookup and snapshot figures of an index over ``n`` synthetic indicators.

    Returns:
        A JSON-ready dict: ``build_s`` (median of ``repeat`` builds from the Arrow
        table), the child process's load time and RSS growth, ``memory_bytes``,
        IPv4 batch lookups per second (``lookups`` addresses in batches of
        100,000), domain lookups per second, and snapshot write and read times.
    """
    table = synthetic_indicators(n)
    with tempfile.TemporaryDirectory(prefix="otsec-bench-cti-") as directory:
        write_s, ref = _median_seconds(
            lambda: write_snapshot(directory, table, keep=1, now=datetime.now(UTC)), repeat
        )
        read_s, _ = _median_seconds(lambda: read_snapshot(ref), repeat)
        file_mb = os.path.getsize(ref.path) / 2**20
        runs = [_load_in_child(ref) for _ in range(repeat)]
        child = {key: statistics.median(run[key] for run in runs) for key in runs[0]}

    build_s, index = _median_seconds(
        lambda: IndicatorIndex.from_table(table, version="bench", now=_NOW), repeat
    )
    addresses = _event_addresses(table, lookups, seed=11)
    batches = [addresses[i : i + BATCH] for i in range(0, len(addresses), BATCH)]

    def look_up_addresses() -> int:
        return sum(sum(map(bool, index.lookup_ips(batch))) for batch in batches)

    ip_s, ip_hits = _median_seconds(look_up_addresses, repeat)
    single_sample = addresses[: min(len(addresses), 200_000)]
    single_s, _ = _median_seconds(lambda: [index.lookup_ip(a) for a in single_sample], repeat)
    domains = _domain_queries(table, min(lookups, 500_000), seed=13)
    domain_s, domain_hits = _median_seconds(
        lambda: sum(1 for name in domains if index.lookup_domain(name)), repeat
    )
    figures: dict[str, Any] = {
        "indicators": n,
        "indexed": len(index),
        "excluded": index.excluded,
        "build_s": round(build_s, 3),
        "load_s": child["load_s"],
        "rss_increase_mb": child["rss_increase_mb"],
        "peak_rss_increase_mb": child["peak_rss_increase_mb"],
        "memory_bytes_mb": child["memory_bytes_mb"],
        "ip_lookups": len(addresses),
        "ip_hits": ip_hits,
        "ip_batch_lookups_per_s": round(len(addresses) / ip_s),
        "ip_single_lookups_per_s": round(len(single_sample) / single_s),
        "domain_lookups": len(domains),
        "domain_hits": domain_hits,
        "domain_lookups_per_s": round(len(domains) / domain_s),
        "snapshot_write_s": round(write_s, 3),
        "snapshot_read_s": round(read_s, 3),
        "snapshot_file_mb": round(file_mb, 1),
        "repeat": repeat,
    }
    figures["targets"] = {
        "build_s": TARGET_BUILD_S,
        "rss_increase_mb": TARGET_RSS_MB,
        "ip_batch_lookups_per_s": TARGET_LOOKUPS_PER_S,
    }
    figures["ok"] = {
        "build_s": build_s < TARGET_BUILD_S,
        "rss_increase_mb": child["rss_increase_mb"] < TARGET_RSS_MB,
        "ip_batch_lookups_per_s": figures["ip_batch_lookups_per_s"] >= TARGET_LOOKUPS_PER_S,
    }
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--indicators", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", dest="json_path", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.indicators <= 0 or args.lookups <= 0 or args.repeat <= 0:
        parser.error("--indicators, --lookups and --repeat must be positive")
    figures = measure_index(args.indicators, args.lookups, args.repeat)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json_path:
        with open(args.json_path, "w") as out:
            out.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
