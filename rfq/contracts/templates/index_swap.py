"""Index swap: points x multiplier on an index (CSI 300), or a weighted basket of legs."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Mapping

import numpy as np

from rfq.contracts.templates.base import BenchPool, BenchShape, LinearTemplate, LoadDraw
from rfq.instruments import Leg, Terms, Underlying

INDEX = "CSI300"
INDEX_MULTIPLIER = 300.0


class IndexSwap(LinearTemplate):
    name = "index_swap"
    label = "Index swap"
    short = "index"
    load_weight = 8

    def validate_legs(self, terms: Terms, catalog: Mapping[str, Underlying] | None) -> None:
        """Any weighted basket: the common checks are all it needs."""

    def default_legs(self, today: dt.date, maturity: dt.date | None) -> str:
        return INDEX

    def load_terms(self, rng: random.Random, draw: LoadDraw) -> Terms:
        return Terms(
            self.name,
            (Leg(INDEX),),
            draw.side,
            rng.choice((1, 2, 5)),
            draw.today,
            draw.maturity,
            multiplier=INDEX_MULTIPLIER,
        )

    def bench_shape(
        self, rng: np.random.Generator, pool: BenchPool, maturity: dt.date
    ) -> BenchShape:
        if rng.random() < 0.5:  # on points
            return BenchShape((Leg(INDEX),), maturity, multiplier=INDEX_MULTIPLIER)
        # on a weighted basket
        futures = pool.futures
        picks = rng.choice(len(futures), size=3, replace=False).tolist()
        legs = tuple(Leg(futures[k], w) for k, w in zip(picks, (0.5, 0.3, 0.2), strict=True))
        return BenchShape(legs, maturity)
