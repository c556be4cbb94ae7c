"""nats-server auth callout, the bytes: the server's authorization request and our answer.

With ``authorization { auth_callout { issuer, auth_users } }`` in its config, nats-server
hands every connection whose user is not one of ``auth_users`` to a service subscribed on
``$SYS.REQ.USER.AUTH`` (nats-server ``server/auth_callout.go``). The request is a JWT signed
by the server's own key: the client's ``connect_opts`` (its ``nkey`` and ``sig``, the
signature over the server's nonce, which the server does **not** check for a user it does not
know: ``client_info.nonce`` carries the nonce so the service can) and a fresh ``user_nkey``
the answer must name. The answer is an authorization-response JWT signed by the issuer
account key: for the server (``aud`` its id), about ``user_nkey``, holding a user JWT with the
permissions or an error.

A JWT is ``base64url(header).base64url(claims).base64url(signature)``, the Ed25519 signature
over the first two parts, header ``{"typ":"JWT","alg":"ed25519-nkey"}`` (nats-io/jwt v2).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Final

import nacl.exceptions
import nacl.signing
import nkeys

from bus.errors import BusError

AUTH_SUBJECT: Final = "$SYS.REQ.USER.AUTH"
GLOBAL_ACCOUNT: Final = "$G"
"""Where the callout places users in server-config mode (the account ``aud`` names)."""
_HEADER: Final = {"typ": "JWT", "alg": "ed25519-nkey"}
NO_LIMIT: Final = -1


class CalloutError(BusError):
    """An authorization request that is not one: malformed, or not signed by a server."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise CalloutError("not base64url") from None


def public_key_bytes(text: str, prefix: int) -> bytes:
    """The raw Ed25519 key of an nkey public key (``U...``, ``A...``, ``N...``) of ``prefix``."""
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError, TypeError):
        raise CalloutError(f"{text[:12]!r} is not an nkey") from None
    if len(raw) != 35 or raw[0] != prefix:
        raise CalloutError(f"{text[:12]!r} is not the expected kind of nkey")
    if bytes(nkeys.crc16_checksum(bytearray(raw[:33]))) != raw[33:]:
        raise CalloutError(f"{text[:12]!r}: nkey checksum does not match")
    return raw[1:33]


def _verify(key: bytes, signature: bytes, data: bytes) -> bool:
    try:
        nacl.signing.VerifyKey(key).verify(data, signature)
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        return False
    return True


def encode_jwt(claims: dict[str, Any], signer: Any) -> str:
    """Sign ``claims`` with ``signer`` (an ``nkeys.KeyPair``) as its ``iss``; adds ``jti``
    and ``iat`` as nats-io/jwt does."""
    body = {"iat": int(time.time()), **claims, "iss": signer.public_key.decode()}
    body["jti"] = ""
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()
    body["jti"] = base64.b32encode(digest).decode().rstrip("=")
    head = _b64url(json.dumps(_HEADER, separators=(",", ":")).encode())
    payload = _b64url(json.dumps(body, separators=(",", ":")).encode())
    signature = signer.sign(f"{head}.{payload}".encode())
    return f"{head}.{payload}.{_b64url(bytes(signature))}"


def decode_jwt(token: str, issuer_prefix: int) -> dict[str, Any]:
    """The claims of ``token``, its signature verified against its own ``iss`` (a key of
    ``issuer_prefix``); ``CalloutError`` otherwise."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise CalloutError("a JWT has three parts")
    try:
        header = json.loads(_unb64url(parts[0]))
        claims = json.loads(_unb64url(parts[1]))
    except ValueError:
        raise CalloutError("JWT header or claims are not JSON") from None
    if not isinstance(header, dict) or not str(header.get("alg", "")).startswith("ed25519"):
        raise CalloutError("JWT is not signed with ed25519-nkey")
    if not isinstance(claims, dict) or not isinstance(claims.get("iss"), str):
        raise CalloutError("JWT has no issuer")
    key = public_key_bytes(claims["iss"], issuer_prefix)
    if not _verify(key, _unb64url(parts[2]), f"{parts[0]}.{parts[1]}".encode()):
        raise CalloutError("JWT signature does not verify")
    return claims


@dataclass(frozen=True)
class AuthRequest:
    """What the server asks about one connection."""

    server_id: str
    user_nkey: str
    """The key the answer must be about (the server made it for this connection)."""
    client_id: int
    client_nkey: str
    signed_nonce: str
    nonce: str
    name: str

    def client_key_problem(self) -> str | None:
        """Why the client has not proven it holds ``client_nkey`` (None when it has): its
        ``sig`` must verify over the nonce the server sent it."""
        if not self.client_nkey:
            return "no nkey presented"
        if not self.nonce or not self.signed_nonce:
            return "no signed nonce"
        try:
            key = public_key_bytes(self.client_nkey, nkeys.PREFIX_BYTE_USER)
        except CalloutError as exc:
            return str(exc)
        signature = b""
        for decode in (_unb64url, base64.b64decode):
            try:
                signature = decode(self.signed_nonce)
                break
            except (CalloutError, binascii.Error, ValueError):
                continue
        if len(signature) != 64 or not _verify(key, signature, self.nonce.encode()):
            return "the signed nonce does not verify against the nkey"
        return None


def parse_request(token: bytes | str) -> AuthRequest:
    """An authorization request JWT, its server signature verified."""
    text = token.decode(errors="replace") if isinstance(token, bytes) else token
    claims = decode_jwt(text, nkeys.PREFIX_BYTE_SERVER)
    nats = claims.get("nats")
    if not isinstance(nats, dict) or nats.get("type") != "authorization_request":
        raise CalloutError("not an authorization request")
    server = nats.get("server_id") or {}
    client = nats.get("client_info") or {}
    opts = nats.get("connect_opts") or {}
    if server.get("id") != claims["iss"]:
        raise CalloutError("the request is not signed by the server it names")
    return AuthRequest(
        server_id=str(server.get("id", "")),
        user_nkey=str(nats.get("user_nkey", "")),
        client_id=int(client.get("id") or 0),
        client_nkey=str(opts.get("nkey", "")),
        signed_nonce=str(opts.get("sig", "")),
        nonce=str(client.get("nonce", "")),
        name=str(opts.get("name", "")),
    )


def user_permissions(perms: dict[str, Any]) -> dict[str, Any]:
    """nats-server config permissions (``publish``/``subscribe`` allow/deny lists,
    ``allow_responses``) as a user JWT's ``pub``/``sub``/``resp``."""
    out: dict[str, Any] = {}
    for config, claim in (("publish", "pub"), ("subscribe", "sub")):
        section = perms.get(config)
        if isinstance(section, list):
            section = {"allow": section}
        if isinstance(section, dict):
            out[claim] = {k: list(v) for k, v in section.items() if k in ("allow", "deny") and v}
    responses = perms.get("allow_responses")
    if responses is True:
        out["resp"] = {"max": 1, "ttl": 0}
    elif isinstance(responses, dict):
        expires = str(responses.get("expires", "0"))
        out["resp"] = {"max": int(responses.get("max", 1)), "ttl": _duration_ns(expires)}
    return out


def _duration_ns(text: str) -> int:
    units = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
    for unit in ("ms", "s", "m", "h"):
        if text.endswith(unit) and text[: -len(unit)].isdigit():
            return int(text[: -len(unit)]) * units[unit]
    return int(text) if text.isdigit() else 0


def allow(request: AuthRequest, issuer: Any, name: str, perms: dict[str, Any]) -> bytes:
    """The answer admitting the connection as ``name`` with config-style ``perms``."""
    user = encode_jwt(
        {
            "sub": request.user_nkey,
            "aud": GLOBAL_ACCOUNT,
            "name": name,
            "nats": {
                **user_permissions(perms),
                "subs": NO_LIMIT,
                "data": NO_LIMIT,
                "payload": NO_LIMIT,
                "type": "user",
                "version": 2,
            },
        },
        issuer,
    )
    return _response(request, issuer, {"jwt": user})


def deny(request: AuthRequest, issuer: Any, reason: str) -> bytes:
    """The answer refusing the connection; the server logs ``reason``."""
    return _response(request, issuer, {"error": reason[:200]})


def _response(request: AuthRequest, issuer: Any, body: dict[str, Any]) -> bytes:
    claims = {
        "sub": request.user_nkey,
        "aud": request.server_id,
        "nats": {**body, "type": "authorization_response", "version": 2},
    }
    return encode_jwt(claims, issuer).encode()
