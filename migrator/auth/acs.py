"""Alibaba Cloud POP request signing: RPC signature V1 (HMAC-SHA1) and V3 (ACS3-HMAC-SHA256).

One implementation serves both sides: clients sign with it and the sandboxes verify with it, so a
bug cannot hide by being symmetric; the test vectors in ``tests/auth`` pin both to the official
examples, and the official SDK test proves the verifier against real SDK requests.

Wire encoding and signing encoding differ (the SDK sends ``+`` for a space, signs ``%20``), so
verifiers always URL-decode first and then canonicalise with :func:`percent_encode`.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import functools
import hashlib
import hmac
import itertools
import os
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote

V3_ALGORITHM = "ACS3-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
#: Every byte's encoding, for ``str.translate`` over UTF-8 bytes seen as Latin-1 text: it runs in
#: C, where ``quote`` loops in Python per byte (a tenth of the engine's time on a 15 kB spec).
_BYTE_ENCODED = [chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in range(256)]
#: A ``%`` that does not start an escape: such text is decoded by ``unquote``'s rules.
_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as POP signs it: unreserved kept, space ``%20``, ``*`` ``%2A``, ``~`` kept.

    The same as ``quote(value, safe="~")``, UTF-8 and all.
    """
    return value.encode().decode("latin-1").translate(_BYTE_ENCODED)


def query_string(pairs: Iterable[tuple[str, str]]) -> str:
    """A query string as POP clients send it, every name and value RFC 3986 encoded (space
    ``%20``); of sorted pairs, the canonical query both signatures cover."""
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in pairs)


#: What a form body must escape to decode unambiguously, besides the escape character ``%``
#: itself: the separators (``;`` too, which some parsers split on or refuse), ``+`` (read as a
#: space) and whitespace.
_FORM_ESCAPES = tuple((c.encode(), f"%{ord(c):02X}".encode()) for c in "&;+=# \t\n\r")
#: What a form value may carry as it is once the escapes are done: printable ASCII.
_PRINTABLE_ASCII = bytes(range(0x20, 0x7F))


def _percent_encode_run(exc: UnicodeError) -> tuple[str, int]:
    """An ``encode`` error handler: each run of non-ASCII text, percent-encoded as UTF-8."""
    assert isinstance(exc, UnicodeEncodeError)
    return percent_encode(exc.object[exc.start : exc.end]), exc.end


#: ``str.encode("ascii", _PERCENT_ENCODE_RUNS)`` scans in C and calls back once per non-ASCII run
#: (a Chinese description), where a regex over a 12 kB spec took longer than the escaping.
_PERCENT_ENCODE_RUNS = "migrator.percent-encode"
codecs.register_error(_PERCENT_ENCODE_RUNS, _percent_encode_run)


def _form_value(text: str) -> bytes:
    """Escape ``%``, what :data:`_FORM_ESCAPES` names and every non-ASCII character, in C.

    JSON (a 12 kB FlowSpec) is mostly punctuation that ``percent_encode`` would escape, byte by
    byte through a lookup table: about half a millisecond a spec. Here ``%`` is escaped first
    (so no escape is escaped again), non-ASCII runs are percent-encoded as the text becomes
    bytes, and each other character present costs one ``bytes.replace``: on bytes, not on the
    two-byte-per-character string a Chinese description makes of a spec, where each replace
    was several times slower. A control character left (JSON escapes them anyway) takes
    ``percent_encode`` for the whole value; it is found by deleting the printable bytes, where
    ``str.isprintable`` looked each character up.
    """
    escaped = text.replace("%", "%25").encode("ascii", _PERCENT_ENCODE_RUNS)
    for raw, code in _FORM_ESCAPES:
        if raw in escaped:
            escaped = escaped.replace(raw, code)
    if escaped.translate(None, _PRINTABLE_ASCII):
        return percent_encode(text).encode()
    return escaped


def form_body(pairs: Iterable[tuple[str, str]]) -> bytes:
    """A form body (UTF-8, as sent) that decodes to ``pairs`` by any form decoder, escaping no
    more than it must.

    Neither signature reads the body's encoding: V1 signs the decoded parameters, canonically
    encoded; V3 signs the SHA-256 of the body bytes as sent. So the body needs only to decode
    to the same pairs, and large values (a FlowSpec) skip most of the escaping.
    """
    return b"&".join(_form_value(k) + b"=" + _form_value(v) for k, v in pairs)


def _unquote(text: str) -> str:
    """``urllib.parse.unquote`` (UTF-8, invalid bytes replaced), in C for well-formed text.

    Quoted-printable decoding is percent-decoding with ``=`` for ``%``; ``binascii.a2b_qp`` does
    it in C, about six times faster on a large spec. It also joins lines and drops trailing
    blanks, so text with ``=``, blanks or control characters, a stray ``%`` or non-ASCII
    characters (none of which a conforming client sends) takes ``unquote`` itself.
    """
    if "%" not in text:
        return text
    if not text.isascii():
        return unquote(text)
    raw = text.encode("ascii")
    # Printable ASCII is found by deleting it, in C: ``str.isprintable`` looks each character up.
    if b"=" in raw or b" " in raw or raw.translate(None, _PRINTABLE_ASCII) or _STRAY_PERCENT.search(text):
        return unquote(text)
    return binascii.a2b_qp(raw.replace(b"%", b"=")).decode("utf-8", "replace")


def form_decode(text: str) -> list[tuple[str, str]]:
    """``parse_qsl(text, keep_blank_values=True)``: ``&``-separated, ``+`` a space, then unquoted."""
    pairs = []
    for field in text.split("&"):
        if field:
            name, _, value = field.partition("=")
            pairs.append((_unquote(name.replace("+", "%20")), _unquote(value.replace("+", "%20"))))
    return pairs


_ISO_SECOND = "%Y-%m-%dT%H:%M:%SZ"


def utc_timestamp(now: datetime | None = None) -> str:
    """ISO 8601 UTC to the second, as both signatures carry it; of ``now``, else of the clock."""
    if now is not None:
        return now.strftime(_ISO_SECOND)
    return _second(int(time.time()))


@functools.lru_cache(maxsize=1)
def _second(epoch: int) -> str:
    """The clock's second as text, formatted once: ``strftime`` for every call (glibc consults the
    time zone each time) was two fifths of a V3 signature's samples."""
    return time.strftime(_ISO_SECOND, time.gmtime(epoch))


class _Nonces:
    """Nonces that never repeat: a random prefix drawn once per process (and again in a forked
    child), then a counter. A nonce only has to be new to the gateway, which refuses a repeat for
    15 minutes; it is no secret, so a call does not need a read of the system's random source."""

    def __init__(self) -> None:
        self._draw()
        os.register_at_fork(after_in_child=self._draw)

    def _draw(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._count = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._count):016x}"


new_nonce = _Nonces()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical_query(params: Iterable[tuple[str, str]]) -> str:
    return query_string(sorted(params))


# --- V1 -----------------------------------------------------------------------------------------


def v1_string_to_sign(method: str, params: Iterable[tuple[str, str]]) -> str:
    """``METHOD&%2F&pe(sorted canonical query)`` over query and form-body parameters alike."""
    pairs = [(k, v) for k, v in params if k != "Signature"]
    return f"{method.upper()}&{percent_encode('/')}&{percent_encode(_canonical_query(pairs))}"


def v1_signature(secret: str, method: str, params: Iterable[tuple[str, str]]) -> str:
    digest = hmac.new(
        f"{secret}&".encode(), v1_string_to_sign(method, params).encode(), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode()


def v1_common_params(
    action: str, version: str, access_key_id: str, *, nonce: str | None = None, timestamp: str | None = None
) -> dict[str, str]:
    """The common query parameters a V1 request carries besides its own."""
    return {
        "Action": action,
        "Version": version,
        "Format": "JSON",
        "AccessKeyId": access_key_id,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": nonce or new_nonce(),
        "Timestamp": timestamp or utc_timestamp(),
    }


# --- V3 -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class V3Request:
    """What a V3 signature covers. ``headers`` keys are lower-case; ``query`` is decoded."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: Mapping[str, str]
    body: bytes


def v3_canonical_request(req: V3Request, signed_headers: list[str]) -> str:
    canonical_headers = "".join(f"{h}:{req.headers[h].strip()}\n" for h in signed_headers)
    return "\n".join(
        [
            req.method.upper(),
            req.path or "/",
            _canonical_query(req.query),
            canonical_headers,
            ";".join(signed_headers),
            req.headers.get("x-acs-content-sha256") or sha256_hex(req.body),
        ]
    )


def v3_signature(secret: str, req: V3Request, signed_headers: list[str]) -> str:
    canonical = v3_canonical_request(req, signed_headers)
    string_to_sign = f"{V3_ALGORITHM}\n{sha256_hex(canonical.encode())}"
    return hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


def v3_sign(
    access_key_id: str,
    secret: str,
    *,
    method: str,
    host: str,
    action: str,
    version: str,
    query: Mapping[str, str] | None = None,
    body: bytes = b"",
    content_type: str | None = None,
    nonce: str | None = None,
    date: str | None = None,
) -> dict[str, str]:
    """Return the headers (Authorization included) that sign this request under V3."""
    headers = {
        "host": host,
        "x-acs-action": action,
        "x-acs-version": version,
        "x-acs-date": date or utc_timestamp(),
        "x-acs-signature-nonce": nonce or new_nonce(),
        "x-acs-content-sha256": sha256_hex(body),
        "accept": "application/json",
    }
    if content_type:
        headers["content-type"] = content_type
    signed = sorted(headers)
    req = V3Request(method, "/", tuple((query or {}).items()), headers, body)
    sig = v3_signature(secret, req, signed)
    headers["authorization"] = (
        f"{V3_ALGORITHM} Credential={access_key_id},SignedHeaders={';'.join(signed)},Signature={sig}"
    )
    return headers


# --- verification (sandbox side) ----------------------------------------------------------------


class SignatureError(Exception):
    """A request failed verification; ``code`` is the gateway's error code for it."""

    def __init__(self, code: str, message: str, *, access_key_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.access_key_id = access_key_id


@dataclass(frozen=True, slots=True)
class Verified:
    """Who signed a request, with which algorithm, and the replay-relevant facts of it."""

    access_key_id: str
    version: str  # "v1" or "v3"
    nonce: str
    timestamp: datetime


REQUIRED_V3_HEADERS = frozenset(
    {"host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"}
)


_TIMESTAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)Z")


def _parse_time(value: str) -> datetime:
    """``%Y-%m-%dT%H:%M:%SZ`` exactly (``strptime`` was a twentieth of a sandbox call)."""
    m = _TIMESTAMP.fullmatch(value)
    try:
        if m is not None:
            year, month, day, hour, minute, second = (int(g) for g in m.groups())
            return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        pass  # 2024-02-30 and the like
    raise SignatureError(
        "InvalidTimeStamp.Format", f"Specified time stamp or date value is not well formatted: {value}"
    )


def verify(
    *,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    form: list[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
    secret_for: Mapping[str, str],
) -> Verified:
    """Verify a V1 or V3 request (dispatching on the ``Authorization`` header) or raise.

    ``headers`` must have lower-case keys. ``secret_for`` maps access key ids to secrets. Replay
    (timestamp skew, nonce reuse) is the caller's policy; the facts for it are returned.
    """
    auth = headers.get("authorization", "")
    if auth.startswith(V3_ALGORITHM):
        return _verify_v3(method, path, query, headers, body, auth, secret_for)
    params = query + form
    given = next((v for k, v in params if k == "Signature"), None)
    if given is None:
        raise SignatureError("MissingSignature", "Signature is mandatory for this action.")
    values = dict(params)
    ak = values.get("AccessKeyId", "")
    if values.get("SignatureMethod") != "HMAC-SHA1" or values.get("SignatureVersion") != "1.0":
        raise SignatureError(
            "IncompleteSignature", "The request signature does not conform to Aliyun standards."
        )
    if ak not in secret_for:
        raise SignatureError("InvalidAccessKeyId.NotFound", "Specified access key is not found.")
    expected = v1_signature(secret_for[ak], method, params)
    if not hmac.compare_digest(expected, given):
        sts = v1_string_to_sign(method, params)
        raise SignatureError(
            "SignatureDoesNotMatch",
            f"Specified signature is not matched with our calculation. server string to sign is:{sts}",
            access_key_id=ak,
        )
    return Verified(ak, "v1", values.get("SignatureNonce", ""), _parse_time(values.get("Timestamp", "")))


def _verify_v3(
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: Mapping[str, str],
    body: bytes,
    auth: str,
    secret_for: Mapping[str, str],
) -> Verified:
    try:
        fields = dict(p.strip().split("=", 1) for p in auth.split(" ", 1)[1].split(","))
        ak, signed, given = fields["Credential"], fields["SignedHeaders"].split(";"), fields["Signature"]
    except (IndexError, KeyError, ValueError) as exc:
        raise SignatureError("IncompleteSignature", "The Authorization header is malformed.") from exc
    missing = REQUIRED_V3_HEADERS - set(signed)
    if missing or any(h not in headers for h in signed):
        raise SignatureError(
            "IncompleteSignature", f"The request signature does not sign required headers: {sorted(missing)}"
        )
    if sha256_hex(body) != headers["x-acs-content-sha256"]:
        raise SignatureError("SignatureDoesNotMatch", "x-acs-content-sha256 does not match the request body.")
    if ak not in secret_for:
        raise SignatureError("InvalidAccessKeyId.NotFound", "Specified access key is not found.")
    req = V3Request(method, path, tuple(query), headers, body)
    if not hmac.compare_digest(v3_signature(secret_for[ak], req, signed), given):
        canonical = v3_canonical_request(req, signed)
        raise SignatureError(
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation. server string to sign is:"
            f"{V3_ALGORITHM}\n{sha256_hex(canonical.encode())}",
            access_key_id=ak,
        )
    return Verified(ak, "v3", headers["x-acs-signature-nonce"], _parse_time(headers["x-acs-date"]))
