"""The ticket's pure model and the terminal's formatting, without Textual or a server."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peers.market import MarketData
from rfq.contracts.model import Contract, ContractView, MarginTerms, Outcome, Status
from rfq.instruments import Leg, OptionTerms, Side, Template, Terms, listed_underlyings
from rfq.messages import MAX_DEADLINE_S, Price
from rfq.pricing.limits import DEFAULT_TRADE_LIMITS
from tui import format as fmt
from tui.model import (
    TicketError,
    build_request,
    contract_pnl,
    default_legs,
    default_ticket,
    market_rows,
    parse_date,
    parse_legs,
)

TODAY = dt.date(2026, 3, 2)
NOW_MS = int(dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC).timestamp() * 1000)
DEALERS = frozenset({"D1", "D2", "D3"})


def request(today: dt.date = TODAY, prices: dict[str, float] | None = None, **fields: object):
    """The ticket as it opens on ``today`` with ``fields`` typed over it, sent."""
    return build_request(
        default_ticket(today, **fields),
        client="C1",
        today=today,
        now_ms=NOW_MS,
        dealers=DEALERS,
        prices=prices,
    )


def error_of(**fields: object) -> TicketError:
    with pytest.raises(TicketError) as caught:
        request(**fields)  # type: ignore[arg-type]
    return caught.value


def test_the_default_ticket_asks_every_dealer_for_a_three_month_rebar_swap():
    sent = request()
    assert sent.dealers is None
    assert sent.deadline_s == 5
    assert sent.terms.template == Template.PRICE_SWAP
    # On 2 March 2026 RB2605 trades until 15 May, before a three-month swap matures on
    # 2 June: the ticket opens on the next listed month, RB2609.
    assert sent.terms.legs == (Leg("RB2609"),)
    assert sent.terms.client_side == Side.BUY
    assert sent.terms.quantity == 1000
    assert sent.terms.maturity == dt.date(2026, 6, 2)


def test_the_tickets_default_legs_roll_with_the_business_date():
    december = dt.date(2026, 12, 1)  # RB2605 has expired; RB2701, RB2705, RB2709 trade
    assert default_legs(Template.PRICE_SWAP, december) == "RB2705"
    assert default_legs(Template.SPREAD_SWAP, december) == "HC2705 - RB2705"
    assert default_legs(Template.CALENDAR_SPREAD, december) == "RB2709 - RB2705"
    assert default_legs(Template.PRICE_SWAP, december, dt.date(2026, 12, 31)) == "RB2701"
    assert default_legs(Template.INDEX_SWAP, december) == "CSI300"
    assert request(december).terms.legs == (Leg("RB2705"),)


@pytest.mark.parametrize("template", list(Template))
def test_every_templates_default_ticket_can_be_sent_on_any_day_of_two_years(template):
    extra: dict[str, object] = {"template": template.value}
    if template == Template.AVERAGE_PRICE_SWAP:
        extra.update(avg_start="1m", avg_end="3m")
    if template == Template.EUROPEAN_OPTION:
        extra.update(strike="3200")
    for day in range(0, 2 * 365, 3):
        today = TODAY + dt.timedelta(days=day)
        fields = {**extra, "legs": default_legs(template, today)}
        assert request(today, **fields).terms.template == template, today


def test_an_expired_month_is_refused_on_the_legs_field():
    error = error_of(today=dt.date(2026, 12, 1), legs="RB2605")
    assert error.field == "legs"
    assert "RB2605 expired" in error.message


def test_a_trade_beyond_the_default_dealers_limits_is_refused_before_it_is_sent():
    too_big = error_of(quantity="1e9", prices={"RB2609": 3200.0})
    assert too_big.field == "quantity"
    assert "exceeds the limit" in too_big.message
    too_long = error_of(
        legs="CSI300", maturity=str(TODAY + dt.timedelta(DEFAULT_TRADE_LIMITS.max_tenor_days + 1))
    )
    assert too_long.field == "maturity"
    assert "tenor" in too_long.message


def test_the_notional_limit_is_checked_at_the_latest_price():
    # 300k t of rebar: 960m at 3,200 passes the 1bn limit; at 3,400 (1.02bn) it does not.
    assert request(quantity="300000", prices={"RB2609": 3200.0}).terms.quantity == 300_000
    assert error_of(quantity="300000", prices={"RB2609": 3400.0}).field == "quantity"


def test_a_deadline_outside_the_rfq_range_is_clamped_to_it_and_the_summary_says_so():
    long = request(deadline="600")
    assert (long.deadline_s, long.clamped_from) == (MAX_DEADLINE_S, 600)
    assert long.summary.endswith("; deadline 300 s (clamped from 600)")
    short = request(deadline="0.5")
    assert (short.deadline_s, short.clamped_from) == (1, 0.5)
    assert request(deadline="30").clamped_from is None
    assert "clamped" not in request().summary
    for nonsense in ("0", "-3"):
        error = error_of(deadline=nonsense)
        assert (error.field, "1 to 300 seconds" in error.message) == ("deadline", True)


def test_legs_read_as_a_trader_writes_them():
    assert parse_legs("hc2605 - rb2605") == (Leg("HC2605", 1.0), Leg("RB2605", -1.0))
    assert parse_legs("0.6*RB2605 + HC2605*0.4") == (Leg("RB2605", 0.6), Leg("HC2605", 0.4))
    assert parse_legs(" CSI300 ") == (Leg("CSI300"),)


@pytest.mark.parametrize("text", ["", "RB2605 HC2605", "RB2605 - ", "3*", "RB2605 / HC2605"])
def test_unreadable_legs_are_refused_naming_the_legs_field(text):
    with pytest.raises(TicketError) as caught:
        parse_legs(text)
    assert caught.value.field == "legs"


def test_maturities_are_dates_or_tenors_from_today():
    assert parse_date("90d", TODAY, field="maturity") == dt.date(2026, 5, 31)
    assert parse_date("2w", TODAY, field="maturity") == dt.date(2026, 3, 16)
    assert parse_date("1y", TODAY, field="maturity") == dt.date(2027, 3, 2)
    assert parse_date("2026-12-31", TODAY, field="maturity") == dt.date(2026, 12, 31)
    assert parse_date("1m", dt.date(2026, 1, 31), field="maturity") == dt.date(2026, 2, 28)


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"quantity": "abc"}, "quantity", "not a number"),
        ({"quantity": "0"}, "quantity", "positive"),
        ({"legs": "XX9999"}, "legs", "unknown underlying"),
        ({"maturity": "2026-01-01"}, "maturity", "not after"),
        ({"maturity": "soon"}, "maturity", "not a date"),
        ({"template": "spread_swap", "legs": "RB2605"}, "legs", "two legs"),
        ({"template": "calendar_spread", "legs": "RB2609 - HC2605"}, "legs", "one future"),
        ({"template": "average_price_swap"}, "avg_start", "enter a date"),
        (
            {"template": "average_price_swap", "avg_start": "1m", "avg_end": "4m"},
            "avg_start",
            "after maturity",
        ),
        ({"template": "european_option", "strike": ""}, "strike", "enter the strike"),
        ({"template": "european_option", "strike": "-5"}, "strike", "positive"),
        ({"all_dealers": False}, "dealers", "at least one dealer"),
        ({"all_dealers": False, "dealers": ("D1", "C2")}, "dealers", "not dealers: C2"),
        ({"deadline": "0"}, "deadline", "1 to 300"),
        ({"legs": ""}, "legs", "e.g. RB2609 (or HC2609 - RB2609)"),
        ({"multiplier": "-1"}, "multiplier", "positive"),
    ],
)
def test_each_bad_field_is_named_with_the_rule_it_breaks(fields, field, words):
    error = error_of(**fields)
    assert error.field == field
    assert words in error.message


def test_an_option_an_average_swap_and_a_pick_list_build_the_terms_dealers_expect():
    option = request(template="european_option", option_type="put", strike="3100")
    assert option.terms.option is not None
    assert (option.terms.option.type, option.terms.option.strike) == ("put", 3100.0)
    average = request(template="average_price_swap", avg_start="2m", avg_end="3m")
    assert average.terms.averaging is not None
    assert average.terms.averaging.end == average.terms.maturity
    chosen = request(all_dealers=False, dealers=("D2", "D3"))
    assert chosen.dealers == ("D2", "D3")
    assert "from D2, D3" in chosen.summary


@given(
    st.sampled_from(["legs", "quantity", "maturity", "deadline", "multiplier"]),
    st.text(max_size=40),
)
def test_any_text_in_a_field_either_builds_terms_or_names_that_field(name, text):
    outcome: object
    try:
        outcome = request(**{name: text})
    except TicketError as exc:
        outcome = exc.field
    assert outcome == name or hasattr(outcome, "terms")


def test_market_rows_show_the_change_against_the_previous_close():
    market = MarketData()
    for day, close in ((1, 3100.0), (2, 3150.0)):
        market.on_price(Price("RB2605", close, dt.date(2026, 3, day), day, close=True))
    market.on_price(Price("RB2605", 3181.5, dt.date(2026, 3, 3), 3))
    [row] = [r for r in market_rows(market) if r.underlying == "RB2605"]
    assert row.last == 3181.5
    assert row.previous_close == 3150.0
    assert row.change == pytest.approx(31.5)
    assert row.change_pct == pytest.approx(0.01)
    assert row.closes == (3100.0, 3150.0)


def test_the_market_watch_lists_the_months_that_trade_and_not_the_expired_ones():
    market = MarketData()
    december = dt.date(2026, 12, 1)
    for underlying in ("RB2605", "RB2701"):  # RB2605's last price stays in the market data
        market.on_price(Price(underlying, 3150.0, december, 1))
    shown = [row.underlying for row in market_rows(market)]
    assert shown == list(listed_underlyings(december))
    assert "RB2701" in shown and "RB2605" not in shown
    assert [r.underlying for r in market_rows(market, today=dt.date(2026, 3, 2))][:3] == [
        "RB2605",
        "RB2609",
        "RB2701",
    ]


def test_formatting_keeps_numbers_short_and_signed():
    assert fmt.money(1_234_567) == "1.23m"
    assert fmt.money(-45_000) == "-45.0k"
    assert fmt.price(3166.0) == "3,166"
    assert fmt.price(524.3) == "524.30"
    assert fmt.countdown(4.2) == "5s"
    assert fmt.countdown(125) == "2m05s"
    assert fmt.countdown(0) == "expired"
    assert fmt.signed(92_000).plain == "+92.0k"
    assert fmt.spark([1, 2, 3], width=3).plain == "▁▅█"
    assert fmt.legs_text((Leg("HC2605"), Leg("RB2605", -1.0))) == "HC2605 - RB2605"


def call_view(side: Side, *, premium: float, mtm: float | None, outcome=None) -> ContractView:
    """A live 500 t call on SC2605 struck at 540, worth ``mtm`` to the client ex premium."""
    terms = Terms(
        template=Template.EUROPEAN_OPTION,
        legs=(Leg("SC2605"),),
        client_side=side,
        quantity=500,
        trade_date=TODAY,
        maturity=dt.date(2026, 5, 29),
        option=OptionTerms("call", 540.0, premium=premium),
    )
    contract = Contract("C1-opt", terms, "C1", "D3", None, 0.1, MarginTerms())
    return ContractView(
        contract=contract,
        status=Status.LIVE if outcome is None else outcome.status,
        ordinal=0,
        initial_margin=27_000,
        notional=270_000,
        mark=552.0,
        client_mtm=mtm,
        vm_balance=0.0,
        margin_call=None,
        avg_sum=0.0,
        avg_count=0,
        defaulting_party=None,
        outcome=outcome,
    )


def test_a_bought_options_pnl_is_its_value_less_the_premium_paid():
    # 12 in the money x 500 t = 6,000 of value; 12.5 x 500 = 6,250 of premium paid.
    assert contract_pnl(call_view(Side.BUY, premium=12.5, mtm=6_000)) == pytest.approx(-250)


def test_a_sold_options_pnl_includes_the_premium_received():
    assert contract_pnl(call_view(Side.SELL, premium=12.5, mtm=-6_000)) == pytest.approx(250)
    assert contract_pnl(call_view(Side.SELL, premium=12.5, mtm=0.0)) == pytest.approx(6_250)


def test_an_unpriced_contract_has_no_pnl_and_an_ended_one_its_outcomes():
    assert contract_pnl(call_view(Side.BUY, premium=12.5, mtm=None)) is None
    ended = Outcome(Status.SETTLED, TODAY, 30, 552.0, 6_000, -250, 250)
    assert contract_pnl(call_view(Side.BUY, premium=12.5, mtm=6_000, outcome=ended)) == -250


def test_codes_read_as_words_and_counts_agree_with_their_nouns():
    assert fmt.words("margin_call") == "margin call"
    assert fmt.words("closed_out") == "closed out"
    assert fmt.words("credit_limit") == "credit limit"
    assert fmt.words("some_new_code") == "some new code"
    assert fmt.count(1, "contract") == "1 contract"
    assert fmt.count(0, "contract") == "0 contracts"
    assert fmt.count(3, "margin call") == "3 margin calls"


def test_an_option_tickets_summary_says_who_pays_the_premium():
    bought = request(template="european_option", strike="3200", legs="RB2609")
    assert bought.summary.endswith("from all dealers, paying the premium")
    sold = request(template="european_option", strike="3200", side="sell")
    assert "client sells 1000 x call 3,200 RB2609" in sold.summary
    assert sold.summary.endswith("receiving the premium")
    assert "premium" not in request().summary
