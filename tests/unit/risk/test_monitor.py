"""The regulator's monitor: contracts to SA-CCR, EAD and EL per institution, alerts, contagion.

Actors: clients C1 (Alice's fund), C2 and C3, dealers D1 and D2, guarantor G1.
"""

from __future__ import annotations

import datetime as dt
import math

import pytest

from rfq.contracts.book import ContractBook
from rfq.contracts.events import Fixing, MarginCalls, MarginPosted, OpenContract, Price
from rfq.contracts.model import Contract, ContractView, MarginTerms, Outcome, Status
from rfq.errors import ValidationError
from rfq.identity import Member, Role
from rfq.instruments import Averaging, Leg, OptionTerms, Side, Template, Terms
from rfq.ledger.state import Guarantee
from rfq.money import to_micros as M
from rfq.queries import CcrRow
from rfq.rating import pd_of, score_of
from rfq.risk.contagion import cascade
from rfq.risk.monitor import (
    DEFAULT_RECOVERY_RATE,
    UNRATED_GRADE,
    Assessment,
    DirectedExposure,
    MonitorInput,
    alert_for,
    assess,
    bilateral_exposures,
    contract_trades,
    crossings,
    exposure_network,
    leg_prices,
    what_if,
)
from rfq.risk.saccr import AddOns, NettingSetResult

AS_OF = dt.date(2026, 1, 5)
ONE_YEAR = AS_OF + dt.timedelta(days=365)
LGD = 1.0 - DEFAULT_RECOVERY_RATE
MF_MARGINED = 1.5 * math.sqrt(10 / 250)  # 0.3: MPOR of ten business days
CSA = MarginTerms()  # threshold 0, MTA 0


def member(
    mid: str,
    role: Role = Role.CLIENT,
    *,
    rating: str | None = "A",
    capital: float = 1.0e7,
    threshold: float = 0.0,
) -> Member:
    return Member(
        id=mid,
        role=role,
        name=mid,
        sign_key="",
        box_key="",
        external_rating=rating,
        capital=capital,
        ccr_threshold=threshold,
    )


def view(
    cid: str,
    *,
    client: str = "C1",
    dealer: str = "D1",
    template: Template = Template.PRICE_SWAP,
    legs: tuple[tuple[str, float], ...] = (("RB2605", 1.0),),
    side: Side = Side.BUY,
    fixed: float | None = 3200.0,
    quantity: float = 100.0,
    multiplier: float = 1.0,
    maturity: dt.date = ONE_YEAR,
    option: OptionTerms | None = None,
    averaging: Averaging | None = None,
    mark: float | None = None,
    client_mtm: float | None = None,
    vm: float = 0.0,
    status: Status = Status.LIVE,
    margin: MarginTerms | None = CSA,
    outcome: Outcome | None = None,
) -> ContractView:
    contract = Contract(
        id=cid,
        terms=Terms(
            template=template,
            legs=tuple(Leg(u, w) for u, w in legs),
            client_side=side,
            quantity=quantity,
            trade_date=AS_OF - dt.timedelta(days=10),
            maturity=maturity,
            multiplier=multiplier,
            averaging=averaging,
            option=option,
        ),
        client=client,
        dealer=dealer,
        fixed_price=fixed,
        initial_margin_rate=0.1,
        margin=margin,
    )
    return ContractView(
        contract=contract,
        status=status,
        ordinal=0,
        initial_margin=0.0,
        notional=0.0,
        mark=mark,
        client_mtm=client_mtm,
        vm_balance=vm,
        margin_call=None,
        avg_sum=0.0,
        avg_count=0,
        defaulting_party=outcome.defaulting_party if outcome else None,
        outcome=outcome,
    )


def market(*views: ContractView, members: tuple[Member, ...] | None = None, **kw: object):
    members = members or (
        member("D1", Role.DEALER, capital=2.0e8),
        member("D2", Role.DEALER, capital=2.0e8),
        member("C1"),
        member("C2", rating="BBB"),
        member("G1", Role.GUARANTOR, capital=3.0e8),
    )
    return MonitorInput(height=7, as_of=AS_OF, members=members, contracts=views, **kw)  # type: ignore[arg-type]


def edge(creditor: str, debtor: str, ead: float) -> DirectedExposure:
    zero = AddOns(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    result = NettingSetResult(f"{creditor}>{debtor}", False, 0.0, 0.0, ead, 0.0, 1.0, zero, ead)
    return DirectedExposure(f"{creditor}>{debtor}", creditor, debtor, 1, result)


# --- contract templates -> SA-CCR trades ---------------------------------------------------------


def test_a_price_swap_bought_by_alice_is_one_long_steel_trade_in_the_metals_hedging_set() -> None:
    [trade] = contract_trades(
        view("r1", client_mtm=10_000.0), creditor="C1", as_of=AS_OF, prices={"RB2605": 3300.0}
    )
    assert (trade.asset_class, trade.hedging_set, trade.reference) == (
        "commodity",
        "metals",
        "steel",
    )
    assert trade.delta == 1.0
    assert trade.notional == 3300.0 * 100  # the current price x quantity x multiplier
    assert trade.mtm == 10_000.0
    assert trade.maturity == 1.0


def test_the_dealer_sees_the_same_contract_short_and_out_of_the_money() -> None:
    [trade] = contract_trades(
        view("r1", client_mtm=10_000.0), creditor="D1", as_of=AS_OF, prices={"RB2605": 3300.0}
    )
    assert trade.delta == -1.0
    assert trade.mtm == -10_000.0


def test_a_spot_swap_sold_by_the_client_on_tangshan_billet_is_short_steel() -> None:
    v = view(
        "r2",
        template=Template.SPOT_SWAP,
        legs=(("TSBILLET", 1.0),),
        side=Side.SELL,
        fixed=3399.0,
        quantity=3000.0,
    )
    [trade] = contract_trades(v, creditor="C1", as_of=AS_OF, prices={})
    assert (trade.hedging_set, trade.reference, trade.delta) == ("metals", "steel", -1.0)
    assert trade.notional == 3399.0 * 3000  # no fixing yet: the agreed price


def test_an_average_price_swap_on_polypropylene_is_an_energy_trade() -> None:
    v = view(
        "r3",
        template=Template.AVERAGE_PRICE_SWAP,
        legs=(("PP2605", 1.0),),
        fixed=7000.0,
        averaging=Averaging(AS_OF, AS_OF + dt.timedelta(days=30)),
        maturity=AS_OF + dt.timedelta(days=31),
    )
    [trade] = contract_trades(v, creditor="C1", as_of=AS_OF, prices={"PP2605": 7100.0})
    assert (trade.hedging_set, trade.reference, trade.delta) == ("energy", "petrochemicals", 1.0)
    assert trade.notional == 710_000.0
    assert trade.maturity == pytest.approx(31 / 365)


def test_a_spread_swap_is_long_coil_and_short_rebar_in_one_commodity_type() -> None:
    v = view(
        "r4",
        template=Template.SPREAD_SWAP,
        legs=(("HC2605", 1.0), ("RB2605", -1.0)),
        fixed=-151.0,
        quantity=1000.0,
    )
    a, b = contract_trades(v, creditor="C1", as_of=AS_OF, prices={"HC2605": 3300, "RB2605": 3150})
    assert (a.id, a.reference, a.delta, a.notional) == ("r4/0", "steel", 1.0, 3_300_000.0)
    assert (b.id, b.reference, b.delta, b.notional) == ("r4/1", "steel", -1.0, 3_150_000.0)


def test_a_calendar_spread_sold_by_the_client_is_short_the_near_month_long_the_far() -> None:
    v = view(
        "r5",
        template=Template.CALENDAR_SPREAD,
        legs=(("RB2601", 1.0), ("RB2605", -1.0)),
        side=Side.SELL,
        fixed=-30.0,
    )
    a, b = contract_trades(v, creditor="C1", as_of=AS_OF, prices={"RB2601": 3120, "RB2605": 3150})
    assert (a.delta, b.delta) == (-1.0, 1.0)
    assert (a.hedging_set, b.hedging_set) == ("metals", "metals")


def test_an_index_swap_on_the_csi_300_is_an_equity_index_trade_in_points_times_multiplier() -> None:
    v = view(
        "r6",
        template=Template.INDEX_SWAP,
        legs=(("CSI300", 1.0),),
        fixed=4600.0,
        quantity=2.0,
        multiplier=300.0,
    )
    [trade] = contract_trades(v, creditor="C1", as_of=AS_OF, prices={"CSI300": 4700.0})
    assert (trade.asset_class, trade.reference, trade.is_index) == ("equity", "CSI300", True)
    assert trade.hedging_set is None
    assert trade.notional == 4700.0 * 2 * 300


def test_a_forward_on_soybean_oil_is_agricultural() -> None:
    v = view("r7", template=Template.FORWARD, legs=(("Y2605", 1.0),), fixed=7900.0)
    [trade] = contract_trades(v, creditor="D1", as_of=AS_OF, prices={})
    assert (trade.hedging_set, trade.reference, trade.delta) == (
        "agricultural",
        "soybean_oil",
        -1.0,
    )


def test_a_european_call_bought_by_the_client_carries_its_strike_and_the_current_forward() -> None:
    v = view(
        "r8",
        template=Template.EUROPEAN_OPTION,
        legs=(("C2605", 1.0),),
        fixed=None,
        option=OptionTerms("call", 2300.0, 40.0),
        maturity=AS_OF + dt.timedelta(days=73),
    )
    [client] = contract_trades(v, creditor="C1", as_of=AS_OF, prices={"C2605": 2250.0})
    [dealer] = contract_trades(v, creditor="D1", as_of=AS_OF, prices={"C2605": 2250.0})
    assert client.option is not None and dealer.option is not None
    assert (client.option.type, client.option.bought, client.option.price) == ("call", True, 2250)
    assert (client.option.strike, client.option.expiry) == (2300.0, pytest.approx(0.2))
    assert dealer.option.bought is False
    assert client.delta is None and client.notional == 225_000.0
    assert client.hedging_set == "agricultural" and client.reference == "corn"


def test_an_underlying_outside_the_catalog_goes_to_the_other_commodities_hedging_set() -> None:
    [trade] = contract_trades(
        view("r9", legs=(("XYZ1", 1.0),)), creditor="C1", as_of=AS_OF, prices={}
    )
    assert (trade.asset_class, trade.hedging_set, trade.reference) == ("commodity", "other", "XYZ1")


def test_prices_missing_from_the_fixings_are_read_back_from_the_contracts_marks() -> None:
    swap = view("a", mark=3150.0)
    spread = view(
        "b",
        template=Template.SPREAD_SWAP,
        legs=(("HC2605", 1.0), ("RB2605", -1.0)),
        fixed=-151.0,
        mark=-59.0,
    )
    average = view(
        "c",
        template=Template.AVERAGE_PRICE_SWAP,
        legs=(("PP2605", 1.0),),
        averaging=Averaging(AS_OF, AS_OF),
        mark=6000.0,
    )
    prices = leg_prices([spread, swap, average], {"Y2605": 7900.0})
    assert prices == {"Y2605": 7900.0, "RB2605": 3150.0, "HC2605": 3091.0}


# --- one netting set by hand ---------------------------------------------------------------------


def test_a_margined_commodity_swap_netting_set_gives_the_hand_checked_ead_both_ways() -> None:
    """Alice (C1) bought 100 t of rebar from D1 at 3200; it fixed at 3300, so she is 10,000 in
    the money and D1 has posted 10,000 of variation margin; her 32,000 cash initial margin is in
    custody. Threshold and MTA 0, MPOR 10 days, one year to maturity."""
    inp = market(
        view("r1", mark=3300.0, client_mtm=10_000.0, vm=10_000.0), cash_margin={"r1": 32_000.0}
    )
    dealer_side, client_side = bilateral_exposures(inp)

    # D1's exposure to Alice: V = -10,000, C = -10,000 VM + 32,000 IM = 22,000, NICA = 32,000.
    # AddOn = 18% x 330,000 x 0.3 = 17,820; RC = max(V - C, TH + MTA - NICA, 0) = 0;
    # multiplier = 0.05 + 0.95 exp(-32,000 / (2 x 0.95 x 17,820)) = 0.419200;
    # EAD = 1.4 x 0.419200 x 17,820 = 10,458.20 (below the unmargined 63,655.60).
    assert (dealer_side.creditor, dealer_side.debtor) == ("D1", "C1")
    r = dealer_side.result
    assert (r.v, r.collateral, r.rc) == (-10_000.0, 22_000.0, 0.0)
    assert r.addon.commodity == pytest.approx(17_820.0)
    assert r.multiplier == pytest.approx(0.4191999, rel=1e-6)
    assert r.ead == pytest.approx(10_458.199, rel=1e-6)
    assert r.ead_unmargined == pytest.approx(63_655.604, rel=1e-6)

    # Alice's exposure to D1: V = 10,000 = C (the VM she holds), NICA 0: RC 0, multiplier 1,
    # EAD = 1.4 x 17,820 = 24,948.
    assert (client_side.creditor, client_side.debtor) == ("C1", "D1")
    assert client_side.result.rc == 0.0
    assert client_side.result.multiplier == 1.0
    assert client_side.ead == pytest.approx(24_948.0)


def test_views_from_the_contract_engine_give_the_same_hand_checked_netting_set() -> None:
    """The same trade run through the real engine: open, fix at 3300, D1 meets its call."""
    book = ContractBook()
    contract = view("r1").contract
    book.apply(OpenContract(contract))
    [call] = book.apply(Fixing(date=AS_OF, prices=(Price("RB2605", 3300.0),)))
    assert isinstance(call, MarginCalls) and (call.payer, call.amounts) == ("D1", (M(10_000),))
    book.apply(MarginPosted(id="p1", contract_id="r1", payer="D1", amount=M(10_000)))
    engine_view = book.get("r1")
    assert (engine_view.client_mtm, engine_view.vm_balance) == (10_000.0, 10_000.0)
    dealer_side, client_side = bilateral_exposures(
        market(engine_view, cash_margin={"r1": 32_000.0})
    )
    assert dealer_side.ead == pytest.approx(10_458.199, rel=1e-6)
    assert client_side.ead == pytest.approx(24_948.0)


def test_opposite_steel_swaps_in_one_netting_set_offset_within_their_commodity_type() -> None:
    inp = market(
        view("a", mark=3300.0, client_mtm=0.0),
        view(
            "b", legs=(("HC2605", 1.0),), side=Side.SELL, fixed=3400.0, mark=3400.0, client_mtm=0.0
        ),
    )
    dealer_side, _ = bilateral_exposures(inp)
    # |330,000 - 340,000| x 18% x 0.3 = 540.
    assert dealer_side.result.addon.commodity == pytest.approx(540.0)
    assert dealer_side.ead == pytest.approx(1.4 * 540.0)
    assert dealer_side.contracts == 2


def test_unmargined_contracts_form_an_unmargined_netting_set() -> None:
    inp = market(view("r1", mark=3300.0, client_mtm=0.0, margin=None))
    dealer_side, _ = bilateral_exposures(inp)
    assert dealer_side.result.margined is False
    assert dealer_side.ead == pytest.approx(1.4 * 0.18 * 330_000)  # M = 1 year: MF = 1


# --- EAD and EL per institution --------------------------------------------------------------


def test_an_institutions_ead_sums_the_netting_sets_in_which_it_owes_and_el_is_pd_ead_lgd() -> None:
    inp = market(
        view("a", client="C1", dealer="D1", mark=3300.0, client_mtm=0.0),
        view("b", client="C1", dealer="D2", mark=3300.0, client_mtm=0.0),
        view("c", client="C2", dealer="D1", mark=3300.0, client_mtm=0.0),
        view("old", client="C2", dealer="D2", status=Status.SETTLED),
        ratings={"C1": 55.0},
    )
    result = assess(inp)
    one_set = 1.4 * 0.18 * 330_000 * MF_MARGINED  # 24,948 each way: no MTM, no collateral
    c1, c2, d1, d2 = (result.row(x) for x in ("C1", "C2", "D1", "D2"))
    assert c1 is not None and c2 is not None and d1 is not None and d2 is not None
    assert c1.ead == pytest.approx(2 * one_set)  # D1's and D2's exposures to C1
    assert d1.ead == pytest.approx(2 * one_set)  # C1's and C2's exposures to D1
    assert d2.ead == pytest.approx(one_set)
    assert (c1.netting_sets, c1.open_contracts, d2.netting_sets) == (2, 2, 1)
    # C1's on-chain score 55 (BB) beats its external A; C2 has no score: its external BBB.
    assert (c1.grade, c1.pd) == ("BB", pd_of(55.0))
    assert (c2.grade, c2.pd) == ("BBB", pd_of("BBB"))
    assert c1.lgd == pytest.approx(LGD)
    assert c1.el == pytest.approx(pd_of(55.0) * 2 * one_set * LGD)
    assert [r.institution for r in result.rows] == ["D1", "D2", "C1", "C2", "G1"]
    assert result.row("G1") == CcrRow(
        "G1", "guarantor", "A", pd_of("A"), LGD, 0.0, 0.0, 0.0, 0, 0, False
    )


def test_an_observed_default_sets_pd_to_one_and_lgd_from_the_recovery_on_chain() -> None:
    outcome = Outcome(Status.DEFAULTED, AS_OF, 5, None, 0.0, 0.0, 0.0, "C2", 0.25)
    inp = market(view("gone", client="C2", status=Status.DEFAULTED, outcome=outcome))
    c2 = assess(inp).row("C2")
    assert c2 is not None
    assert (c2.grade, c2.pd, c2.lgd, c2.ead, c2.open_contracts) == ("D", 1.0, 0.75, 0.0, 0)


def test_an_institution_with_no_rating_at_all_counts_as_unrated_speculative_grade() -> None:
    members = (member("D1", Role.DEALER), member("C1", rating=None))
    row = assess(market(members=members)).row("C1")
    assert row is not None and (row.grade, row.pd) == (UNRATED_GRADE, pd_of(UNRATED_GRADE))
    assert score_of(UNRATED_GRADE) < score_of("BBB")


# --- alerts ------------------------------------------------------------------------------------


def _row(ead: float, threshold: float = 100.0) -> CcrRow:
    return CcrRow("C1", "client", "A", 0.0, 0.6, ead, 0.0, threshold, 1, 1, ead > threshold)


def test_an_alert_is_raised_exactly_when_crossing_and_not_again_until_it_falls_back() -> None:
    above: frozenset[str] = frozenset()
    raised = []
    for ead in (50.0, 100.0, 120.0, 130.0, 90.0, 100.0, 110.0, 115.0):
        above, crossed = crossings(above, [_row(ead)])
        raised.append(bool(crossed))
    #        50     100    120   130    90     100    110   115
    assert raised == [False, False, True, False, False, False, True, False]


def test_a_member_without_a_threshold_never_alerts() -> None:
    members = (member("D1", Role.DEALER), member("C1", threshold=0.0))
    result = assess(market(*(view(f"r{n}") for n in range(50)), members=members))
    row = result.row("C1")
    assert row is not None and row.ead > 1.0e6 and not row.alert
    assert crossings((), result.rows) == (frozenset(), ())


def test_alice_alerts_when_her_growing_book_takes_her_ead_past_her_threshold() -> None:
    members = (member("D1", Role.DEALER), member("C1", threshold=60_000.0))
    one_set = 1.4 * 0.18 * 320_000 * MF_MARGINED  # 24,192 per 100 t at 3200, no fixing yet
    above: frozenset[str] = frozenset()
    raised_at = []
    views: list[ContractView] = []
    for n in range(1, 5):
        views.append(view(f"r{n}"))
        result = assess(market(*views, members=members))
        row = result.row("C1")
        assert row is not None and row.ead == pytest.approx(n * one_set)
        above, crossed = crossings(above, result.rows)
        if crossed:
            raised_at.append(n)
    assert raised_at == [3]  # 72,576 > 60,000 with the third trade, once


# --- the exposure network and the cascade ----------------------------------------------------


SMALL = (
    member("C1", capital=50.0),
    member("D1", Role.DEALER, capital=100.0),
    member("D2", Role.DEALER, capital=100.0),
    member("C2", capital=100.0),
    member("G1", Role.GUARANTOR, capital=300.0),
)
EDGES = (
    edge("D1", "C1", 150.0),  # D1 would lose 150 x 60% = 90 if C1 defaulted
    edge("C1", "D1", 10.0),
    edge("C2", "D1", 80.0),
    edge("D2", "C2", 60.0),
    edge("D1", "C2", 20.0),
)
LGDS = {m.id: LGD for m in SMALL}


def test_the_exposure_network_has_an_edge_per_positive_ead_losing_the_debtors_lgd() -> None:
    network = exposure_network(SMALL, (*EDGES, edge("C1", "D2", 0.0)), LGDS)
    assert network.ids == ("C1", "D1", "D2", "C2", "G1")
    edges = {
        (network.ids[c], network.ids[d]): (a, lgd)
        for c, d, a, lgd in zip(
            network.creditor, network.debtor, network.amount, network.lgd, strict=True
        )
    }
    assert edges == {
        ("D1", "C1"): (150.0, LGD),
        ("C1", "D1"): (10.0, LGD),
        ("C2", "D1"): (80.0, LGD),
        ("D2", "C2"): (60.0, LGD),
        ("D1", "C2"): (20.0, LGD),
    }
    assert list(network.capital) == [50.0, 100.0, 100.0, 100.0, 300.0]


def test_c1s_default_brings_down_d1_then_c2_and_stops_at_d2() -> None:
    # Formula 11: default when capital - losses < what it owes (its EAD as debtor).
    # Round 1: D1 loses 150 x 0.6 = 90: 100 - 90 = 10 < 90 owed (C1 10 + C2 80).
    # Round 2: C2 loses 80 x 0.6 = 48: 100 - 48 = 52 < 80 owed (D2 60 + D1 20).
    # Round 3: D2 loses 60 x 0.6 = 36: 100 - 36 = 64, owes nothing: stands.
    network = exposure_network(SMALL, EDGES, LGDS)
    result = cascade(network, ["C1"])
    assert result.rounds == (("C1",), ("D1",), ("C2",))
    assert result.losses["D1"] == pytest.approx(90.0 + 12.0)
    assert result.losses["C2"] == pytest.approx(48.0)
    assert result.losses["D2"] == pytest.approx(36.0)


def test_a_guarantee_for_c1_moves_the_dealers_exposure_to_the_guarantor_and_stops_the_cascade() -> (
    None
):
    line = Guarantee(
        "g1",
        "G1",
        "C1",
        line=M(150),
        asset_id="x",
        asset_value=M(200),
        granted_height=1,
        paid=M(10),
    )
    network = exposure_network(SMALL, EDGES, LGDS, [line])
    to_c1 = {
        network.ids[c]: a
        for c, d, a in zip(network.creditor, network.debtor, network.amount, strict=True)
        if network.ids[d] == "C1"
    }
    assert to_c1 == pytest.approx({"D1": 10.0, "G1": 140.0})  # line 150 - paid 10 = 140
    # D1 now loses 6: 100 - 6 = 94 >= 90 owed; G1 loses 84 of 300 and owes nothing.
    assert cascade(network, ["C1"]).rounds == (("C1",),)


def test_the_alert_carries_the_cascade_of_the_institution_that_crossed() -> None:
    network = exposure_network(SMALL, EDGES, LGDS)
    rows = (CcrRow("C1", "client", "A", 0.0006, LGD, 150.0, 0.054, 100.0, 1, 1, True),)
    alert = alert_for(Assessment(9, rows, EDGES, network), "C1")
    assert (alert.height, alert.institution, alert.ead, alert.threshold) == (9, "C1", 150.0, 100.0)
    assert alert.cascade_rounds == (("C1",), ("D1",), ("C2",))
    assert alert.cascade_defaulted == ("C1", "D1", "C2")


def test_what_if_runs_the_cascade_debtrank_and_eisenberg_noe_on_the_same_network() -> None:
    network = exposure_network(SMALL, EDGES, LGDS)
    cas = what_if(network, ["C1"])
    assert (cas.model, cas.shocked, cas.rounds) == ("cascade", ("C1",), (("C1",), ("D1",), ("C2",)))
    rank = what_if(network, ["C1"], "debtrank")
    assert rank.rounds[0] == ("C1",) and rank.losses["C1"] == pytest.approx(50.0)
    assert 0 < rank.losses["D1"] <= 100.0
    cleared = what_if(network, ["C1"], "eisenberg-noe")
    assert cleared.rounds[0] == ("C1",) and "C1" in cleared.defaulted
    # C1 has 0 external assets left and 10 coming from D1 (if D1 pays): it pays D1 at most 10
    # of the 150 it owes, so D1 loses at least 140.
    assert cleared.losses["D1"] >= 140.0 - 1e-9
    assert cleared.losses["G1"] == 0.0


def test_what_if_refuses_an_unknown_institution_or_model() -> None:
    network = exposure_network(SMALL, EDGES, LGDS)
    with pytest.raises(ValidationError, match="unknown institution 'ZZ'"):
        what_if(network, ["ZZ"])
    with pytest.raises(ValidationError, match="unknown model"):
        what_if(network, ["C1"], "domino")
    with pytest.raises(ValidationError, match="at least one"):
        what_if(network, [])
