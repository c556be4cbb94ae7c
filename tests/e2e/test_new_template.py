"""A template that exists only in this test -- a cash-or-nothing digital -- registered once and
then traded on the real marketplace like any built-in one: quoted by a dealer, accepted onto
the chain, marked at a fixing, settled at maturity, every payment made by the bank.

Nothing in ``rfq/``, ``peers/`` or ``tui/`` knows the word "digital": each of them finds the
template in the registry.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import numpy as np
import pytest

from peers.oracle import next_business_day
from rfq.contracts.model import Contract, Status
from rfq.contracts.templates import ContractTemplate, registered
from rfq.contracts.templates.base import (
    CALL,
    F64,
    I64,
    PUT,
    BenchPool,
    BenchShape,
    LoadDraw,
    PayoffRow,
    PricingInputs,
    SaccrView,
    TicketExtras,
    TicketReader,
    TicketSpec,
    nearest_rebar,
    one_leg,
    option_from_ticket,
    placement_of,
    refuse_averaging,
    require_option,
    saccr_trade,
)
from rfq.instruments import Leg, OptionTerms, Side, Terms, Underlying
from rfq.ledger.state import CUSTODY
from rfq.money import to_micros
from rfq.pricing.fair_value import FairValue, settlement_vol
from rfq.risk.monitor import contract_trades

from .marketplace import UNDERLYING

if TYPE_CHECKING:
    from rfq.risk.saccr import Trade

pytestmark = pytest.mark.integration

PAYOUT = 100.0
"""What a digital pays per unit (x quantity x multiplier) when it ends in the money."""


def _n(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


class Digital(ContractTemplate):
    """Cash-or-nothing: pays ``PAYOUT`` per unit if the level ends above the strike (call) or
    below it (put), nothing otherwise; the buyer pays a premium when it opens."""

    name = "digital"
    label = "Digital option"
    short = "digital"
    single_leg = True
    premium_priced = True
    min_price = 0.0
    ticket = TicketSpec(rows=("option",), premium_side=True)

    def validate_legs(self, terms: Terms, catalog: Mapping[str, Underlying] | None) -> None:
        one_leg(terms)

    def validate_extras(self, terms: Terms) -> None:
        refuse_averaging(terms)
        require_option(terms)

    def unit_payoff(self, contract: Contract, settlement: float) -> float:
        option = contract.terms.option
        assert option is not None
        hit = settlement > option.strike if option.type == "call" else settlement < option.strike
        return PAYOUT if hit else 0.0

    def payoff_row(self, contract: Contract) -> PayoffRow:
        option = contract.terms.option
        assert option is not None
        return PayoffRow(0.0, option.strike, CALL if option.type == "call" else PUT)

    @staticmethod
    def vector_payoff(mark: F64, fixed: F64, strike: F64, flag: I64) -> F64:
        hit = np.where(flag == PUT, mark < strike, mark > strike)
        out: F64 = np.where(np.isnan(mark), np.nan, np.where(hit, PAYOUT, 0.0))
        return out

    def notional_price(self, contract: Contract) -> float:
        return PAYOUT

    def fair_value(self, terms: Terms, market: PricingInputs) -> FairValue:
        """Black-76 cash-or-nothing: ``DF x N(+-d2) x PAYOUT``."""
        option = terms.option
        assert option is not None
        vol = settlement_vol(
            terms.legs,
            today=market.today,
            maturity=terms.maturity,
            leg_forwards=market.leg_forwards,
            fixings=market.fixings,
            vol_models=market.vol_models,
            catalog=market.catalog,
        )
        t, f, k = market.tenor_years, market.forward, option.strike
        d2 = (math.log(f / k) - 0.5 * vol.vol**2 * t) / (vol.vol * math.sqrt(t))
        df = math.exp(-market.discount_rate * t)
        p = _n(d2) if option.type == "call" else _n(-d2)
        return FairValue(
            terms.template, df * p * PAYOUT, f, market.leg_forwards, t, vol, discount_factor=df
        )

    def client_owes_dealer(self, terms: Terms) -> bool:
        return terms.client_side != Side.BUY

    def epe_per_unit(self, terms: Terms, fair: FairValue, abs_vol: float) -> float:
        return fair.value / fair.discount_factor

    def pfe_per_unit(self, terms: Terms, fair: FairValue, abs_vol: float, z: float) -> float:
        return PAYOUT

    def reference_price(self, terms: Terms, price: float) -> float:
        return PAYOUT

    def saccr_trades(self, view: SaccrView) -> tuple[Trade, ...]:
        """The most it can pay, as one trade long the level for a bought call."""
        contract = view.view.contract
        option = contract.terms.option
        assert option is not None
        return (
            saccr_trade(
                contract.id,
                placement_of(contract.terms.legs[0].underlying),
                notional=PAYOUT * view.size,
                mtm=view.mtm,
                maturity=view.maturity,
                delta=view.sign if option.type == "call" else -view.sign,
            ),
        )

    def default_legs(self, today: dt.date, maturity: dt.date | None) -> str:
        return nearest_rebar(today, maturity)

    def ticket_extras(self, reader: TicketReader) -> TicketExtras:
        return TicketExtras(option=option_from_ticket(reader))

    def load_terms(self, rng: random.Random, draw: LoadDraw) -> Terms:
        strike = round(draw.spot(draw.underlying))
        return Terms(
            self.name,
            (Leg(draw.underlying),),
            draw.side,
            draw.quantity,
            draw.today,
            draw.maturity,
            option=OptionTerms("call", strike),
        )

    def bench_shape(
        self, rng: np.random.Generator, pool: BenchPool, maturity: dt.date
    ) -> BenchShape:
        return BenchShape((Leg(pool.future),), maturity)


@pytest.fixture(autouse=True)
def digital() -> Iterator[ContractTemplate]:
    with registered(Digital) as template:
        yield template


def weekday(day: dt.date) -> dt.date:
    return day if day.weekday() < 5 else next_business_day(day)


async def test_c1_writes_a_digital_defined_only_here_and_it_is_quoted_traded_marked_and_settled(
    marketplace,
):
    market = marketplace
    bank = market.bank
    opening = bank.balances()
    session = market.clients["C1"]
    today = session.market.today
    strike = float(round(session.market.latest[UNDERLYING].price * 1.02))
    maturity = weekday(today + dt.timedelta(days=30))
    quantity = 1000.0
    size = quantity  # multiplier 1

    # C1 asks every dealer for the premium of a digital call it writes
    terms = Terms(
        template="digital",
        legs=(Leg(UNDERLYING),),
        client_side=Side.SELL,
        quantity=quantity,
        trade_date=today,
        maturity=maturity,
        option=OptionTerms("call", strike),
    )
    rfq = await session.send_rfq(terms, deadline_s=3)
    answers = await rfq.collect()
    best = rfq.best()
    assert best is not None, f"no dealer quoted the digital: {answers}"
    assert 0 < best.price < PAYOUT  # fair value N(d2) x 100, less spread and credit charge
    dealer, premium = best.dealer, best.price

    # accepted: a final block opens the contract at that premium, margined on the payout
    receipt = await session.committed(await session.accept(best))
    assert receipt.ok, receipt.reason
    trade = next(t for t in await market.trades() if t.rfq_id == rfq.id)
    cid = trade.contract_id
    view = await market.contract(cid)
    assert view.status == Status.LIVE
    assert view.contract.terms.template == "digital"
    assert view.contract.fixed_price is None
    assert view.contract.terms.option.premium == premium
    assert view.notional == PAYOUT * size
    assert view.initial_margin == pytest.approx(best.initial_margin_rate * PAYOUT * size)
    im = trade.cash_margin
    assert im > 0

    # the premium reaches C1 and its initial margin goes into custody
    await market.until(lambda: market.settled(cid), what="the premium and initial margin")
    paid = await market.payments(cid)
    got = paid[f"{cid}/premium/1"]
    assert (got.payer, got.payee, got.amount) == (dealer, "C1", to_micros(premium * size))
    posted = paid[f"{cid}/initial_margin/1"]
    assert (posted.payer, posted.payee, posted.amount) == ("C1", CUSTODY, im)

    # a close above the strike marks it in the money: C1 owes the whole payout as margin
    day1 = market.next_day()
    assert (await market.fix(day1, strike + 10.0)).ok
    await market.until(lambda: market.call_payment(cid), what="the margin call on C1")
    view = await market.contract(cid)
    assert view.mark == strike + 10.0
    assert view.client_mtm == -PAYOUT * size
    call = await market.call_payment(cid)
    assert call is not None
    assert (call.payer, call.payee, call.amount) == ("C1", dealer, to_micros(PAYOUT * size))
    await market.until(lambda: market.settled(cid), what="the margin call paid")

    # the regulator's SA-CCR mapping is the template's: the payout, long for the dealer
    [exposure] = contract_trades(view, creditor=dealer, as_of=day1, prices={})
    assert (exposure.notional, exposure.delta) == (PAYOUT * size, 1.0)

    # the maturity close is below the strike: it settles out of the money, the margin back
    assert (await market.fix(maturity, strike - 10.0)).ok

    async def ended() -> bool:
        return (await market.contract(cid)).status == Status.SETTLED

    await market.until(ended, what="settlement at maturity")
    view = await market.contract(cid)
    assert view.outcome.settlement_price == strike - 10.0
    assert view.outcome.client_value == 0.0
    assert view.outcome.client_pnl == pytest.approx(premium * size)
    await market.until(lambda: market.settled(cid), what="settlement payments confirmed")
    paid = await market.payments(cid)
    assert sorted(paid) == sorted(
        f"{cid}/{kind}/1"
        for kind in (
            "premium",
            "initial_margin",
            "settlement",
            "im_return",
        )
    )
    back = paid[f"{cid}/settlement/1"]
    assert (back.payer, back.payee, back.amount) == (dealer, "C1", to_micros(PAYOUT * size))
    returned = paid[f"{cid}/im_return/1"]
    assert (returned.payer, returned.payee, returned.amount) == (CUSTODY, "C1", im)

    # the bank's books: C1 is up the premium, the dealer down it, custody empty
    await market.until(lambda: bank.counts()["unconfirmed"] == 0, what="the bank's receipts")
    balances = bank.balances()
    assert balances["C1"] == opening["C1"] + got.amount  # to the micro: the premium
    assert balances[dealer] == opening[dealer] - got.amount
    assert balances[CUSTODY] == opening[CUSTODY] == 0
