"""The ledger state machine, without a server: trades, money, guarantees, defaults, roots."""

from __future__ import annotations

import datetime as dt
import hashlib

import msgspec
import pytest

from rfq.contracts.model import Status
from rfq.identity import Identity, Role
from rfq.ledger.state import CUSTODY, LedgerState
from rfq.ledger.tx import (
    CloseOutRequest,
    CreditEventTx,
    GuaranteeGrant,
    GuaranteeRevoke,
    PaymentConfirmed,
    PaymentFailed,
    PriceFixing,
)
from rfq.messages import Accept, Quote
from rfq.money import to_micros
from rfq.signing import SignedMessage, sign_payload
from rfq.signing import tx_id as tx_id_of

from .harness import CHAIN, T0, TODAY, Chain, make_net, swap_terms, trade_tx


@pytest.fixture
def net():
    return make_net(margin_cure_days=1)


@pytest.fixture
def chain(net):
    return Chain(net)


def asset(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def confirm_all(chain: Chain, kind: str | None = None) -> list:
    pending = [
        p
        for p in chain.state.payments.values()
        if p.status == "pending" and (kind is None or p.kind == kind)
    ]
    at = chain.head.timestamp_ms + 1000
    txs = [
        chain.net.tx("BANK", PaymentConfirmed(p.id, p.amount, f"ref-{p.id}"), at_ms=at)
        for p in pending
    ]
    chain.block(*txs, at_ms=at)
    return pending


def test_client_c1_accepting_d1s_quote_opens_a_live_contract_with_cash_margin(net, chain):
    result = chain.block(trade_tx(net, rfq_id="r1", price=3200, im_rate=0.1))
    [receipt] = result.receipts
    assert receipt.ok, receipt.reason
    assert receipt.refs == ("r1", "r1/initial_margin/1")
    view = chain.state.book.get("r1")
    assert view.status == Status.LIVE
    assert (view.contract.client, view.contract.dealer) == ("C1", "D1")
    margin = chain.state.payments["r1/initial_margin/1"]
    assert (margin.payer, margin.payee, margin.amount) == ("C1", CUSTODY, to_micros(320_000))
    assert chain.state.trades["r1"].cash_margin == to_micros(320_000)


def test_a_dealer_credit_line_reduces_the_cash_margin(net, chain):
    chain.block(trade_tx(net, rfq_id="r1", price=3200, im_rate=0.1, credit_line=120_000))
    assert chain.state.payments["r1/initial_margin/1"].amount == to_micros(200_000)


def test_a_second_accept_of_one_rfq_is_rejected_and_the_rest_of_the_block_commits(net, chain):
    first = trade_tx(net, rfq_id="r1", dealer="D1")
    second = trade_tx(net, rfq_id="r1", dealer="D2")
    other = trade_tx(net, rfq_id="r2", client="C2", dealer="D3")
    result = chain.block(first, second, other)
    assert [r.ok for r in result.receipts] == [True, False, True]
    assert "already traded" in result.receipts[1].reason
    assert chain.state.trades["r1"].dealer == "D1"
    assert "r2" in chain.state.trades


def test_an_expired_quote_is_rejected(net, chain):
    stale = trade_tx(net, rfq_id="r1", at_ms=T0, valid_ms=1000, accept_at_ms=T0 + 500)
    result = chain.block(stale, at_ms=T0 + 10_000)
    assert not result.receipts[0].ok
    assert "expired" in result.receipts[0].reason
    assert "r1" not in chain.state.trades


def test_an_accept_signed_after_the_quote_lapsed_is_rejected(net, chain):
    late = trade_tx(net, rfq_id="r1", valid_ms=1000, accept_at_ms=T0 + 2000)
    result = chain.block(late, at_ms=T0 + 2500)
    assert "after the quote's validity" in result.receipts[0].reason


def test_a_bad_signature_an_unknown_sender_and_the_wrong_role_are_rejected(net, chain):
    good = net.sign("ORACLE", PriceFixing(TODAY, (("RB2705", 3100.0),)), at_ms=T0)
    tampered = msgspec.structs.replace(
        good, body=msgspec.msgpack.encode(PriceFixing(TODAY, (("RB2705", 1.0),)))
    )
    stranger = Identity.generate("MALLORY", Role.ORACLE)
    unknown = sign_payload(
        stranger,
        PriceFixing(TODAY, ()),
        chain_id=CHAIN,
        nonce=1,
        timestamp_ms=T0,
        expires_ms=T0 + 9_000_000,
    )
    wrong_role = net.sign("C1", PriceFixing(TODAY, (("RB2705", 1.0),)), at_ms=T0)
    result = chain.block(
        *(msgspec.msgpack.encode(m) for m in (tampered, unknown, wrong_role)), b"junk"
    )
    reasons = [r.reason for r in result.receipts]
    assert reasons[0] == "bad signature"
    assert reasons[1] == "unknown sender 'MALLORY'"
    assert reasons[2] == "a client may not submit 'fixing_tx'"
    assert reasons[3].startswith("malformed")
    assert not any(r.ok for r in result.receipts)
    assert chain.state.book.fixing("RB2705", TODAY) is None


def test_a_quote_forged_in_another_dealers_name_is_rejected(net, chain):
    quote = Quote("r1-D1", "r1", "C1", "D1", swap_terms(), 1.0, T0 + 30_000, 0.0, 0.0)
    forged = net.sign("D2", quote, at_ms=T0)  # D2 signs a quote naming D1
    accept = Accept("r1", "r1-D1", "C1", "D1", forged)
    result = chain.block(net.tx("C1", accept, at_ms=T0 + 10))
    assert "in the name of D1, signed by D2" in result.receipts[0].reason


def test_client_c2_cannot_accept_a_quote_made_for_c1(net, chain):
    tx = trade_tx(net, rfq_id="r1", client="C1")
    signed = msgspec.msgpack.decode(tx, type=SignedMessage)
    c1_accept = msgspec.msgpack.decode(signed.body, type=Accept)
    stolen = msgspec.structs.replace(c1_accept, client="C2")
    result = chain.block(net.tx("C2", stolen, at_ms=T0 + 10))
    assert "addressed to C1, not C2" in result.receipts[0].reason


def test_a_replayed_transaction_is_a_duplicate(net, chain):
    tx = trade_tx(net, rfq_id="r1")
    assert chain.block(tx).receipts[0].ok
    again = chain.block(tx)
    assert again.receipts[0].reason == "duplicate: already committed"


def test_a_payment_confirmed_twice_is_refused_and_state_is_unchanged(net, chain):
    chain.block(trade_tx(net, rfq_id="r1"))
    confirm = net.tx(
        "BANK", PaymentConfirmed("r1/initial_margin/1", to_micros(320_000), "b1"), at_ms=T0 + 2000
    )
    assert chain.block(confirm).receipts[0].ok
    assert chain.state.custody["C1"] == to_micros(320_000)
    root = chain.state.payments.digest()
    replay = net.tx(
        "BANK", PaymentConfirmed("r1/initial_margin/1", to_micros(320_000), "b2"), at_ms=T0 + 3000
    )
    result = chain.block(replay)
    assert result.receipts[0].reason == "payment r1/initial_margin/1 is already confirmed"
    assert chain.state.payments.digest() == root
    assert chain.state.custody["C1"] == to_micros(320_000)


def test_a_confirmation_for_the_wrong_amount_is_refused(net, chain):
    chain.block(trade_tx(net, rfq_id="r1"))
    wrong = net.tx(
        "BANK", PaymentConfirmed("r1/initial_margin/1", to_micros(1), "b1"), at_ms=T0 + 2000
    )
    assert "instructed" in chain.block(wrong).receipts[0].reason


class TestGuarantees:
    def grant(
        self, net, gid, *, client="C1", line=1e6, name="warehouse-7", value=2e6, guarantor="G1"
    ):
        return net.tx(
            guarantor,
            GuaranteeGrant(gid, client, to_micros(line), asset(name), to_micros(value)),
            at_ms=T0,
        )

    def test_a_line_covers_initial_margin_before_cash(self, net, chain):
        assert chain.block(self.grant(net, "g1", line=300_000, value=600_000)).receipts[0].ok
        chain.block(trade_tx(net, rfq_id="r1", price=3200, im_rate=0.1))
        trade = chain.state.trades["r1"]
        assert trade.guarantee_cover == (("g1", to_micros(300_000)),)
        assert chain.state.payments["r1/initial_margin/1"].amount == to_micros(20_000)
        assert chain.state.guarantees["g1"].allocated == to_micros(300_000)

    def test_one_asset_cannot_back_two_live_guarantees(self, net, chain):
        chain.block(self.grant(net, "g1"))
        root = chain.state.state_root()
        result = chain.block(self.grant(net, "g2", client="C2", guarantor="G2"))
        assert "already pledged to guarantee g1" in result.receipts[0].reason
        assert "g2" not in chain.state.guarantees
        assert chain.state.guarantees.digest() != b"" and chain.state.pledges.digest()
        assert root != chain.state.state_root()  # height moved; the guarantee maps did not
        assert len(chain.state.guarantees) == 1

    def test_a_line_above_the_asset_value_or_the_guarantors_capacity_is_refused(self, net, chain):
        over_asset = self.grant(net, "g1", line=3e6, value=2e6)
        over_capacity = self.grant(net, "g2", line=6e6, name="mine", value=9e6)
        result = chain.block(over_asset, over_capacity)
        assert "exceeds the pledged asset's value" in result.receipts[0].reason
        assert "exceeds G1's free capacity" in result.receipts[1].reason
        assert len(chain.state.guarantees) == 0

    def test_a_revoked_guarantee_frees_its_asset(self, net, chain):
        chain.block(self.grant(net, "g1"))
        assert chain.block(net.tx("G1", GuaranteeRevoke("g1"), at_ms=T0)).receipts[0].ok
        assert chain.block(self.grant(net, "g2", guarantor="G2")).receipts[0].ok

    def test_a_line_in_use_cannot_be_revoked(self, net, chain):
        chain.block(self.grant(net, "g1"))
        chain.block(trade_tx(net, rfq_id="r1"))
        result = chain.block(net.tx("G1", GuaranteeRevoke("g1"), at_ms=T0))
        assert "covers margin of live trades" in result.receipts[0].reason


def fixing(net, date, price, at_ms):
    return net.tx("ORACLE", PriceFixing(date, (("RB2705", price),)), at_ms=at_ms)


DAY_MS = 86_400_000


def miss(chain: Chain, call_id: str) -> None:
    """The bank reports the payer short, then the call's cure period (one business day)
    passes: the first block dated after its due date defaults the payer."""
    at = chain.head.timestamp_ms + 1000
    chain.block(chain.net.tx("BANK", PaymentFailed(call_id, "insufficient funds"), at_ms=at))
    chain.block(at_ms=chain.head.timestamp_ms + 2 * DAY_MS)


def test_a_fixing_marks_calls_margin_and_the_banks_confirmation_meets_the_call(net, chain):
    chain.block(trade_tx(net, rfq_id="r1", price=3200))
    confirm_all(chain)
    at = chain.head.timestamp_ms + 1000
    chain.block(fixing(net, TODAY, 3100.0, at), at_ms=at)  # client bought at 3200: owes 100k
    view = chain.state.book.get("r1")
    assert view.status == Status.MARGIN_CALL
    call = chain.state.call_payment("r1")
    assert call is not None and call.id.endswith("/margin_call/1")
    assert (call.payer, call.payee, call.amount) == ("C1", "D1", to_micros(100_000))
    confirm_all(chain, "margin_call")
    view = chain.state.book.get("r1")
    assert view.status == Status.LIVE and view.vm_balance == -100_000
    assert chain.state.payments[call.id].status == "confirmed"
    assert chain.state.call_payment("r1") is None and not dict(chain.state.margin_sets.items())
    # The netted payment is the money that moved: no per-contract instruction repeats it.
    assert not [p for p in chain.state.payments.values() if p.kind == "variation_margin"]


def test_a_missed_margin_call_defaults_the_client_and_collateral_then_the_guarantor_pay(net, chain):
    g = TestGuarantees()
    chain.block(g.grant(net, "g1", line=100_000, value=200_000))
    chain.block(trade_tx(net, rfq_id="r1", price=3200, im_rate=0.05))  # IM 160k: 100k line
    confirm_all(chain)  # 60k cash margin into custody
    rating_before = chain.state.rating("C1")
    at = chain.head.timestamp_ms + 1000
    chain.block(fixing(net, TODAY, 3000.0, at), at_ms=at)  # client owes 200k
    for _ in range(5):  # blocks alone default nobody
        chain.block()
    assert chain.state.book.get("r1").status == Status.MARGIN_CALL
    call = chain.state.call_payment("r1")
    assert call is not None
    miss(chain, call.id)
    view = chain.state.book.get("r1")
    assert view.status == Status.DEFAULTED
    defaulted = [
        o for r in chain.results for o in r.outputs if type(o).__name__ == "CreditEventResolved"
    ]
    [resolved] = defaulted
    assert resolved.collateral_applied == to_micros(60_000)
    assert resolved.guarantee_applied == to_micros(100_000)
    assert resolved.unrecovered == to_micros(40_000)
    payouts = {
        p.kind: p for p in chain.state.payments.values() if p.kind in ("collateral", "guarantee")
    }
    assert payouts["collateral"].payer == CUSTODY and payouts["collateral"].payee == "D1"
    assert payouts["guarantee"].payer == "G1" and payouts["guarantee"].amount == to_micros(100_000)
    assert chain.state.guarantees["g1"].paid == to_micros(100_000)
    assert chain.state.rating("C1") < rating_before
    assert chain.state.ratings["C1"].evidence.last.default


def test_both_parties_asking_the_same_close_out_price_terminate_the_contract(net, chain):
    chain.block(trade_tx(net, rfq_id="r1", price=3200))
    confirm_all(chain)
    at = chain.head.timestamp_ms + 1000
    ask = chain.block(net.tx("C1", CloseOutRequest("r1", 3250.0), at_ms=at), at_ms=at)
    assert ask.receipts[0].refs == ("r1", "pending")
    mismatch = chain.block(net.tx("D1", CloseOutRequest("r1", 3240.0), at_ms=at + 1))
    assert mismatch.receipts[0].refs == ("r1", "pending")
    agree = chain.block(net.tx("D1", CloseOutRequest("r1", 3250.0), at_ms=at + 2))
    assert agree.receipts[0].refs == ("r1", "closed_out")
    view = chain.state.book.get("r1")
    assert view.status == Status.CLOSED_OUT
    assert view.outcome.client_pnl == pytest.approx(50_000.0)
    refund = chain.state.payments["r1/im_return/1"]
    assert (refund.payer, refund.payee, refund.amount) == (CUSTODY, "C1", to_micros(320_000))
    assert chain.state.custody["C1"] == 0
    assert chain.state.rating("C1") >= chain.state.ratings["C1"].evidence.last.rt_prev


def test_a_stranger_cannot_close_out_someone_elses_contract(net, chain):
    chain.block(trade_tx(net, rfq_id="r1"))
    result = chain.block(net.tx("D2", CloseOutRequest("r1"), at_ms=T0 + 5000))
    assert "not a party" in result.receipts[0].reason


def test_a_credit_event_on_an_authority_evicts_it_and_a_candidate_joins(net, chain):
    result = chain.block(net.tx("REG", CreditEventTx("D2", "bankruptcy"), at_ms=T0))
    assert result.receipts[0].ok
    assert chain.state.authorities == ("CCP", "D1", "D3", "G1")
    assert [(e.action, e.member) for e in result.governance] == [("evict", "D2"), ("join", "G1")]


def test_two_states_fed_the_same_blocks_have_the_same_root_and_a_different_tx_changes_it(net):
    a, b, c = Chain(net), Chain(net), Chain(net)
    txs = [trade_tx(net, rfq_id="r1"), trade_tx(net, rfq_id="r2", client="C2", dealer="D2")]
    other = trade_tx(net, rfq_id="r2", client="C2", dealer="D3")
    for chain in (a, b):
        chain.block(*txs)
    c.block(txs[0], other)
    assert a.state.state_root() == b.state.state_root()
    assert a.head.hash() == b.head.hash()
    assert c.state.state_root() != a.state.state_root()


def test_incremental_digests_equal_a_full_rehash(net, chain):
    chain.block(trade_tx(net, rfq_id="r1"), trade_tx(net, rfq_id="r2", client="C2"))
    confirm_all(chain)
    for component in (
        chain.state.payments,
        chain.state.trades,
        chain.state.custody,
        chain.state.committed,
    ):
        assert component.digest() == component.full_digest()


def test_the_state_root_never_depends_on_the_round_that_decided_a_block(net):
    a, b = Chain(net), Chain(net)
    tx = trade_tx(net, rfq_id="r1")
    a.block(tx, round=0)
    b.block(tx, round=1)
    assert a.state.state_root() == b.state.state_root()


def test_a_ledger_state_of_a_fresh_genesis_knows_its_authorities(net):
    state = LedgerState(net.genesis)
    assert state.authorities == ("CCP", "D1", "D2", "D3")
    assert state.rating("C1") == pytest.approx(65.0)  # BBB: the band 60-70 midpoint


def test_a_restored_snapshot_has_the_same_root_and_carries_on_identically(net, chain):
    chain.block(trade_tx(net, rfq_id="r1"), trade_tx(net, rfq_id="r2", client="C2", dealer="D2"))
    confirm_all(chain)
    restored = LedgerState.restore(net.genesis, chain.state.snapshot())
    assert restored.state_root() == chain.state.state_root()
    twin = Chain(net)
    twin.state, twin.head = restored, chain.head
    at = chain.head.timestamp_ms + 1000
    tx = fixing(net, TODAY, 3150.0, at)
    for c in (chain, twin):
        c.block(tx, at_ms=at)
    assert twin.state.state_root() == chain.state.state_root()


def test_garbage_is_not_a_snapshot(net):
    from rfq.errors import ValidationError

    with pytest.raises(ValidationError, match="not a ledger snapshot"):
        LedgerState.restore(net.genesis, b"\x92\x01\x02")


def test_a_refused_transaction_changes_nothing_even_after_it_started_writing(net, chain):
    """Confirming the margin call of a contract that has already defaulted is refused by the
    contract after the payment was found: the whole transaction is undone."""
    chain.block(trade_tx(net, rfq_id="r1", price=3200))
    confirm_all(chain)
    at = chain.head.timestamp_ms + 1000
    chain.block(fixing(net, TODAY, 3000.0, at), at_ms=at)
    call = chain.state.call_payment("r1")
    assert call is not None
    miss(chain, call.id)
    assert chain.state.book.get("r1").status == Status.DEFAULTED
    assert chain.state.payments[call.id].status == "lapsed"
    before = (chain.state.payments.digest(), chain.state.custody.digest())
    late = net.tx(
        "BANK", PaymentConfirmed(call.id, call.amount, "late"), at_ms=chain.head.timestamp_ms
    )
    result = chain.block(late)
    assert not result.receipts[0].ok
    assert "lapsed" in result.receipts[0].reason
    assert (chain.state.payments.digest(), chain.state.custody.digest()) == before
    assert chain.state.payments[call.id].bank_ref is None


def test_the_journal_puts_every_written_entry_back():
    from rfq.ledger.digest import DigestMap

    m: DigestMap[int] = DigestMap("t", int)
    m["a"], m["b"] = 1, 2
    digest = m.digest()
    m.journal = []
    m["a"], m["c"] = 10, 3
    del m["b"]
    m.undo()
    assert m.to_dict() == {"a": 1, "b": 2}
    assert m.digest() == digest == m.full_digest()


def test_committed_ids_are_forgotten_exactly_at_expiry_also_after_a_restore(net, chain):
    early = trade_tx(net, rfq_id="r1")  # its accept expires at T0 + 100 + 60 s
    late = trade_tx(net, rfq_id="r2", client="C2", at_ms=T0 + 20_000)
    chain.block(early, at_ms=T0 + 1_000)
    chain.block(late, at_ms=T0 + 21_000)
    assert len(chain.state.committed) == 2
    chain.block(at_ms=T0 + 60_100)  # not yet past the early one's expiry
    assert len(chain.state.committed) == 2
    chain.block(at_ms=T0 + 60_101)
    assert list(chain.state.committed) == [tx_id_of(late).hex()]
    restored = LedgerState.restore(chain.state.genesis, chain.state.snapshot())
    for state in (chain.state, restored):
        state.execute(chain.head.height + 1, T0 + 90_000, chain.head, [])
        assert len(state.committed) == 0
    assert restored.state_root() == chain.state.state_root()


def test_a_map_holds_an_int_given_for_a_float_as_the_float_a_restore_would_give():
    from rfq.ledger.digest import DigestMap
    from rfq.rating import RatingTuple

    live: DigestMap[RatingTuple] = DigestMap("t", RatingTuple)
    live["C1"] = RatingTuple(65.0, 1e6, 90, 0.0, False, 0, False)  # guarantee: int 0
    restored: DigestMap[RatingTuple] = DigestMap("t", RatingTuple)
    restored.decode_into(live.encode())
    assert isinstance(live["C1"].guarantee, float)
    assert restored.digest() == live.digest()


def test_a_margin_call_paid_in_full_never_defaults_the_payer_however_long_the_chain_runs(
    net, chain
):
    chain.block(trade_tx(net, rfq_id="r1", price=3200.123457))
    confirm_all(chain)
    at = chain.head.timestamp_ms + 1000
    chain.block(fixing(net, TODAY, 3187.654321, at), at_ms=at)
    [call] = confirm_all(chain, "margin_call")
    assert type(call.amount) is int  # integer micros: on the grid by construction
    for day in range(1, 10):
        chain.block(at_ms=chain.head.timestamp_ms + day * DAY_MS)
    assert chain.state.book.get("r1").status == Status.LIVE
    assert not any(r.evidence and r.evidence.defaults for r in chain.state.ratings.values())


def test_an_unanswered_margin_call_waits_on_chain_past_its_due_date(net, chain):
    chain.block(trade_tx(net, rfq_id="r1", price=3200))
    confirm_all(chain)
    at = chain.head.timestamp_ms + 1000
    chain.block(fixing(net, TODAY, 3000.0, at), at_ms=at)
    for _ in range(3):
        chain.block(at_ms=chain.head.timestamp_ms + 2 * DAY_MS)
    assert chain.state.book.get("r1").status == Status.MARGIN_CALL
    call = chain.state.call_payment("r1")
    assert call is not None and call.status == "pending"
    assert call.due == TODAY + dt.timedelta(days=1)


def test_no_instruction_is_ever_made_for_less_than_one_money_grid_step(net, chain):
    chain.block(trade_tx(net, rfq_id="r1", price=3200, im_rate=0.0))
    at = chain.head.timestamp_ms + 1000
    chain.block(fixing(net, TODAY, 3200.000000001, at), at_ms=at)  # MTM 1e-6 of a unit
    chain.block(net.tx("C1", CloseOutRequest("r1", 3200.0), at_ms=at + 1))
    chain.block(net.tx("D1", CloseOutRequest("r1", 3200.0), at_ms=at + 2))
    assert chain.state.book.get("r1").status == Status.CLOSED_OUT
    assert [p for p in chain.state.payments.values() if not p.amount > 0] == []
    assert "r1/initial_margin/1" not in chain.state.payments


def test_a_defaulted_client_or_dealer_cannot_trade_and_the_refusal_says_why(net, chain):
    chain.block(net.tx("REG", CreditEventTx("C2", "missed coupon elsewhere"), at_ms=T0))
    chain.block(net.tx("REG", CreditEventTx("D3", "insolvency"), at_ms=T0 + 1))
    result = chain.block(
        trade_tx(net, rfq_id="r1", client="C2", dealer="D1", at_ms=T0 + 1500),
        trade_tx(net, rfq_id="r2", client="C1", dealer="D3", at_ms=T0 + 1500),
        trade_tx(net, rfq_id="r3", client="C1", dealer="D1", at_ms=T0 + 1500),
    )
    reasons = [r.reason for r in result.receipts]
    assert reasons[0].startswith("client C2 is defaulted")
    assert "missed coupon elsewhere" in reasons[0]
    assert reasons[1].startswith("dealer D3 is defaulted")
    assert result.receipts[2].ok
    assert set(chain.state.trades) == {"r3"}


def test_an_accept_whose_initial_margin_the_client_cannot_carry_is_refused_and_changes_nothing(
    net, chain
):
    """C1 has 20M of capital: a trade whose cash margin exceeds it would open a contract that
    defaults C1 at once (the 1e12 option that was quoted firm)."""
    g = TestGuarantees()
    chain.block(g.grant(net, "g1", line=100_000, value=200_000))
    result = chain.block(trade_tx(net, rfq_id="r1", terms=swap_terms(quantity=1e9)))
    [receipt] = result.receipts
    assert not receipt.ok
    assert "exceeds C1's credit lines (100,000.00)" in receipt.reason
    assert "r1" not in chain.state.book and "r1" not in chain.state.trades
    assert chain.state.guarantees["g1"].allocated == 0
    # 12.8M of cash margin fits; a second one does not while the first is live.
    first = chain.block(trade_tx(net, rfq_id="r2", terms=swap_terms(quantity=40_000)))
    assert first.receipts[0].ok, first.receipts[0].reason
    second = chain.block(trade_tx(net, rfq_id="r3", terms=swap_terms(quantity=40_000)))
    assert "capital the chain knows of" in second.receipts[0].reason
    at = chain.head.timestamp_ms + 1000
    chain.block(net.tx("C1", CloseOutRequest("r2", 3200.0), at_ms=at))
    chain.block(net.tx("D1", CloseOutRequest("r2", 3200.0), at_ms=at + 1))
    assert chain.state.margin_in_use.get("C1") is None
    third = chain.block(trade_tx(net, rfq_id="r4", terms=swap_terms(quantity=40_000), at_ms=at + 2))
    assert third.receipts[0].ok, third.receipts[0].reason


def test_the_chain_refuses_a_trade_on_a_futures_month_that_has_expired(net, chain):
    expired = swap_terms(underlying="RB2609")  # last trading day 2026-09-15, before TODAY
    result = chain.block(trade_tx(net, rfq_id="r1", terms=expired))
    [receipt] = result.receipts
    assert not receipt.ok and receipt.reason.startswith(f"not tradable on {TODAY}")
    assert "RB2609" in receipt.reason and "r1" not in chain.state.book


class TestNettedMarginCalls:
    """The calls one fixing makes between one payer and one payee are one payment."""

    @staticmethod
    def two_calls(net, chain) -> None:
        """C1 bought r1 at 3200 and r2 at 3300 from D1; a 3100 fixing calls 100k and 200k."""
        chain.block(trade_tx(net, rfq_id="r1", price=3200), trade_tx(net, rfq_id="r2", price=3300))
        confirm_all(chain)
        at = chain.head.timestamp_ms + 1000
        chain.block(fixing(net, TODAY, 3100.0, at), at_ms=at)

    @staticmethod
    def calls(chain: Chain) -> list:
        return [p for p in chain.state.payments.values() if p.kind == "margin_call"]

    def test_one_payment_of_the_sum_meets_both_calls(self, net, chain):
        self.two_calls(net, chain)
        [payment] = self.calls(chain)
        assert (payment.payer, payment.payee, payment.amount) == ("C1", "D1", to_micros(300_000))
        assert chain.state.call_payment("r1") == chain.state.call_payment("r2") == payment
        confirm_all(chain, "margin_call")
        r1, r2 = chain.state.book.get("r1"), chain.state.book.get("r2")
        assert (r1.status, r1.vm_balance) == (Status.LIVE, -100_000)
        assert (r2.status, r2.vm_balance) == (Status.LIVE, -200_000)
        assert not dict(chain.state.margin_sets.items())

    def test_calls_of_different_payers_are_paid_apart(self, net, chain):
        chain.block(trade_tx(net, rfq_id="r1"), trade_tx(net, rfq_id="r2", client="C2"))
        confirm_all(chain)
        at = chain.head.timestamp_ms + 1000
        chain.block(fixing(net, TODAY, 3100.0, at), at_ms=at)
        assert sorted((p.payer, p.amount) for p in self.calls(chain)) == [
            ("C1", to_micros(100_000)),
            ("C2", to_micros(100_000)),
        ]

    def test_a_contract_closed_out_with_its_call_open_leaves_the_set_and_a_payment_for_the_rest(
        self, net, chain
    ):
        self.two_calls(net, chain)
        first = chain.state.call_payment("r1")
        assert first is not None
        at = chain.head.timestamp_ms + 1000
        chain.block(net.tx("C1", CloseOutRequest("r1", 3100.0), at_ms=at), at_ms=at)
        closed = chain.block(net.tx("D1", CloseOutRequest("r1", 3100.0), at_ms=at + 1))
        assert closed.receipts[0].refs == ("r1", "closed_out")
        assert chain.state.payments[first.id].status == "lapsed"
        rest = chain.state.call_payment("r2")
        assert rest is not None and rest.id != first.id
        assert (rest.status, rest.amount) == ("pending", to_micros(200_000))
        assert chain.state.call_payment("r1") is None
        late = net.tx(
            "BANK",
            PaymentConfirmed(first.id, first.amount, "late"),
            at_ms=chain.head.timestamp_ms + 1000,
        )
        assert "lapsed" in chain.block(late).receipts[0].reason
        confirm_all(chain, "margin_call")
        r2 = chain.state.book.get("r2")
        assert (r2.status, r2.vm_balance) == (Status.LIVE, -200_000)

    def test_a_failed_payment_leaves_every_call_of_the_set_short_and_then_in_default(
        self, net, chain
    ):
        self.two_calls(net, chain)
        payment = chain.state.call_payment("r1")
        assert payment is not None
        at = chain.head.timestamp_ms + 1000
        chain.block(chain.net.tx("BANK", PaymentFailed(payment.id, "no funds"), at_ms=at))
        for cid in ("r1", "r2"):
            call = chain.state.book.get(cid).margin_call
            assert call is not None and call.short
        chain.block(at_ms=chain.head.timestamp_ms + 2 * DAY_MS)
        assert {chain.state.book.get(cid).status for cid in ("r1", "r2")} == {Status.DEFAULTED}
        assert chain.state.payments[payment.id].status == "lapsed"
        assert not dict(chain.state.margin_sets.items())

    def test_a_failure_reported_after_the_due_date_defaults_the_payer_once_and_is_recorded(
        self, net, chain
    ):
        """The first call's shortfall past its due date defaults the payer, which ends the
        set's other contracts too: their calls are gone, not a reason to refuse the report."""
        self.two_calls(net, chain)
        payment = chain.state.call_payment("r1")
        assert payment is not None
        chain.block(at_ms=chain.head.timestamp_ms + 2 * DAY_MS)  # due, the bank silent
        assert chain.state.book.get("r1").status == Status.MARGIN_CALL
        at = chain.head.timestamp_ms + 1000
        result = chain.block(chain.net.tx("BANK", PaymentFailed(payment.id, "no funds"), at_ms=at))
        assert result.receipts[0].ok, result.receipts[0].reason
        assert {chain.state.book.get(cid).status for cid in ("r1", "r2")} == {Status.DEFAULTED}
        assert chain.state.payments[payment.id].status == "lapsed"
        assert not dict(chain.state.margin_sets.items())
