"""Forward: one underlying bought or sold for cash settlement at maturity at the fixed price
(the engine settles it as a price swap; the terminal names it apart)."""

from __future__ import annotations

from rfq.contracts.templates.base import SingleFuture


class Forward(SingleFuture):
    name = "forward"
    label = "Forward"
    short = "fwd"
    load_weight = 12
