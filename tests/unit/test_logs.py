"""Logs never carry secrets, in either format."""

from __future__ import annotations

import io
import logging

import msgspec

from beam_pipelines import logs


def test_redact_dsn_passwords_and_tokens(monkeypatch) -> None:
    monkeypatch.setenv("FEED_TOKEN", "s3cr3t-t0ken-value")
    text = logs.redact(
        "connect postgresql://otsec:hunter2@127.0.0.1:5432/otsec and "
        "https://user:pa%40ss@feeds.example/x?api_key=abc123&x=1 with s3cr3t-t0ken-value"
    )
    assert "hunter2" not in text and "pa%40ss" not in text and "abc123" not in text
    assert "s3cr3t-t0ken-value" not in text
    assert "postgresql://otsec:***@127.0.0.1:5432/otsec" in text


def test_json_log_lines_are_redacted(monkeypatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(logs.sys, "stderr", stream)
    logs.configure_logging("json", "INFO")
    logging.getLogger("otsec.test").info("dsn %s", "clickhouse://default:topsecret@localhost:8123")
    record = msgspec.json.decode(stream.getvalue().splitlines()[-1])
    assert record["level"] == "info" and record["logger"] == "otsec.test"
    assert "topsecret" not in record["message"] and "default:***@" in record["message"]
    logs.configure_logging("text", "WARNING")


def test_text_tracebacks_are_redacted(monkeypatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(logs.sys, "stderr", stream)
    logs.configure_logging("text", "INFO")
    try:
        raise ConnectionError("could not connect to postgresql://otsec:hunter2@127.0.0.1/otsec")
    except ConnectionError:
        logging.getLogger("otsec.test").exception("store unreachable")
    assert "hunter2" not in stream.getvalue() and "otsec:***@" in stream.getvalue()
    logs.configure_logging("text", "WARNING")
