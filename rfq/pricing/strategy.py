"""The default quoting model: an RFQ's terms plus what the dealer knows -> a quote or a decline.

Pure and deterministic: the dealer peer gathers prices, fixings, the client's rating and its
own books into a ``PricingContext``, calls ``decide`` and wraps the result into a signed Quote or
Decline. Prices are from the **client's** side of the trade:

    client buys  (pays fixed / buys the option):  fair + half_spread + credit_charge + skew
    client sells (receives fixed / writes it):    fair - half_spread - credit_charge + skew

* ``half_spread`` is ``half_spread_bps`` of the gross forward ``sum |w_i F_i|`` -- a spread
  between two futures is charged on the legs traded, not on the (possibly tiny) difference --
  less ``tighten_bps_per_grade`` for each grade the client stands above BBB (never below 0).
* ``skew`` shifts both sides by ``-skew_per_unit x (dealer's inventory in the reference)``,
  scaled by the option's delta for options: a dealer long the reference lowers its prices to
  sell and buys back less eagerly.
* ``credit_charge`` is ``rfq.pricing.credit``'s charge on the expected exposure net of the
  collateral and guarantee the client brings. The initial margin is *not* netted in the price:
  margin rates rise as grades fall, so netting it would let a worse rating buy a cheaper price.
  It is netted where it matters for risk, in the credit-limit check.

Credit terms: the initial-margin rate comes from the client's grade (0 for a bought option: the
client owes nothing after the premium); the dealer offers a credit line covering a grade-
dependent share of that margin, capped by ``max_credit_line`` and by the room left under the
client's credit limit. The trade's exposure for the limit is its 95 % potential future exposure
times units, less collateral, guarantee and the margin actually posted (margin minus line).

Declines: ``bad_terms`` (terms fail ``validate_terms``, mature by today or trade a month that
is expired, not listed yet or stops trading before maturity), ``unsupported`` (terms the model
cannot price), ``tenor_limit`` / ``notional_limit`` (beyond the dealer's per-trade limits,
``rfq.pricing.limits``), ``no_price`` (a needed price is missing), ``rating`` (below the
dealer's minimum grade), ``credit_limit`` (even with no credit line, current exposure plus the
trade's would exceed the limit).

Competition: ``dealer_profile(dealer_id)`` gives each dealer its own default half-spread,
inventory skew, appetite (credit limit and per-trade limits as a share of the defaults) and
tightening of the spread for good grades, derived from its id, so the dealers of one network
quote different prices out of the box.

Prices are rounded to the reference's tick away from the client (up when it pays, down when it
receives), which keeps every monotonicity of the unrounded price.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import math
import re
from collections.abc import Mapping

import msgspec

from rfq.errors import ValidationError
from rfq.instruments import CATALOG, Side, Terms, Underlying, validate_terms
from rfq.pricing.credit import (
    DEFAULT_LGD,
    PFE_Z,
    client_owes_dealer,
    credit_charge,
    reference_abs_vol,
    trade_epe,
    trade_pfe,
    uncollateralised,
)
from rfq.pricing.errors import MissingPrice, Unsupported
from rfq.pricing.fair_value import FixingHistory, fair_value
from rfq.pricing.garch import VolEstimate, VolModel, vol_model
from rfq.pricing.limits import DEFAULT_TRADE_LIMITS, LimitBreach, TradeLimits, check_trade_limits
from rfq.rating import SCALE, Grade, grade_of, pd_of

DEFAULT_IM_RATES: dict[Grade, float] = {
    Grade.AAA: 0.05,
    Grade.AA: 0.06,
    Grade.A: 0.08,
    Grade.BBB: 0.10,
    Grade.BB: 0.12,
    Grade.B: 0.15,
    Grade.CCC: 0.20,
}
"""Initial margin as a share of notional, by grade."""

DEFAULT_LINE_SHARES: dict[Grade, float] = {
    Grade.AAA: 1.0,
    Grade.AA: 0.8,
    Grade.A: 0.6,
    Grade.BBB: 0.4,
    Grade.BB: 0.2,
    Grade.B: 0.0,
    Grade.CCC: 0.0,
}
"""Share of the initial margin the dealer offers to cover with a credit line, by grade."""


class QuoteParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A dealer's pricing policy.

    ``skew_per_unit`` is money per unit of price per unit of inventory;
    ``tighten_bps_per_grade`` narrows the half-spread per grade above BBB; ``limits`` are the
    per-trade notional and tenor limits.
    """

    templates: frozenset[str] | None = None
    """The templates this dealer quotes; None: every registered template."""
    half_spread_bps: float = 10.0
    skew_per_unit: float = 0.0
    tighten_bps_per_grade: float = 0.0
    limits: TradeLimits = msgspec.field(default_factory=TradeLimits)
    im_rates: dict[Grade, float] = msgspec.field(default_factory=lambda: dict(DEFAULT_IM_RATES))
    line_shares: dict[Grade, float] = msgspec.field(
        default_factory=lambda: dict(DEFAULT_LINE_SHARES)
    )
    max_credit_line: float = math.inf
    min_grade: Grade = Grade.CCC
    ttl_s: float = 30.0
    lgd: float = DEFAULT_LGD
    pfe_z: float = PFE_Z
    carry_rate: float = 0.0
    discount_rate: float = 0.0
    include_weekends: bool = False
    round_to_tick: bool = True


class PricingContext(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Everything the dealer knows when it prices one RFQ (amounts in settlement currency).

    ``vol_models`` are optional cached fits by underlying (``rfq.pricing.garch.vol_model``);
    missing ones are fitted from ``fixings`` on every call, which costs tens of milliseconds
    for a few years of fixings -- a dealer should refit once per new fixing and pass them in.
    ``inventory`` is the dealer's signed position per underlying (long > 0).
    ``collateral`` and ``guarantee`` are what the client brings to this trade.
    """

    today: dt.date
    prices: Mapping[str, float]
    client_rating: float
    credit_limit: float
    exposure: float = 0.0
    fixings: Mapping[str, FixingHistory] = msgspec.field(default_factory=dict)
    vol_models: Mapping[str, VolModel] = msgspec.field(default_factory=dict)
    inventory: Mapping[str, float] = msgspec.field(default_factory=dict)
    collateral: float = 0.0
    guarantee: float = 0.0
    params: QuoteParams = msgspec.field(default_factory=QuoteParams)


class DeclineCode(enum.StrEnum):
    """Why a dealer declines, machine-readable."""

    BAD_TERMS = "bad_terms"
    UNSUPPORTED = "unsupported"
    NO_PRICE = "no_price"
    RATING = "rating"
    CREDIT_LIMIT = "credit_limit"
    NOTIONAL_LIMIT = "notional_limit"
    TENOR_LIMIT = "tenor_limit"
    DEFAULTED = "defaulted"  # the client, or this dealer, is not in good standing on chain
    MARGIN_CAPACITY = "margin_capacity"  # the client cannot carry the initial margin asked


class QuoteDecision(msgspec.Struct, frozen=True, tag="quote"):
    """A firm price (per unit, client's side) with its credit terms and how it was built.

    ``credit_line`` and ``initial_margin`` are money; ``exposure`` is the trade's exposure as
    counted against the client's limit. ``price = fair_value + side x (half_spread +
    credit_charge) + skew``, then rounded to the tick (``rounding`` is the difference).
    """

    price: float
    initial_margin_rate: float
    credit_line: float
    ttl_s: float
    fair_value: float
    credit_charge: float
    half_spread: float
    skew: float
    rounding: float
    grade: Grade
    pd: float
    notional: float
    initial_margin: float
    exposure: float
    vol: VolEstimate | None = None
    abs_vol: float = 0.0
    abs_vol_basis: str = ""


class DeclineDecision(msgspec.Struct, frozen=True, tag="decline"):
    """No quote, and why."""

    code: DeclineCode
    text: str


Decision = QuoteDecision | DeclineDecision


def decide(
    terms: Terms, ctx: PricingContext, *, catalog: Mapping[str, Underlying] = CATALOG
) -> Decision:
    """Quote or decline an RFQ for ``terms`` given ``ctx``."""
    params = ctx.params
    try:
        validate_terms(terms, catalog=catalog, today=ctx.today)
    except ValidationError as exc:
        return DeclineDecision(DeclineCode.BAD_TERMS, str(exc))
    if params.templates is not None and terms.template not in params.templates:
        return DeclineDecision(
            DeclineCode.UNSUPPORTED, f"this dealer does not quote {terms.template}"
        )
    if terms.maturity <= ctx.today:
        return DeclineDecision(
            DeclineCode.BAD_TERMS, f"maturity {terms.maturity} is not after today {ctx.today}"
        )
    try:
        check_trade_limits(
            terms, params.limits, today=ctx.today, prices=ctx.prices, catalog=catalog
        )
    except LimitBreach as exc:
        return DeclineDecision(DeclineCode(exc.limit.value), str(exc))
    for name, amount in (("collateral", ctx.collateral), ("guarantee", ctx.guarantee)):
        if not (math.isfinite(amount) and amount >= 0):
            return DeclineDecision(DeclineCode.BAD_TERMS, f"{name} must be an amount >= 0")
    try:
        grade = grade_of(ctx.client_rating)
    except ValidationError as exc:
        return DeclineDecision(DeclineCode.RATING, str(exc))
    if _rank(grade) > _rank(params.min_grade):
        return DeclineDecision(
            DeclineCode.RATING, f"rating {grade} is below the minimum {params.min_grade}"
        )
    try:
        models = _with_leg_models(terms, ctx, catalog)
        fair = fair_value(
            terms,
            today=ctx.today,
            prices=ctx.prices,
            fixings=ctx.fixings,
            vol_models=models,
            carry_rate=params.carry_rate,
            discount_rate=params.discount_rate,
            include_weekends=params.include_weekends,
            catalog=catalog,
        )
        xvol = reference_abs_vol(
            terms,
            fair,
            today=ctx.today,
            fixings=ctx.fixings,
            vol_models=models,
            catalog=catalog,
        )
    except MissingPrice as exc:
        return DeclineDecision(DeclineCode.NO_PRICE, str(exc))
    except (Unsupported, ValidationError) as exc:
        return DeclineDecision(DeclineCode.UNSUPPORTED, str(exc))

    units = terms.quantity * terms.multiplier
    charge = credit_charge(
        ctx.client_rating,
        epe_per_unit=trade_epe(terms, fair, xvol.abs_vol),
        tenor_years=fair.tenor_years,
        units=units,
        lgd=params.lgd,
        collateral=ctx.collateral,
        guarantee=ctx.guarantee,
    )
    gross = sum(abs(leg.weight * f) for leg, f in zip(terms.legs, fair.leg_forwards, strict=True))
    notches_above_bbb = max(_rank(Grade.BBB) - _rank(grade), 0)
    spread_bps = max(params.half_spread_bps - params.tighten_bps_per_grade * notches_above_bbb, 0.0)
    half_spread = spread_bps * 1e-4 * gross
    position = sum(leg.weight * ctx.inventory.get(leg.underlying, 0.0) for leg in terms.legs)
    from rfq.contracts.templates import template_of

    template = template_of(terms)
    delta = template.quote_delta(fair)
    skew = -params.skew_per_unit * position * delta
    sign = 1.0 if terms.client_side == Side.BUY else -1.0
    raw = fair.value + sign * (half_spread + charge.per_unit) + skew
    price = _round(raw, sign, _tick(terms, catalog)) if params.round_to_tick else raw
    if template.min_price is not None:
        # A premium is never negative: a client writing a near-worthless option is offered 0.
        price = max(price, template.min_price)

    # Credit terms and the limit.
    owes = client_owes_dealer(terms)
    im_rate = params.im_rates.get(grade, 0.0) if owes else 0.0
    reference_price = template.reference_price(terms, price)
    notional = abs(reference_price) * units
    initial_margin = im_rate * notional
    pfe = trade_pfe(terms, fair, xvol.abs_vol, params.pfe_z) * units
    cover = ctx.collateral + ctx.guarantee
    unsecured = uncollateralised(
        pfe, collateral=ctx.collateral, guarantee=ctx.guarantee, initial_margin=initial_margin
    )
    room = ctx.credit_limit - ctx.exposure
    if unsecured > 0 and unsecured > room:
        return DeclineDecision(
            DeclineCode.CREDIT_LIMIT,
            f"exposure {ctx.exposure:.2f} + {unsecured:.2f} would exceed the limit "
            f"{ctx.credit_limit:.2f}",
        )
    wanted = min(params.line_shares.get(grade, 0.0) * initial_margin, params.max_credit_line)
    fits = max(room - (pfe - cover - initial_margin), 0.0)
    line = max(min(wanted, fits, initial_margin), 0.0)
    exposure = uncollateralised(
        pfe,
        collateral=ctx.collateral,
        guarantee=ctx.guarantee,
        initial_margin=initial_margin - line,
    )
    return QuoteDecision(
        price=price,
        initial_margin_rate=im_rate,
        credit_line=line,
        ttl_s=params.ttl_s,
        fair_value=fair.value,
        credit_charge=charge.per_unit,
        half_spread=half_spread,
        skew=skew,
        rounding=price - raw,
        grade=grade,
        pd=pd_of(ctx.client_rating),
        notional=notional,
        initial_margin=initial_margin,
        exposure=exposure,
        vol=fair.vol,
        abs_vol=xvol.abs_vol,
        abs_vol_basis=xvol.basis,
    )


def _with_leg_models(
    terms: Terms, ctx: PricingContext, catalog: Mapping[str, Underlying]
) -> Mapping[str, VolModel]:
    """Fit a single leg's vol model once, so fair value and exposure share one GARCH fit."""
    if len(terms.legs) != 1 or terms.legs[0].underlying in ctx.vol_models:
        return ctx.vol_models
    u = terms.legs[0].underlying
    history = ctx.fixings.get(u, {})
    prices = [history[d] for d in sorted(history) if d <= ctx.today]
    return {**ctx.vol_models, u: vol_model(prices, fallback_vol=catalog[u].annual_vol)}


def _rank(grade: Grade) -> int:
    return next(i for i, band in enumerate(SCALE) if band.grade == grade)


def _tick(terms: Terms, catalog: Mapping[str, Underlying]) -> float:
    return min(catalog[leg.underlying].tick for leg in terms.legs)


def _round(value: float, sign: float, tick: float) -> float:
    """Round to ``tick`` away from the client: up when it pays, down when it receives."""
    if not tick > 0:
        return value
    steps = value / tick
    # A hair of tolerance so 3151.0000000001 stays 3151.
    n = math.ceil(steps - 1e-9) if sign > 0 else math.floor(steps + 1e-9)
    return round(n * tick, 10)


# --------------------------------------------------------------------------------------------
# Each dealer's default character

DEFAULT_CREDIT_LIMIT = 5.0e7
"""Per-client exposure limit (CNY) of a dealer with full appetite."""
GOLDEN = (math.sqrt(5) - 1) / 2


class DealerProfile(msgspec.Struct, frozen=True):
    """A dealer's default pricing policy and per-client credit limit (``dealer_profile``)."""

    params: QuoteParams
    credit_limit: float
    appetite: float


def dealer_profile(dealer_id: str) -> DealerProfile:
    """Default parameters of dealer ``dealer_id``, the same on every run:

    * ``half_spread_bps`` 4 to 20 -- for an id ending in a number (``D1``, ``D2``...) the
      number times the golden ratio (mod 1) picks it, so any few dealers in a row are well
      apart (D1 13.9, D2 7.8, D3 17.7: at least a tick apart on rebar); for other ids a hash
      of the id;
    * ``skew_per_unit`` 0.00005 to 0.0002, ``tighten_bps_per_grade`` 0 to 0.5 (hash of the id);
    * ``appetite`` 0.5 to 1 (hash of the id): the credit limit is ``appetite x 50,000,000``,
      the notional limit ``appetite x`` the default and the tenor limit 1 + 2 x appetite years.
    """
    digest = hashlib.sha256(f"botc-dealer/{dealer_id}".encode()).digest()
    u = [int.from_bytes(digest[2 * k : 2 * k + 2], "big") / 65535 for k in range(4)]
    number = re.search(r"(\d+)$", dealer_id)
    spread_draw = (int(number.group(1)) * GOLDEN) % 1.0 if number else u[0]
    appetite = round(0.5 + 0.5 * u[2], 2)
    params = QuoteParams(
        half_spread_bps=round(4.0 + 16.0 * spread_draw, 1),
        skew_per_unit=round((0.5 + 1.5 * u[1]) * 1e-4, 7),
        tighten_bps_per_grade=round(0.5 * u[3], 2),
        limits=TradeLimits(
            max_notional=round(DEFAULT_TRADE_LIMITS.max_notional * appetite, -6),
            max_tenor_days=int(365 * (1 + 2 * appetite)),
        ),
    )
    return DealerProfile(
        params=params, credit_limit=round(DEFAULT_CREDIT_LIMIT * appetite, -5), appetite=appetite
    )
