"""The hooks the soak shapes the market with: a late-paying bank client, the clients' options."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from peers.bank import BankBooks, BankConfig, BankService
from peers.cli import main
from peers.load import percentile
from peers.marketplace import CLIENTS, service_list
from peers.netdir import create_network
from rfq.identity import NetworkParams, Role
from rfq.ledger.state import Payment


@pytest.fixture
def net(tmp_path):
    return create_network(tmp_path / "net", params=NetworkParams(margin_cure_days=1))


def bank(net, late: dict[str, float]) -> BankService:
    bus = SimpleNamespace(identity=SimpleNamespace(role=Role.BANK), member_id="BANK")
    return BankService(bus, net.genesis(), BankBooks(":memory:"), config=BankConfig(late=late))  # type: ignore[arg-type]


def call(payer: str, created: int = 100) -> Payment:
    return Payment(f"k/margin_call/{created}", "k", "margin_call", payer, "D1", 10.0, created)


def test_a_late_payer_s_margin_call_waits_its_seconds_then_is_paid(net, monkeypatch):
    service = bank(net, {"C2": 3.0})
    clock = [1000.0]
    monkeypatch.setattr("peers.bank.time.monotonic", lambda: clock[0])
    assert service.holds_back(call("C2"))
    clock[0] += 2.9
    assert service.holds_back(call("C2"))
    clock[0] += 0.2
    assert not service.holds_back(call("C2"))
    assert not service.holds_back(call("C1"))  # on time: never held


def test_botc_bank_late_with_a_bad_delay_is_one_line_and_exit_2(net, capsys):
    assert main(["bank", "--net", str(net.path), "--late", "C2=soon"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["botc bank: error: --late 'C2=soon': 'soon' is not a number"]
    assert main(["bank", "--net", str(net.path), "--late", "C2=-1"]) == 2
    assert "the delay must be" in capsys.readouterr().err


def test_extra_arguments_go_to_the_named_services_only(net):
    services = service_list(
        net,
        clients=2,
        rate=1.0,
        duration=5.0,
        human=None,
        day_seconds=10.0,
        extra_args={"bank": ("--late", "C2=2"), CLIENTS: ("--seed", "7")},
    )
    by_name = {s.name: tuple(s.args) for s in services}
    assert by_name["bank"][-2:] == ("--late", "C2=2")
    assert by_name[CLIENTS][-2:] == ("--seed", "7")
    assert "--late" not in by_name["oracle"]


def test_the_finality_percentiles_are_nearest_rank():
    assert percentile([], 50) is None
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0


def test_botc_load_refuses_a_share_outside_zero_to_one(net, capsys):
    code = main(["load", "--net", str(net.path), "--duration", "1", "--cancel-share", "1.5"])
    assert code == 2
    assert "--cancel-share must be between 0 and 1" in capsys.readouterr().err


def test_refusals_are_counted_by_kind_not_by_their_figures():
    from peers.load import refusal_kind

    a = refusal_kind("initial margin 818,160.00 exceeds C3's credit lines (163,632.00) and")
    b = refusal_kind("initial margin 2,700.00 exceeds C2's credit lines (1,080.00) and")
    assert a == b == "initial margin # exceeds X's credit lines (#) and"
