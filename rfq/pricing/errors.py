"""Errors the pricing model raises; the strategy turns them into declines with a reason code."""

from __future__ import annotations

import datetime as dt

from rfq.errors import RfqError


class PricingError(RfqError):
    """Root of pricing errors."""


class MissingPrice(PricingError):
    """No price (latest or fixing) to value ``underlying`` on ``on``: the dealer cannot quote."""

    def __init__(self, underlying: str, *, on: dt.date | None = None) -> None:
        self.underlying = underlying
        self.on = on
        when = f" on {on}" if on is not None else ""
        super().__init__(f"no price for {underlying}{when}")


class Unsupported(PricingError):
    """Terms the model does not price (e.g. an option on a basket with no positive forward)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class GarchFitError(PricingError):
    """The GARCH(1,1) likelihood could not be maximised on this series; callers fall back."""

    def __init__(self, reason: str, *, n_returns: int) -> None:
        self.reason = reason
        self.n_returns = n_returns
        super().__init__(f"GARCH fit failed on {n_returns} returns: {reason}")
