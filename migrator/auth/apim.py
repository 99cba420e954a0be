"""EnOS APIM authentication: the token service's ``encryption`` and the per-request signature.

One implementation for the client and the sandbox (as with :mod:`migrator.auth.acs`), pinned to
the official vector in the reference. The signature covers the decoded query parameters sorted
by name as ``k1v1k2v2``, then the body bytes exactly as sent, wrapped as
``token + params + timestamp + secret`` and hashed with SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

TOKEN_HEADER = "apim-accesstoken"
SIGNATURE_HEADER = "apim-signature"
TIMESTAMP_HEADER = "apim-timestamp"


def encryption(app_key: str, timestamp: str, app_secret: str) -> str:
    """The token service's proof of the secret: ``sha256hex(appKey + timestamp + appSecret)``."""
    return hashlib.sha256(f"{app_key}{timestamp}{app_secret}".encode()).hexdigest()


def params_data(query: Iterable[tuple[str, str]], body: bytes) -> str:
    """Sorted ``name + value`` pairs (decoded, no separators), then the body as sent."""
    text = "".join(f"{k}{v}" for k, v in sorted(query, key=lambda kv: kv[0]))
    return text + body.decode("utf-8")


def signature(
    token: str, query: Iterable[tuple[str, str]], body: bytes, timestamp: str, app_secret: str
) -> str:
    data = f"{token}{params_data(query, body)}{timestamp}{app_secret}"
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def sign(
    token: str, query: Iterable[tuple[str, str]], body: bytes, timestamp: str, app_secret: str
) -> dict[str, str]:
    """The headers that authenticate one call."""
    return {
        TOKEN_HEADER: token,
        SIGNATURE_HEADER: signature(token, query, body, timestamp, app_secret),
        TIMESTAMP_HEADER: timestamp,
    }


def verify(
    token: str, query: Iterable[tuple[str, str]], body: bytes, timestamp: str, app_secret: str, given: str
) -> bool:
    return hmac.compare_digest(signature(token, query, body, timestamp, app_secret), given)
