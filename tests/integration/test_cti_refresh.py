"""The CTI refresh job against a real PostgreSQL: merge across feeds, full-list expiry,
feed state, dead letters, a failing feed, and the snapshot the event pipeline reads."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from cti.config import FeedConfig
from cti.index import IndicatorIndex
from cti.refresh import RefreshConfig, RefreshReport, run_refresh
from cti.snapshot import latest_snapshot
from cti.store import load_feed_states
from runners.direct import with_direct_defaults
from tests.integration.conftest import pg_rows
from transforms.postgres import PostgresConfig

pytestmark = pytest.mark.integration
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cti"
HEADER = '"first_seen_utc","dst_ip","dst_port","c2_status","last_online","malware"\n'


def _csv(path: Path, *rows: str) -> Path:
    path.write_text(HEADER + "".join(f"{row}\n" for row in rows))
    return path


def _row(ip: str, malware: str = "Pikabot") -> str:
    return f'"2024-03-26 23:30:07","{ip}","443","online","2024-04-04","{malware}"'


def _refresh(postgres: PostgresConfig, tmp_path: Path, *feeds: FeedConfig) -> RefreshReport:
    with psycopg.connect(postgres.dsn) as connection:
        states = load_feed_states(connection)
    config = RefreshConfig(
        feeds=feeds,
        postgres=postgres,
        snapshot_dir=str(tmp_path / "snapshots"),
        fallback_dir=str(tmp_path / "fallback"),
    )
    return run_refresh(config, states, with_direct_defaults([]))


def _feed(name: str, path: Path, confidence: int = 50, **extra: object) -> FeedConfig:
    return FeedConfig(
        name=name, type="csv", preset="feodo", path=str(path), confidence=confidence, **extra
    )


def test_real_feeds_land_in_the_store_and_the_snapshot(postgres, tmp_path: Path) -> None:
    shutil.copytree(FIXTURES, tmp_path / "cti")
    feeds = (
        _feed("feodo", tmp_path / "cti/abusech/feodotracker_ipblocklist_2024-04-04.csv", 80),
        FeedConfig(
            name="kev",
            type="kev",
            path=str(tmp_path / "cti/cisa_kev/known_exploited_vulnerabilities_CUT50.json"),
        ),
        FeedConfig(
            name="apt1", type="stix", path=str(tmp_path / "cti/stix/oasis_threat-report_apt1.json")
        ),
        FeedConfig(name="misp", type="misp", path=str(tmp_path / "cti/misp")),
    )
    report = _refresh(postgres, tmp_path, *feeds)
    assert [f.status for f in report.feeds] == ["ok"] * 4
    by_type = dict(
        pg_rows(postgres, "SELECT indicator_type, count(*) FROM cti_indicators GROUP BY 1")
    )
    assert by_type["cve"] == 50 and by_type["cidr"] >= 4 and by_type["ipv4"] >= 20
    assert report.store_indicators == sum(by_type.values()) == report.current_indicators
    assert report.snapshot is not None and report.snapshot.indicators == report.current_indicators
    index = IndicatorIndex.load(report.snapshot)
    (row,) = index.lookup_ip("84.247.157.112")
    match = index.match(row, "dst.ip")
    assert (match.confidence, match.sources, match.tlp) == (80, ("feodo",), "clear")
    kev = pg_rows(
        postgres,
        "SELECT value, tags FROM cti_indicators WHERE indicator_type = 'cve' "
        "ORDER BY value LIMIT 1",
    )[0]
    assert index.lookup_value("cve", kev[0].lower())  # CVE ids match in any case
    status = pg_rows(
        postgres,
        "SELECT name, last_status, etag IS NOT NULL, indicators FROM cti_feeds ORDER BY name",
    )
    assert [(name, s, etag) for name, s, etag, _ in status] == [
        ("apt1", "ok", True),
        ("feodo", "ok", True),
        ("kev", "ok", True),
        ("misp", "ok", True),
    ]
    again = _refresh(postgres, tmp_path, *feeds)
    assert [f.status for f in again.feeds] == ["not_modified"] * 4
    assert again.snapshot is None  # nothing changed: no new version for running jobs to load


def test_feeds_merge_and_a_full_list_expires_only_its_own_contribution(
    postgres, tmp_path: Path
) -> None:
    a = _csv(tmp_path / "a.csv", _row("203.0.113.7"), _row("198.51.100.9"))
    b = _csv(tmp_path / "b.csv", _row("203.0.113.7", "Qakbot"))
    _refresh(postgres, tmp_path, _feed("a", a, 60), _feed("b", b, 90))
    shared = pg_rows(
        postgres, "SELECT confidence, sources, tags FROM cti_indicators WHERE value = '203.0.113.7'"
    )
    ((confidence, sources, tags),) = shared
    assert confidence == 90  # the highest of the two feeds
    assert [source["feed"] for source in sources] == ["a", "b"]  # every source
    assert tags == ["Pikabot", "Qakbot"]  # the malware families of both
    # Feed b drops the shared address, feed a drops the other one.
    _csv(b, _row("192.0.2.1"))
    _csv(a, _row("203.0.113.7"))
    report = _refresh(postgres, tmp_path, _feed("a", a, 60), _feed("b", b, 90))
    assert report.expired_now == 1
    rows = dict(
        pg_rows(postgres, "SELECT value, confidence FROM cti_indicators WHERE valid_until IS NULL")
    )
    assert rows == {"203.0.113.7": 60, "192.0.2.1": 90}  # a's confidence now stands alone
    expired = pg_rows(postgres, "SELECT value FROM cti_indicators WHERE valid_until IS NOT NULL")
    assert expired == [("198.51.100.9",)]
    ref = latest_snapshot(str(tmp_path / "snapshots"))
    assert ref is not None and ref.indicators == 2
    assert IndicatorIndex.load(ref).lookup_ip("198.51.100.9") == ()


def test_a_failing_feed_is_reported_keeps_its_state_and_spares_the_others(
    postgres, tmp_path: Path
) -> None:
    good = _csv(tmp_path / "good.csv", _row("203.0.113.7"), "not,a,valid,row,at,all")
    broken = FeedConfig(
        name="broken",
        type="csv",
        preset="feodo",
        url="http://127.0.0.1:9/list.csv",
        retries=0,
        timeout=2,
    )
    report = _refresh(postgres, tmp_path, _feed("good", good), broken)
    outcome = {f.name: f for f in report.feeds}
    assert outcome["broken"].status == "failed"
    assert outcome["broken"].error_class == "ExternalAPIError"
    assert outcome["good"].status == "ok" and outcome["good"].dead_letters == 1
    assert pg_rows(postgres, "SELECT value FROM cti_indicators") == [("203.0.113.7",)]
    letters = pg_rows(postgres, "SELECT stage, error_class, source->>'line' FROM dead_letters")
    assert letters == [("cti.parse", "ValidationError", "3")]
    status = dict(pg_rows(postgres, "SELECT name, last_status FROM cti_feeds"))
    assert status == {"good": "ok", "broken": "failed"}
    error = pg_rows(postgres, "SELECT last_error FROM cti_feeds WHERE name = 'broken'")[0][0]
    assert error.startswith("ExternalAPIError: connection to http://127.0.0.1:9/list.csv")
