"""Text formatting shared by the terminal's tables and panels (pure, no Textual)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

from rich.text import Text

from rfq.contracts.templates import REGISTRY
from rfq.instruments import Leg, Terms
from rfq.money import from_micros

SPARK_BLOCKS = "▁▂▃▄▅▆▇█"
DASH = "—"


def template_label(name: str) -> str:
    """The ticket's and palette's name for a template (``Price swap``); its id if unknown."""
    template = REGISTRY.get(name)
    return name if template is None else template.label


def template_short(name: str) -> str:
    """The blotter's word for a template (``swap``); its id if unknown."""
    template = REGISTRY.get(name)
    return name if template is None else template.short


def number(value: float | None, decimals: int = 2) -> str:
    """``1234.5`` -> ``1,234.50``; None -> a dash."""
    if value is None or not math.isfinite(value):
        return DASH
    return f"{value:,.{decimals}f}"


def price(value: float | None) -> str:
    """A price with as many decimals as it needs (ticks are 0.1 to 10)."""
    if value is None or not math.isfinite(value):
        return DASH
    if abs(value - round(value)) < 1e-9:
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def micros(value: int | None) -> str:
    """An amount the ledger holds (integer micros, ``rfq.money``) as compact money."""
    return money(None if value is None else from_micros(value))


def money(value: float | None) -> str:
    """Compact money: ``1.25m``, ``320k``, ``950``."""
    if value is None or not math.isfinite(value):
        return DASH
    size = abs(value)
    if size >= 1e9:
        return f"{value / 1e9:,.2f}bn"
    if size >= 1e6:
        return f"{value / 1e6:,.2f}m"
    if size >= 1e4:
        return f"{value / 1e3:,.1f}k"
    return f"{value:,.0f}"


def signed(value: float | None, text: str | None = None) -> Text:
    """``text`` (default: the money form of ``value``) green when positive, red when negative."""
    shown = text if text is not None else money(value)
    if value is None or not math.isfinite(value) or value == 0:
        return Text(shown, style="dim" if value is None else "")
    if value > 0 and not shown.startswith("+"):
        shown = "+" + shown
    return Text(shown, style="green" if value > 0 else "red")


# Codes the chain and the dealers use, in the words a person reads (the rest: "_" -> " ").
WORDS: dict[str, str] = {
    # contract statuses
    "margin_call": "margin call",
    "in_default": "in default",
    "closed_out": "closed out",
    # transaction kinds
    "close_out": "close-out request",
    "fixing_tx": "price fixing",
    "guarantee_grant": "guarantee granted",
    "guarantee_revoke": "guarantee revoked",
    "rating_update": "rating update",
    "register_member": "member registered",
    "suspend_member": "member suspended",
    "reinstate_member": "member reinstated",
    "offboard_member": "member offboarded",
    "gov_nominate": "nomination",
    "gov_veto": "veto",
    "gov_evict": "eviction",
    "evidence": "misbehaviour evidence",
    # decline codes
    "bad_terms": "bad terms",
    "unsupported": "product not offered",
    "no_price": "no price",
    "rating": "rating too low",
    "credit_limit": "credit limit",
    "dealer_declined": "declined by the desk",
    "malformed": "malformed RFQ",
}


def words(code: object) -> str:
    """A machine code (``margin_call``, ``credit_limit``, a transaction kind) in words."""
    text = str(code)
    return WORDS.get(text, text.replace("_", " "))


def count(n: int, singular: str, plural: str | None = None) -> str:
    """``1 contract``, ``2 contracts``, ``0 contracts``; ``plural`` for irregular words."""
    return f"{n} {singular if n == 1 else plural or singular + 's'}"


def percent(value: float | None, decimals: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return DASH
    return f"{value * 100:+.{decimals}f}%"


def spark(values: Sequence[float], width: int = 16) -> Text:
    """A one-line sparkline of the last ``width`` values, green if the series rose, red if not."""
    tail = [v for v in values if math.isfinite(v)][-width:]
    if not tail:
        return Text(DASH, style="dim")
    low, high = min(tail), max(tail)
    span = high - low
    top = len(SPARK_BLOCKS) - 1
    chars = "".join(
        SPARK_BLOCKS[top // 2 if span == 0 else round((v - low) / span * top)] for v in tail
    )
    style = "green" if tail[-1] >= tail[0] else "red"
    return Text(chars.rjust(width), style=style)


def countdown(seconds: float) -> str:
    """Remaining time as ``12s`` / ``2m05s``; ``expired`` once it has passed."""
    if seconds <= 0:
        return "expired"
    whole = math.ceil(seconds)
    if whole < 60:
        return f"{whole}s"
    return f"{whole // 60}m{whole % 60:02d}s"


def legs_text(legs: Sequence[Leg]) -> str:
    """``HC2605 - RB2605``, ``0.6*RB2605 + 0.4*HC2605``, ``RB2605``."""
    parts: list[str] = []
    for i, leg in enumerate(legs):
        weight = abs(leg.weight)
        name = leg.underlying if weight == 1 else f"{weight:g}*{leg.underlying}"
        if i == 0:
            parts.append(name if leg.weight > 0 else f"-{name}")
        else:
            parts.append(f"{'+' if leg.weight > 0 else '-'} {name}")
    return " ".join(parts)


def product(terms: Terms) -> str:
    """One line naming what is traded: ``swap RB2605``, ``call 3200 RB2605``."""
    what = legs_text(terms.legs)
    if terms.option is not None:
        return f"{terms.option.type} {price(terms.option.strike)} {what}"
    return f"{template_short(terms.template)} {what}"


def side_text(terms: Terms) -> Text:
    side = str(terms.client_side)
    return Text(side.upper(), style="bold green" if side == "buy" else "bold red")


def short_hash(value: str, length: int = 10) -> str:
    return value[:length]


def timestamp(ms: int) -> str:
    """UTC ``HH:MM:SS`` of a block or message timestamp."""
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%H:%M:%S")


def bar(fraction: float, width: int = 10) -> Text:
    """A usage bar: green under 75 %, yellow under 100 %, red beyond."""
    fraction = max(fraction, 0.0) if math.isfinite(fraction) else 0.0
    filled = min(round(fraction * width), width)
    style = "green" if fraction < 0.75 else "yellow" if fraction < 1.0 else "bold red"
    return Text("█" * filled + "░" * (width - filled), style=style)
