"""Fixed data for the snapshot tests: the same messages the workers post, with no network.

The clock is frozen at ``NOW`` so countdowns, dates and times on screen never move.
"""

from __future__ import annotations

import datetime as dt
import math

from bus.client import BusStatus
from peers.desk import BookView, ExposureRow
from rfq.contracts.model import Contract, ContractView, MarginCall, MarginTerms, Outcome, Status
from rfq.instruments import (
    Leg,
    OptionTerms,
    Side,
    Template,
    Terms,
    listed_futures,
    listed_underlyings,
)
from rfq.ledger.state import GovernanceEvent, Guarantee, Receipt, Trade
from rfq.messages import Decline, Quote, Rfq
from rfq.money import to_micros as M
from rfq.queries import CcrRow, HeaderInfo, RiskAlert, RiskReply, StatusReply, WhatIfReply
from tui.messages import (
    AnswerArrived,
    BookLoaded,
    BusStatusChanged,
    ContractsLoaded,
    CreditLoaded,
    CreditView,
    HeadersLoaded,
    ReceiptArrived,
    RfqAnswered,
    RfqArrived,
    RfqOpened,
    RiskLoaded,
    StandingLoaded,
    StatusLoaded,
    TradesFound,
    TxSubmitted,
    WhatIfLoaded,
)
from tui.model import MarketRow

NOW = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC).timestamp()
NOW_MS = int(NOW * 1000)
TODAY = dt.date(2026, 3, 2)
SIZE = (150, 46)
MONTH = listed_futures("RB", TODAY)[1].contract_month
"""``2609``: the nearest month listed on ``TODAY`` that trades past three months."""


def clock() -> float:
    return NOW


def market_rows() -> list[MarketRow]:
    """Every underlying listed on ``TODAY`` with 20 closes on a smooth, seeded-free wave."""
    rows = []
    for i, u in enumerate(listed_underlyings(TODAY).values()):
        closes = tuple(
            round(u.start_price * (1 + 0.02 * math.sin((d + i) / 3) + 0.001 * d), 2)
            for d in range(20)
        )
        last = round(closes[-1] * (1 + 0.004 * math.cos(i)), 2)
        rows.append(MarketRow(u.id, u.name, u.unit, last, closes[-1], closes))
    return rows


def rebar_terms(quantity: float = 1000, side: Side = Side.BUY) -> Terms:
    return Terms(
        template=Template.PRICE_SWAP,
        legs=(Leg(f"RB{MONTH}"),),
        client_side=side,
        quantity=quantity,
        trade_date=TODAY,
        maturity=dt.date(2026, 6, 2),
    )


def spread_terms() -> Terms:
    return Terms(
        template=Template.SPREAD_SWAP,
        legs=(Leg(f"HC{MONTH}"), Leg(f"RB{MONTH}", -1.0)),
        client_side=Side.BUY,
        quantity=1000,
        trade_date=TODAY,
        maturity=dt.date(2026, 9, 15),
    )


def option_terms() -> Terms:
    return Terms(
        template=Template.EUROPEAN_OPTION,
        legs=(Leg(f"SC{MONTH}"),),
        client_side=Side.SELL,
        quantity=500,
        trade_date=TODAY,
        maturity=dt.date(2026, 5, 29),
        option=OptionTerms("call", 540.0, premium=12.5),
    )


RFQ = Rfq(id="C1-7f3a9c", client="C1", terms=rebar_terms(), deadline_ms=NOW_MS + 3_000)


def quote(
    dealer: str, price: float, ttl_s: float, im: float = 0.08, line: float = 151_968
) -> Quote:
    return Quote(
        id=f"{RFQ.id}-{dealer}",
        rfq_id=RFQ.id,
        client="C1",
        dealer=dealer,
        terms=RFQ.terms,
        price=price,
        valid_until_ms=NOW_MS + int(ttl_s * 1000),
        initial_margin_rate=im,
        credit_line=line,
    )


def client_trade_messages() -> list[object]:
    return [
        RfqOpened(RFQ, ("D1", "D2", "D3")),
        AnswerArrived(quote("D2", 3168.0, 28)),
        AnswerArrived(quote("D1", 3166.0, 29, line=120_000)),
        AnswerArrived(
            Decline(RFQ.id, "C1", "D3", "credit_limit", "exposure to C1 above the limit")
        ),
    ]


def client_defaulted_dealer_messages() -> list[object]:
    """The same quotes once the chain says D1 (the cheapest) defaulted, and D3 quoted a
    price whose validity has run out: D2's is the best quote still tradable."""
    return [
        RfqOpened(RFQ, ("D1", "D2", "D3")),
        AnswerArrived(quote("D2", 3168.0, 28)),
        AnswerArrived(quote("D1", 3166.0, 29, line=120_000)),
        AnswerArrived(quote("D3", 3160.0, -1)),
        StandingLoaded({"D1": "defaulted"}),
    ]


def view(
    contract_id: str,
    terms: Terms,
    dealer: str,
    fixed: float | None,
    *,
    ordinal: int,
    mark: float | None,
    mtm: float | None,
    vm: float = 0.0,
    status: Status = Status.LIVE,
    call: MarginCall | None = None,
    outcome: Outcome | None = None,
) -> ContractView:
    contract = Contract(
        id=contract_id,
        terms=terms,
        client="C1",
        dealer=dealer,
        fixed_price=fixed,
        initial_margin_rate=0.08,
        margin=MarginTerms(),
    )
    level = fixed if fixed is not None else terms.option.strike if terms.option else 1.0
    notional = abs(level) * terms.quantity
    return ContractView(
        contract=contract,
        status=status,
        ordinal=ordinal,
        initial_margin=round(notional * 0.08, 2),
        notional=notional,
        mark=mark,
        client_mtm=mtm,
        vm_balance=vm,
        margin_call=call,
        avg_sum=0.0,
        avg_count=0,
        defaulting_party=None,
        outcome=outcome,
    )


def contracts() -> tuple[ContractView, ...]:
    return (
        view(
            "C1-51d0e2", rebar_terms(), "D1", 3166.0, ordinal=3, mark=3181.0, mtm=15_000, vm=15_000
        ),
        view(
            "C1-2b77a0",
            spread_terms(),
            "D2",
            -151.0,
            ordinal=2,
            mark=-59.0,
            mtm=92_000,
            vm=80_000,
        ),
        view(
            "C1-90c4f1",
            option_terms(),
            "D3",
            None,
            ordinal=1,
            mark=531.2,
            mtm=-4_400,
            status=Status.MARGIN_CALL,
            call=MarginCall(1, "C1", "D3", M(4_400), M(4_400), TODAY, 40, 90),
        ),
        view(
            "C1-0aa913",
            rebar_terms(3000, Side.SELL),
            "D1",
            3399.0,
            ordinal=0,
            mark=3341.0,
            mtm=None,
            status=Status.CLOSED_OUT,
            outcome=Outcome(Status.CLOSED_OUT, TODAY, 30, 3341.0, 174_000, 174_000, -174_000),
        ),
    )


def headers() -> tuple[HeaderInfo, ...]:
    proposers = ("CCP", "D1", "D2", "D3")
    return tuple(
        HeaderInfo(
            height=h,
            hash=f"{h * 7919:08x}" * 8,
            timestamp_ms=NOW_MS - (48 - h) * 2000,
            proposer=proposers[h % 4],
            round=0,
            tx_count=1 if h in (44, 47) else 0,
            state_root=f"{h * 104729:08x}" * 8,
        )
        for h in range(48, 33, -1)
    )


def credit() -> CreditView:
    return CreditView(
        member="C1",
        external="A",
        score=74.2,
        grade="A",
        guarantees=(
            Guarantee("G1-C1-1", "G1", "C1", M(2_000_000), "WH-0042", M(2_500_000), 12, M(400_000)),
        ),
        trades=(
            Trade(
                "C1-51d0e2",
                "C1-51d0e2",
                "C1",
                "D1",
                "q1",
                3166.0,
                "ab" * 32,
                47,
                M(253_280),
                M(151_968),
                (("G1", M(50_000)),),
                M(51_312),
            ),
            Trade(
                "C1-2b77a0",
                "C1-2b77a0",
                "C1",
                "D2",
                "q2",
                -151.0,
                "cd" * 32,
                44,
                M(12_080),
                M(10_000),
                (),
                M(2_080),
            ),
        ),
    )


def client_ledger_messages() -> list[object]:
    accept = "5e" * 32
    return [
        ContractsLoaded(48, contracts()),
        CreditLoaded(credit(), 48),
        HeadersLoaded(headers()),
        TxSubmitted(accept, "accept", "C1-51d0e2 @ 3166"),
        ReceiptArrived(Receipt(accept, "C1", "accept", True, 47, 0, "", ("C1-51d0e2",))),
        TxSubmitted("77" * 32, "accept", "C1-13ce55 @ 3170"),
        ReceiptArrived(
            Receipt("77" * 32, "C1", "accept", False, 45, 0, "quote expired", ("C1-13ce55",))
        ),
    ]


def connected() -> BusStatusChanged:
    return BusStatusChanged(BusStatus.CONNECTED, "127.0.0.1:4222")


# -- dealer ----------------------------------------------------------------------------------


def dealer_rfq(rfq_id: str, client: str, terms: Terms, deadline_s: float) -> Rfq:
    return Rfq(id=rfq_id, client=client, terms=terms, deadline_ms=NOW_MS + int(deadline_s * 1000))


def dealer_quote(rfq: Rfq, price: float) -> Quote:
    return Quote(
        id=f"{rfq.id}-D1",
        rfq_id=rfq.id,
        client=rfq.client,
        dealer="D1",
        terms=rfq.terms,
        price=price,
        valid_until_ms=NOW_MS + 30_000,
        initial_margin_rate=0.08,
        credit_line=150_000,
    )


def dealer_messages() -> list[object]:
    quoted = dealer_rfq("C2-1c0ffe", "C2", rebar_terms(500), -20)
    declined = dealer_rfq("C5-77aa01", "C5", rebar_terms(900_000), -12)
    lapsed = dealer_rfq("C4-3d2b11", "C4", option_terms(), -5)
    waiting = dealer_rfq("C1-9e8d7c", "C1", spread_terms(), 7)
    return [
        RfqArrived(quoted, rating=64.0, arrived_ms=NOW_MS - 25_000),
        RfqAnswered(quoted.id, dealer_quote(quoted, 3171.0), manual=False),
        RfqArrived(declined, rating=44.0, arrived_ms=NOW_MS - 17_000),
        RfqAnswered(
            declined.id,
            Decline(declined.id, "C5", "D1", "credit_limit", "over the limit"),
            manual=False,
        ),
        RfqArrived(lapsed, rating=75.0, arrived_ms=NOW_MS - 9_000),
        RfqAnswered(lapsed.id, None, manual=False),
        RfqArrived(
            waiting,
            rating=74.2,
            arrived_ms=NOW_MS - 3_000,
            suggestion=dealer_quote(waiting, -148.0),
            waits=True,
        ),
    ]


def book_message() -> BookLoaded:
    book = BookView(
        exposures=(
            ExposureRow("C1", 74.2, 1_250_000, 180_000, 50_000_000),
            ExposureRow("C2", 64.0, 42_800_000, 0, 50_000_000),
            ExposureRow("C5", 44.0, 3_100_000, 0, 5_000_000, standing="defaulted"),
        ),
        inventory=((f"HC{MONTH}", -1000.0), (f"RB{MONTH}", -500.0)),
        standing={"C5": "defaulted"},
    )
    trades = credit().trades
    return BookLoaded(book, trades)


# -- regulator -------------------------------------------------------------------------------


def status_message() -> StatusLoaded:
    status = StatusReply(
        authority="D1",
        height=48,
        last_hash="9f" * 32,
        last_block_ms=NOW_MS - 1500,
        authorities=("CCP", "D1", "D2", "D3"),
        candidates=("G1",),
        governance=(
            GovernanceEvent(12, "nominate", "G1", "guarantor with 300m capital", 12),
            GovernanceEvent(31, "veto", "D4", "failed the fit-and-proper review", 31),
        ),
        mempool=0,
        is_authority=True,
        business_date="2026-03-02",
        open_contracts=3,
    )
    per_authority: dict[str, StatusReply | str] = {
        "CCP": status,
        "D1": status,
        "D2": status,
        "D3": "no reply on otc.query.D3 within 1.0s",
    }
    return StatusLoaded(status, per_authority)


def risk_message() -> RiskLoaded:
    rows = (
        CcrRow("C2", "client", "BBB", 0.002, 0.6, 6_400_000, 7_680, 5_000_000, 1, 2, True),
        CcrRow("C1", "client", "A", 0.0006, 0.6, 1_250_000, 450, 5_000_000, 2, 3, False),
        CcrRow("D1", "dealer", "A", 0.0006, 0.6, 9_800_000, 3_528, 50_000_000, 3, 4, False),
        CcrRow("D2", "dealer", "A", 0.0006, 0.6, 2_100_000, 756, 50_000_000, 1, 1, False),
    )
    alerts = (RiskAlert(46, "C2", 6_400_000, 5_000_000, (("C2",), ("D1",)), ("C2", "D1")),)
    return RiskLoaded(RiskReply(48, rows, alerts))


def whatif_message() -> WhatIfLoaded:
    return WhatIfLoaded(
        WhatIfReply(
            "cascade",
            ("C2",),
            (("C2",), ("D1",)),
            ("C2", "D1"),
            {"C2": 0.0, "D1": 3_840_000, "D2": 420_000, "CCP": 0.0},
        )
    )


def trades_message() -> TradesFound:
    """The newest two of the 1,234 trades on chain."""
    views = {v.id: v for v in contracts()}
    return TradesFound(credit().trades, views, None, None, total=1234)


def whatif_without_losses_message() -> WhatIfLoaded:
    """A client nobody is exposed to defaults: every institution's loss is zero."""
    members = ("C3", "C1", "C2", "C4", "C5", "CCP", "D1", "D2", "D3", "G1")
    return WhatIfLoaded(
        WhatIfReply("cascade", ("C3",), (("C3",),), ("C3",), dict.fromkeys(members, 0.0))
    )
