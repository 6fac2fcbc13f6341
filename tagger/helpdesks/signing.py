"""How a webhook delivery proves it comes from the helpdesk: the four schemes the adapters use.

Each scheme is a small frozen object holding the secret and the scheme's parameters, with two methods:

- `verify(headers, body, now, query=None)`: accept the delivery or raise `WebhookError(401, reason)`;
- `sign(body, now=...)`: its twin, the headers (for `SharedToken(...).sign(..., via="query")`: the query
  parameters) a sender would send with `body` at time `now`. Tests and tools sign with it.

| scheme | what the sender sends | used by |
|---|---|---|
| `SharedToken` | the secret itself: `X-Tagger-Token`, `Authorization: Bearer`, `?token=` (optionally HTTP Basic) | Freshdesk, LiveAgent, django-helpdesk |
| `Base64Hmac` | `base64(HMAC(secret, [timestamp +] body))`, optionally with a signed timestamp | Zendesk (SHA-256, timestamp), Help Scout (SHA-1) |
| `HexHmac` | `<digest>=<hex HMAC(secret, body)>` | Zammad (`X-Hub-Signature: sha1=...`) |
| `TimestampedSha256` | `sha256=<hex HMAC-SHA256(secret, "{timestamp}." + body)>` + timestamp, or the shared token | Chatwoot, generic |

A signed timestamp is held to the replay window (`tolerance_s`, `TAGGER_SIGNATURE_TOLERANCE_S`). Every
comparison is constant-time; the secret never appears in a scheme's repr.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from tagger.errors import WebhookError
from tagger.helpdesks.payload import get_header

DEFAULT_TOKEN_HEADER = "X-Tagger-Token"
DEFAULT_TOKEN_PARAM = "token"


class Scheme(Protocol):
    """A verification scheme: `verify` a delivery, or `sign` one the way the helpdesk would."""

    def verify(self, headers: Mapping[str, str], body: bytes, now: float,
               query: Mapping[str, str] | None = None) -> None:
        """Return when the delivery is authentic; raise `WebhookError(401, reason)` otherwise."""
        ...

    def sign(self, body: bytes, now: float = 0.0) -> dict[str, str]:
        """The headers a sender would send with `body` at epoch second `now`."""
        ...


# -- primitives ---------------------------------------------------------------------------------------------
def hmac_hex(secret: str, body: bytes, digest: str = "sha256") -> str:
    return hmac.new(secret.encode(), body, getattr(hashlib, digest)).hexdigest()


def hmac_digest(secret: str, message: bytes, digest: str = "sha256") -> bytes:
    return hmac.new(secret.encode(), message, getattr(hashlib, digest)).digest()


def hmac_b64(secret: str, message: bytes, digest: str = "sha256") -> str:
    """base64(HMAC(secret, message)), the form Zendesk and Help Scout put in their signature headers."""
    return base64.b64encode(hmac_digest(secret, message, digest)).decode()


def constant_time_equal(a: str | bytes, b: str | bytes) -> bool:
    """Compare signatures without leaking timing."""
    a = a.encode() if isinstance(a, str) else a
    b = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(a, b)


def check_timestamp(timestamp: float, now: float, tolerance_s: float) -> None:
    """Refuse a signed timestamp outside `now ± tolerance_s` (a replayed or badly delayed delivery)."""
    if abs(now - timestamp) > tolerance_s:
        raise WebhookError(401, f"signature timestamp is {int(now - timestamp)} s away from now "
                                f"(tolerance {int(tolerance_s)} s): stale or replayed delivery")


def basic_auth_credentials(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic ...` header, or None."""
    value = get_header(headers, "Authorization") or ""
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def shared_token_ok(headers: Mapping[str, str], query: Mapping[str, str] | None, secret: str, *,
                    header: str = DEFAULT_TOKEN_HEADER, param: str = DEFAULT_TOKEN_PARAM,
                    basic: bool = False) -> bool:
    """True when the shared token arrived in the header, the query string or (if `basic`) HTTP Basic auth.

    For helpdesks that cannot sign their webhooks. Every comparison is constant-time.
    """
    candidates: list[str] = []
    value = get_header(headers, header)
    if value:
        candidates.append(value)
    auth = get_header(headers, "Authorization") or ""
    if auth[:7].lower() == "bearer ":
        candidates.append(auth[7:].strip())
    if query is not None:
        token = query.get(param)
        if isinstance(token, str) and token:
            candidates.append(token)
    if basic:
        creds = basic_auth_credentials(headers)
        if creds:
            candidates.extend(c for c in creds if c)
    ok = False
    for candidate in candidates:
        ok |= constant_time_equal(candidate, secret)   # no short-circuit: same work for every candidate
    return ok


def epoch_text(now: float) -> str:
    """Epoch seconds as the integer text the timestamp headers carry (`1700000000`)."""
    return str(int(now))


# -- the four schemes ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SharedToken:
    """For helpdesks that cannot sign: the secret itself, in the `header` (`X-Tagger-Token`), as
    `Authorization: Bearer <secret>`, as the `param` of the query string (`?token=`) or, when `basic`, as the
    user or password of HTTP Basic auth. `refusal` is the 401 reason when none of them carries it."""

    secret: str = field(repr=False)
    refusal: str = "the shared token (X-Tagger-Token header, Authorization: Bearer or ?token=) is missing or wrong"
    header: str = DEFAULT_TOKEN_HEADER
    param: str = DEFAULT_TOKEN_PARAM
    basic: bool = False

    def verify(self, headers: Mapping[str, str], body: bytes, now: float,
               query: Mapping[str, str] | None = None) -> None:
        if not shared_token_ok(headers, query, self.secret, header=self.header, param=self.param,
                               basic=self.basic):
            raise WebhookError(401, self.refusal)

    def sign(self, body: bytes = b"", now: float = 0.0, *, via: str = "header") -> dict[str, str]:
        """What a sender sends `via` `header` (the token header), `bearer`, `basic` (user `tagger`, the token as
        password) or `query` (then the query parameters, not headers). The body and time are not covered."""
        if via == "header":
            return {self.header: self.secret}
        if via == "bearer":
            return {"Authorization": f"Bearer {self.secret}"}
        if via == "basic":
            return {"Authorization": "Basic " + base64.b64encode(f"tagger:{self.secret}".encode()).decode()}
        if via == "query":
            return {self.param: self.secret}
        raise ValueError(f"via must be header, bearer, basic or query, not {via!r}")


@dataclass(frozen=True)
class Base64Hmac:
    """`header: base64(HMAC-<digest>(secret, body))`; with a `timestamp_header`, the HMAC covers the timestamp's
    text followed by the body, and the timestamp (read by `read_timestamp`) is held to `now ± tolerance_s`.
    `who` names the sender in the refusal ("Zendesk webhook signature does not match")."""

    secret: str = field(repr=False)
    header: str
    who: str = "webhook"
    digest: str = "sha256"
    timestamp_header: str | None = None
    tolerance_s: float = 300.0
    read_timestamp: Callable[[str], float] = float
    write_timestamp: Callable[[float], str] = epoch_text

    def verify(self, headers: Mapping[str, str], body: bytes, now: float,
               query: Mapping[str, str] | None = None) -> None:
        signature = get_header(headers, self.header)
        timestamp = (get_header(headers, self.timestamp_header) or "") if self.timestamp_header else ""
        if not signature or (self.timestamp_header and not timestamp):
            raise WebhookError(401, f"missing {self.header} or {self.timestamp_header} header" if self.timestamp_header
                               else f"missing {self.header} header")
        if not constant_time_equal(hmac_b64(self.secret, timestamp.encode() + body, self.digest), signature.strip()):
            raise WebhookError(401, f"{self.who} signature does not match")
        if self.timestamp_header:
            check_timestamp(self.read_timestamp(timestamp), now, self.tolerance_s)

    def sign(self, body: bytes, now: float = 0.0) -> dict[str, str]:
        if not self.timestamp_header:
            return {self.header: hmac_b64(self.secret, body, self.digest)}
        timestamp = self.write_timestamp(now)
        return {self.header: hmac_b64(self.secret, timestamp.encode() + body, self.digest),
                self.timestamp_header: timestamp}


@dataclass(frozen=True)
class HexHmac:
    """`header: <digest>=<hex HMAC-<digest>(secret, body)>`, GitHub's `X-Hub-Signature` form (Zammad's, SHA-1).
    Nothing but the body is signed, so there is no replay window: replays are caught by the event id."""

    secret: str = field(repr=False)
    header: str
    who: str = "webhook"
    digest: str = "sha1"

    def verify(self, headers: Mapping[str, str], body: bytes, now: float,
               query: Mapping[str, str] | None = None) -> None:
        signature = (get_header(headers, self.header) or "").strip()
        algo, _, digest = signature.partition("=")
        if algo.lower() != self.digest or not digest:
            raise WebhookError(401, f"missing or malformed {self.header} (expected {self.digest}=<hex>)")
        if not constant_time_equal(hmac_hex(self.secret, body, self.digest), digest.lower()):
            raise WebhookError(401, f"{self.who} signature does not match")

    def sign(self, body: bytes, now: float = 0.0) -> dict[str, str]:
        return {self.header: f"{self.digest}={hmac_hex(self.secret, body, self.digest)}"}


@dataclass(frozen=True)
class TimestampedSha256:
    """`signature_header: sha256=<hex HMAC-SHA256(secret, "{timestamp}." + body)>` with the epoch seconds in
    `timestamp_header`, held to `now ± tolerance_s` (Chatwoot's scheme, and our generic adapter's). Senders that
    cannot sign may send the shared token instead (`X-Tagger-Token`, `Authorization: Bearer` or `?token=`)."""

    secret: str = field(repr=False)
    signature_header: str
    timestamp_header: str
    tolerance_s: float = 300.0
    who: str = "webhook"

    def verify(self, headers: Mapping[str, str], body: bytes, now: float,
               query: Mapping[str, str] | None = None) -> None:
        signature = get_header(headers, self.signature_header)
        if signature is None:
            if shared_token_ok(headers, query, self.secret):
                return
            raise WebhookError(401, f"no {self.signature_header} and no shared token (X-Tagger-Token or ?token=)")
        timestamp = (get_header(headers, self.timestamp_header) or "").strip()
        algo, _, digest = signature.strip().partition("=")
        if algo.lower() != "sha256" or not digest or not timestamp:
            raise WebhookError(401, f"malformed {self.signature_header} (sha256=<hex>) or missing "
                                    f"{self.timestamp_header}")
        if not constant_time_equal(hmac_hex(self.secret, timestamp.encode() + b"." + body), digest.lower()):
            raise WebhookError(401, f"{self.who} signature does not match")
        try:
            ts = float(timestamp)
        except ValueError as exc:
            raise WebhookError(401, f"unreadable {self.timestamp_header}: {timestamp[:40]!r}") from exc
        check_timestamp(ts, now, self.tolerance_s)

    def sign(self, body: bytes, now: float = 0.0) -> dict[str, str]:
        timestamp = epoch_text(now)
        return {self.signature_header: "sha256=" + hmac_hex(self.secret, timestamp.encode() + b"." + body),
                self.timestamp_header: timestamp}


__all__ = ["Scheme", "SharedToken", "Base64Hmac", "HexHmac", "TimestampedSha256", "hmac_hex", "hmac_digest",
           "hmac_b64", "constant_time_equal", "check_timestamp", "basic_auth_credentials", "shared_token_ok",
           "epoch_text", "DEFAULT_TOKEN_HEADER", "DEFAULT_TOKEN_PARAM"]
