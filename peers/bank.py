"""The settlement bank: executes the payment instructions contracts emit, confirms them on chain.

The bank runs no node (paper section II.1). It keeps its own books in SQLite
(``NETDIR/data/BANK/bank.db``, WAL): an account per member plus ``CUSTODY`` (where cash
initial margin is held), a journal of executed instructions keyed by instruction id (unique),
and an outbox of the transactions it signed. Money is held in integer micro-units, so sums
are exact: the books always balance (the sum of all accounts equals what was paid in when
accounts were opened or adjusted).

The loop, every ``poll_s`` seconds:

1. Ask an authority for pending and failed payment instructions (``PaymentsQuery``: the
   bank sees them all). Only instructions proven final are taken: each one's entry proven
   against the state root of a header sealed by a quorum of the authority set the bank
   follows (``peers.ledger_client``); an answer without that proof is dropped and counted
   (``ledger.dropped``), and another authority is asked.
2. Execute each one not yet in the journal, exactly once: debit the payer, credit the payee,
   write the journal row *and* the signed ``PaymentConfirmed`` in one SQLite transaction.
   An instruction already in the journal is never executed again, whatever happens.
3. Submit that confirmation and keep resubmitting the *same signed bytes* until its receipt
   is final: committed, or refused because the instruction is already confirmed. Only a
   confirmation that expired unconfirmed is signed afresh (the ledger confirms an instruction
   at most once whatever the bytes, so that is safe too).
   An account is opened only for a member the chain is proven to know (its ``members``
   entry proven under a final header); a payer or payee proven absent is refused.
4. A payer without the funds: submit ``PaymentFailed`` with the reason, once; the
   instruction stays unexecuted and is executed later if the balance allows. A margin call
   is not paid once its deadline is too close to be met (the contract defaults instead): it
   is reported failed with that reason.

A restart in the middle loses nothing: the journal says what was executed, the outbox holds
the bytes to resubmit.

```python
async with BankService(bus, genesis, BankBooks(path)) as bank:
    ...
    bank.balances(), bank.counts()
```
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import msgspec
import structlog

from bus.client import Bus
from peers.errors import PeerError
from peers.ledger_client import LedgerClient, LedgerUnavailable, QueryDenied
from peers.service import Service, ServiceStatus, cancel_and_wait
from rfq.contracts.model import PaymentKind
from rfq.identity import AUTHORITY_ELIGIBLE, Genesis, Member, Role
from rfq.ledger.state import CUSTODY, Payment, Receipt
from rfq.ledger.tx import PaymentConfirmed, PaymentFailed, signed_decoder
from rfq.money import Micros, from_micros, to_micros
from rfq.queries import PaymentsQuery, PaymentsReply
from rfq.signing import tx_id

log = structlog.get_logger(__name__)

DEFAULT_CLIENT_BALANCE = 5.0e7
DEFAULT_INSTITUTION_BALANCE = 5.0e9

_encoder = msgspec.msgpack.Encoder()


# --------------------------------------------------------------------------------------------
# Errors


class BankError(PeerError):
    """Root of the bank's errors."""


class UnknownAccount(BankError):
    def __init__(self, member: str) -> None:
        self.member = member
        super().__init__(f"no account for {member!r}")


class InsufficientFunds(BankError):
    """The payer's balance does not cover the instruction; nothing was moved."""

    def __init__(self, instruction_id: str, payer: str, balance: Micros, amount: Micros) -> None:
        self.instruction_id = instruction_id
        self.payer = payer
        self.balance = balance
        self.amount = amount
        super().__init__(
            f"insufficient funds: {payer} holds {from_micros(balance):.2f}, instruction "
            f"{instruction_id} needs {from_micros(amount):.2f}"
        )


# --------------------------------------------------------------------------------------------
# Records


class JournalState(enum.StrEnum):
    EXECUTED = "executed"  # money moved, confirmation not yet final
    CONFIRMED = "confirmed"  # the chain holds the confirmation
    REFUSED = "refused"  # the chain refused the confirmation: the movement was reversed


@dataclass(frozen=True)
class JournalEntry:
    seq: int
    instruction_id: str
    contract_id: str
    kind: str
    payer: str
    payee: str
    amount: Micros
    bank_ref: str
    executed_ms: int
    state: JournalState
    height: int | None
    reason: str


@dataclass(frozen=True)
class Execution:
    """The outcome of ``BankBooks.execute``: ``fresh`` is False when the journal already held
    the instruction (and nothing moved)."""

    entry: JournalEntry
    fresh: bool


class Purpose(enum.StrEnum):
    CONFIRM = "confirm"
    FAIL = "fail"


class OutState(enum.StrEnum):
    OPEN = "open"
    DONE = "done"
    REFUSED = "refused"


@dataclass(frozen=True)
class OutTx:
    """A transaction the bank signed and must see to a final receipt."""

    instruction_id: str
    purpose: Purpose
    tx: bytes
    tx_id: str
    expires_ms: int
    submits: int
    state: OutState
    reason: str
    height: int | None


SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    member TEXT PRIMARY KEY,
    balance INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS funding (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    member TEXT NOT NULL,
    amount INTEGER NOT NULL,
    reason TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    instruction_id TEXT NOT NULL UNIQUE,
    contract_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    payer TEXT NOT NULL,
    payee TEXT NOT NULL,
    amount INTEGER NOT NULL,
    bank_ref TEXT NOT NULL DEFAULT '',
    executed_ms INTEGER NOT NULL,
    state TEXT NOT NULL,
    height INTEGER,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS outbox (
    instruction_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    tx BLOB NOT NULL,
    tx_id TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    submits INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    height INTEGER,
    PRIMARY KEY (instruction_id, purpose)
);
"""

Signer = Callable[[str], bytes]
"""Given the bank reference, the signed confirmation's bytes (stored with the execution)."""


class BankBooks:
    """The bank's ledger of accounts, executions and its own outgoing transactions.

    Synchronous SQLite; every method is one transaction. ``path`` may be ``":memory:"``.
    """

    def __init__(self, path: str | Path, *, bank_id: str = "BANK") -> None:
        self.path = path if path == ":memory:" else Path(path)
        self.bank_id = bank_id
        if isinstance(self.path, Path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise BankError(f"{self.path}: not a usable bank database ({exc})") from None

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- accounts ------------------------------------------------------------------------

    def open_account(self, member: str, balance: Micros = 0) -> bool:
        """Open ``member``'s account with ``balance`` (micros) paid in; False if it exists
        (unchanged)."""
        micros = _micros(balance)
        if micros < 0:
            raise BankError(f"{member}: an opening balance cannot be negative")
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM accounts WHERE member = ?", (member,)).fetchone():
                return False
            db.execute("INSERT INTO accounts VALUES (?, ?)", (member, micros))
            db.execute(
                "INSERT INTO funding (member, amount, reason, at_ms) VALUES (?, ?, 'opening', ?)",
                (member, micros, _now_ms()),
            )
        log.debug("account_opened", member=member, balance=from_micros(micros))
        return True

    def set_balance(self, member: str, balance: Micros) -> Micros:
        """Set ``member``'s balance (micros; an adjustment: cash paid in or taken out,
        recorded so the books still balance); opens the account if needed. Returns the
        adjustment."""
        micros = _micros(balance)
        if micros < 0:
            raise BankError(f"{member}: a balance cannot be negative")
        with self._transaction() as db:
            row = db.execute("SELECT balance FROM accounts WHERE member = ?", (member,)).fetchone()
            if row is None:
                db.execute("INSERT INTO accounts VALUES (?, ?)", (member, micros))
                delta, reason = micros, "opening"
            else:
                delta, reason = micros - int(row[0]), "adjustment"
                db.execute("UPDATE accounts SET balance = ? WHERE member = ?", (micros, member))
            if delta:
                db.execute(
                    "INSERT INTO funding (member, amount, reason, at_ms) VALUES (?, ?, ?, ?)",
                    (member, delta, reason, _now_ms()),
                )
        log.info(
            "balance_set",
            member=member,
            balance=from_micros(micros),
            adjustment=from_micros(delta),
        )
        return delta

    def has_account(self, member: str) -> bool:
        return (
            self.db.execute("SELECT 1 FROM accounts WHERE member = ?", (member,)).fetchone()
            is not None
        )

    def balance(self, member: str) -> Micros:
        row = self.db.execute("SELECT balance FROM accounts WHERE member = ?", (member,)).fetchone()
        if row is None:
            raise UnknownAccount(member)
        return int(row[0])

    def balances(self) -> dict[str, Micros]:
        rows = self.db.execute("SELECT member, balance FROM accounts ORDER BY member")
        return {str(m): int(b) for m, b in rows}

    def total_micros(self) -> int:
        row = self.db.execute("SELECT COALESCE(SUM(balance), 0) FROM accounts").fetchone()
        return int(row[0])

    def funded_micros(self) -> int:
        """What was paid into the books from outside: openings and adjustments."""
        row = self.db.execute("SELECT COALESCE(SUM(amount), 0) FROM funding").fetchone()
        return int(row[0])

    def balanced(self) -> bool:
        """The books' invariant: executions move money, they never create or destroy it."""
        return self.total_micros() == self.funded_micros()

    # -- executions ----------------------------------------------------------------------

    def execute(self, instruction: Payment, *, sign: Signer | None = None) -> Execution:
        """Execute ``instruction`` exactly once.

        In one transaction: the journal row (unique by instruction id), the debit, the credit
        and, with ``sign``, the signed confirmation for the outbox. An instruction already in
        the journal returns its entry with ``fresh=False`` and moves nothing. Raises
        ``InsufficientFunds`` or ``UnknownAccount`` (nothing moved).
        """
        amount = instruction.amount
        if amount <= 0:
            raise BankError(f"instruction {instruction.id}: amount must be positive")
        if instruction.payer == instruction.payee:
            raise BankError(f"instruction {instruction.id}: payer and payee are the same")
        with self._transaction() as db:
            done = self._entry(instruction.id)
            if done is not None:
                return Execution(done, fresh=False)
            balances = {}
            for member in (instruction.payer, instruction.payee):
                row = db.execute(
                    "SELECT balance FROM accounts WHERE member = ?", (member,)
                ).fetchone()
                if row is None:
                    raise UnknownAccount(member)
                balances[member] = int(row[0])
            if balances[instruction.payer] < amount:
                raise InsufficientFunds(
                    instruction.id,
                    instruction.payer,
                    balances[instruction.payer],
                    amount,
                )
            cursor = db.execute(
                "INSERT INTO journal (instruction_id, contract_id, kind, payer, payee, amount, "
                "executed_ms, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    instruction.id,
                    instruction.contract_id,
                    instruction.kind,
                    instruction.payer,
                    instruction.payee,
                    amount,
                    _now_ms(),
                    JournalState.EXECUTED.value,
                ),
            )
            seq = int(cursor.lastrowid or 0)
            bank_ref = f"{self.bank_id}-{seq:010d}"
            db.execute("UPDATE journal SET bank_ref = ? WHERE seq = ?", (bank_ref, seq))
            db.execute(
                "UPDATE accounts SET balance = balance - ? WHERE member = ?",
                (amount, instruction.payer),
            )
            db.execute(
                "UPDATE accounts SET balance = balance + ? WHERE member = ?",
                (amount, instruction.payee),
            )
            if sign is not None:
                self._put_tx(db, instruction.id, Purpose.CONFIRM, sign(bank_ref))
            entry = self._entry(instruction.id)
        assert entry is not None
        return Execution(entry, fresh=True)

    def _entry(self, instruction_id: str) -> JournalEntry | None:
        row = self.db.execute(
            f"SELECT {JOURNAL_COLUMNS} FROM journal WHERE instruction_id = ?",
            (instruction_id,),
        ).fetchone()
        return None if row is None else journal_entry(row)

    def entry(self, instruction_id: str) -> JournalEntry | None:
        return self._entry(instruction_id)

    def journal(self, state: JournalState | None = None) -> list[JournalEntry]:
        query = f"SELECT {JOURNAL_COLUMNS} FROM journal"
        params: tuple[str, ...] = ()
        if state is not None:
            query += " WHERE state = ?"
            params = (state.value,)
        return [journal_entry(r) for r in self.db.execute(query + " ORDER BY seq", params)]

    def summary(self) -> dict[str, int]:
        """Instructions executed, and where their confirmations stand (confirmed, still
        unconfirmed, refused by the chain); ``failed``: failure notices sent."""
        by_state = {state: 0 for state in JournalState}
        for state, n in self.db.execute("SELECT state, COUNT(*) FROM journal GROUP BY state"):
            by_state[JournalState(str(state))] = int(n)
        return {
            "executed": sum(by_state.values()),
            "confirmed": by_state[JournalState.CONFIRMED],
            "unconfirmed": by_state[JournalState.EXECUTED],
            "refused": by_state[JournalState.REFUSED],
            "failed": self.count_txs(Purpose.FAIL),
        }

    def settle(
        self, instruction_id: str, state: JournalState, *, height: int | None, reason: str = ""
    ) -> bool:
        """Record the chain's final word on an executed instruction (idempotent). A refused
        confirmation reverses the movement in the same transaction: the chain's word is final,
        so the books keep matching its confirmed payments one for one."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE journal SET state = ?, height = ?, reason = ? "
                "WHERE instruction_id = ? AND state = ?",
                (state.value, height, reason[:300], instruction_id, JournalState.EXECUTED.value),
            )
            if cursor.rowcount == 0:
                return False
            if state == JournalState.REFUSED:
                payer, payee, amount = db.execute(
                    "SELECT payer, payee, amount FROM journal WHERE instruction_id = ?",
                    (instruction_id,),
                ).fetchone()
                db.execute(
                    "UPDATE accounts SET balance = balance + ? WHERE member = ?", (amount, payer)
                )
                db.execute(
                    "UPDATE accounts SET balance = balance - ? WHERE member = ?", (amount, payee)
                )
        return True

    # -- the outbox ----------------------------------------------------------------------

    @staticmethod
    def _put_tx(db: sqlite3.Connection, instruction_id: str, purpose: Purpose, tx: bytes) -> None:
        signed = signed_decoder.decode(tx)
        db.execute(
            "INSERT OR REPLACE INTO outbox (instruction_id, purpose, tx, tx_id, expires_ms, "
            "submits, state) VALUES (?, ?, ?, ?, ?, 0, ?)",
            (
                instruction_id,
                purpose.value,
                tx,
                tx_id(tx).hex(),
                signed.expires_ms,
                OutState.OPEN.value,
            ),
        )

    def put_tx(self, instruction_id: str, purpose: Purpose, tx: bytes) -> OutTx:
        """Store a signed transaction to see through (replacing an expired one)."""
        with self._transaction() as db:
            self._put_tx(db, instruction_id, purpose, tx)
        out = self.out_tx(instruction_id, purpose)
        assert out is not None
        return out

    def out_tx(self, instruction_id: str, purpose: Purpose) -> OutTx | None:
        row = self.db.execute(
            "SELECT instruction_id, purpose, tx, tx_id, expires_ms, submits, state, reason, "
            "height FROM outbox WHERE instruction_id = ? AND purpose = ?",
            (instruction_id, purpose.value),
        ).fetchone()
        return None if row is None else _out_tx(row)

    def open_txs(self) -> list[OutTx]:
        rows = self.db.execute(
            "SELECT instruction_id, purpose, tx, tx_id, expires_ms, submits, state, reason, "
            "height FROM outbox WHERE state = ? ORDER BY rowid",
            (OutState.OPEN.value,),
        )
        return [_out_tx(r) for r in rows]

    def count_txs(self, purpose: Purpose) -> int:
        row = self.db.execute(
            "SELECT COUNT(*) FROM outbox WHERE purpose = ?", (purpose.value,)
        ).fetchone()
        return int(row[0])

    def submitted(self, instruction_id: str, purpose: Purpose) -> None:
        self.db.execute(
            "UPDATE outbox SET submits = submits + 1 WHERE instruction_id = ? AND purpose = ?",
            (instruction_id, purpose.value),
        )

    def finish_tx(
        self,
        instruction_id: str,
        purpose: Purpose,
        state: OutState,
        *,
        reason: str = "",
        height: int | None = None,
    ) -> None:
        self.db.execute(
            "UPDATE outbox SET state = ?, reason = ?, height = ? "
            "WHERE instruction_id = ? AND purpose = ?",
            (state.value, reason[:300], height, instruction_id, purpose.value),
        )

    def drop_tx(self, instruction_id: str, purpose: Purpose) -> None:
        self.db.execute(
            "DELETE FROM outbox WHERE instruction_id = ? AND purpose = ?",
            (instruction_id, purpose.value),
        )


JOURNAL_COLUMNS = (
    "seq, instruction_id, contract_id, kind, payer, payee, amount, bank_ref, executed_ms, "
    "state, height, reason"
)
"""The journal's columns in the order ``journal_entry`` reads a row."""


def journal_entry(row: Any) -> JournalEntry:
    """A journal row (``SELECT {JOURNAL_COLUMNS} FROM journal``) as an entry."""
    seq, iid, cid, kind, payer, payee, amount, ref, at, state, height, reason = row
    return JournalEntry(
        seq=int(seq),
        instruction_id=str(iid),
        contract_id=str(cid),
        kind=str(kind),
        payer=str(payer),
        payee=str(payee),
        amount=int(amount),
        bank_ref=str(ref),
        executed_ms=int(at),
        state=JournalState(str(state)),
        height=None if height is None else int(height),
        reason=str(reason),
    )


def _out_tx(row: Any) -> OutTx:
    iid, purpose, tx, tx_id, expires, submits, state, reason, height = row
    return OutTx(
        instruction_id=str(iid),
        purpose=Purpose(str(purpose)),
        tx=bytes(tx),
        tx_id=str(tx_id),
        expires_ms=int(expires),
        submits=int(submits),
        state=OutState(str(state)),
        reason=str(reason),
        height=None if height is None else int(height),
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------------------------
# The service


@dataclass(frozen=True)
class BankConfig:
    """Opening balances and timing.

    ``balances`` overrides the opening balance of single members (e.g. a client that cannot
    pay); it applies when an account is opened, so a restart never resets a balance. These
    are the operator's figures in currency units; the books take them onto the money grid.
    """

    client_balance: float = DEFAULT_CLIENT_BALANCE
    institution_balance: float = DEFAULT_INSTITUTION_BALANCE
    balances: Mapping[str, float] = field(default_factory=dict)
    poll_s: float = 1.0
    resubmit_s: float = 2.0
    tx_ttl_s: float | None = None
    expiry_grace_s: float = 2.0
    late: Mapping[str, float] = field(default_factory=dict)
    """Payers that pay their margin calls late: seconds after the bank first sees each call (a
    slow treasury). Late is not short: a call defaults only when the bank reports the payer
    cannot pay, so a late payer with the funds is never defaulted."""

    def opening_balance(self, member: str, role: Role | None) -> float:
        """What a new account is opened with. A member the genesis does not name (``role``
        None) gets nothing: an instruction naming a stranger never creates money."""
        if member in self.balances:
            return self.balances[member]
        if role == Role.CLIENT:
            return self.client_balance
        if role in AUTHORITY_ELIGIBLE:
            return self.institution_balance
        return 0.0


AfterExecute = Callable[[Execution], Awaitable[None]]


class BankService(Service):
    """The bank adapter peer: an async context manager around the polling loop."""

    def __init__(
        self,
        bus: Bus,
        genesis: Genesis,
        books: BankBooks,
        *,
        config: BankConfig | None = None,
        ledger: LedgerClient | None = None,
        after_execute: AfterExecute | None = None,
    ) -> None:
        if bus.identity.role != Role.BANK:
            raise PeerError(f"{bus.member_id} is a {bus.identity.role}, not the bank")
        self.bus = bus
        self.genesis = genesis
        self.books = books
        self.config = config or BankConfig()
        self._owns_ledger = ledger is None
        self.ledger = ledger or LedgerClient(bus, genesis)
        if not self.ledger.verify:
            raise PeerError("the bank acts only on proven answers: its ledger client must verify")
        self.after_execute = after_execute
        self.me = bus.member_id
        self.stats: Counter[str] = Counter()
        self.log = log.bind(peer=self.me)
        self._notes: dict[str, Receipt] = {}
        self._last_submit: dict[str, float] = {}
        self._first_seen: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.polls = 0
        """Passes of the loop that ran to the end (a pass that failed does not count): a test
        waits for more of them to see that more passes change nothing."""
        self._ttl_s = self.config.tx_ttl_s or genesis.params.message_ttl_s

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> Self:
        if self.status != ServiceStatus.NEW:
            return self
        self.open_accounts()
        await self.ledger.start()
        self.ledger.listeners.append(self._on_receipt)
        self._task = asyncio.create_task(self._run(), name=f"{self.me}-bank")
        self.status = ServiceStatus.RUNNING
        self.log.info(
            "bank_started",
            accounts=len(self.books.balances()),
            executed=len(self.books.journal()),
            open_txs=len(self.books.open_txs()),
        )
        return self

    async def _shutdown(self) -> None:
        """Stop the loop (mid-instruction is safe: the books are transactional)."""
        if self._task is not None:
            await cancel_and_wait(self._task)
        with contextlib.suppress(ValueError):
            self.ledger.listeners.remove(self._on_receipt)
        if self._owns_ledger:
            await self.ledger.close()
        self.log.info("bank_stopped", **self.counts())

    def wake(self) -> None:
        """Poll now instead of at the next interval."""
        self._wake.set()

    # -- views -----------------------------------------------------------------------------

    def open_accounts(self) -> int:
        """An account for every member and ``CUSTODY`` (existing ones are left alone)."""
        opened = 0
        for member in self.genesis.members:
            balance = self.config.opening_balance(member.id, member.role)
            opened += self.books.open_account(member.id, to_micros(balance))
        custody = self.config.balances.get(CUSTODY, 0.0)
        opened += self.books.open_account(CUSTODY, to_micros(custody))
        return opened

    def balances(self) -> dict[str, Micros]:
        return self.books.balances()

    def set_balance(self, member: str, balance: Micros) -> Micros:
        return self.books.set_balance(member, balance)

    def counts(self) -> dict[str, int]:
        """Executed, confirmed, unconfirmed, refused and failure notices from the books (all
        time); retries and re-signed confirmations in this run."""
        return {
            **self.books.summary(),
            "retries": self.stats["retries"],
            "resigned": self.stats["resigned"],
        }

    # -- the loop --------------------------------------------------------------------------

    async def _run(self) -> None:
        while self.status != ServiceStatus.STOPPING:
            try:
                await self.poll()
                self.polls += 1
            except (LedgerUnavailable, QueryDenied) as exc:
                self.stats["poll_errors"] += 1
                self.log.warning("bank_poll_failed", error=str(exc))
            except asyncio.CancelledError:
                raise
            except Exception:
                self.stats["poll_errors"] += 1
                self.log.exception("bank_poll_crashed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.poll_s):
                    await self._wake.wait()

    async def poll(self) -> None:
        """One pass: settle receipts, execute what is due, (re)submit what is open."""
        pending = await self._payments("pending")
        failed = [p for p in await self._payments("failed") if _retryable(p)]
        if any(p.due is not None for p in failed):
            # A short payer's margin call past its due date is about to default: paying it
            # now would race the default (the books would reverse it when the chain refuses).
            today = await self._business_date()
            failed = [p for p in failed if p.due is None or today is None or today <= p.due]
        await self._settle_receipts()
        due = sorted([*pending, *failed], key=_payment_order)
        for payment in due:
            if self.books.entry(payment.id) is not None:
                continue
            if payment.kind == PaymentKind.MARGIN_CALL and self.holds_back(payment):
                continue
            await self._handle(payment)
        if self._first_seen:  # forget late calls that are no longer due
            due_ids = {p.id for p in due}
            self._first_seen = {k: v for k, v in self._first_seen.items() if k in due_ids}
        await self._resubmit()

    async def _business_date(self) -> dt.date | None:
        try:
            return dt.date.fromisoformat((await self.ledger.chain_status()).business_date)
        except ValueError:
            return None

    async def _payments(self, status: str) -> list[Payment]:
        reply = await self.ledger.query_all(PaymentsQuery(status=status), PaymentsReply)
        return list(reply.payments)

    def holds_back(self, payment: Payment) -> bool:
        """Whether a late payer's margin call waits a little longer (``BankConfig.late``)."""
        delay = self.config.late.get(payment.payer)
        if not delay:
            return False
        now = time.monotonic()
        first = self._first_seen.setdefault(payment.id, now)
        if now - first >= delay:
            return False
        if first == now:
            self.log.info("margin_call_held_back", instruction=payment.id, seconds=delay)
        return True

    async def _open_known(self, payment: Payment) -> str | None:
        """Open the accounts ``payment`` needs, for members the chain is proven to know;
        the reason it cannot be executed when one is proven absent (None: it can)."""
        missing = [m for m in (payment.payer, payment.payee) if not self.books.has_account(m)]
        if not missing:
            return None
        proven = await self.ledger.prove("members", missing)
        for member in missing:
            entry = proven.entry("members", member)
            if not entry.present:
                self.stats["unknown_member"] += 1
                return f"{member} is not a member of the network"
            role = entry.decode(Member).role
            self.books.open_account(member, to_micros(self.config.opening_balance(member, role)))
        return None

    async def _handle(self, payment: Payment) -> None:
        instruction = payment
        ilog = self.log.bind(instruction=payment.id, contract=payment.contract_id)
        unknown = await self._open_known(payment)
        if unknown is not None:
            ilog.warning("instruction_unexecutable", error=unknown)
            await self._report_failure(payment, f"{UNEXECUTABLE}{unknown}")
            return
        try:
            execution = self.books.execute(instruction, sign=self._signer(instruction))
        except InsufficientFunds as exc:
            await self._report_failure(payment, str(exc))
            return
        except BankError as exc:  # failed on chain once, with its reason, never retried
            self.stats["unexecutable"] += 1
            ilog.warning("instruction_unexecutable", error=str(exc))
            await self._report_failure(payment, f"{UNEXECUTABLE}{exc}")
            return
        if not execution.fresh:
            return
        self.stats["executed"] += 1
        ilog.info(
            "payment_executed",
            kind=payment.kind,
            payer=payment.payer,
            payee=payment.payee,
            amount=from_micros(payment.amount),
            bank_ref=execution.entry.bank_ref,
        )
        if self.after_execute is not None:
            await self.after_execute(execution)
        out = self.books.out_tx(payment.id, Purpose.CONFIRM)
        if out is not None:
            await self._submit(out)

    def _signer(self, instruction: Payment) -> Signer:
        def sign(bank_ref: str) -> bytes:
            confirmation = PaymentConfirmed(instruction.id, instruction.amount, bank_ref)
            return _encoder.encode(self.bus.outbox.sign(confirmation, ttl_s=self._ttl_s))

        return sign

    async def _report_failure(self, payment: Payment, reason: str) -> None:
        """Tell the chain once; a failed instruction waits for the balance to allow it."""
        if payment.status != "pending" or self.books.out_tx(payment.id, Purpose.FAIL):
            return
        tx = _encoder.encode(self.bus.outbox.sign(PaymentFailed(payment.id, reason)))
        out = self.books.put_tx(payment.id, Purpose.FAIL, tx)
        self.log.warning(
            "payment_failed", instruction=payment.id, contract=payment.contract_id, reason=reason
        )
        await self._submit(out)

    # -- confirmations ---------------------------------------------------------------------

    def _on_receipt(self, receipt: Receipt) -> None:
        self._notes[receipt.tx_id] = receipt
        self._wake.set()

    async def _settle_receipts(self) -> None:
        """Final receipts (from notifications or a receipts query) close outbox entries."""
        open_txs = self.books.open_txs()
        if not open_txs:
            return
        missing = [o.tx_id for o in open_txs if not _final(self._notes.get(o.tx_id))]
        if missing:  # final receipts only: proven committed, or refused by more than f
            self._notes.update(await self.ledger.final_receipts(missing[:500]))
        for out in open_txs:
            note = self._notes.get(out.tx_id)
            if note is not None:
                await self._apply_receipt(out, note)
        still_open = {o.tx_id for o in self.books.open_txs()}
        self._notes = {k: r for k, r in self._notes.items() if k in still_open}

    async def _apply_receipt(self, out: OutTx, receipt: Receipt) -> None:
        ilog = self.log.bind(instruction=out.instruction_id, purpose=out.purpose.value)
        reason = receipt.reason
        if receipt.index < 0:  # refused at admission: only some refusals are final
            if reason.startswith("duplicate"):  # these very bytes were committed (ok)
                self._finish(out, OutState.DONE, "", receipt.height, ilog)
            elif "expired" in reason:
                await self._resign(out, ilog)
            return
        if receipt.ok:
            self._finish(out, OutState.DONE, "", receipt.height, ilog)
        elif "already confirmed" in reason:
            self._finish(out, OutState.DONE, reason, receipt.height, ilog)
        elif "expired" in reason:
            await self._resign(out, ilog)
        else:
            self._finish(out, OutState.REFUSED, reason, receipt.height, ilog)

    def _finish(
        self,
        out: OutTx,
        state: OutState,
        reason: str,
        height: int,
        ilog: structlog.typing.FilteringBoundLogger,
    ) -> None:
        self.books.finish_tx(out.instruction_id, out.purpose, state, reason=reason, height=height)
        self._last_submit.pop(out.tx_id, None)
        if out.purpose == Purpose.CONFIRM:
            final = JournalState.CONFIRMED if state == OutState.DONE else JournalState.REFUSED
            if self.books.settle(out.instruction_id, final, height=height, reason=reason):
                self.stats[final.value] += 1
                if final == JournalState.CONFIRMED:
                    ilog.info("payment_confirmed", height=height, note=reason or None)
                else:  # the books reversed the movement
                    ilog.warning("confirmation_refused_reversed", height=height, reason=reason)
        elif state == OutState.DONE:
            ilog.info("failure_recorded", height=height)
        else:
            ilog.warning("failure_notice_refused", reason=reason)

    async def _resign(self, out: OutTx, ilog: structlog.typing.FilteringBoundLogger) -> None:
        """The stored bytes expired before they were committed: sign the same statement anew.
        A failure notice is dropped instead (the next pass decides again)."""
        self._last_submit.pop(out.tx_id, None)
        if out.purpose == Purpose.FAIL:
            self.books.drop_tx(out.instruction_id, out.purpose)
            return
        old = signed_decoder.decode(out.tx)
        payload = msgspec.msgpack.decode(old.body, type=PaymentConfirmed)
        tx = _encoder.encode(self.bus.outbox.sign(payload, ttl_s=self._ttl_s))
        fresh = self.books.put_tx(out.instruction_id, out.purpose, tx)
        self.stats["resigned"] += 1
        self.stats["retries"] += 1
        ilog.info("confirmation_resigned", old=out.tx_id[:12], new=fresh.tx_id[:12])
        await self._submit(fresh)

    async def _resubmit(self) -> None:
        now = time.time()
        for out in self.books.open_txs():
            last = self._last_submit.get(out.tx_id)
            if last is not None and now - last < self.config.resubmit_s:
                continue
            if now * 1000 > out.expires_ms + self.config.expiry_grace_s * 1000:
                await self._resign(out, self.log.bind(instruction=out.instruction_id))
                continue
            if last is not None or out.submits > 0:
                self.stats["retries"] += 1
            await self._submit(out)

    async def _submit(self, out: OutTx) -> None:
        signed = signed_decoder.decode(out.tx)
        await self.ledger.submit_signed(signed)
        self.books.submitted(out.instruction_id, out.purpose)
        self._last_submit[out.tx_id] = time.time()


def _micros(amount: Micros) -> Micros:
    """``amount`` as the books take it: an integer of micros, nothing else."""
    if type(amount) is not int:
        raise BankError(f"an amount in the books is integer micros, not {amount!r}")
    return amount


UNEXECUTABLE = "unexecutable: "
"""Prefix of the failure reason of an instruction the bank can never execute (not retried)."""


def _retryable(payment: Payment) -> bool:
    """A failed instruction is tried again (the payer may have been funded since) unless the
    bank found it unexecutable."""
    return not (payment.failure or "").startswith(UNEXECUTABLE)


def _payment_order(payment: Payment) -> tuple[str, int, str]:
    """Due instructions in order: by due date (margin calls; others are due at once, on the
    date they were made), then as the chain created them."""
    due = payment.due or payment.date
    return (due.isoformat() if due is not None else "", payment.created_height, payment.id)


def _final(receipt: Receipt | None) -> bool:
    return receipt is not None and receipt.index >= 0


def parse_balances(items: Iterable[str]) -> dict[str, float]:
    """``MEMBER=AMOUNT`` pairs (the CLI's ``--balance``); raises ``ValueError`` naming one."""
    out: dict[str, float] = {}
    for item in items:
        member, sep, raw = item.partition("=")
        if not sep or not member.strip():
            raise ValueError(f"{item!r} is not MEMBER=AMOUNT")
        try:
            amount = float(raw)
        except ValueError:
            raise ValueError(f"{item!r}: {raw!r} is not a number") from None
        if not (amount >= 0 and amount != float("inf")):
            raise ValueError(f"{item!r}: the amount must be a finite number >= 0")
        out[member.strip()] = amount
    return out


__all__ = [
    "CUSTODY",
    "BankBooks",
    "BankConfig",
    "BankError",
    "BankService",
    "Execution",
    "InsufficientFunds",
    "JournalEntry",
    "JournalState",
    "OutState",
    "OutTx",
    "Purpose",
    "ServiceStatus",
    "UnknownAccount",
    "parse_balances",
]
