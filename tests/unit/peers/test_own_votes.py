"""An authority's own votes in its store: what it signed at a height survives a crash (a new
connection reads it back), a second vote for another block at the same step is refused, and
only the last two heights are kept."""

from __future__ import annotations

import pytest

from peers.authority.store import SqliteChainStore, StoreError

A, B = b"a" * 32, b"b" * 32


def test_votes_survive_reopening_and_a_second_block_for_one_step_is_refused(tmp_path):
    store = SqliteChainStore(tmp_path / "chain.db")
    store.record_vote(7, 0, "ibft_prepare", A)
    store.record_vote(7, 0, "ibft_prepare", A)  # the same vote again: fine
    store.record_vote(7, 1, "ibft_prepare", B)  # another round: fine
    with pytest.raises(StoreError, match="already signed ibft_prepare at height 7 round 0"):
        store.record_vote(7, 0, "ibft_prepare", B)
    store.close()  # as a crash would leave it: committed rows only
    again = SqliteChainStore(tmp_path / "chain.db")
    assert again.votes_at(7) == {("ibft_prepare", 0): A, ("ibft_prepare", 1): B}
    assert again.votes_at(8) == {}


def test_votes_of_heights_before_the_last_two_are_dropped(tmp_path):
    store = SqliteChainStore(tmp_path / "chain.db")
    for height in (1, 2, 3, 4):
        store.record_vote(height, 0, "ibft_commit", A)
    assert [h for h in (1, 2, 3, 4) if store.votes_at(h)] == [3, 4]
