"""The contract-template registry: every template the engine, the dealers, the regulator, the
terminal and the load tools know, by name, in registration order.

Each template is one module (``rfq.contracts.templates.<name>``) defining a
``ContractTemplate`` subclass; ``register`` refuses a duplicate name or a class that lacks a
piece (naming what is missing). Consumers look a contract's template up here
(``template_of(terms)``) instead of branching on its name. The built-in eight are registered
below, in the order of DESIGN.md section 6 (the order is part of the load generator's and the
benchmark's random draws).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from rfq.contracts.templates.base import ContractTemplate, TemplateError
from rfq.instruments import Terms

REGISTRY: dict[str, ContractTemplate] = {}
"""Registered templates by name (``Terms.template``), in registration order."""

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_WORDS = ("name", "label", "short")


def _missing(cls: type[ContractTemplate]) -> list[str]:
    missing = [
        attr
        for attr in _WORDS
        if not isinstance(getattr(cls, attr, None), str) or not getattr(cls, attr)
    ]
    pieces = ContractTemplate.__abstractmethods__
    missing += sorted(
        piece
        for piece in pieces
        if piece in cls.__abstractmethods__ or not callable(getattr(cls, piece, None))
    )
    return missing


def register(template: type[ContractTemplate]) -> ContractTemplate:
    """Add a template class (instantiated once); refuse a name already taken, a class that is
    not a ``ContractTemplate`` or one missing any piece. Returns the registered instance."""
    if not (isinstance(template, type) and issubclass(template, ContractTemplate)):
        raise TemplateError(f"{template!r} is not a ContractTemplate subclass")
    name = getattr(template, "name", None)
    shown = name if isinstance(name, str) else template.__name__
    missing = _missing(template)
    if missing:
        raise TemplateError(f"template {shown!r} is missing {', '.join(missing)}")
    assert isinstance(name, str)
    if not _NAME.match(name):
        raise TemplateError(
            f"template name {name!r} must be lower-case letters, digits and _ (at most 64)"
        )
    if name in REGISTRY:
        raise TemplateError(f"a template named {name!r} is already registered")
    instance = template()
    REGISTRY[name] = instance
    return instance


def unregister(name: str) -> None:
    """Remove a template (tests that register their own clean up with ``registered``)."""
    REGISTRY.pop(name, None)


@contextmanager
def registered(template: type[ContractTemplate]) -> Iterator[ContractTemplate]:
    """``register`` for the duration of a ``with`` block."""
    instance = register(template)
    try:
        yield instance
    finally:
        unregister(instance.name)


def get(name: str) -> ContractTemplate:
    """The template registered as ``name``; ``TemplateError`` naming the known ones if none."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise TemplateError(f"unknown template {name!r} (one of {', '.join(REGISTRY)})") from None


def template_of(terms: Terms) -> ContractTemplate:
    """The template of these terms (validated terms always have one)."""
    return get(terms.template)


def templates() -> tuple[ContractTemplate, ...]:
    """Every registered template, in registration order."""
    return tuple(REGISTRY.values())


def _register_builtins() -> None:
    from rfq.contracts.templates.average_price_swap import AveragePriceSwap
    from rfq.contracts.templates.calendar_spread import CalendarSpread
    from rfq.contracts.templates.european_option import EuropeanOption
    from rfq.contracts.templates.forward import Forward
    from rfq.contracts.templates.index_swap import IndexSwap
    from rfq.contracts.templates.price_swap import PriceSwap
    from rfq.contracts.templates.spot_swap import SpotSwap
    from rfq.contracts.templates.spread_swap import SpreadSwap

    for template in (
        PriceSwap,
        SpotSwap,
        AveragePriceSwap,
        SpreadSwap,
        CalendarSpread,
        IndexSwap,
        Forward,
        EuropeanOption,
    ):
        register(template)


_register_builtins()

__all__ = [
    "REGISTRY",
    "ContractTemplate",
    "TemplateError",
    "get",
    "register",
    "registered",
    "template_of",
    "templates",
    "unregister",
]
