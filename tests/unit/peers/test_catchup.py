"""Catch-up apart from the node: the stream first, the peers when the stream does not move the
node forward, blocks out of place skipped, a refused block ending its batch."""

from __future__ import annotations

import asyncio
from collections import Counter
from types import SimpleNamespace
from typing import Any

from peers.authority.catchup import BlockRefused, CatchUp


class Follower:
    """A node's height and an ``apply`` that refuses the heights it is told to."""

    def __init__(self, refuse: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self.height = 0
        self.refuse = set(refuse)
        self.applied: list[int] = []

    def apply(self, block: Any) -> None:
        if block.height in self.refuse:
            raise BlockRefused(f"block {block.height} refused")
        self.height = block.height
        self.applied.append(block.height)


def blocks(*heights: int) -> list[Any]:
    return [SimpleNamespace(height=h) for h in heights]


def catch_up(follower: Follower, stream: list[list[Any]], peers: list[list[Any]]) -> CatchUp:
    stats: Counter[str] = Counter()
    c = CatchUp(
        bus=SimpleNamespace(member_id="D1"),  # type: ignore[arg-type]
        js=None,
        height=lambda: follower.height,
        authorities=lambda: ("CCP", "D1"),
        apply=follower.apply,
        stats=stats,
        max_reply_bytes=1 << 20,
    )
    calls: list[str] = []

    async def from_stream(start: int) -> list[Any]:
        calls.append(f"stream@{start}")
        return stream.pop(0) if stream else []

    async def from_peers(start: int) -> list[Any]:
        calls.append(f"peers@{start}")
        return peers.pop(0) if peers else []

    c.fetch_stream = from_stream  # type: ignore[method-assign]
    c.fetch_peers = from_peers  # type: ignore[method-assign]
    c.calls = calls  # type: ignore[attr-defined]
    return c


def test_the_stream_is_asked_first_and_the_peers_only_when_it_does_not_move_the_node():
    follower = Follower()
    c = catch_up(follower, stream=[blocks(1, 2)], peers=[blocks(3)])
    assert asyncio.run(c.run()) == 3
    assert follower.applied == [1, 2, 3]
    assert c.calls == ["stream@1", "stream@3", "peers@3", "stream@4", "peers@4"]  # type: ignore[attr-defined]


def test_blocks_out_of_place_on_the_stream_are_counted_and_skipped():
    follower = Follower()
    c = catch_up(follower, stream=[blocks(5, 1, 1, 2)], peers=[])
    assert asyncio.run(c.run()) == 2
    assert follower.applied == [1, 2]
    assert c.stats["sync_out_of_place"] == 2


def test_a_refused_stream_block_ends_its_batch_and_the_peers_are_asked():
    follower = Follower(refuse={2})
    c = catch_up(follower, stream=[blocks(1, 2, 3)], peers=[])
    assert asyncio.run(c.run()) == 1
    assert follower.applied == [1]
    assert c.calls == ["stream@1", "stream@2", "peers@2"]  # type: ignore[attr-defined]


def test_a_second_run_while_one_runs_does_nothing():
    follower = Follower()
    c = catch_up(follower, stream=[], peers=[])
    c.running = True
    assert asyncio.run(c.run()) == 0
    assert c.calls == []  # type: ignore[attr-defined]
