"""Secrets never leave the process: masking for DSNs, URLs and messages.

Used by logs, error messages, dead letters and summaries alike, so that a
password in a DSN or a feed token in an environment variable is shown as ``***``
wherever it would otherwise appear.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["redact", "redact_dsn"]

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*):(?P<secret>[^@\s]+)@")
_KEY_VALUE = re.compile(
    r"(?i)\b(?P<key>password|passwd|pwd|token|secret|api_key)=(?P<value>[^\s&;]+)"
)
_SECRET_ENV = re.compile(r"(?i)(PASSWORD|TOKEN|SECRET|API_KEY)")


def _secret_values() -> list[str]:
    return [v for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v) >= 4]


def redact(text: str) -> str:
    """Mask passwords and tokens in ``text``."""
    text = _URL_PASSWORD.sub(r"\g<scheme>:***@", text)
    text = _KEY_VALUE.sub(r"\g<key>=***", text)
    for value in _secret_values():
        text = text.replace(value, "***")
    return text


def redact_dsn(dsn: str) -> str:
    """A DSN or URL without its password."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return redact(dsn)
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return redact(urlunsplit(parts._replace(netloc=netloc)))
