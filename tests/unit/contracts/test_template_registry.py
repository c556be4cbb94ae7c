"""The template registry: one place knows every template, and it refuses what it cannot run."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import msgspec
import pytest

from rfq.contracts import ContractBook, Fixing, Price
from rfq.contracts.model import Contract
from rfq.contracts.templates import (
    REGISTRY,
    ContractTemplate,
    TemplateError,
    get,
    register,
    registered,
    templates,
)
from rfq.contracts.templates.base import F64, I64, PayoffRow, SingleFuture, one_leg
from rfq.contracts.templates.price_swap import PriceSwap
from rfq.errors import ValidationError
from rfq.instruments import Leg, Side, Template, Terms, Underlying, validate_terms

from .contracts_factory import MATURITY, TRADE_DATE, contract


class Doubled(SingleFuture):
    """Twice a price swap's payoff: complete, so it registers."""

    name = "doubled_swap"
    label = "Doubled swap"
    short = "x2"

    def unit_payoff(self, contract: Contract, settlement: float) -> float:
        assert contract.fixed_price is not None
        return 2.0 * (settlement - contract.fixed_price)

    @staticmethod
    def vector_payoff(mark: F64, fixed: F64, strike: F64, flag: I64) -> F64:
        out: F64 = 2.0 * (mark - fixed)
        return out


class NoPayoff(ContractTemplate):
    """Everything but the payoffs and the SA-CCR mapping."""

    name = "no_payoff"
    label = "No payoff"
    short = "none"

    def validate_legs(self, terms: Terms, catalog: Mapping[str, Underlying] | None) -> None:
        one_leg(terms)

    def payoff_row(self, contract: Contract) -> PayoffRow:
        return PayoffRow()

    fair_value = PriceSwap.fair_value
    epe_per_unit = PriceSwap.epe_per_unit
    pfe_per_unit = PriceSwap.pfe_per_unit
    default_legs = PriceSwap.default_legs
    load_terms = PriceSwap.load_terms
    bench_shape = PriceSwap.bench_shape


def test_the_eight_built_in_templates_are_registered_in_the_order_of_the_design():
    assert [t.name for t in templates()] == [t.value for t in Template]
    assert get("spread_swap").label == "Spread swap"


def test_the_registry_refuses_a_second_template_of_a_name_already_taken():
    class AnotherPriceSwap(PriceSwap):
        label = "Another price swap"

    before = dict(REGISTRY)
    with pytest.raises(TemplateError, match="a template named 'price_swap' is already registered"):
        register(AnotherPriceSwap)
    assert dict(REGISTRY) == before
    with registered(Doubled), pytest.raises(TemplateError, match="'doubled_swap' is already"):
        register(Doubled)


def test_a_template_missing_its_payoffs_is_refused_at_registration_naming_each_missing_piece():
    with pytest.raises(TemplateError) as refused:
        register(NoPayoff)
    assert str(refused.value) == (
        "template 'no_payoff' is missing saccr_trades, unit_payoff, vector_payoff"
    )
    assert "no_payoff" not in REGISTRY


def test_a_template_without_a_label_or_name_is_refused():
    class Unlabelled(Doubled):
        name = "unlabelled"
        label = ""

    with pytest.raises(TemplateError, match="template 'unlabelled' is missing label"):
        register(Unlabelled)

    class Nameless(SingleFuture):
        label = "Nameless"
        short = "?"

    with pytest.raises(TemplateError, match="template 'Nameless' is missing name"):
        register(Nameless)


def test_a_name_that_is_not_a_plain_identifier_or_a_class_that_is_not_a_template_is_refused():
    class Dotted(Doubled):
        name = "doubled.swap"

    with pytest.raises(TemplateError, match="must be lower-case letters"):
        register(Dotted)
    with pytest.raises(TemplateError, match="is not a ContractTemplate subclass"):
        register(object)


def test_terms_of_an_unregistered_template_are_refused_naming_the_template_field():
    terms = contract(template="doubled_swap").terms
    with pytest.raises(ValidationError) as refused:
        validate_terms(terms)
    assert refused.value.where == "template"
    assert refused.value.message.startswith("unknown template 'doubled_swap' (one of price_swap,")
    with registered(Doubled):
        validate_terms(terms)
    assert "doubled_swap" not in REGISTRY  # gone once the block ends


def test_a_registered_template_runs_in_the_book_its_scalar_and_vectorised_payoffs_agreeing():
    with registered(Doubled):
        c = contract(template="doubled_swap", fixed=3000.0, quantity=100.0)
        book = ContractBook()
        book.add(c)
        book.apply(Fixing(dt.date(2025, 11, 4), (Price("RB2601", 3010.0),)))
        view = book.get("C1")
        assert view.mark == 3010.0
        assert view.client_mtm == 2.0 * 10.0 * 100.0
        book.apply(Fixing(MATURITY, (Price("RB2601", 2990.0),)))
        view = book.get("C1")
        assert view.outcome is not None
        assert view.outcome.client_pnl == 2.0 * -10.0 * 100.0
        assert c.terms.trade_date == TRADE_DATE and c.terms.client_side == Side.BUY
        assert c.terms.legs == (Leg("RB2601"),)


def test_a_dealer_declines_an_unregistered_template_as_bad_terms_and_quotes_it_once_registered():
    from rfq.pricing.strategy import DeclineCode, DeclineDecision, PricingContext, decide

    today = dt.date(2026, 3, 2)
    terms = Terms("doubled_swap", (Leg("RB2609"),), Side.BUY, 100.0, today, dt.date(2026, 6, 2))
    context = PricingContext(today, {"RB2609": 3200.0}, client_rating=70.0, credit_limit=1e7)
    declined = decide(terms, context)
    assert isinstance(declined, DeclineDecision)
    assert declined.code == DeclineCode.BAD_TERMS
    assert "unknown template 'doubled_swap'" in declined.text
    with registered(Doubled):
        quoted = decide(terms, context)
    assert not isinstance(quoted, DeclineDecision)


def test_a_template_name_longer_than_any_registrable_one_is_refused_when_decoded():
    terms = contract().terms
    wire = msgspec.msgpack.encode(msgspec.structs.replace(terms, template="x" * 65))
    with pytest.raises(msgspec.ValidationError, match=r"length <= 64 - at `\$.template`"):
        msgspec.msgpack.decode(wire, type=Terms)
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(terms), type=Terms) == terms


def test_a_piece_set_to_nothing_counts_as_missing():
    class Hollow(Doubled):
        name = "hollow"
        fair_value = None

    with pytest.raises(TemplateError, match="template 'hollow' is missing fair_value"):
        register(Hollow)
