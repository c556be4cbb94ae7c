"""The block executor: a proposal runs on an overlay of the final state, then is committed
or discarded; discarding leaves the final state exactly as it was (no reload, no replay),
committing leaves it exactly as executing in place would have."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rfq.ledger.block import BlockHeader, build_block, proposer_for
from rfq.ledger.digest import DigestMap, DigestOverlay
from rfq.ledger.executor import BlockExecutor, ExecutorError
from rfq.ledger.proof import verify_state_proof
from rfq.ledger.snapshot import apply_rows, assemble, sorted_entries
from rfq.ledger.state import BlockResult, LedgerState
from rfq.ledger.tx import PriceFixing

from .harness import TODAY, Chain, make_net, trade_tx
from .test_snapshot_roundtrip import NET, Run, _op


class ExecutorChain(Chain):
    """The harness chain, every block executed twice through a ``BlockExecutor``: first
    discarded (the final state must not move), then committed; and once in place on a
    twin, which the committed state must equal (root and snapshot bytes). After each
    block the rows changed since the last are taken, as a node's snapshots are, and applied
    to those held: they must make the twin's snapshot."""

    def __init__(self, net: object) -> None:
        super().__init__(NET)
        self.in_place = Chain(NET)
        self.executor = BlockExecutor(self.state, self.head)
        self.held: dict[str, dict[str, bytes]] = {}
        self.held_height: int | None = None

    def block(self, *txs: bytes, at_ms: int | None = None, round: int = 0) -> BlockResult:
        height = self.head.height + 1
        timestamp = at_ms if at_ms is not None else self.head.timestamp_ms + 1000
        before_root, before = self.state.state_root(), self.state.snapshot()
        undone = self.executor.execute(height, timestamp, txs)
        undone.discard()
        assert self.state.state_root() == before_root
        assert self.state.snapshot() == before
        pending = self.executor.execute(height, timestamp, txs)
        header = self._header(height, timestamp, txs, pending.root, pending.state, round)
        pending.commit(header)
        expected = self.in_place.block(*txs, at_ms=timestamp, round=round)
        assert self.state.state_root() == self.in_place.state.state_root() == header.state_root
        assert self.state.snapshot() == self.in_place.state.snapshot()
        assert pending.result.receipts == expected.receipts
        rows = self.state.snapshot_rows(self.held_height)()
        assert rows.base == self.held_height
        self.held, self.held_height = apply_rows(self.held, rows.tables), height
        entries = {name: sorted_entries(table) for name, table in self.held.items()}
        assert assemble(rows.frame, entries) == self.in_place.state.snapshot()
        self.head = header
        self.results.append(pending.result)
        return pending.result

    def _header(
        self,
        height: int,
        timestamp: int,
        txs: tuple[bytes, ...],
        root: bytes,
        after: LedgerState,
        round: int,
    ) -> BlockHeader:
        return build_block(
            self.head,
            proposer=proposer_for(height, round, after.gov.previous_set),
            round=round,
            timestamp_ms=timestamp,
            txs=txs,
            state_root=root,
            authorities=after.gov.previous_set,
        ).header


class ExecutorRun(Run):
    def __init__(self) -> None:
        super().__init__()
        self.chain = ExecutorChain(NET)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(_op, min_size=5, max_size=30))
def test_an_overlay_then_commit_equals_executing_in_place_and_a_discard_changes_nothing(ops):
    run = ExecutorRun()
    for op in ops:
        run.step(op)
    assert run.chain.executor.discarded >= len(ops)


# -- the map overlay ----------------------------------------------------------------------


def _map(n: int = 50) -> DigestMap[int]:
    m: DigestMap[int] = DigestMap("numbers", int)
    for i in range(n):
        m[f"k{i}"] = i
    return m


def test_an_overlay_writes_and_deletes_locally_and_reads_through_to_its_parent():
    parent = _map()
    root = parent.digest()
    overlay = parent.fork()
    overlay["k1"] = 100
    overlay["new"] = 7
    del overlay["k2"]
    assert (overlay["k1"], overlay["new"], overlay.get("k3")) == (100, 7, 3)
    assert "k2" not in overlay and "k2" in parent
    assert len(overlay) == 50 and len(parent) == 50
    assert overlay.written == 3
    assert parent.digest() == root and parent["k1"] == 1 and "new" not in parent
    with pytest.raises(KeyError):
        overlay["k2"]


def test_an_overlays_digest_and_proofs_are_those_of_the_map_written_in_place():
    in_place, parent = _map(), _map()
    overlay = parent.fork()
    for m in (in_place, overlay):
        m["k1"] = 100
        m["new"] = 7
        del m["k2"]
        del m["k3"]
        m["k3"] = 33  # deleted and added again: moves to the end
    assert overlay.digest() == in_place.digest() == overlay.full_digest()
    assert list(overlay.items()) == list(in_place.items())
    assert overlay.encode() == in_place.encode()
    for key in ("k1", "new", "k2", "k40", "absent"):
        assert overlay.prove(key) == in_place.prove(key)


def test_a_committed_overlay_leaves_the_parent_as_if_written_in_place():
    in_place, parent = _map(), _map()
    overlay = parent.fork()
    for m in (in_place, overlay):
        del m["k5"]
        m["k5"] = 55
        m["k6"] = 66
        m["z"] = 1
        del m["z"]
    digest = overlay.digest()
    overlay.commit()
    assert list(parent.items()) == list(in_place.items())
    assert parent.digest() == digest == in_place.digest() == parent.full_digest()
    parent["k7"] = 77  # the parent carries on after the commit
    in_place["k7"] = 77
    assert parent.digest() == in_place.digest()


def test_a_discarded_overlay_leaves_the_parent_untouched():
    parent = _map()
    root, items = parent.digest(), list(parent.items())
    overlay = parent.fork()
    overlay["k1"] = -1
    del overlay["k9"]
    overlay.digest()
    del overlay  # dropped: nothing to undo
    assert parent.digest() == root and list(parent.items()) == items


def test_a_transactions_undo_on_an_overlay_puts_back_what_it_wrote_as_it_would_in_place():
    in_place, parent = _map(), _map()
    overlay = parent.fork()
    for m in (in_place, overlay):
        m["k1"] = 10  # an earlier transaction of the block
    digest = overlay.digest()
    for m in (in_place, overlay):
        m.journal = []
        m["k1"] = 11
        m["fresh"] = 1
        del m["k4"]
        m.undo()  # a refused transaction: k4 comes back (at the end, as a dict puts it)
    assert list(overlay.items()) == list(in_place.items())
    assert overlay["k1"] == 10 and overlay["k4"] == 4 and "fresh" not in overlay
    assert overlay.digest() == digest == in_place.digest()
    assert isinstance(overlay, DigestOverlay)


def test_an_overlay_of_an_overlay_is_refused():
    with pytest.raises(TypeError):
        _map().fork().fork()


# -- the executor ----------------------------------------------------------------------------


def test_a_proposal_not_decided_leaves_the_final_root_and_a_different_block_is_committed():
    net = make_net()
    chain = Chain(net)
    executor = BlockExecutor(chain.state, chain.head)
    at = chain.head.timestamp_ms + 1000
    proposal = executor.execute(1, at, (trade_tx(net, rfq_id="r1", at_ms=at - 500),))
    assert "r1" in proposal.state.trades and "r1" not in chain.state.trades
    assert chain.state.book.journaling
    fixing = PriceFixing(TODAY + dt.timedelta(days=1), (("RB2705", 3300.0),))
    fix = net.tx("ORACLE", fixing, at_ms=at)
    other = executor.execute(1, at + 1, (fix,))  # another block for the height: the first goes
    assert not proposal.live and executor.discarded == 1
    assert "r1" not in chain.state.book and "r1" not in chain.state.trades
    header = build_block(
        chain.head,
        proposer=proposer_for(1, 1, chain.state.gov.previous_set),
        round=1,
        timestamp_ms=at + 1,
        txs=(fix,),
        state_root=other.root,
        authorities=other.state.gov.previous_set,
    ).header
    other.commit(header)
    assert executor.head == header and chain.state.height == 1
    assert chain.state.state_root() == header.state_root
    assert not chain.state.book.journaling
    with pytest.raises(ExecutorError):
        proposal.commit(header)


def test_a_proof_from_the_pending_state_verifies_against_its_root():
    net = make_net()
    chain = Chain(net)
    executor = BlockExecutor(chain.state, chain.head)
    at = chain.head.timestamp_ms + 1000
    pending = executor.execute(1, at, (trade_tx(net, rfq_id="r1", at_ms=at - 500),))
    proof = pending.state.prove("trades", "r1")
    assert verify_state_proof(proof, pending.root, component="trades", key="r1").value
    assert chain.state.prove("trades", "r1").value is None
