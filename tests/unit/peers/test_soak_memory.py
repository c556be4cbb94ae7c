"""memory_bounded: RSS growth per peer against a warm-up allowance plus a per-day bound."""

from __future__ import annotations

import os

from peers.soak import MemoryBound, RssSample, check_memory_bounded, rss_mb

BOUND = MemoryBound(warmup_mb=40.0, per_day_mb=10.0)


def test_growth_within_the_bound_is_clean_and_start_and_end_are_reported():
    samples = {"bank": [RssSample(0, 7, 60.0), RssSample(10, 7, 95.0)]}
    found, table = check_memory_bounded(samples, days=2, bound=BOUND, day_seconds=8)
    assert found == [] and table == {"bank": {"start": 60.0, "end": 95.0, "by_day": [60.0, 95.0]}}


def test_growth_over_the_bound_names_the_peer_and_its_pid():
    samples = {"dealer-D1": [RssSample(0, 7, 60.0), RssSample(10, 7, 130.0)]}
    [v] = check_memory_bounded(samples, days=2, bound=BOUND, day_seconds=8)[0]
    assert (v.invariant, v.ids) == ("memory_bounded", ("dealer-D1", "7"))
    assert "grew 70.0 MB" in v.detail and "bound is 60 MB" in v.detail


def test_a_restarted_peer_is_measured_over_its_new_process_only():
    samples = {
        "authority-D2": [
            RssSample(0, 7, 60.0),
            RssSample(5, 7, 99.0),
            RssSample(6, 8, 55.0),
            RssSample(9, 8, 70.0),
        ]
    }
    found, table = check_memory_bounded(samples, days=1, bound=BOUND, day_seconds=10)
    assert found == [] and table["authority-D2"] == {"start": 60.0, "end": 70.0, "by_day": [70.0]}


def test_this_process_has_a_resident_size_and_a_gone_one_has_none():
    assert (rss_mb(os.getpid()) or 0) > 1
    assert rss_mb(2**22 + 12345) is None


def test_a_peer_still_loading_after_a_restart_is_not_sampled_until_it_serves():
    """A restarted authority's first sample would be the empty process loading its state
    (17.5 MB against 830 MB once loaded, on a 100k market): its life starts once ready."""
    import threading
    from types import SimpleNamespace

    from peers.soak import Collected, Soak

    def service(name: str, ready: bool) -> SimpleNamespace:
        event = threading.Event()
        if ready:
            event.set()
        return SimpleNamespace(
            name=name, ready=event, process=SimpleNamespace(pid=os.getpid(), poll=lambda: None)
        )

    soak = Soak.__new__(Soak)
    soak.collected = Collected()
    serving, loading = service("authority-D1", True), service("authority-D3", False)
    soak.market = SimpleNamespace(
        supervisor=SimpleNamespace(services=[serving, loading]), server=None
    )
    soak._sample_rss(1.0)
    assert set(soak.collected.rss) == {"authority-D1"}
    loading.ready.set()
    soak._sample_rss(2.0)
    assert set(soak.collected.rss) == {"authority-D1", "authority-D3"}
    assert [s.t_s for s in soak.collected.rss["authority-D3"]] == [2.0]
