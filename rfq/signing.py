"""The signed message: what every member says on the bus and what transactions are made of.

A ``SignedMessage`` carries the sender, a per-sender strictly increasing nonce, a timestamp,
an expiry, the payload's kind and its msgpack bytes, and an Ed25519 signature over the
canonical encoding of all of those (plus the network's chain id, so a message cannot be
replayed into another network). It is pure data: the ledger verifies the dealer's signed quote
and the client's signed accept inside a trade transaction with the same function the bus uses.
Stateful checks (clock, replays, counting) live in ``bus.envelope``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from rfq.identity import Directory, Identity, verify_signature

_encoder = msgspec.msgpack.Encoder()


def tx_id(data: bytes) -> bytes:
    """A transaction's id: the SHA-256 of its encoded signed message. The one definition:
    ledgers, mempools, receipts, the bank and clients all name a transaction by it."""
    return hashlib.sha256(data).digest()


class SignedMessage(msgspec.Struct, array_like=True, frozen=True, tag="s"):
    """One signed statement by one member. ``body`` is the msgpack of a payload Struct."""

    chain_id: str
    sender: str
    nonce: int
    timestamp_ms: int
    expires_ms: int
    kind: str
    body: bytes
    signature: bytes = b""

    def signing_bytes(self) -> bytes:
        return _encoder.encode(
            (
                self.chain_id,
                self.sender,
                self.nonce,
                self.timestamp_ms,
                self.expires_ms,
                self.kind,
                self.body,
            )
        )

    @property
    def digest(self) -> bytes:
        """Identifies the statement (signature included): the id of a transaction made of it."""
        return tx_id(_encoder.encode(self))


def kind_of(payload: msgspec.Struct) -> str:
    """The tag of a payload Struct, which the envelope repeats as ``kind``."""
    tag = type(payload).__struct_config__.tag
    if not isinstance(tag, str):
        raise TypeError(f"{type(payload).__name__} has no string tag")
    return tag


def sign_payload(
    identity: Identity,
    payload: msgspec.Struct,
    *,
    chain_id: str,
    nonce: int,
    timestamp_ms: int,
    expires_ms: int,
) -> SignedMessage:
    unsigned = SignedMessage(
        chain_id=chain_id,
        sender=identity.member_id,
        nonce=nonce,
        timestamp_ms=timestamp_ms,
        expires_ms=expires_ms,
        kind=kind_of(payload),
        body=_encoder.encode(payload),
    )
    return msgspec.structs.replace(unsigned, signature=identity.sign(unsigned.signing_bytes()))


def signature_valid(message: SignedMessage, directory: Directory) -> bool:
    """True when the sender is known and the signature is theirs."""
    if message.sender not in directory:
        return False
    return verify_signature(
        directory.verify_key(message.sender), message.signature, message.signing_bytes()
    )


def encode(obj: Any) -> bytes:
    return _encoder.encode(obj)
