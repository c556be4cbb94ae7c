"""Spot-price swap: settles on a spot assessment (Tangshan billet), carried to maturity for
its fair value. The published worked case: client sells at 3399, 3000 t, closed out at 3341 ->
client +174,000."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Mapping

import numpy as np

from rfq.contracts.templates.base import BenchPool, BenchShape, LinearTemplate, LoadDraw, one_leg
from rfq.instruments import Leg, Terms, Underlying

SPOT = "TSBILLET"


class SpotSwap(LinearTemplate):
    name = "spot_swap"
    label = "Spot swap"
    short = "spot"
    single_leg = True
    load_weight = 10

    def validate_legs(self, terms: Terms, catalog: Mapping[str, Underlying] | None) -> None:
        one_leg(terms)

    def default_legs(self, today: dt.date, maturity: dt.date | None) -> str:
        return SPOT

    def load_terms(self, rng: random.Random, draw: LoadDraw) -> Terms:
        return Terms(self.name, (Leg(SPOT),), draw.side, draw.quantity, draw.today, draw.maturity)

    def bench_shape(
        self, rng: np.random.Generator, pool: BenchPool, maturity: dt.date
    ) -> BenchShape:
        return BenchShape((Leg(SPOT),), maturity)
