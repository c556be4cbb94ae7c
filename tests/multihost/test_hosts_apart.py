"""The marketplace across hosts apart (a network namespace per institution, ``harness``),
with faults on the network between them and the soak's invariants checked after each.

One network serves the whole module; each test starts from every authority in step and the
chain moving, puts its fault in place, checks what the fault must do, takes it away, waits
for the network to recover and checks the invariants over the time since it began. The
figures (heights, times to recover) are printed for the record (``pytest -s``).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest

from peers.clock import CLOCK_OFFSET_ENV

from ..ceremony import MEMBERS, foreign_secrets
from .harness import (
    AUTHORITIES,
    CLIENTS,
    INSTITUTIONS,
    NATS_HOSTS,
    MultiHost,
    Report,
    Tolerated,
)

pytestmark = pytest.mark.multihost

LINK_DOWN_S = 30.0
SPLIT_S = 12.0
NETEM_S = 20.0


def record(fault: str, **figures: Any) -> None:
    print(f"\n[multihost] {fault}: {json.dumps(figures, default=str)}", flush=True)


def invariants_hold(hosts: MultiHost, since_t: float, offsets: dict[str, int], **kw: Any) -> Report:
    result = hosts.check(since_t=since_t, offsets=offsets, **kw)
    assert result.problems() == [], "\n".join(result.problems())
    return result


def others(*left_out: str) -> tuple[str, ...]:
    return tuple(a for a in AUTHORITIES if a not in left_out)


def test_each_institution_runs_on_its_own_host_and_holds_its_own_secret_only(
    hosts: MultiHost,
):
    assert foreign_secrets(hosts.net) == []
    tls_keys = {
        member_id: sorted(
            str(p.relative_to(hosts.home(member_id)))
            for p in hosts.home(member_id).rglob("*.key")
            if p.parent.name != "keys"
        )
        for member_id, _ in MEMBERS
    }
    nats_keys = [f"nats/tls/n{i}.key" for i in (1, 2, 3)]
    assert tls_keys.pop("REG") == ["ca/ca.key", *nats_keys]  # the bus and CA are the regulator's
    assert all(not keys for keys in tls_keys.values()), tls_keys  # the CA's certificate only
    assert hosts.supervisor is not None
    host_of: dict[str, set[str]] = {}
    for service in hosts.supervisor.services:
        assert service.process is not None, service.name
        where = os.readlink(f"/proc/{service.process.pid}/ns/net")
        host_of.setdefault(hosts.host_of[service.name], set()).add(where)
    for node in hosts.nats.values():
        assert node.process is not None
        host_of.setdefault(node.host.name, set()).add(
            os.readlink(f"/proc/{node.process.pid}/ns/net")
        )
    assert sorted(host_of) == sorted([*INSTITUTIONS, *NATS_HOSTS])
    assert all(len(ns) == 1 for ns in host_of.values()), host_of  # an institution, a host
    spaces = [next(iter(ns)) for ns in host_of.values()]
    assert len(set(spaces)) == len(spaces)  # every host apart
    assert os.readlink("/proc/self/ns/net") not in spaces  # and none is this machine's


def test_institutions_trade_across_hosts_over_tls(hosts: MultiHost):
    since, offsets = hosts.now_s(), hosts.log_offsets()
    before = {c: sum(t.client == c for t in hosts.chain_facts().trades) for c in CLIENTS}

    def traded() -> bool:
        trades = hosts.chain_facts().trades
        by_client = all(sum(t.client == c for t in trades) > before[c] for c in CLIENTS)
        return by_client and len({t.dealer for t in trades}) >= 2

    took = hosts.until(
        traded, timeout=90, what="a new trade by each client, with two dealers", poll=1.0
    )
    for node in hosts.nats.values():  # servers speak TLS only, from the first byte
        assert "handshake_first: true" in node.config_text()
        assert "TLS required for client connections" in node.log.read_text(errors="replace")
    result = invariants_hold(hosts, since, offsets)
    dealers = sorted({t.dealer for t in result.facts.trades})
    record(
        "trading",
        first_trades_s=round(took, 1),
        trades=len(result.facts.trades),
        dealers=dealers,
        heights=result.heights,
    )


def test_an_authority_cut_off_for_30s_catches_up_while_the_other_three_go_on(
    hosts: MultiHost,
):
    hosts.wait_healthy()
    since, offsets = hosts.now_s(), hosts.log_offsets()
    before = hosts.heights()
    hosts.silenced.add("D3")
    hosts.topology.link("D3", up=False)
    try:
        time.sleep(LINK_DOWN_S)  # the outage itself; what it did is checked below
        during = hosts.heights()
    finally:
        hosts.topology.link("D3", up=True)
    went_on = min(during[a] for a in others("D3")) - before["D1"]
    assert went_on >= 20, (before, during)  # the chain went on with three
    assert during["D3"] <= before["D3"] + 2, (before, during)  # D3 heard nothing
    top = max(during.values())
    caught_up_s = hosts.until(
        lambda: hosts.height("D3") >= top, timeout=90, what="D3 catching up after its outage"
    )
    hosts.silenced.discard("D3")
    back_at = hosts.height("D3")
    hosts.until(
        lambda: sum(hosts.took_part("D3", back_at)) > 0,
        timeout=60,
        what="D3 proposing or sealing again",
    )
    hosts.wait_advance(3, among=AUTHORITIES, timeout=30)
    result = invariants_hold(hosts, since, offsets)
    record(
        "link down 30s (D3)",
        before=before,
        after_30s=during,
        blocks_without_d3=went_on,
        caught_up_s=round(caught_up_s, 1),
        heights=result.heights,
        longest_stall_s=result.longest_stall_s,
    )


def test_a_two_two_split_halts_the_chain_without_a_fork_and_it_resumes_when_healed(
    hosts: MultiHost,
):
    hosts.wait_healthy()
    since, offsets = hosts.now_s(), hosts.log_offsets()
    side_a, side_b = ("D1", "D2", "nats1"), ("D3", "CCP", "nats2", "nats3")
    before = hosts.heights()
    hosts.silenced.update(AUTHORITIES)  # no quorum anywhere: the progress clock stops
    hosts.topology.split(side_a, side_b)
    try:
        time.sleep(3.0)  # a block already in its commit round may still land
        halted_at = hosts.heights()
        time.sleep(SPLIT_S)  # the split itself; what it did is checked below
        still = hosts.heights()
    finally:
        hosts.topology.heal()
    assert still == halted_at, (halted_at, still)  # neither side decided a block
    top = max(still.values())
    resumed_s = hosts.until(
        lambda: min(hosts.heights().values()) > top,
        timeout=90,
        what="the chain resuming on every authority after the split",
    )
    hosts.silenced.difference_update(AUTHORITIES)
    hosts.wait_advance(3, among=AUTHORITIES, timeout=30)
    result = invariants_hold(hosts, since, offsets)  # equal hashes at every height: no fork
    record(
        "2|2 split",
        before=before,
        halted_at=halted_at,
        after_split=still,
        resumed_on_all_s=round(resumed_s, 1),
        heights=result.heights,
    )


def test_delay_and_loss_on_an_authoritys_link_slow_it_but_it_keeps_up(hosts: MultiHost):
    hosts.wait_healthy()
    since, offsets = hosts.now_s(), hosts.log_offsets()
    before = hosts.heights()
    t0 = time.monotonic()
    how = hosts.topology.impair("D2", delay_ms=100, loss_pct=5.0)
    try:
        time.sleep(NETEM_S)  # the impairment; what it did is checked below
        during = hosts.heights()
        lag = max(during.values()) - during["D2"]
    finally:
        hosts.topology.clear_impairment("D2")
    spent = time.monotonic() - t0
    blocks = min(during.values()) - max(before.values())
    assert blocks >= 10, (before, during)
    assert lag <= 5, during  # D2 kept up with the chain through it
    hosts.wait_advance(3, among=AUTHORITIES, timeout=30)
    result = invariants_hold(hosts, since, offsets)
    record(
        "100ms delay, 5% loss (D2)",
        by=how,
        before=before,
        during=during,
        blocks_per_s=round(blocks / spent, 1),
        d2_lag_blocks=lag,
        heights=result.heights,
    )


def test_a_killed_nats_node_leaves_the_chain_going_and_rejoins(hosts: MultiHost):
    hosts.wait_healthy()
    since, offsets = hosts.now_s(), hosts.log_offsets()
    node = hosts.nats["nats3"]
    before = hosts.heights()
    node.kill()
    went_on_s = hosts.wait_advance(10, among=AUTHORITIES, timeout=60)
    during = hosts.heights()
    mark = len(node.log.read_text(errors="replace"))
    node.start()
    node.wait_ready(mark)
    hosts.wait_advance(5, among=AUTHORITIES, timeout=60)
    # The callout beside n3 follows the chain through n3 alone: while n3 is down, nats-py
    # logs each failed reconnection at error level, with a traceback (to n3, refused; to the
    # nodes it learnt of, whose certificates name their own addresses, not n3's).
    beside = [Tolerated("callout-n3", "nats: encountered error")]
    beside += [Tolerated("callout-n3", "Traceback (most recent call last)")]
    result = invariants_hold(hosts, since, offsets, allowances=beside)
    record(
        "NATS node n3 SIGKILLed",
        error_lines_allowed=sum(result.errors_allowed.values()),
        before=before,
        ten_blocks_without_n3_s=round(went_on_s, 1),
        without_n3=during,
        heights=result.heights,
    )


def restart_with_clock(hosts: MultiHost, authority: str, offset_ms: int | None) -> int:
    """Restart the authority with its clock ``offset_ms`` off; returns the chain's height as
    it went down."""
    assert hosts.supervisor is not None
    name = f"authority-{authority}"
    hosts.supervisor.hold(name)
    height = max(hosts.heights().values())
    service = next(s for s in hosts.supervisor.services if s.name == name)
    service.env = {} if offset_ms is None else {CLOCK_OFFSET_ENV: str(offset_ms)}
    hosts.supervisor.release(name)
    assert not hosts.supervisor.wait_ready(60, [name]), f"{name} did not come back"
    return height


def test_an_authority_3s_off_takes_part_and_10s_off_is_refused_with_a_clear_log_line(
    hosts: MultiHost,
):
    hosts.wait_healthy()
    since, offsets = hosts.now_s(), hosts.log_offsets()
    refused = "proposal_clock_skew_refused"

    # 3 s ahead: within the genesis bound (5 s), its blocks are accepted and it seals others'.
    at = restart_with_clock(hosts, "CCP", 3_000)
    took_s = hosts.until(
        lambda: all(n > 0 for n in hosts.took_part("CCP", at)),
        timeout=60,
        what="CCP (3 s off) proposing and sealing blocks",
    )
    proposed, sealed = hosts.took_part("CCP", at)
    for a in AUTHORITIES:
        assert hosts.log_lines(f"authority-{a}", offsets, refused) == [], a
    started = hosts.log_lines("authority-CCP", offsets, '"authority_started"')
    assert '"clock_offset_ms": 3000' in started[-1]

    # 10 s ahead: it refuses every block of the three (each time one warning naming the
    # proposer, the skew and the bound), so it decides none itself and follows the chain by
    # catch-up, a height behind: at its turns the three have moved on (they time out and the
    # next proposer's block is decided), and a proposal of its that does reach them in time
    # is refused in turn. The chain goes on with the three; nothing of CCP's is in it.
    mark = hosts.log_offsets()
    at = restart_with_clock(hosts, "CCP", 10_000)
    went_on_s = hosts.wait_advance(12, among=others("CCP"), timeout=60)
    own = [json.loads(x) for x in hosts.log_lines("authority-CCP", mark, refused)]
    assert own, "CCP refused nothing"
    # Beyond the bound by about the offset; not exactly it: the 3 s run left blocks dated up
    # to 3 s ahead (a block is dated no earlier than its parent), and delivery takes time.
    for line in own:
        assert line["proposer"] != "CCP" and line["bound_ms"] == 5_000, line
        assert -11_000 <= line["skew_ms"] < -5_000 and line["level"] == "warning", line
    lines = [x for a in others("CCP") for x in hosts.log_lines(f"authority-{a}", mark, refused)]
    of_ccp = [json.loads(x) for x in lines]
    for line in of_ccp:
        assert line["proposer"] == "CCP" and 5_000 < line["skew_ms"] <= 11_000, line
    assert hosts.took_part("CCP", at) == (0, 0)  # no block proposed nor sealed by CCP
    ten_s = {
        "blocks_by_others_s": round(went_on_s, 1),
        "refusals_by_ccp": len(own),
        "refusals_of_ccp": len(of_ccp),
    }

    # Its clock right again: it catches up and takes part.
    at = restart_with_clock(hosts, "CCP", None)
    hosts.until(
        lambda: hosts.in_step() and sum(hosts.took_part("CCP", at)) > 0,
        timeout=60,
        what="CCP in step and taking part with its clock right",
    )
    hosts.wait_advance(3, among=AUTHORITIES, timeout=30)
    result = invariants_hold(hosts, since, offsets)
    record(
        "clock off (CCP)",
        three_s={"proposed": proposed, "sealed": sealed, "took_part_after_s": round(took_s, 1)},
        ten_s=ten_s,
        heights=result.heights,
    )
