"""``botc contract run``: the chain's contract engine, offline, over a terms file and a
fixings file.

Pure: the CLI reads the files and hands their text here. The run feeds a ``ContractBook``
exactly as the ledger would: one ``BlockPassed`` and one ``Fixing`` per fixing date, in date
order; every margin call is met at once (the offline run assumes both parties perform); with
``close_out`` every contract still open on that date is closed out at that date's weighted
fixing. Stricter than the chain on inputs, because a file is complete: a contract that
settles must find each leg's fixing on its maturity date (an average-price swap, at least
one fixing in its window), and a close-out needs every leg's fixing on the close-out date.

Numbers: the engine computes in float64 in a fixed order (weighted sums in leg order,
P&L as (level - fixed) x (quantity x multiplier)); the report rounds every figure to 8
decimals, which removes float noise (91999.99999999999 prints as 92000.0) and leaves any
figure that is exact in the inputs exact to the unit.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import re
from collections.abc import Sequence
from typing import Any

import msgspec

from rfq.contracts.book import ContractBook
from rfq.contracts.events import (
    BlockPassed,
    BookOutput,
    CloseOut,
    Fixing,
    MarginCalls,
    MarginCallsMet,
    MarginPosted,
    PaymentInstruction,
    Price,
)
from rfq.contracts.model import Contract, MarginTerms, Status, validate_contract
from rfq.contracts.templates import REGISTRY
from rfq.errors import DECODE_ERRORS, ValidationError
from rfq.instruments import Averaging, Leg, OptionTerms, Side, Terms
from rfq.money import from_micros

HEADER = ("date", "underlying", "price")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_UNDERLYING_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_MISSING = re.compile(r"missing required field `(?P<field>[^`]+)`")


class OfflineContract(msgspec.Struct, frozen=True):
    """One contract object of TERMS.json. ``underlying`` is shorthand for one leg of weight 1;
    ``id``, ``client``, ``dealer`` and ``margin`` are optional extras (unmargined by
    default)."""

    client_side: Side
    quantity: float
    trade_date: dt.date
    maturity: dt.date
    template: str
    legs: tuple[Leg, ...] = ()
    underlying: str | None = None
    fixed_price: float | None = None
    multiplier: float = 1.0
    averaging: Averaging | None = None
    option: OptionTerms | None = None
    initial_margin_rate: float = 0.0
    id: str | None = None
    client: str = "client"
    dealer: str = "dealer"
    margin: MarginTerms | None = None


class FixingRow(msgspec.Struct, frozen=True):
    line: int
    date: dt.date
    underlying: str
    price: float


def parse_date(text: str, *, where: str) -> dt.date:
    """A strict ISO date (YYYY-MM-DD)."""
    if not _ISO_DATE.match(text.strip()):
        raise ValidationError(f"bad date {text!r} (expected YYYY-MM-DD)", where=where)
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(f"bad date {text!r} (no such day)", where=where) from None


def _lookup(obj: Any, path: str) -> Any:
    """The value at a msgspec error path like ``.legs[0].weight`` (None if absent)."""
    for name, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path):
        try:
            obj = obj[name] if name else obj[int(index)]
        except (KeyError, IndexError, TypeError):
            return None
    return obj


def _convert_error(exc: msgspec.ValidationError, prefix: str, obj: Any) -> ValidationError:
    match = _AT.match(str(exc))
    assert match is not None
    msg, path = match.group("msg"), match.group("path") or ""
    field = path.lstrip(".")
    missing = _MISSING.search(msg)
    if missing:
        msg = "required field is missing"
        field = f"{field}.{missing.group('field')}" if field else missing.group("field")
    elif "RFC3339" in msg:
        msg = f"bad date {_lookup(obj, path)!r} (expected YYYY-MM-DD)"
    return ValidationError(msg, where=f"{prefix}{field}" if field else prefix.rstrip(".: ") or None)


def _contract(obj: Any, index: int, prefix: str) -> Contract:
    if not isinstance(obj, dict):
        raise ValidationError("a contract must be a JSON object", where=prefix.rstrip(".") or None)
    template = obj.get("template")
    if not isinstance(template, str) or template not in REGISTRY:
        names = ", ".join(REGISTRY)
        raise ValidationError(
            f"unknown template {template!r} (one of {names})", where=f"{prefix}template"
        )
    try:
        raw = msgspec.convert(obj, OfflineContract, str_keys=True)
    except msgspec.ValidationError as exc:
        raise _convert_error(exc, prefix, obj) from None
    legs = raw.legs
    if raw.underlying is not None:
        if legs:
            raise ValidationError("give either underlying or legs", where=f"{prefix}underlying")
        legs = (Leg(raw.underlying, 1.0),)
    terms = Terms(
        template=raw.template,
        legs=legs,
        client_side=raw.client_side,
        quantity=raw.quantity,
        trade_date=raw.trade_date,
        maturity=raw.maturity,
        multiplier=raw.multiplier,
        averaging=raw.averaging,
        option=raw.option,
    )
    contract = Contract(
        id=raw.id if raw.id is not None else f"C{index + 1}",
        terms=terms,
        client=raw.client,
        dealer=raw.dealer,
        fixed_price=raw.fixed_price,
        initial_margin_rate=raw.initial_margin_rate,
        margin=raw.margin,
    )
    try:
        validate_contract(contract)
    except ValidationError as exc:
        raise ValidationError(exc.message, where=f"{prefix}{exc.where or ''}") from None
    return contract


class TermsFile(msgspec.Struct, frozen=True):
    """A parsed TERMS.json: the contracts, the credit line covering initial margin, and where
    each contract sits in the file (a prefix for error messages)."""

    contracts: tuple[Contract, ...]
    credit_line: float
    wheres: tuple[str, ...]


def parse_terms(data: bytes, name: str) -> TermsFile:
    """TERMS.json: one contract object, a list of them, or
    ``{"credit_line": X, "contracts": [...]}``."""
    try:
        doc = msgspec.json.decode(data)
    except DECODE_ERRORS as exc:
        raise ValidationError(f"not valid JSON ({exc})", where=name) from None
    credit_line = 0.0
    if isinstance(doc, dict) and "contracts" in doc:
        raw_line = doc.get("credit_line", 0.0)
        if (
            isinstance(raw_line, bool)
            or not isinstance(raw_line, int | float)
            or not math.isfinite(raw_line)
            or raw_line < 0
        ):
            raise ValidationError("must be a number >= 0", where=f"{name}: credit_line")
        credit_line = float(raw_line)
        items = doc["contracts"]
        if not isinstance(items, list) or not items:
            raise ValidationError("must be a non-empty list", where=f"{name}: contracts")
        prefixes = [f"{name}: contracts[{i}]." for i in range(len(items))]
    elif isinstance(doc, list):
        if not doc:
            raise ValidationError("no contracts", where=name)
        items = doc
        prefixes = [f"{name}: [{i}]." for i in range(len(items))]
    else:
        items = [doc]
        prefixes = [f"{name}: "]
    contracts = [
        _contract(obj, i, p) for i, (obj, p) in enumerate(zip(items, prefixes, strict=True))
    ]
    seen: set[str] = set()
    for contract, prefix in zip(contracts, prefixes, strict=True):
        if contract.id in seen:
            raise ValidationError(f"duplicate contract id {contract.id!r}", where=f"{prefix}id")
        seen.add(contract.id)
    return TermsFile(tuple(contracts), credit_line, tuple(prefixes))


def parse_fixings(text: str, name: str) -> list[FixingRow]:
    """FIXINGS.csv with the header ``date,underlying,price``; errors name the line."""
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    lines = [(k + 1, row) for k, row in enumerate(rows) if any(cell.strip() for cell in row)]
    if not lines or tuple(c.strip().lower() for c in lines[0][1]) != HEADER:
        raise ValidationError(
            "the first line must be the header 'date,underlying,price'", where=f"{name}: line 1"
        )
    out: list[FixingRow] = []
    seen: dict[tuple[str, dt.date], FixingRow] = {}
    for line, row in lines[1:]:
        where = f"{name}: line {line}"
        if len(row) != 3:
            raise ValidationError(f"expected 3 fields, got {len(row)}", where=where)
        date = parse_date(row[0], where=f"{where}, date")
        underlying = row[1].strip()
        if not _UNDERLYING_ID.match(underlying):
            raise ValidationError(f"bad underlying id {underlying!r}", where=f"{where}, underlying")
        try:
            price = float(row[2])
        except ValueError:
            raise ValidationError(f"bad price {row[2]!r}", where=f"{where}, price") from None
        if not math.isfinite(price):
            raise ValidationError(f"bad price {row[2]!r}", where=f"{where}, price")
        fix = FixingRow(line, date, underlying, price)
        previous = seen.get((underlying, date))
        if previous is not None:
            if previous.price != price:
                raise ValidationError(
                    f"{underlying} on {date} already fixed at {previous.price} on line "
                    f"{previous.line}",
                    where=f"{where}, price",
                )
            continue
        seen[(underlying, date)] = fix
        out.append(fix)
    return out


def _check_fixings(
    contracts: Sequence[Contract],
    prefixes: Sequence[str],
    rows: Sequence[FixingRow],
    close_out: dt.date | None,
    fixings_name: str,
) -> None:
    """Refuse a run that would leave a contract without the fixings it needs."""
    have = {(r.underlying, r.date) for r in rows}
    for contract, prefix in zip(contracts, prefixes, strict=True):
        terms = contract.terms
        if close_out is not None and close_out < terms.trade_date:
            raise ValidationError(
                f"close-out date {close_out} is before {contract.id}'s trade date "
                f"{terms.trade_date}",
                where="--close-out",
            )
        if close_out is not None and close_out < terms.maturity:
            day, why = close_out, "the close-out"
        elif terms.averaging is not None:
            window = terms.averaging
            leg = terms.legs[0]
            if not any(
                r.underlying == leg.underlying and window.start <= r.date <= window.end
                for r in rows
            ):
                raise ValidationError(
                    f"missing fixing: no {leg.underlying} fixing in the averaging window "
                    f"{window.start}..{window.end} in {fixings_name}",
                    where=f"{prefix}averaging",
                )
            continue
        else:
            day, why = terms.maturity, "settlement at maturity"
        for i, leg in enumerate(terms.legs):
            if (leg.underlying, day) not in have:
                raise ValidationError(
                    f"missing fixing: no {leg.underlying} fixing on {day} (needed for {why}) "
                    f"in {fixings_name}",
                    where=f"{prefix}legs[{i}].underlying",
                )


def _round(value: Any) -> Any:
    """Round every float of a JSON-ready value to 8 decimals (and -0.0 to 0.0)."""
    if isinstance(value, float):
        return round(value, 8) + 0.0
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def _records(output: BookOutput) -> list[tuple[str | None, dict[str, Any]]]:
    """An output as the report shows it, by the contract it concerns: amounts of money in
    currency units (the book emits them as integer micros; back in units they are the
    figures on the grid), and the book's batches of calls one record per contract."""
    if isinstance(output, MarginCalls):
        return [
            (
                cid,
                {
                    "type": "margin_call",
                    "contract_id": cid,
                    "seq": seq,
                    "payer": output.payer,
                    "payee": output.payee,
                    "amount": from_micros(amount),
                    "client_mtm": mtm,
                    "date": output.date.isoformat(),
                    "due": output.due.isoformat(),
                },
            )
            for cid, seq, amount, mtm in zip(
                output.contract_ids, output.seqs, output.amounts, output.client_mtms, strict=True
            )
        ]
    if isinstance(output, MarginCallsMet):
        return [
            (cid, {"type": "margin_call_met", "contract_id": cid, "seq": seq})
            for cid, seq in zip(output.contract_ids, output.seqs, strict=True)
        ]
    record: dict[str, Any] = msgspec.to_builtins(output)
    if isinstance(output, PaymentInstruction):
        record["amount"] = from_micros(output.amount)
    return [(getattr(output, "contract_id", None), record)]


def run(
    contracts: Sequence[Contract],
    rows: Sequence[FixingRow],
    *,
    credit_line: float = 0.0,
    close_out: dt.date | None = None,
    prefixes: Sequence[str] | None = None,
    fixings_name: str = "the fixings",
) -> dict[str, Any]:
    """Run the contracts through a book over the fixings; return the JSON-ready report."""
    prefixes = (
        list(prefixes)
        if prefixes is not None
        else [f"contracts[{i}]." for i in range(len(contracts))]
    )
    _check_fixings(contracts, prefixes, rows, close_out, fixings_name)
    book = ContractBook()
    events: dict[str, list[dict[str, Any]]] = {c.id: [] for c in contracts}

    def route(outputs: list[BookOutput]) -> None:
        for output in outputs:
            for cid, record in _records(output):
                if cid in events:
                    events[cid].append(record)
            if isinstance(output, MarginCalls):
                for cid, seq, amount in zip(
                    output.contract_ids, output.seqs, output.amounts, strict=True
                ):
                    posted = MarginPosted(
                        id=f"{cid}/margin_call/{seq}/posted",
                        contract_id=cid,
                        payer=output.payer,
                        amount=amount,
                    )
                    route(book.apply(posted))

    for contract in contracts:
        route(book.add(contract))
    by_date: dict[dt.date, dict[str, float]] = {}
    for row in sorted(rows, key=lambda r: (r.date, r.underlying)):
        if close_out is None or row.date <= close_out:
            by_date.setdefault(row.date, {})[row.underlying] = row.price
    height = 0
    for date, prices in by_date.items():
        height += 1
        route(book.apply(BlockPassed(height=height, date=date)))
        open_before = [c for c in contracts if not book.get(c.id).status.terminal]
        outputs = book.apply(
            Fixing(date=date, prices=tuple(Price(u, p) for u, p in prices.items()))
        )
        for contract in open_before:
            fixed = {
                leg.underlying: prices[leg.underlying]
                for leg in contract.terms.legs
                if leg.underlying in prices
            }
            if not fixed:
                continue
            view = book.get(contract.id)
            mark: float | None
            mtm: float | None
            if view.outcome is not None:
                mark, mtm = view.outcome.settlement_price, view.outcome.client_value
            else:
                mark, mtm = view.mark, view.client_mtm
            events[contract.id].append(
                {
                    "type": "fixing",
                    "date": date.isoformat(),
                    "prices": fixed,
                    "mark": mark,
                    "client_mtm": mtm,
                }
            )
        route(outputs)
    last = max(by_date, default=None)
    end = (
        close_out
        if close_out is not None
        else max([c.terms.maturity for c in contracts] + ([last] if last else []))
        + dt.timedelta(days=1)
    )
    route(book.apply(BlockPassed(height=height + 1, date=end)))
    if close_out is not None:
        for contract in contracts:
            if not book.get(contract.id).status.terminal:
                route(
                    book.apply(
                        CloseOut(
                            id=f"{contract.id}/close-out", contract_id=contract.id, date=close_out
                        )
                    )
                )
    report: list[dict[str, Any]] = []
    im_total = 0.0
    for contract, prefix in zip(contracts, prefixes, strict=True):
        view = book.get(contract.id)
        if view.outcome is None or view.status not in (Status.SETTLED, Status.CLOSED_OUT):
            raise ValidationError(
                f"did not settle (status {view.status.value}): missing fixings",
                where=prefix.rstrip("."),
            )
        im_total = im_total + view.initial_margin
        report.append(
            {
                "id": contract.id,
                "template": str(contract.terms.template),
                "client_side": contract.terms.client_side.value,
                "settlement_price": view.outcome.settlement_price,
                "client_pnl": view.outcome.client_pnl,
                "dealer_pnl": view.outcome.dealer_pnl,
                "initial_margin": view.initial_margin,
                "status": view.status.value,
                "events": events[contract.id],
            }
        )
    result = {
        "contracts": report,
        "initial_margin_total": im_total,
        "credit_line": credit_line,
        "cash_margin_due": max(0.0, im_total - credit_line),
    }
    rounded: dict[str, Any] = _round(result)
    return rounded


def run_files(
    terms: bytes,
    fixings: str,
    *,
    terms_name: str = "TERMS.json",
    fixings_name: str = "FIXINGS.csv",
    close_out: str | None = None,
) -> dict[str, Any]:
    """Parse both files' contents and run them; every error names the file, row or field."""
    parsed = parse_terms(terms, terms_name)
    rows = parse_fixings(fixings, fixings_name)
    day = None if close_out is None else parse_date(close_out, where="--close-out")
    return run(
        parsed.contracts,
        rows,
        credit_line=parsed.credit_line,
        close_out=day,
        prefixes=parsed.wheres,
        fixings_name=fixings_name,
    )
