"""The feeds file: loading, defaults, and an error naming file, feed and field for every mistake."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cti.config import FeedConfig, load_feeds, parse_duration
from schemas.errors import NotFoundError, ValidationError

EXAMPLE = """
feeds:
  - name: feodo            # unique
    type: csv
    url: https://feodotracker.abuse.ch/downloads/ipblocklist.csv
    preset: feodo
    every: 1h
    confidence: 80
    tlp: WHITE
  - name: ics-taxii
    type: taxii
    url: https://taxii.example/taxii2/
    collection: ICS indicators
    auth: {type: bearer, token_env: FEED_TOKEN}
    every: 15m
  - name: circl
    type: misp
    url: https://www.circl.lu/doc/misp/feed-osint/
    auth: {type: header, header: Authorization, token_env: MISP_KEY}
  - name: kev
    type: kev
    path: /data/known_exploited_vulnerabilities.json
  - name: lists
    type: csv
    path: /data/iocs.txt
    preset: plain
    columns: {indicator_type: domain}
    full_list: false
"""


def write(tmp_path: Path, feeds: Any, suffix: str = ".yaml") -> str:
    path = tmp_path / f"feeds{suffix}"
    text = json.dumps(feeds) if suffix == ".json" else yaml.safe_dump(feeds)
    path.write_text(text)
    return str(path)


def test_the_documented_example_loads(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text(EXAMPLE)
    feodo, taxii, misp, kev, lists = load_feeds(str(path))
    assert (feodo.tlp, feodo.confidence, feodo.every_seconds) == ("clear", 80, 3600.0)
    assert [f.full_list for f in (feodo, taxii, misp, kev, lists)] == [
        True,
        False,
        True,
        True,
        False,
    ]
    assert taxii.auth is not None and taxii.auth.env_names == ("FEED_TOKEN",)
    assert misp.auth is not None and misp.auth.header == "Authorization"
    assert lists.csv_layout.indicator_type == "domain" and lists.csv_layout.delimiter == " "
    assert feodo.csv_layout.value == "dst_ip" and feodo.csv_layout.header is True
    assert (kev.timeout, kev.retries, kev.max_wait) == (30.0, 3, 120.0)


def test_json_files_load_too(tmp_path: Path) -> None:
    path = write(tmp_path, {"feeds": [{"name": "k", "type": "kev", "path": "/k.json"}]}, ".json")
    assert [f.name for f in load_feeds(path)] == ["k"]


BASE: dict[str, Any] = {
    "name": "f",
    "type": "csv",
    "url": "https://x.example/l.csv",
    "preset": "plain",
}


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"type": "rss"}, "type", "Invalid enum value 'rss'"),
        ({"url": None}, "url", "exactly one of url and path"),
        ({"path": "/x"}, "url", "exactly one of url and path"),
        ({"url": "ftp://x.example/l"}, "url", "http(s)"),
        ({"every": "soon"}, "every", "not a number followed by s, m, h or d"),
        ({"every": "0m"}, "every", "longer than zero"),
        ({"preset": None}, "preset", "needs a preset or columns"),
        ({"preset": "spamhaus"}, "preset", "Invalid enum value"),
        ({"preset": None, "columns": {"type": 1}}, "columns.value", "needs a value column"),
        ({"columns": {"value": "ip"}}, "columns.header", "use 0-based indexes"),
        ({"columns": {"indicator_type": "mutex"}}, "columns.indicator_type", "not indexed"),
        ({"columns": {"delimiter": ";;"}}, "columns.delimiter", "one character"),
        ({"columns": {"colour": 1}}, "columns.colour", "unknown field"),
        ({"confidence": 101}, "confidence", "0-100"),
        ({"confidence": "high"}, "confidence", "Expected `int`"),
        ({"tlp": "purple"}, "tlp", "unknown TLP level"),
        ({"auth": {"type": "bearer"}}, "auth.token_env", "needs token_env"),
        ({"auth": {"type": "basic", "user_env": "U"}}, "auth.password_env", "needs password_env"),
        ({"auth": {"type": "header", "token_env": "K"}}, "auth.header", "needs header"),
        (
            {"auth": {"type": "bearer", "token_env": "$TOKEN"}},
            "auth.token_env",
            "environment variable",
        ),
        ({"auth": {"type": "oauth"}}, "auth.type", "Invalid enum value"),
        ({"collection": "c"}, "collection", "taxii feeds only"),
        ({"max_age": "forever"}, "max_age", "not a number"),
        ({"timeout": 0}, "timeout", "must be > 0"),
        ({"ca_bundle": "/no/such/bundle.pem"}, "ca_bundle", "not a readable file"),
        ({"name": "bad name!"}, "name", "letters, digits"),
        ({"password": "x"}, "password", "unknown field"),
    ],
)
def test_each_mistake_names_file_feed_and_field(
    tmp_path: Path, changes: dict[str, Any], field: str, words: str
) -> None:
    feed = {key: value for key, value in {**BASE, **changes}.items() if value is not None}
    path = write(tmp_path, {"feeds": [{"name": "ok", "type": "kev", "path": "/k.json"}, feed]})
    with pytest.raises(ValidationError) as caught:
        load_feeds(path)
    error = caught.value
    assert error.field == field
    assert error.message.startswith(f"{path}: feed #2")
    assert f"field '{field}'" in error.message and words in error.message


@pytest.mark.parametrize(
    ("feed", "field", "words"),
    [
        ({"type": "taxii", "url": "https://t.example/"}, "collection", "needs a collection"),
        ({"type": "taxii", "path": "/t", "collection": "c"}, "url", "needs a url"),
        ({"type": "stix", "path": "/s", "preset": "feodo"}, "preset", "csv feeds only"),
        (
            {"type": "kev", "path": "/k", "auth": {"type": "bearer", "token_env": "T"}},
            "auth",
            "not to a local path",
        ),
    ],
)
def test_type_specific_fields(tmp_path: Path, feed: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(ValidationError, match=words) as caught:
        load_feeds(write(tmp_path, {"feeds": [{"name": "t", **feed}]}))
    assert caught.value.field == field and caught.value.feed == "t"


def test_duplicate_names(tmp_path: Path) -> None:
    kev = {"name": "same", "type": "kev", "path": "/k.json"}
    with pytest.raises(ValidationError, match=r"feed #2 \('same'\): field 'name': duplicate name"):
        load_feeds(write(tmp_path, {"feeds": [kev, kev]}))


def test_file_level_problems(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        load_feeds(str(tmp_path / "missing.yaml"))
    with pytest.raises(ValidationError, match="with a 'feeds' list"):
        load_feeds(write(tmp_path, [{"name": "x"}]))
    broken = tmp_path / "broken.yaml"
    broken.write_text("feeds: [\n")
    with pytest.raises(ValidationError, match="not valid YAML or JSON"):
        load_feeds(str(broken))


def test_direct_construction_validates_too() -> None:
    with pytest.raises(ValidationError, match="needs a collection"):
        FeedConfig(name="t", type="taxii", url="https://t.example/")
    assert (
        FeedConfig(name="t", type="taxii", url="https://t.example/", collection="c").full_list
        is False
    )
    assert FeedConfig(name="s", type="stix", path="/s", full_list=False).full_list is False


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("15m", 900.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("0.5h", 1800.0),
        (" 2M ", 120.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "15", "m", "0s", "1w", "-1m", "1h 30m", "1.m"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValidationError):
        parse_duration(text)
