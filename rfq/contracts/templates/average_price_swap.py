"""Average-price swap: settles on the mean of the daily fixings dated in its window. Before
that its mark is the fixings so far with today's level standing in for the window's remaining
weekdays (``rfq.contracts.payoff.average_estimate``)."""

from __future__ import annotations

import datetime as dt
import random
from typing import TYPE_CHECKING

import numpy as np

from rfq.contracts.templates.base import (
    BenchPool,
    BenchShape,
    LoadDraw,
    PricingInputs,
    SingleFuture,
    TicketExtras,
    TicketReader,
    TicketSpec,
    refuse_option,
)
from rfq.errors import ValidationError
from rfq.instruments import Averaging, Leg, Terms

if TYPE_CHECKING:
    from rfq.pricing.fair_value import FairValue


class AveragePriceSwap(SingleFuture):
    name = "average_price_swap"
    label = "Average-price swap"
    short = "avg"
    averaging = True
    load_weight = 10
    ticket = TicketSpec(rows=("averaging",))

    def validate_extras(self, terms: Terms) -> None:
        if terms.averaging is None:
            raise ValidationError("average_price_swap needs an averaging window", where="averaging")
        if terms.averaging.start > terms.averaging.end:
            raise ValidationError("averaging window starts after it ends", where="averaging")
        if terms.averaging.end > terms.maturity:
            raise ValidationError("averaging window ends after maturity", where="averaging")
        refuse_option(terms)

    def fair_value(self, terms: Terms, market: PricingInputs) -> FairValue:
        """The mean over the window's fixing dates of the fixing where the date is already
        fixed and of the forward otherwise."""
        from rfq.pricing.fair_value import average_price

        return average_price(
            terms,
            market.today,
            market.prices,
            market.fixings,
            market.carry_rate,
            market.include_weekends,
            market.catalog,
        )

    def ticket_extras(self, reader: TicketReader) -> TicketExtras:
        return TicketExtras(averaging=Averaging(reader.date("avg_start"), reader.date("avg_end")))

    def load_terms(self, rng: random.Random, draw: LoadDraw) -> Terms:
        start = draw.maturity - dt.timedelta(days=20)
        return Terms(
            self.name,
            (Leg(draw.underlying),),
            draw.side,
            draw.quantity,
            draw.today,
            draw.maturity,
            averaging=Averaging(start, draw.maturity),
        )

    def bench_shape(
        self, rng: np.random.Generator, pool: BenchPool, maturity: dt.date
    ) -> BenchShape:
        start = pool.trade_date + dt.timedelta(days=int(rng.integers(0, 8)))
        end = start + dt.timedelta(days=int(rng.integers(5, 40)))
        maturity = end + dt.timedelta(days=int(rng.integers(0, 6)))
        return BenchShape((Leg(pool.future),), maturity, averaging=Averaging(start, end))
