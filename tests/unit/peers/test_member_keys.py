"""A peer learns a member admitted after the genesis from a proof of ``members[id]``, and a
flood of made-up senders cannot make it look up without end (``peers.ledger_client``)."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from bus.client import HeldMail
from peers.ledger_client import LedgerUnavailable, MemberKeys
from rfq.identity import Directory, Identity, Role
from rfq.ledger.light import MEMBERS, Verified
from rfq.ledger.proof import ProofResult


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeBus:
    member_id = "C1"

    def __init__(self) -> None:
        self.directory = Directory(())
        self.held = HeldMail()
        self.redelivered: list[str] = []

    async def redeliver(self, sender: str) -> int:
        self.redelivered.append(sender)
        return len(self.held.take(sender))

    def discard_held(self, sender: str) -> int:
        return self.held.discard(sender)


class FakeLedger:
    """Proves what ``chain`` holds; counts the lookups."""

    def __init__(self, chain: dict[str, Any]) -> None:
        self.bus = FakeBus()
        self.chain = chain
        self.asked: list[str] = []
        self.down = False

    async def prove(self, component: str, keys: Any, *, timeout: float) -> Verified:
        assert component == MEMBERS
        (key,) = keys
        self.asked.append(key)
        if self.down:
            raise LedgerUnavailable("no authority proved it")
        member = self.chain.get(key)
        value = msgspec.msgpack.encode(member) if member is not None else None
        entry = ProofResult(MEMBERS, key, value, 7, 0)
        return Verified(7, 0, b"h" * 32, None, {(MEMBERS, key): entry})  # type: ignore[arg-type]


def learner(chain: dict[str, Any], **options: Any) -> tuple[MemberKeys, FakeLedger, Clock]:
    ledger = FakeLedger(chain)
    clock = Clock()
    keys = MemberKeys(ledger, clock=clock, **options)  # type: ignore[arg-type]
    return keys, ledger, clock


def arrive(keys: MemberKeys, sender: str) -> bool:
    """What the bus does with a message from a sender it does not know: hold it only while
    the key is looked up."""
    looking = keys.want(sender)
    if looking:
        keys.ledger.bus.held.hold(sender, "message", 100)
    return looking


async def settle(keys: MemberKeys) -> None:
    while keys._inflight:
        await asyncio.sleep(0)


async def test_a_member_proven_on_chain_joins_the_directory_and_its_held_messages_come_back():
    d4 = Identity.generate("D4", Role.DEALER).member("Dealer D4")
    keys, ledger, _ = learner({"D4": d4})
    assert arrive(keys, "D4") and arrive(keys, "D4")  # held while the one lookup runs
    assert len(ledger.bus.held) == 2
    await settle(keys)
    assert ledger.asked == ["D4"]
    assert ledger.bus.directory.get("D4") == d4
    assert ledger.bus.redelivered == ["D4"] and "D4" not in ledger.bus.held
    assert keys.stats["learned"] == 1


async def test_a_proven_absence_is_remembered_for_a_while_and_its_messages_dropped():
    keys, ledger, clock = learner({}, negative_ttl_s=10.0)
    looked = []
    for _ in range(3):
        looked.append(arrive(keys, "X9"))
        await settle(keys)
    assert looked == [True, False, False]
    assert ledger.asked == ["X9"] and "X9" not in ledger.bus.held
    assert (keys.stats["unknown"], keys.stats["known_absent"]) == (1, 2)
    clock.now += 11  # perhaps admitted since: asked again
    keys.want("X9")
    await settle(keys)
    assert ledger.asked == ["X9", "X9"]


async def test_a_flood_of_made_up_senders_is_looked_up_at_the_rate_only():
    keys, ledger, clock = learner({}, rate_per_s=2.0, burst=5, max_inflight=100)
    held = [arrive(keys, f"X{n}") for n in range(200)]
    assert held.count(True) == 5  # the rest dropped at once, not held
    await settle(keys)
    assert len(ledger.asked) == 5 and keys.stats["rate_limited"] == 195
    clock.now += 1.0
    for n in range(200, 400):
        keys.want(f"X{n}")
    await settle(keys)
    assert len(ledger.asked) == 7


async def test_a_claim_that_cannot_be_a_member_id_is_never_looked_up():
    keys, ledger, _ = learner({})
    for claim in ("", "9X", "x" * 40, "D1.>", "a b"):
        assert not arrive(keys, claim)
    await settle(keys)
    assert ledger.asked == [] and keys.stats["not_an_id"] == 5


async def test_no_authority_answering_drops_the_held_messages_and_is_counted():
    keys, ledger, _ = learner({})
    ledger.down = True
    assert arrive(keys, "D4")
    await settle(keys)
    assert keys.stats["failed"] == 1 and "D4" not in ledger.bus.held


async def test_a_proof_of_another_members_entry_is_not_taken():
    impostor = Identity.generate("D5", Role.DEALER).member("Dealer D5")
    keys, ledger, _ = learner({"D4": impostor})
    keys.want("D4")
    await settle(keys)
    assert "D4" not in ledger.bus.directory and "D5" not in ledger.bus.directory
    assert keys.stats["unknown"] == 1


@pytest.mark.parametrize("senders", [1, 50])
def test_held_mail_is_bounded_in_senders_messages_and_bytes(senders):
    held = HeldMail(max_senders=8, per_sender=4, max_bytes=1000)
    for n in range(200):
        assert held.hold(f"X{n % senders}", n, 30)
    assert len(held) <= 8 * 4 and held.bytes <= 1000
    assert held.bytes == 30 * len(held)
    assert not held.hold("big", "x", 1001)
    newest = f"X{199 % senders}"
    assert newest in held  # the sender heard from last is kept
    assert held.take(newest)[-1] == 199
