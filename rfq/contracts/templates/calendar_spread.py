"""Calendar spread: two months of one future, the far (or later) leg minus the near."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Mapping

import numpy as np

from rfq.contracts.templates.base import (
    BenchPool,
    BenchShape,
    LinearTemplate,
    LoadDraw,
    TicketSpec,
    a_minus_b,
    covering_months,
    default_maturity,
)
from rfq.errors import ValidationError
from rfq.instruments import Leg, Terms, Underlying, listed_futures


class CalendarSpread(LinearTemplate):
    name = "calendar_spread"
    label = "Calendar spread"
    short = "calendar"
    load_weight = 8
    ticket = TicketSpec(market_pick=False)

    def validate_legs(self, terms: Terms, catalog: Mapping[str, Underlying] | None) -> None:
        a_minus_b(terms)
        if catalog is not None:
            roots = {catalog[leg.underlying].root for leg in terms.legs}
            if len(roots) != 1:
                raise ValidationError("a calendar spread is two months of one future", where="legs")

    def default_legs(self, today: dt.date, maturity: dt.date | None) -> str:
        """The next rebar month minus the nearest one that trades to maturity."""
        months = covering_months("RB", today, maturity or default_maturity(today))
        if len(months) < 2:
            listed = [u.id for u in listed_futures("RB", today)]
            months = listed[-2:]
        return f"{months[1]} - {months[0]}"

    def load_terms(self, rng: random.Random, draw: LoadDraw) -> Terms:
        near, far = draw.listed[1], draw.listed[2]
        return Terms(
            self.name,
            (Leg(near.id, 1.0), Leg(far.id, -1.0)),
            draw.side,
            draw.quantity,
            draw.today,
            min(draw.maturity, near.last_trading_day or draw.maturity),
        )

    def bench_shape(
        self, rng: np.random.Generator, pool: BenchPool, maturity: dt.date
    ) -> BenchShape:
        root = pool.roots[int(rng.integers(len(pool.roots)))]
        near, far = sorted(rng.choice(len(pool.months), size=2, replace=False).tolist())
        months = pool.months
        return BenchShape(
            (Leg(f"{root}{months[far]}", 1.0), Leg(f"{root}{months[near]}", -1.0)), maturity
        )
