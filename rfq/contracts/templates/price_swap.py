"""Price swap on a futures contract: one futures month; the client who buys receives
(settlement - fixed) x quantity x multiplier at maturity."""

from __future__ import annotations

from rfq.contracts.templates.base import SingleFuture


class PriceSwap(SingleFuture):
    name = "price_swap"
    label = "Price swap"
    short = "swap"
    load_weight = 30
