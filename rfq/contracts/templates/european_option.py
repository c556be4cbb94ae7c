"""European option on the weighted legs: Black-76 on the forward with the GARCH(1,1) vol of
the settlement reference. The quoted price is the premium per unit, paid by a buying client
when the contract opens; ``max(level - K, 0)`` (call) or ``max(K - level, 0)`` (put) at
maturity."""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from rfq.contracts.templates.base import (
    CALL,
    PUT,
    BenchPool,
    BenchShape,
    ContractTemplate,
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
    option_payoff,
    option_trades,
    refuse_averaging,
    require_option,
)
from rfq.errors import ValidationError
from rfq.instruments import Leg, OptionTerms, Side, Terms, Underlying

if TYPE_CHECKING:
    from rfq.contracts.model import Contract
    from rfq.pricing.fair_value import FairValue
    from rfq.risk.saccr import Trade


class EuropeanOption(ContractTemplate):
    name = "european_option"
    label = "European option"
    short = "option"
    single_leg = True
    premium_priced = True
    load_weight = 12
    min_price = 0.0  # a client writing a near-worthless option is offered 0
    ticket = TicketSpec(rows=("option",), premium_side=True)

    def validate_legs(self, terms: Terms, catalog: Mapping[str, Underlying] | None) -> None:
        one_leg(terms)

    def validate_extras(self, terms: Terms) -> None:
        refuse_averaging(terms)
        require_option(terms)

    def unit_payoff(self, contract: Contract, settlement: float) -> float:
        option = contract.terms.option
        assert option is not None
        if option.type == "call":
            return max(settlement - option.strike, 0.0)
        return max(option.strike - settlement, 0.0)

    def payoff_row(self, contract: Contract) -> PayoffRow:
        option = contract.terms.option
        assert option is not None
        fixed = contract.fixed_price if contract.fixed_price is not None else 0.0
        return PayoffRow(fixed, option.strike, CALL if option.type == "call" else PUT)

    vector_payoff = staticmethod(option_payoff)

    def fair_value(self, terms: Terms, market: PricingInputs) -> FairValue:
        from rfq.pricing.black76 import black76
        from rfq.pricing.errors import Unsupported
        from rfq.pricing.fair_value import FairValue, settlement_vol

        if terms.option is None:
            raise ValidationError("european_option needs option terms", where="option")
        if market.forward <= 0:
            raise Unsupported("an option needs a positive forward (Black-76 is lognormal)")
        vol = settlement_vol(
            terms.legs,
            today=market.today,
            maturity=terms.maturity,
            leg_forwards=market.leg_forwards,
            fixings=market.fixings,
            vol_models=market.vol_models,
            catalog=market.catalog,
        )
        tenor = market.tenor_years
        opt = black76(
            terms.option.type,
            market.forward,
            terms.option.strike,
            tenor,
            vol.vol,
            market.discount_rate,
        )
        df = math.exp(-market.discount_rate * tenor)
        return FairValue(
            terms.template,
            opt.price,
            market.forward,
            market.leg_forwards,
            tenor,
            vol,
            opt,
            discount_factor=df,
        )

    def client_owes_dealer(self, terms: Terms) -> bool:
        return terms.client_side != Side.BUY

    def epe_per_unit(self, terms: Terms, fair: FairValue, abs_vol: float) -> float:
        opt = fair.option
        if opt is None:
            raise ValidationError("an option's fair value carries its Black-76 value", where="fair")
        # The undiscounted premium: the expected payoff at maturity.
        return opt.price / fair.discount_factor

    def pfe_per_unit(self, terms: Terms, fair: FairValue, abs_vol: float, z: float) -> float:
        from rfq.pricing.black76 import black76_quantile_payoff

        if terms.option is None or fair.vol is None:
            raise ValidationError("an option's fair value carries its vol", where="fair")
        return black76_quantile_payoff(
            terms.option.type, fair.forward, terms.option.strike, fair.tenor_years, fair.vol.vol, z
        )

    def quote_delta(self, fair: FairValue) -> float:
        return 1.0 if fair.option is None else fair.option.delta

    def reference_price(self, terms: Terms, price: float) -> float:
        return terms.option.strike if terms.option is not None else price

    def saccr_trades(self, exposure: SaccrView) -> tuple[Trade, ...]:
        return option_trades(exposure)

    def default_legs(self, today: dt.date, maturity: dt.date | None) -> str:
        return nearest_rebar(today, maturity)

    def ticket_extras(self, reader: TicketReader) -> TicketExtras:
        return TicketExtras(option=option_from_ticket(reader))

    def load_terms(self, rng: random.Random, draw: LoadDraw) -> Terms:
        from rfq.instruments import CATALOG

        spot = draw.spot(draw.underlying)
        tick = CATALOG[draw.underlying].tick
        strike = round(spot * rng.choice((0.95, 1.0, 1.05)) / tick) * tick
        return Terms(
            self.name,
            (Leg(draw.underlying),),
            draw.side,
            draw.quantity,
            draw.today,
            draw.maturity,
            option=OptionTerms(rng.choice(("call", "put")), strike),
        )

    def bench_shape(
        self, rng: np.random.Generator, pool: BenchPool, maturity: dt.date
    ) -> BenchShape:
        return BenchShape((Leg(pool.future),), maturity)

    def bench_option(
        self, rng: np.random.Generator, level: float, fixed: float | None
    ) -> tuple[float | None, OptionTerms | None]:
        strike = round(level * (1 + float(rng.normal(0.0, 0.05))), 1)
        option = OptionTerms(
            "call" if rng.random() < 0.5 else "put", strike, round(strike * 0.02, 1)
        )
        return None, option
