"""chain_verifies on hand-built verdicts and block hashes."""

from __future__ import annotations

from peers.authority.verify import Verdict
from peers.soak import BlockInfo, RestartRecord, check_chain_verifies

GOOD = {"D1": Verdict(True, 3), "D2": Verdict(True, 3)}
SAME = {"D1": {1: "aa", 2: "bb", 3: "cc"}, "D2": {1: "aa", 2: "bb", 3: "cc"}}


def blocks(*proposers: str, at_ms: int = 1000) -> dict[int, BlockInfo]:
    return {
        h: BlockInfo(h, f"h{h}", at_ms + h, p, 0, ("D1", "D2"))
        for h, p in enumerate(proposers, start=1)
    }


def test_identical_chains_that_re_verify_are_clean():
    assert check_chain_verifies(GOOD, SAME) == []


def test_a_database_that_does_not_re_verify_names_the_authority_and_the_height():
    verdicts = {**GOOD, "D2": Verdict(False, 2, "state snapshot differs from the chain's state")}
    [v] = check_chain_verifies(verdicts, SAME)
    assert (v.invariant, v.height, v.ids) == ("chain_verifies", 2, ("D2",))
    assert "state snapshot differs" in v.detail


def test_two_authorities_holding_different_blocks_are_reported_at_the_first_fork():
    forked = {"D1": SAME["D1"], "D2": {1: "aa", 2: "xx", 3: "yy"}}
    [v] = check_chain_verifies(GOOD, forked)
    assert v.height == 2 and v.ids == ("D1", "D2")
    assert "different blocks" in v.detail


def test_a_killed_authority_that_never_came_back_is_a_violation():
    restart = RestartRecord("D2", killed_height=2, killed_ms=500, snapshot_before=1)
    [v] = check_chain_verifies(GOOD, SAME, restart=restart, blocks=blocks("D1", "D2", "D1"))
    assert v.ids == ("D2",) and "never came back" in v.detail


def test_a_killed_authority_that_came_back_and_proposed_again_is_clean():
    restart = RestartRecord("D2", 1, 500, 1, ready_ms=1001, caught_up_ms=1002, tip=3)
    found = check_chain_verifies(
        GOOD, SAME, restart=restart, blocks=blocks("D1", "D2", "D1"), tips={"D1": 3, "D2": 3}
    )
    assert found == []


def test_a_killed_authority_that_came_back_but_took_no_part_is_a_violation():
    restart = RestartRecord("CCP", 1, 500, 1, ready_ms=1001, tip=3)
    found = check_chain_verifies(
        GOOD, SAME, restart=restart, blocks=blocks("D1", "D2", "D1"), tips={"D1": 3, "CCP": 3}
    )
    assert [v.ids for v in found] == [("CCP",)]
    assert "proposed or sealed no block" in found[0].detail


def test_a_killed_authority_left_behind_the_tip_is_a_violation():
    restart = RestartRecord("D2", 1, 500, 1, ready_ms=1001, tip=5)
    found = check_chain_verifies(
        GOOD,
        SAME,
        restart=restart,
        blocks=blocks("D1", "D2", "D1"),
        tips={"D1": 100, "D2": 5},
        lag_blocks=20,
    )
    assert [v.height for v in found] == [5]
    assert "behind the tip 100" in found[0].detail
