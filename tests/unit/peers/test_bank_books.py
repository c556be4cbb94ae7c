"""The settlement bank's books, without a server: exactly once, funds, the balance invariant."""

from __future__ import annotations

import hashlib
import time

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peers.bank import (
    CUSTODY,
    BankBooks,
    BankConfig,
    BankError,
    InsufficientFunds,
    JournalState,
    OutState,
    Purpose,
    UnknownAccount,
    parse_balances,
)
from rfq.contracts.model import PaymentKind
from rfq.identity import Identity, Role
from rfq.ledger.state import Payment
from rfq.ledger.tx import PaymentConfirmed, signed_decoder, tx_decoder
from rfq.money import to_micros as M
from rfq.signing import sign_payload

BANK = Identity.generate("BANK", Role.BANK)


def signer(instruction: Payment):
    def sign(bank_ref: str) -> bytes:
        now = int(time.time() * 1000)
        signed = sign_payload(
            BANK,
            PaymentConfirmed(instruction.id, instruction.amount, bank_ref),
            chain_id="botc-test",
            nonce=time.time_ns() // 1000,
            timestamp_ms=now,
            expires_ms=now + 30_000,
        )
        return msgspec.msgpack.encode(signed)

    return sign


def margin(contract: str = "r1", client: str = "C1", amount: float = 320_000.0) -> Payment:
    """An initial margin instruction for ``amount`` currency units (held as micros)."""
    return Payment(
        f"{contract}/initial_margin/1",
        contract,
        PaymentKind.INITIAL_MARGIN,
        client,
        CUSTODY,
        M(amount),
        created_height=1,
    )


@pytest.fixture
def books(tmp_path):
    books = BankBooks(tmp_path / "bank.db")
    books.open_account("C1", M(1_000_000))
    books.open_account("D1", M(5.0e9))
    books.open_account(CUSTODY, 0)
    yield books
    books.close()


def test_client_c1s_initial_margin_is_executed_once_however_often_the_bank_is_told(books):
    first = books.execute(margin(), sign=signer(margin()))
    again = books.execute(margin(), sign=signer(margin()))
    assert first.fresh and not again.fresh
    assert again.entry == first.entry
    assert books.balance("C1") == M(680_000)
    assert books.balance(CUSTODY) == M(320_000)
    assert [e.instruction_id for e in books.journal()] == ["r1/initial_margin/1"]
    assert first.entry.bank_ref == "BANK-0000000001"
    assert first.entry.state == JournalState.EXECUTED


def test_the_signed_confirmation_is_stored_with_the_execution_and_names_its_bank_ref(books):
    execution = books.execute(margin(), sign=signer(margin()))
    out = books.out_tx("r1/initial_margin/1", Purpose.CONFIRM)
    assert out is not None and out.state == OutState.OPEN
    assert out.tx_id == hashlib.sha256(out.tx).hexdigest()
    confirmation = tx_decoder.decode(signed_decoder.decode(out.tx).body)
    assert confirmation == PaymentConfirmed(
        "r1/initial_margin/1", M(320_000), execution.entry.bank_ref
    )
    books.execute(margin(), sign=signer(margin()))
    assert books.out_tx("r1/initial_margin/1", Purpose.CONFIRM) == out  # the same bytes


def test_a_failure_while_signing_leaves_neither_journal_row_nor_moved_money(books):
    def broken(bank_ref: str) -> bytes:
        raise RuntimeError("HSM offline")

    with pytest.raises(RuntimeError, match="HSM offline"):
        books.execute(margin(), sign=broken)
    assert books.journal() == []
    assert books.balance("C1") == M(1_000_000)
    assert books.out_tx("r1/initial_margin/1", Purpose.CONFIRM) is None


def test_client_c1_without_the_funds_is_refused_and_nothing_moves(books):
    big = margin(amount=1_000_000.01)
    with pytest.raises(InsufficientFunds) as refused:
        books.execute(big)
    assert refused.value.payer == "C1"
    assert refused.value.balance == M(1_000_000)
    assert "insufficient funds" in str(refused.value)
    assert books.journal() == []
    assert books.balance("C1") == M(1_000_000)
    books.set_balance("C1", M(2_000_000))  # C1 is funded: the same instruction now executes
    assert books.execute(big).fresh
    assert books.balance("C1") == M(999_999.99)
    assert books.balanced()


def test_an_instruction_for_an_account_the_bank_does_not_hold_is_refused(books):
    with pytest.raises(UnknownAccount, match="C9"):
        books.execute(margin(client="C9"))
    with pytest.raises(BankError, match="positive"):
        books.execute(margin(amount=0.0))
    assert books.journal() == []


def test_the_journal_survives_a_restart_and_is_still_executed_once(tmp_path):
    path = tmp_path / "bank.db"
    first = BankBooks(path)
    first.open_account("C1", M(1e6))
    first.open_account(CUSTODY)
    first.execute(margin(amount=1000.0), sign=signer(margin(amount=1000.0)))
    first.close()
    second = BankBooks(path)
    assert not second.open_account("C1", M(5e7))  # an existing account keeps its balance
    again = second.execute(margin(amount=1000.0))
    assert not again.fresh
    assert second.balances() == {"C1": M(999_000), CUSTODY: M(1000)}
    assert [o.instruction_id for o in second.open_txs()] == ["r1/initial_margin/1"]
    second.close()


def test_settling_a_confirmation_is_idempotent_and_counted(books):
    books.execute(margin(), sign=signer(margin()))
    assert books.settle("r1/initial_margin/1", JournalState.CONFIRMED, height=7)
    assert not books.settle("r1/initial_margin/1", JournalState.REFUSED, height=8, reason="x")
    entry = books.entry("r1/initial_margin/1")
    assert entry is not None and (entry.state, entry.height) == (JournalState.CONFIRMED, 7)
    books.finish_tx("r1/initial_margin/1", Purpose.CONFIRM, OutState.DONE, height=7)
    assert books.open_txs() == []
    assert books.summary() == {
        "executed": 1,
        "confirmed": 1,
        "unconfirmed": 0,
        "refused": 0,
        "failed": 0,
    }


def test_institutions_open_with_more_than_clients_and_an_override_wins():
    config = BankConfig(client_balance=1e6, institution_balance=1e9, balances={"C3": 0.0})
    assert config.opening_balance("C1", Role.CLIENT) == 1e6
    assert config.opening_balance("D1", Role.DEALER) == 1e9
    assert config.opening_balance("G1", Role.GUARANTOR) == 1e9
    assert config.opening_balance("C3", Role.CLIENT) == 0.0
    assert config.opening_balance("REG", Role.REGULATOR) == 0.0
    assert config.opening_balance("ZZ_NOBODY", None) == 0.0  # a stranger gets no money


def test_balances_are_parsed_from_member_equals_amount():
    assert parse_balances(["C1=0", "D1=2.5e9"]) == {"C1": 0.0, "D1": 2.5e9}
    for bad in ("C1", "=5", "C1=lots", "C1=-1", "C1=inf"):
        with pytest.raises(ValueError, match="C1|=5"):
            parse_balances([bad])


MEMBERS = ("C1", "C2", "D1", "G1", CUSTODY)

instructions = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=12),  # instruction number: repeats are replays
        st.sampled_from(MEMBERS),
        st.sampled_from(MEMBERS),
        st.decimals(min_value="0.000001", max_value="400000", places=6).map(float),
    ),
    max_size=40,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    opening=st.lists(
        st.decimals(min_value=0, max_value="1000000", places=6).map(float),
        min_size=len(MEMBERS),
        max_size=len(MEMBERS),
    ),
    script=instructions,
)
def test_executions_never_create_or_destroy_money_and_never_overdraw(opening, script):
    books = BankBooks(":memory:")
    model = {}
    for member, amount in zip(MEMBERS, opening, strict=True):
        books.open_account(member, M(amount))
        model[member] = round(amount * 1_000_000)
    funded = books.total_micros()
    executed: dict[str, tuple[str, str, int]] = {}
    for number, payer, payee, amount in script:
        iid = f"r/{number}"
        instruction = Payment(iid, "r", PaymentKind.SETTLEMENT, payer, payee, M(amount), 1)
        micros = round(amount * 1_000_000)
        try:
            result = books.execute(instruction)
        except InsufficientFunds:
            assert iid not in executed
            assert model[payer] < micros
            continue
        except BankError:
            assert payer == payee
            continue
        if iid in executed:
            assert not result.fresh  # a replay moves nothing, whatever it now says
            continue
        assert result.fresh
        executed[iid] = (payer, payee, micros)
        model[payer] -= micros
        model[payee] += micros
    assert books.total_micros() == funded == books.funded_micros()
    assert books.balanced()
    assert books.balances() == dict(sorted(model.items()))
    assert all(v >= 0 for v in books.balances().values())
    assert sorted(e.instruction_id for e in books.journal()) == sorted(executed)
    books.close()


def test_a_confirmation_the_chain_refuses_reverses_the_movement_and_money_is_conserved(books):
    total = books.total_micros()
    books.execute(margin(amount=1000.0), sign=signer(margin(amount=1000.0)))
    assert books.balances()["C1"] == M(999_000)
    assert books.settle("r1/initial_margin/1", JournalState.REFUSED, height=9, reason="lapsed")
    assert (books.balances()["C1"], books.balances()[CUSTODY]) == (M(1_000_000), 0)
    assert books.total_micros() == total
    # The chain's word is recorded once: a second refusal moves nothing.
    assert not books.settle("r1/initial_margin/1", JournalState.REFUSED, height=9, reason="x")
    assert books.balances()["C1"] == M(1_000_000)


def test_the_books_take_amounts_only_as_integer_micros(books):
    with pytest.raises(BankError, match="integer micros"):
        books.open_account("C7", 1.5)  # type: ignore[arg-type]
    with pytest.raises(BankError, match="integer micros"):
        books.set_balance("C1", 2e6)  # type: ignore[arg-type]
    assert books.balance("C1") == M(1_000_000) and not books.has_account("C7")
