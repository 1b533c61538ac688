"""HTTP for threat-intelligence feeds: one session per feed, retries, conditional requests.

Feed servers rate-limit, fail and time out; `FeedHttp` retries what a retry can
fix (429, 5xx, time-outs, broken connections and truncated bodies) with
exponential backoff and jitter, honouring ``Retry-After``, and turns everything
else into the otsec error a feed fails with (401 `AuthenticationError`, 403
`AuthorizationError`, 404 `NotFoundError`, other answers `ExternalAPIError`).
TLS is always verified. Credentials come from environment variables, are sent
only to the feed's own server (never across a redirect to another one), and
never appear in a message: every URL and text this module hands out is scrubbed.
"""

from __future__ import annotations

import base64
import http.client
import logging
import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit, urlunsplit

import msgspec
import requests
import urllib3

from cti.config import FeedConfig
from schemas.errors import (
    AuthenticationError,
    AuthorizationError,
    ExternalAPIError,
    NotFoundError,
    OtsecError,
    ValidationError,
)
from schemas.secrets import redact
from transforms._retry import RetryPolicy, call_with_retries

__all__ = [
    "JSON_MEDIA_TYPE",
    "STIX_MEDIA_TYPE",
    "TAXII_MEDIA_TYPE",
    "USER_AGENT",
    "FeedHttp",
    "HttpResponse",
    "display_url",
    "retry_after_seconds",
]

_log = logging.getLogger("otsec.cti")

USER_AGENT = "otsec-cti/0.1.0"
TAXII_MEDIA_TYPE = "application/taxii+json;version=2.1"
STIX_MEDIA_TYPE = "application/stix+json;version=2.1, application/json;q=0.9"
JSON_MEDIA_TYPE = "application/json"

_RETRIED_STATUS = frozenset({429, 500, 502, 503, 504}) | frozenset(range(505, 600))
_REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
_CHUNK = 64 * 1024
_SNIPPET = 200
# Broken transfers: requests wraps most of them, but not every urllib3 path does.
_BROKEN_BODY = (
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    requests.exceptions.ConnectionError,
    http.client.HTTPException,
    urllib3.exceptions.HTTPError,
)


class HttpResponse(msgspec.Struct, frozen=True, kw_only=True):
    """A complete answer: status 2xx or 304, the whole body, headers with lower-case names."""

    url: str  # as displayed: without credentials
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def etag(self) -> str | None:
        return self.headers.get("etag")

    @property
    def last_modified(self) -> str | None:
        return self.headers.get("last-modified")


def display_url(url: str) -> str:
    """``url`` as it may be shown: user info dropped, secret-looking query values masked."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return redact(urlunsplit(parts._replace(netloc=netloc)))


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta-seconds or an HTTP date).

    Args:
        value: The header's value, if any.
        now: The current time as a POSIX timestamp (for the date form).

    Returns:
        The wait, never negative; None when there is no usable header.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return (parts.scheme, (parts.hostname or "").lower(), parts.port or default)


class FeedHttp:
    """The HTTP client of one feed: one `requests.Session`, its credentials, its retry policy.

    Args:
        config: The feed (timeout, TLS bundle, auth, retries, size limit).
        session: A session to use instead of a new one; the caller then owns it.
        sleep: The wait between tries (tests pass a recorder).
        clock: The current POSIX time (for ``Retry-After`` dates).
    """

    def __init__(
        self,
        config: FeedConfig,
        session: requests.Session | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()
        self._sleep = sleep
        self._clock = clock
        self._policy = RetryPolicy(
            attempts=config.retries + 1, base_delay=config.backoff, max_delay=config.max_wait
        )
        self._secrets: list[str] = []
        self._credentials: dict[str, str] | None = None
        if config.url is not None:
            self._remember_url_secrets(config.url)

    def __enter__(self) -> FeedHttp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    def scrub(self, text: str) -> str:
        """``text`` without this feed's credentials or anything that looks like a secret."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return redact(text)

    def display(self, url: str) -> str:
        return self.scrub(display_url(url))

    def get(
        self,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        accept: str = JSON_MEDIA_TYPE,
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> HttpResponse:
        """GET ``url`` with retries; a 304 comes back as is (after ``etag``/``last_modified``).

        Raises:
            AuthenticationError: On 401, or when a credential's environment variable is unset.
            AuthorizationError: On 403.
            NotFoundError: On 404.
            ValidationError: When the body is larger than the feed's ``max_bytes``.
            ExternalAPIError: On any other failure, after retries where a retry could help.
        """
        headers = {"Accept": accept, "User-Agent": USER_AGENT}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        headers.update(self._auth_headers())
        shown = self.display(url)
        tries = 0

        def attempt() -> HttpResponse | OtsecError:
            nonlocal tries
            tries += 1
            return self._attempt(url, params, headers, shown)

        try:
            outcome = call_with_retries(
                attempt,
                self._policy,
                on_retry=lambda n, error: self._log_retry(shown, n, error),
                sleep=self._sleep,
            )
        except ExternalAPIError as error:
            times = "try" if tries == 1 else "tries"
            raise self._error(
                ExternalAPIError, f"{error.message}; gave up after {tries} {times}", shown
            ) from None
        if isinstance(outcome, OtsecError):
            raise outcome
        return self._check_status(outcome)

    # -- one try -------------------------------------------------------------------------

    def _attempt(
        self, url: str, params: Mapping[str, str] | None, headers: dict[str, str], shown: str
    ) -> HttpResponse | OtsecError:
        """One request (following redirects) and its body.

        Raises a retriable `ExternalAPIError` for what a retry could fix; returns a
        final error for what it cannot (TLS failures, oversized bodies).
        """
        try:
            response = self._request_following_redirects(url, params, headers)
        except requests.exceptions.SSLError:
            return self._error(
                ExternalAPIError,
                f"TLS handshake with {shown} failed: certificate not trusted or not TLS "
                "(for a private CA, set ca_bundle)",
                shown,
            )
        except requests.exceptions.Timeout:
            raise self._retriable(
                f"{shown} timed out after {self.config.timeout:g}s", shown, None
            ) from None
        except requests.exceptions.TooManyRedirects:
            return self._error(ExternalAPIError, f"{shown} redirects too often", shown)
        except (requests.exceptions.ConnectionError, *_BROKEN_BODY) as error:
            raise self._retriable(
                f"connection to {shown} failed ({type(error).__name__})", shown, None
            ) from None
        except requests.exceptions.RequestException as error:
            return self._error(
                ExternalAPIError, f"request to {shown} failed ({type(error).__name__})", shown
            )
        with response:
            final = self.display(response.url)
            if response.status_code in _RETRIED_STATUS:
                hint = retry_after_seconds(response.headers.get("Retry-After"), self._clock())
                reason = response.reason or ""
                raise self._retriable(
                    f"{final} answered {response.status_code} {reason}".rstrip(), final, hint
                )
            try:
                body = self._read_body(response, final)
            except OtsecError as error:
                if error.retriable:
                    raise
                return error
        return HttpResponse(
            url=final,
            status=response.status_code,
            body=body,
            headers={name.lower(): value for name, value in response.headers.items()},
        )

    def _request_following_redirects(
        self, url: str, params: Mapping[str, str] | None, headers: dict[str, str]
    ) -> requests.Response:
        """Follow redirects ourselves: credentials must not follow one to another server."""
        origin = _origin(url)
        current, query = url, params
        verify: str | bool = self.config.ca_bundle or True
        timeout = (self.config.timeout, self.config.timeout)
        for _ in range(_MAX_REDIRECTS + 1):
            send = headers if _origin(current) == origin else self._without_credentials(headers)
            response = self._session.get(
                current,
                params=query,
                headers=send,
                timeout=timeout,
                verify=verify,
                allow_redirects=False,
                stream=True,
            )
            location = response.headers.get("Location")
            if response.status_code not in _REDIRECT_STATUS or not location:
                return response
            response.close()
            current, query = urljoin(response.url, location), None
        raise requests.exceptions.TooManyRedirects(f"more than {_MAX_REDIRECTS} redirects")

    def _read_body(self, response: requests.Response, shown: str) -> bytes:
        limit = self.config.max_bytes
        declared = response.headers.get("Content-Length", "")
        expected = int(declared) if declared.strip().isdigit() else None
        if expected is not None and expected > limit:
            raise self._error(
                ValidationError,
                f"{shown} sends {expected} bytes, more than max_bytes {limit}",
                shown,
            )
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_content(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise self._error(
                        ValidationError, f"{shown} sends more than max_bytes {limit} bytes", shown
                    )
                chunks.append(chunk)
        except requests.exceptions.Timeout:
            raise self._retriable(f"{shown} stalled while sending its body", shown, None) from None
        except _BROKEN_BODY as error:
            raise self._retriable(
                f"body from {shown} was cut off ({type(error).__name__})", shown, None
            ) from None
        body = b"".join(chunks)
        # A compressed body's length differs from Content-Length by design.
        compressed = bool(response.headers.get("Content-Encoding"))
        if expected is not None and not compressed and len(body) != expected:
            raise self._retriable(
                f"body from {shown} was cut off: {len(body)} of {expected} bytes", shown, None
            )
        return body

    # -- answers -------------------------------------------------------------------------

    def _check_status(self, response: HttpResponse) -> HttpResponse:
        status, shown = response.status, response.url
        if 200 <= status < 300 or status == 304:
            return response
        names = ", ".join(self.config.auth.env_names) if self.config.auth else ""
        if status == 401:
            hint = f"check the credentials in {names}" if names else "the feed needs auth"
            raise self._error(AuthenticationError, f"{shown} answered 401 ({hint})", shown)
        if status == 403:
            hint = f" for the credentials in {names}" if names else ""
            raise self._error(
                AuthorizationError, f"{shown} answered 403: access denied{hint}", shown
            )
        if status == 404:
            raise self._error(NotFoundError, f"{shown} answered 404: not found", shown)
        snippet = response.body[:_SNIPPET].decode("utf-8", "replace").replace("\n", " ").strip()
        detail = f": {self.scrub(snippet)}" if snippet else ""
        raise self._error(ExternalAPIError, f"{shown} answered {status}{detail}", shown)

    def _error(self, cls: type[OtsecError], message: str, shown: str) -> OtsecError:
        return cls(self.scrub(message), feed=self.config.name, source=shown)

    def _retriable(self, message: str, shown: str, retry_after: float | None) -> ExternalAPIError:
        error = ExternalAPIError(self.scrub(message), feed=self.config.name, source=shown)
        # call_with_retries waits this long instead of its own backoff (capped at max_wait).
        error.retry_after = retry_after  # type: ignore[attr-defined]
        return error

    def _log_retry(self, shown: str, attempt: int, error: OtsecError) -> None:
        hint = getattr(error, "retry_after", None)
        wait = f"; server asks to wait {hint:g}s" if hint is not None else ""
        if hint is not None and hint > self.config.max_wait:
            wait += f" (capped at max_wait {self.config.max_wait:g}s)"
        _log.warning(
            "feed %s: %s; try %d of %d failed%s",
            self.config.name,
            error.message,
            attempt,
            self._policy.attempts,
            wait,
        )

    # -- credentials ---------------------------------------------------------------------

    def _remember_url_secrets(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.password:
            self._secrets.append(parts.password)

    def _auth_headers(self) -> dict[str, str]:
        if self._credentials is None:
            self._credentials = self._read_credentials()
        return self._credentials

    def _read_credentials(self) -> dict[str, str]:
        auth = self.config.auth
        if auth is None:
            return {}
        values: dict[str, str] = {}
        for name in auth.env_names:
            value = os.environ.get(name)
            if not value:
                raise AuthenticationError(
                    f"environment variable {name} is not set (credentials of feed "
                    f"{self.config.name!r})",
                    feed=self.config.name,
                    field="auth",
                )
            values[name] = value
            self._secrets.append(value)
        if auth.type == "bearer":
            assert auth.token_env is not None  # FeedAuth guarantees it
            return {"Authorization": f"Bearer {values[auth.token_env]}"}
        if auth.type == "header":
            assert auth.header is not None and auth.token_env is not None
            return {auth.header: values[auth.token_env]}
        assert auth.user_env is not None and auth.password_env is not None
        pair = f"{values[auth.user_env]}:{values[auth.password_env]}".encode()
        encoded = base64.b64encode(pair).decode("ascii")
        self._secrets.append(encoded)
        return {"Authorization": f"Basic {encoded}"}

    def _without_credentials(self, headers: dict[str, str]) -> dict[str, str]:
        credential_names = {name.lower() for name in self._auth_headers()}
        return {k: v for k, v in headers.items() if k.lower() not in credential_names}
