"""Feed fetching against a real HTTP server on 127.0.0.1: retries, time-outs, errors, secrets.

Each test points a feed at the local server, makes it misbehave, and asserts
what `refresh_feed` reports (status, error class, counts, state) and what the
client really sent (the server records every request).
"""

from __future__ import annotations

import logging
import socket
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import msgspec
import pytest
import requests

from cti.config import FeedAuth, FeedConfig
from cti.feeds import FeedResult, FeedState, refresh_feed
from cti.http import FeedHttp, display_url, retry_after_seconds
from tests.unit.cti.conftest import FIXTURES, FeedServer, Reply

KEV = (FIXTURES / "cisa_kev" / "known_exploited_vulnerabilities_CUT50.json").read_bytes()
FEODO = (FIXTURES / "abusech" / "feodotracker_ipblocklist_2024-04-04.csv").read_bytes()
TOKEN = "tok-7f3a9c1e-not-for-logs"  # a test credential


def kev_feed(server: FeedServer, path: str = "/flaky.json", **options: Any) -> FeedConfig:
    settings: dict[str, Any] = {"retries": 2, "backoff": 0.01, "timeout": 5.0}
    settings.update(options)
    return FeedConfig(name="kev", type="kev", url=server.url + path, **settings)


def assert_failed(result: FeedResult, error_class: str, state: FeedState) -> None:
    assert result.status == "failed", result
    assert result.error_class == error_class, result.error
    assert result.indicators == [] and result.dead_letters == []
    assert result.state == state and result.full_list is False
    assert result.error is not None and "\n" not in result.error


def test_server_errors_are_retried_until_success(feed_server: FeedServer) -> None:
    feed_server.script("/flaky.json", Reply(500), Reply(502), Reply(200, KEV))
    result = refresh_feed(kev_feed(feed_server), FeedState())
    assert result.status == "ok" and result.entries == 50 and len(result.indicators) == 50
    assert len(feed_server.seen("/flaky.json")) == 3


def test_exhausted_retries_fail_the_feed_with_external_api_error(feed_server: FeedServer) -> None:
    feed_server.script("/flaky.json", Reply(503, b"maintenance"))
    previous = FeedState(etag='"old"')
    result = refresh_feed(kev_feed(feed_server), previous)
    assert_failed(result, "ExternalAPIError", previous)
    assert "503" in str(result.error) and "gave up after 3 tries" in str(result.error)
    assert len(feed_server.seen("/flaky.json")) == 3


def test_retry_after_seconds_is_honoured(feed_server: FeedServer) -> None:
    feed_server.script("/flaky.json", Reply(429, headers={"Retry-After": "1"}), Reply(200, KEV))
    result = refresh_feed(kev_feed(feed_server, backoff=0.0), FeedState())
    first, second = feed_server.seen("/flaky.json")
    assert result.status == "ok"
    assert second.at - first.at >= 0.95  # the server's 1 s, not the 0 s backoff


def test_retry_after_date_and_cap(feed_server: FeedServer) -> None:
    clock = 1_700_000_000.0
    in_two_seconds = format_datetime(datetime.fromtimestamp(clock + 2, UTC), usegmt=True)
    feed_server.script(
        "/flaky.json",
        Reply(503, headers={"Retry-After": in_two_seconds}),
        Reply(429, headers={"Retry-After": "3600"}),
        Reply(200, KEV),
    )
    waits: list[float] = []
    config = kev_feed(feed_server, max_wait=30.0)
    with FeedHttp(config, sleep=waits.append, clock=lambda: clock) as http:
        response = http.get(config.url or "")
    assert response.status == 200 and response.body == KEV
    assert waits == [2.0, 30.0]  # the HTTP date, then 3600 s capped at max_wait


def test_retry_after_parsing() -> None:
    assert retry_after_seconds("7", 0.0) == 7.0
    assert retry_after_seconds("Thu, 01 Jan 1970 00:00:10 GMT", 4.0) == 6.0
    assert retry_after_seconds("Thu, 01 Jan 1970 00:00:10 GMT", 100.0) == 0.0
    assert retry_after_seconds("soon", 0.0) is None and retry_after_seconds(None, 0.0) is None


def test_slow_server_times_out_and_fails(feed_server: FeedServer) -> None:
    feed_server.script("/flaky.json", Reply(200, KEV, delay=1.5))
    started = time.monotonic()
    result = refresh_feed(kev_feed(feed_server, timeout=0.2, retries=1), FeedState())
    assert_failed(result, "ExternalAPIError", FeedState())
    assert "timed out after 0.2s" in str(result.error)
    assert len(feed_server.seen("/flaky.json")) == 2
    assert time.monotonic() - started < 1.5  # the client did not wait for the server


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (401, "AuthenticationError"),
        (403, "AuthorizationError"),
        (404, "NotFoundError"),
        (400, "ExternalAPIError"),
        (410, "ExternalAPIError"),
    ],
)
def test_client_errors_fail_at_once(feed_server: FeedServer, status: int, error_class: str) -> None:
    feed_server.script("/flaky.json", Reply(status, b"nope"))
    result = refresh_feed(kev_feed(feed_server), FeedState(cursor="kept"))
    assert_failed(result, error_class, FeedState(cursor="kept"))
    assert str(status) in str(result.error)
    assert len(feed_server.seen("/flaky.json")) == 1  # never retried


def test_truncated_body_is_retried_then_fails(feed_server: FeedServer) -> None:
    feed_server.script("/flaky.json", Reply(200, KEV, truncate_to=1000))
    result = refresh_feed(kev_feed(feed_server), FeedState())
    assert_failed(result, "ExternalAPIError", FeedState())
    assert "cut off" in str(result.error)
    assert len(feed_server.seen("/flaky.json")) == 3


def test_truncated_body_then_complete_one(feed_server: FeedServer) -> None:
    feed_server.script("/flaky.json", Reply(200, KEV, truncate_to=10), Reply(200, KEV))
    result = refresh_feed(kev_feed(feed_server), FeedState())
    assert result.status == "ok" and len(result.indicators) == 50


def test_malformed_json_fails_the_feed_with_validation_error(feed_server: FeedServer) -> None:
    feed_server.script("/flaky.json", Reply(200, KEV[:-40]))  # well transferred, bad JSON
    result = refresh_feed(kev_feed(feed_server), FeedState())
    assert_failed(result, "ValidationError", FeedState())
    assert "not valid JSON" in str(result.error)
    assert len(feed_server.seen("/flaky.json")) == 1


def test_oversized_body_is_refused(feed_server: FeedServer) -> None:
    feed_server.script("/flaky.json", Reply(200, KEV))
    result = refresh_feed(kev_feed(feed_server, max_bytes=1000), FeedState())
    assert_failed(result, "ValidationError", FeedState())
    assert "max_bytes 1000" in str(result.error)


def test_connection_refused_is_retried_then_fails() -> None:
    with socket.socket() as sock:  # a port nothing listens on: bind, read the port, close
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = FeedConfig(
        name="down", type="kev", url=f"http://127.0.0.1:{port}/kev.json", retries=1, backoff=0.0
    )
    result = refresh_feed(config, FeedState())
    assert_failed(result, "ExternalAPIError", FeedState())
    assert "connection to" in str(result.error) and "gave up after 2 tries" in str(result.error)


def test_etag_and_last_modified_make_the_next_fetch_conditional(feed_server: FeedServer) -> None:
    config = FeedConfig(
        name="feodo", type="csv", url=feed_server.url + "/feodo/ipblocklist.csv", preset="feodo"
    )
    first = refresh_feed(config, FeedState())
    assert first.status == "ok" and first.full_list and len(first.indicators) == 28
    assert first.state.etag == '"feodo-2024-04-04"'
    assert first.state.last_modified == "Thu, 04 Apr 2024 07:03:03 GMT"
    second = refresh_feed(config, first.state)
    request = feed_server.seen("/feodo/ipblocklist.csv")[-1]
    assert request.headers["if-none-match"] == '"feodo-2024-04-04"'
    assert request.headers["if-modified-since"] == "Thu, 04 Apr 2024 07:03:03 GMT"
    assert second.status == "not_modified" and second.indicators == []
    assert second.full_list is False and second.state == first.state and second.entries == 0


def test_last_modified_alone_gives_not_modified(feed_server: FeedServer) -> None:
    config = FeedConfig(
        name="feodo", type="csv", url=feed_server.url + "/feodo/ipblocklist.csv", preset="feodo"
    )
    state = FeedState(last_modified="Thu, 04 Apr 2024 07:03:03 GMT")
    assert refresh_feed(config, state).status == "not_modified"


def test_bearer_token_is_sent_and_never_shown(
    feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("KEV_BEARER", TOKEN)  # a name redact() does not know as secret
    auth = FeedAuth(type="bearer", token_env="KEV_BEARER")
    feed_server.script("/flaky.json", Reply(500), Reply(200, KEV))
    feed_server.script("/denied.json", Reply(401, f"bad token {TOKEN}".encode()))
    caplog.set_level(logging.DEBUG)
    ok = refresh_feed(kev_feed(feed_server, auth=auth), FeedState())
    denied = refresh_feed(kev_feed(feed_server, "/denied.json", auth=auth), FeedState())
    assert ok.status == "ok"
    assert {r.headers["authorization"] for r in feed_server.requests} == {f"Bearer {TOKEN}"}
    assert_failed(denied, "AuthenticationError", FeedState())
    assert "KEV_BEARER" in str(denied.error)  # the variable is named, its value is not
    for text in (msgspec.json.encode(ok), msgspec.json.encode(denied), caplog.text.encode()):
        assert TOKEN.encode() not in text
    assert "try 1 of 3 failed" in caplog.text  # the retry was logged


def test_header_and_basic_auth(feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISP_KEY", TOKEN)
    monkeypatch.setenv("FEED_USER", "reader")
    monkeypatch.setenv("FEED_PASS", "pa55-w0rd")
    feed_server.script("/flaky.json", Reply(200, KEV))
    header = FeedAuth(type="header", header="X-API-Key", token_env="MISP_KEY")
    basic = FeedAuth(type="basic", user_env="FEED_USER", password_env="FEED_PASS")
    assert refresh_feed(kev_feed(feed_server, auth=header), FeedState()).status == "ok"
    assert refresh_feed(kev_feed(feed_server, auth=basic), FeedState()).status == "ok"
    first, second = feed_server.seen("/flaky.json")
    assert first.headers["x-api-key"] == TOKEN and "authorization" not in first.headers
    assert second.headers["authorization"] == "Basic cmVhZGVyOnBhNTUtdzByZA=="  # reader:pa55-w0rd


def test_missing_credential_variable_fails_before_any_request(
    feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KEV_BEARER", raising=False)
    auth = FeedAuth(type="bearer", token_env="KEV_BEARER")
    result = refresh_feed(kev_feed(feed_server, auth=auth), FeedState())
    assert_failed(result, "AuthenticationError", FeedState())
    assert "environment variable KEV_BEARER is not set" in str(result.error)
    assert feed_server.requests == []


def test_password_in_url_is_masked_everywhere(
    feed_server: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = feed_server.url.replace("http://", "http://reader:hunter2-pw@") + "/missing.json"
    config = FeedConfig(name="kev", type="kev", url=url, retries=0)
    caplog.set_level(logging.INFO)
    result = refresh_feed(config, FeedState())
    assert_failed(result, "NotFoundError", FeedState())
    assert f"{feed_server.url}/missing.json answered 404" in str(result.error)
    assert b"hunter2-pw" not in msgspec.json.encode(result) and "hunter2-pw" not in caplog.text
    assert feed_server.seen("/missing.json")[0].headers["authorization"].startswith("Basic ")
    assert display_url("https://u:secret@h.example/x?token=abc&x=1") == (
        "https://h.example/x?token=***&x=1"
    )


def test_credentials_do_not_follow_a_redirect_to_another_server(
    feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEV_BEARER", TOKEN)
    other_origin = feed_server.url.replace("127.0.0.1", "localhost")
    feed_server.script("/moved.json", Reply(302, headers={"Location": f"{other_origin}/kev.json"}))
    feed_server.script("/here.json", Reply(301, headers={"Location": "/kev.json"}))
    feed_server.script("/kev.json", Reply(200, KEV))
    auth = FeedAuth(type="bearer", token_env="KEV_BEARER")
    assert refresh_feed(kev_feed(feed_server, "/moved.json", auth=auth), FeedState()).status == "ok"
    assert refresh_feed(kev_feed(feed_server, "/here.json", auth=auth), FeedState()).status == "ok"
    elsewhere, same_server = feed_server.seen("/kev.json")
    assert (
        elsewhere.headers["host"].startswith("localhost")
        and "authorization" not in elsewhere.headers
    )
    assert same_server.headers["authorization"] == f"Bearer {TOKEN}"


def test_tls_is_verified_and_a_ca_bundle_is_honoured(
    tls_feed_server: tuple[FeedServer, Any],
) -> None:
    server, cert = tls_feed_server
    server.script("/kev.json", Reply(200, KEV))
    untrusted = refresh_feed(kev_feed(server, "/kev.json"), FeedState())
    assert_failed(untrusted, "ExternalAPIError", FeedState())
    assert "TLS handshake" in str(untrusted.error)
    trusted = refresh_feed(kev_feed(server, "/kev.json", ca_bundle=str(cert)), FeedState())
    assert trusted.status == "ok" and len(trusted.indicators) == 50


def test_a_given_session_is_used_with_verification_on_and_left_open(
    feed_server: FeedServer,
) -> None:
    calls: list[dict[str, Any]] = []

    class Recording(requests.Session):
        def request(self, *args: Any, **kwargs: Any) -> requests.Response:
            calls.append(kwargs)
            return super().request(*args, **kwargs)

    feed_server.script("/flaky.json", Reply(200, KEV))
    with Recording() as session:
        session.verify = False  # a careless caller cannot turn verification off
        result = refresh_feed(kev_feed(feed_server), FeedState(), session=session)
        assert result.status == "ok"
        assert calls and all(call["verify"] is True for call in calls)
        assert calls[0]["timeout"] == (5.0, 5.0)
        assert session.get(feed_server.url + "/flaky.json").status_code == 200  # still open
