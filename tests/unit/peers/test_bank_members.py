"""The bank opens an account only for a member the chain is proven to know."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import msgspec
import pytest

from bus.envelope import Outbox
from peers.bank import BankBooks, BankConfig, BankService
from peers.ledger_client import LedgerClient
from peers.netdir import create_network
from rfq.contracts.model import PaymentKind
from rfq.identity import Role
from rfq.ledger.light import Verified
from rfq.ledger.proof import ProofResult
from rfq.ledger.state import Governance, Payment, Receipt
from rfq.ledger.tx import PaymentFailed
from rfq.money import to_micros as M
from rfq.queries import PaymentsReply


class ProvenLedger(LedgerClient):
    """A ledger client that has already verified what it returns: one pending instruction
    and the registry entries of ``members`` (any other id proven absent)."""

    def __init__(self, bus, genesis, instruction: Payment, members: dict) -> None:
        super().__init__(bus, genesis)
        self.instruction = instruction
        self.members = members
        self.submitted: list[bytes] = []

    async def query_all(self, query, kind, **_):
        pending = (self.instruction,) if query.status == "pending" else ()
        return PaymentsReply(pending, len(pending))

    async def prove(self, component, keys, **_):
        entries = {
            (component, k): ProofResult(
                component,
                k,
                msgspec.msgpack.encode(self.members[k]) if k in self.members else None,
                7,
                0,
            )
            for k in keys
        }
        return Verified(7, 0, b"\0" * 32, Governance(authorities=()), entries)

    async def final_receipts(self, tx_ids, **_) -> dict[str, Receipt]:
        return {}

    async def submit_signed(self, signed) -> str:
        self.submitted.append(signed)
        return "00"


@pytest.fixture
def net(tmp_path):
    return create_network(tmp_path / "net")


def bank_with(net, instruction: Payment, members: dict) -> tuple[BankService, ProvenLedger]:
    genesis = net.genesis()
    identity = net.identity("BANK")
    bus = SimpleNamespace(
        identity=SimpleNamespace(role=Role.BANK),
        member_id="BANK",
        outbox=Outbox(identity, genesis.chain_id),
    )
    ledger = ProvenLedger(bus, genesis, instruction, members)
    bank = BankService(bus, genesis, BankBooks(":memory:"), config=BankConfig(), ledger=ledger)  # type: ignore[arg-type]
    bank.open_accounts()
    return bank, ledger


def test_an_instruction_paying_a_member_proven_absent_opens_no_account_and_is_failed(net):
    stranger = Payment("k/settlement/1", "k", PaymentKind.SETTLEMENT, "C1", "ZZ_NOBODY", M(10), 3)
    bank, ledger = bank_with(net, stranger, {})
    asyncio.run(bank.poll())
    assert "ZZ_NOBODY" not in bank.balances()
    assert bank.books.journal() == [] and bank.stats["unknown_member"] == 1
    [failure] = ledger.submitted
    notice = msgspec.msgpack.decode(failure.body, type=PaymentFailed)
    assert notice.reason == "unexecutable: ZZ_NOBODY is not a member of the network"


def test_a_member_admitted_after_the_genesis_gets_the_account_its_proven_role_opens(net):
    c9 = msgspec.structs.replace(net.genesis().member("C1"), id="C9")
    pays = Payment("k/settlement/1", "k", PaymentKind.SETTLEMENT, "C9", "D1", M(10), 3)
    bank, _ = bank_with(net, pays, {"C9": c9})
    asyncio.run(bank.poll())
    assert bank.balances()["C9"] == M(BankConfig().client_balance) - M(10)
    assert [e.instruction_id for e in bank.books.journal()] == [pays.id]
