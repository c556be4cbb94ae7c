"""Spread swap: leg A minus leg B (hot-rolled coil minus rebar). The published worked case:
HC2010 - RB2010, client buys at -151, 1000 t, settles at -59 -> client +92,000."""

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
    nearest_rebar,
)
from rfq.instruments import Leg, Terms, Underlying


class SpreadSwap(LinearTemplate):
    name = "spread_swap"
    label = "Spread swap"
    short = "spread"
    load_weight = 10
    ticket = TicketSpec(market_pick=False)

    def validate_legs(self, terms: Terms, catalog: Mapping[str, Underlying] | None) -> None:
        a_minus_b(terms)

    def default_legs(self, today: dt.date, maturity: dt.date | None) -> str:
        near = nearest_rebar(today, maturity)
        return f"HC{near.removeprefix('RB')} - {near}"

    def load_terms(self, rng: random.Random, draw: LoadDraw) -> Terms:
        return Terms(
            self.name,
            (Leg(f"HC{draw.month}", 1.0), Leg(f"RB{draw.month}", -1.0)),
            draw.side,
            draw.quantity,
            draw.today,
            draw.maturity,
        )

    def bench_shape(
        self, rng: np.random.Generator, pool: BenchPool, maturity: dt.date
    ) -> BenchShape:
        month = pool.months[int(rng.integers(len(pool.months)))]
        return BenchShape((Leg(f"HC{month}", 1.0), Leg(f"RB{month}", -1.0)), maturity)
