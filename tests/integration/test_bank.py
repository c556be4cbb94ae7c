"""The settlement bank against four authorities over a real nats-server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable

import pytest

from peers.bank import BankBooks, BankConfig, BankService, JournalState, Purpose
from peers.cli import main
from peers.ledger_client import LedgerClient
from rfq.ledger.state import CUSTODY
from rfq.money import from_micros
from rfq.money import to_micros as M
from rfq.queries import PaymentsQuery

from .chainkit import TxFactory, start_authorities, submit, wait_for

pytestmark = pytest.mark.integration


async def payment(reg: LedgerClient, instruction_id: str):
    reply = await reg.query(PaymentsQuery())
    return next((p for p in reply.payments if p.id == instruction_id), None)


def journal_states(network) -> list[str]:
    """The bank process's journal, read from its database (read-only, beside the writer)."""
    path = network.data_dir("BANK") / "bank.db"
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [row[0] for row in db.execute("SELECT state FROM journal ORDER BY seq")]
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        db.close()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Ask ``check`` until it says yes; past ``timeout`` seconds fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.1)


async def more_passes(bank: BankService, passes: int, timeout: float = 30) -> None:
    """Wait until the bank's loop has run ``passes`` more passes to the end. The pass under way
    now (begun before the caller looked) counts for one at most: ``passes - 1`` of them began
    after, and each had the chance to act on what the caller saw."""
    target = bank.polls + passes
    await wait_for(
        lambda: bank.polls >= target, timeout=timeout, what=f"{passes} more passes of the bank"
    )


async def stop_all(nodes) -> None:
    for node in nodes.values():
        await node.stop()


async def test_the_bank_executes_client_c1s_initial_margin_once_and_confirms_it_on_chain(
    network, nats_server, bus_factory
):
    nodes = await start_authorities(network, bus_factory)
    genesis = network.genesis()
    async with LedgerClient(await bus_factory("REG"), genesis) as reg:
        await submit(await bus_factory("C1"), [TxFactory(network).trade("r1", client="C1")])
        books = BankBooks(network.data_dir("BANK") / "bank.db")
        assert books.balances() == {}  # accounts open when the bank starts
        async with BankService(
            await bus_factory("BANK"), genesis, books, config=BankConfig(poll_s=0.2)
        ) as bank:
            funded = books.total_micros()
            await wait_for(
                lambda: bank.counts()["confirmed"] == 1, timeout=20, what="the margin confirmed"
            )
            on_chain = await payment(reg, "r1/initial_margin/1")
            [entry] = books.journal()
            assert on_chain.status == "confirmed"
            assert on_chain.bank_ref == entry.bank_ref
            assert on_chain.confirmed_height == entry.height
            assert (entry.payer, entry.payee, entry.amount) == ("C1", CUSTODY, on_chain.amount)
            balances = bank.balances()
            assert balances["C1"] == M(5.0e7) - on_chain.amount
            assert balances[CUSTODY] == on_chain.amount
            assert balances["D1"] == M(5.0e9) and balances["REG"] == 0
            await more_passes(bank, 3)  # more passes change nothing
            assert bank.counts()["executed"] == 1
            assert books.total_micros() == funded and books.balanced()
        books.close()
        await stop_all(nodes)


async def test_client_c3_without_funds_is_reported_once_and_paid_once_it_is_funded(
    network, nats_server, bus_factory
):
    nodes = await start_authorities(network, bus_factory)
    genesis = network.genesis()
    async with LedgerClient(await bus_factory("REG"), genesis) as reg:
        await submit(await bus_factory("C3"), [TxFactory(network).trade("r3", client="C3")])
        books = BankBooks(network.data_dir("BANK") / "bank.db")
        config = BankConfig(poll_s=0.2, balances={"C3": 0.0})
        async with BankService(await bus_factory("BANK"), genesis, books, config=config) as bank:
            failed = None

            async def told() -> bool:
                nonlocal failed
                failed = await payment(reg, "r3/initial_margin/1")
                return failed is not None and failed.status == "failed"

            await eventually(told, 20, "the chain to record r3's margin as failed")
            assert failed.failure.startswith("insufficient funds: C3 holds 0.00")
            await more_passes(bank, 5)  # still short: no second notice, nothing executed
            assert bank.counts()["failed"] == 1
            assert books.journal() == []
            assert bank.balances()["C3"] == 0

            bank.set_balance("C3", M(1.0e6))
            bank.wake()
            await wait_for(lambda: bank.counts()["confirmed"] == 1, timeout=20, what="paid")
            paid = await payment(reg, "r3/initial_margin/1")
            assert paid.status == "confirmed"
            assert bank.balances()["C3"] == M(1.0e6) - paid.amount
            assert books.balanced()
            assert books.out_tx("r3/initial_margin/1", Purpose.FAIL).state == "done"
        books.close()
        await stop_all(nodes)


async def test_a_confirmation_that_expired_unsent_is_signed_anew_and_confirms_once(
    network, nats_server, bus_factory
):
    nodes = await start_authorities(network, bus_factory)
    genesis = network.genesis()
    async with LedgerClient(await bus_factory("REG"), genesis) as reg:
        await submit(await bus_factory("C1"), [TxFactory(network).trade("r1", client="C1")])
        books = BankBooks(network.data_dir("BANK") / "bank.db")
        signed_first: list[str] = []

        async def stall_past_the_ttl(execution) -> None:
            unsent = books.out_tx(execution.entry.instruction_id, Purpose.CONFIRM)
            signed_first.append(unsent.tx_id)
            # The confirmation (valid 1.5 s) expires before it is sent: hold it past its expiry.
            while time.time() * 1000 <= unsent.expires_ms:
                await asyncio.sleep(max(unsent.expires_ms / 1000 - time.time(), 0) + 0.05)

        config = BankConfig(poll_s=0.2, resubmit_s=0.3, tx_ttl_s=1.5, expiry_grace_s=0.2)
        async with BankService(
            await bus_factory("BANK"),
            genesis,
            books,
            config=config,
            after_execute=stall_past_the_ttl,
        ) as bank:
            await wait_for(lambda: bank.counts()["confirmed"] == 1, timeout=20, what="confirmed")
            assert bank.counts()["resigned"] >= 1
        [entry] = books.journal()
        on_chain = await payment(reg, "r1/initial_margin/1")
        assert on_chain.status == "confirmed" and on_chain.bank_ref == entry.bank_ref
        final = books.out_tx("r1/initial_margin/1", Purpose.CONFIRM)
        assert final.tx_id != signed_first[0]  # new bytes, the same statement
        receipts = [r for n in nodes.values() for r in n.store.receipts([final.tx_id])]
        assert receipts and receipts[0].ok and receipts[0].height == entry.height
        assert not [r for n in nodes.values() for r in n.store.receipts(signed_first)]
        assert bank.balances()["C1"] == M(5.0e7) - on_chain.amount
        books.close()
        await stop_all(nodes)


async def test_botc_bank_settles_as_a_process_stops_on_sigterm_and_shows_its_books(
    network, nats_server, bus_factory, capsys
):
    nodes = await start_authorities(network, bus_factory)
    genesis = network.genesis()
    async with LedgerClient(await bus_factory("REG"), genesis) as reg:
        await submit(await bus_factory("C2"), [TxFactory(network).trade("r2", client="C2")])
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "peers.cli", "bank", "--net", str(network.path)),
            *("--poll-s", "0.2"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        found = None

        async def confirmed_on_chain() -> bool:
            nonlocal found
            found = await payment(reg, "r2/initial_margin/1")
            return found is not None and found.status == "confirmed"

        async def confirmed_in_the_books() -> bool:
            return journal_states(network) == ["confirmed"]

        try:
            await eventually(confirmed_on_chain, 30, "the bank process to confirm r2's margin")
            assert found.bank_ref == "BANK-0000000001"
            await eventually(  # the process has taken note of the receipt in its books
                confirmed_in_the_books, 20, "the bank process's journal to say confirmed"
            )
            proc.send_signal(signal.SIGTERM)
            raw, _ = await asyncio.wait_for(proc.communicate(), 20)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        out = raw.decode()
        assert proc.returncode == 0
        first, *_, last = out.strip().splitlines()
        assert first.startswith("bank BANK settling from")
        assert json.loads(last)["confirmed"] == 1

        capsys.readouterr()  # the in-process peers' logs so far
        assert main(["bank", "--net", str(network.path), "--show"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["balances"]["C2"] == from_micros(M(5.0e7) - found.amount)  # units
        assert shown["balances"][CUSTODY] == from_micros(found.amount)
        assert shown["balanced"] and shown["executed"] == shown["confirmed"] == 1
        books = BankBooks(network.data_dir("BANK") / "bank.db")
        assert books.entry("r2/initial_margin/1").state == JournalState.CONFIRMED
        books.close()
        await stop_all(nodes)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--balance", "C1=lots"], "'lots' is not a number"),
        (["--id", "C1"], "C1 is a client"),
        (["--id", "NOBODY"], "no member 'NOBODY'"),
        (["--opening-balance", "-5"], "--opening-balance must be"),
        (["--poll-s", "0"], "--poll-s must be positive"),
    ],
)
def test_botc_bank_refuses_bad_input_in_one_line(network, capsys, argv, message):
    assert main(["bank", "--net", str(network.path), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
