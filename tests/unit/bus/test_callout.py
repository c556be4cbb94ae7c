"""The auth callout's bytes: JWTs signed and checked as nats-io/jwt v2 does, a client's
signature over the server's nonce, config permissions as user-JWT permissions."""

from __future__ import annotations

import base64
import json
import os

import nkeys
import pytest

from bus.callout import (
    AuthRequest,
    CalloutError,
    allow,
    decode_jwt,
    deny,
    encode_jwt,
    parse_request,
    user_permissions,
)
from rfq.identity import Identity, Role


def keypair(prefix: int) -> nkeys.KeyPair:
    return nkeys.from_seed(bytearray(nkeys.encode_seed(os.urandom(32), prefix)))


SERVER = keypair(nkeys.PREFIX_BYTE_SERVER)
ISSUER = keypair(nkeys.PREFIX_BYTE_ACCOUNT)


def request_token(client: Identity, nonce: str = "bm9uY2U", *, sig: str | None = None) -> str:
    signature = base64.b64encode(client.sign(nonce.encode())).decode() if sig is None else sig
    server_id = SERVER.public_key.decode()
    claims = {
        "sub": ISSUER.public_key.decode(),
        "aud": "nats-authorization-request",
        "nats": {
            "type": "authorization_request",
            "version": 2,
            "server_id": {"id": server_id, "name": "n1"},
            "user_nkey": keypair(nkeys.PREFIX_BYTE_USER).public_key.decode(),
            "client_info": {"id": 7, "nonce": nonce},
            "connect_opts": {"nkey": client.public_nkey, "sig": signature, "name": "C1"},
        },
    }
    return encode_jwt(claims, SERVER)


def test_a_jwt_round_trips_and_a_changed_claim_no_longer_verifies():
    token = encode_jwt({"sub": "x", "nats": {"type": "user"}}, ISSUER)
    claims = decode_jwt(token, nkeys.PREFIX_BYTE_ACCOUNT)
    assert claims["iss"] == ISSUER.public_key.decode() and claims["jti"]
    head, body, sig = token.split(".")
    forged = json.loads(base64.urlsafe_b64decode(body + "=="))
    forged["sub"] = "y"
    other = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    with pytest.raises(CalloutError, match="does not verify"):
        decode_jwt(f"{head}.{other}.{sig}", nkeys.PREFIX_BYTE_ACCOUNT)
    with pytest.raises(CalloutError, match="expected kind"):
        decode_jwt(token, nkeys.PREFIX_BYTE_SERVER)  # an account signed it, not a server


def test_a_request_names_the_client_and_its_signed_nonce_is_checked():
    client = Identity.generate("C1", Role.CLIENT)
    request = parse_request(request_token(client).encode())
    assert (request.client_id, request.client_nkey, request.name) == (7, client.public_nkey, "C1")
    assert request.client_key_problem() is None
    stolen = Identity.generate("C2", Role.CLIENT)
    wrong = parse_request(request_token(client, sig=request_token(stolen).split(".")[2]))
    assert wrong.client_key_problem() == "the signed nonce does not verify against the nkey"
    unsigned = parse_request(request_token(client, sig=""))
    assert unsigned.client_key_problem() == "no signed nonce"


def test_a_request_not_signed_by_the_server_it_names_is_refused():
    client = Identity.generate("C1", Role.CLIENT)
    token = request_token(client)
    claims = decode_jwt(token, nkeys.PREFIX_BYTE_SERVER)
    impostor = keypair(nkeys.PREFIX_BYTE_SERVER)
    with pytest.raises(CalloutError, match="not signed by the server it names"):
        parse_request(encode_jwt({k: v for k, v in claims.items() if k != "iss"}, impostor))


def answer_claims(answer: bytes) -> dict:
    return decode_jwt(answer.decode(), nkeys.PREFIX_BYTE_ACCOUNT)


def test_an_answer_is_for_the_server_and_the_user_key_it_asked_about():
    request = AuthRequest("NSERVER", "UUSER", 3, "UCLIENT", "", "", "C1")
    perms = {"publish": {"allow": ["otc.tx.C1"]}, "subscribe": {"allow": ["otc.px.*"]}}
    granted = answer_claims(allow(request, ISSUER, "C1", {**perms, "allow_responses": True}))
    assert (granted["sub"], granted["aud"]) == ("UUSER", "NSERVER")
    user = decode_jwt(granted["nats"]["jwt"], nkeys.PREFIX_BYTE_ACCOUNT)
    assert (user["sub"], user["aud"], user["name"]) == ("UUSER", "$G", "C1")
    assert user["nats"]["pub"] == {"allow": ["otc.tx.C1"]}
    assert user["nats"]["resp"] == {"max": 1, "ttl": 0}
    assert user["nats"]["subs"] == -1
    refused = answer_claims(deny(request, ISSUER, "C1 is offboarded on chain"))
    assert refused["nats"]["error"] == "C1 is offboarded on chain"
    assert "jwt" not in refused["nats"]


def test_config_permissions_become_user_jwt_permissions():
    perms = {
        "publish": {"allow": ["a.>"], "deny": ["a.b"]},
        "subscribe": ["c.*"],
        "allow_responses": {"max": 2, "expires": "5s"},
    }
    assert user_permissions(perms) == {
        "pub": {"allow": ["a.>"], "deny": ["a.b"]},
        "sub": {"allow": ["c.*"]},
        "resp": {"max": 2, "ttl": 5 * 10**9},
    }
