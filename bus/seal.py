"""Sealing a signed message to one or more members (X25519 + ChaCha20-Poly1305).

A fresh content key encrypts the payload once; the content key is wrapped for each recipient
under a pair key derived (HKDF) from the static X25519 keys of sender and recipient. Pair keys
are cached, so sealing costs two AEAD operations rather than a Diffie-Hellman per message.
The trade-off, acceptable inside a consortium whose members are known: no forward secrecy
against a later theft of a member's key file.

Sign, then seal: the plaintext is a complete ``SignedMessage``, so whoever opens it can still
prove who said it (a client proves the dealer's quote to the authorities).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bus.errors import BusError
from rfq.identity import Directory, Identity


class SealError(BusError):
    """A sealed payload could not be made or opened (not a recipient, tampered, unknown key)."""


class Sealed(msgspec.Struct, array_like=True, frozen=True, tag="x"):
    sender: str
    nonce: bytes
    recipients: tuple[tuple[str, bytes], ...]
    ciphertext: bytes


class Sealer:
    """Seals to, and opens from, the members of a directory on behalf of one identity."""

    def __init__(self, identity: Identity, directory: Directory) -> None:
        self.identity = identity
        self.directory = directory
        self._pair_keys: dict[str, ChaCha20Poly1305] = {}

    def _pair(self, other: str) -> ChaCha20Poly1305:
        cached = self._pair_keys.get(other)
        if cached is not None:
            return cached
        if other not in self.directory:
            raise SealError(f"unknown member {other!r}")
        shared = self.identity.box_key.exchange(self.directory.box_key(other))
        low, high = sorted((self.identity.member_id, other))
        key = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=b"botc-seal",
            info=f"{low}|{high}".encode(),
        ).derive(shared)
        aead = ChaCha20Poly1305(key)
        self._pair_keys[other] = aead
        return aead

    def seal(self, plaintext: bytes, recipients: Iterable[str]) -> Sealed:
        me = self.identity.member_id
        nonce = os.urandom(12)
        content_key = ChaCha20Poly1305.generate_key()
        wrapped = tuple(
            (r, self._pair(r).encrypt(nonce, content_key, f"wrap|{me}|{r}".encode()))
            for r in dict.fromkeys(recipients)
        )
        if not wrapped:
            raise SealError("a sealed payload needs at least one recipient")
        body = ChaCha20Poly1305(content_key).encrypt(nonce, plaintext, f"body|{me}".encode())
        return Sealed(sender=me, nonce=nonce, recipients=wrapped, ciphertext=body)

    def is_recipient(self, sealed: Sealed) -> bool:
        return any(r == self.identity.member_id for r, _ in sealed.recipients)

    def open(self, sealed: Sealed) -> bytes:
        me = self.identity.member_id
        wrapped = next((w for r, w in sealed.recipients if r == me), None)
        if wrapped is None:
            raise SealError(f"{me} is not a recipient")
        try:
            content_key = self._pair(sealed.sender).decrypt(
                sealed.nonce, wrapped, f"wrap|{sealed.sender}|{me}".encode()
            )
            return ChaCha20Poly1305(content_key).decrypt(
                sealed.nonce, sealed.ciphertext, f"body|{sealed.sender}".encode()
            )
        except (InvalidTag, ValueError) as exc:
            raise SealError("sealed payload does not open (tampered or wrong key)") from exc
