"""Every NATS subject B-OTC uses, in one place.

Subjects are built from member and underlying ids, which are single tokens (no dots or
wildcards); ``token()`` refuses anything else so a crafted id cannot widen a subscription.
``patterns`` and ``js_api`` turn the role-policy table (``rfq.policy``) into the subjects
nats-server permissions name (``peers.netdir.permissions``).
"""

from __future__ import annotations

import re

from rfq.policy import JsCall, Reach, Topic

PREFIX = "otc"

# Public RFQs by asset class and underlying: dealers subscribe per asset class.
RFQ_ASSET_CLASSES = ("commodity", "equity", "interest_rate", "fx", "credit")

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class SubjectError(ValueError):
    pass


def token(value: str) -> str:
    if not _TOKEN.match(value):
        raise SubjectError(f"{value!r} cannot be used in a subject")
    return value


def rfq_public(asset_class: str, underlying: str) -> str:
    """An RFQ to every dealer: ``otc.rfq.<asset>.<underlying>``."""
    if asset_class not in RFQ_ASSET_CLASSES:
        raise SubjectError(f"unknown asset class {asset_class!r}")
    return f"{PREFIX}.rfq.{asset_class}.{token(underlying)}"


def rfq_public_all(asset_class: str) -> str:
    return f"{PREFIX}.rfq.{asset_class}.*"


def rfq_direct(dealer: str) -> str:
    """An RFQ sealed to chosen dealers, one copy per dealer: ``otc.rfq.to.<dealer>``."""
    return f"{PREFIX}.rfq.to.{token(dealer)}"


RFQ_DIRECT_ALL = f"{PREFIX}.rfq.to.*"
RFQ_ALL = f"{PREFIX}.rfq.>"


def quote(client: str, rfq_id: str) -> str:
    """A dealer's quote or decline, sealed to the client: ``otc.quote.<client>.<rfq>``."""
    return f"{PREFIX}.quote.{token(client)}.{token(rfq_id)}"


def quotes_for(client: str) -> str:
    return f"{PREFIX}.quote.{token(client)}.>"


QUOTE_ALL = f"{PREFIX}.quote.>"


def notify(member: str) -> str:
    """Notifications to one member (transaction results, alerts): ``otc.note.<member>``."""
    return f"{PREFIX}.note.{token(member)}"


NOTIFY_ALL = f"{PREFIX}.note.*"


def tx(sender: str) -> str:
    """Transactions submitted to the authorities; a member may publish only its own."""
    return f"{PREFIX}.tx.{token(sender)}"


TX_ALL = f"{PREFIX}.tx.*"


def consensus(height: int) -> str:
    """IBFT messages for one height: ``otc.ibft.<height>``."""
    if height < 0:
        raise SubjectError("height cannot be negative")
    return f"{PREFIX}.ibft.{height}"


CONSENSUS_ALL = f"{PREFIX}.ibft.*"


def price(underlying: str) -> str:
    """The oracle's signed price fixings: ``otc.px.<underlying>``."""
    return f"{PREFIX}.px.{token(underlying)}"


PRICE_ALL = f"{PREFIX}.px.*"


def query(authority: str) -> str:
    """Request/reply queries to one authority's query service: ``otc.query.<authority>``."""
    return f"{PREFIX}.query.{token(authority)}"


QUERY_ALL = f"{PREFIX}.query.*"


def chain_block(height: int) -> str:
    """Final blocks, captured by the JetStream stream ``CHAIN``."""
    return f"{PREFIX}.chain.{height}"


CHAIN_ALL = f"{PREFIX}.chain.*"
CHAIN_STREAM = "CHAIN"


def sync(authority: str) -> str:
    """Block requests between authorities during catch-up."""
    return f"{PREFIX}.sync.{token(authority)}"


SYNC_ALL = f"{PREFIX}.sync.*"

# The regulator's published results (alerts, cascades).
RISK_ALERTS = f"{PREFIX}.risk.alert"


def inbox_prefix(member: str) -> str:
    """Per-member reply inbox prefix, so a member can only read its own replies."""
    return f"_INBOX_{token(member)}"


MARKET_ALL = f"{PREFIX}.>"


def patterns(topic: Topic, reach: Reach, member: str) -> list[str]:
    """The subjects a permission for ``topic`` names: ``member``'s own, or all of them."""
    own = reach == Reach.OWN
    match topic:
        case Topic.RFQ_PUBLIC if not own:
            return [rfq_public_all(a) for a in RFQ_ASSET_CLASSES]
        case Topic.RFQ_DIRECT:
            return [rfq_direct(member) if own else RFQ_DIRECT_ALL]
        case Topic.QUOTE:
            return [quotes_for(member) if own else QUOTE_ALL]
        case Topic.NOTE:
            return [notify(member) if own else NOTIFY_ALL]
        case Topic.TX:
            return [tx(member) if own else TX_ALL]
        case Topic.QUERY:
            return [query(member) if own else QUERY_ALL]
        case Topic.INBOX if own:
            return [f"{inbox_prefix(member)}.>"]
        case Topic.CONSENSUS if not own:
            return [CONSENSUS_ALL]
        case Topic.PRICE if not own:
            return [PRICE_ALL]
        case Topic.CHAIN if not own:
            return [CHAIN_ALL]
        case Topic.RISK_ALERT if not own:
            return [RISK_ALERTS]
        case Topic.MARKET if not own:
            return [MARKET_ALL]
    raise SubjectError(f"no {reach} subject for {topic}")


JS_API = "$JS.API"
_JS_CALLS = {
    JsCall.STREAM_INFO: "STREAM.INFO",
    JsCall.STREAM_CREATE: "STREAM.CREATE",
    JsCall.MSG_GET: "STREAM.MSG.GET",
}


def js_api(call: JsCall, stream: str = CHAIN_STREAM) -> str:
    """The JetStream API subject nats-py requests for ``call`` on ``stream`` (its
    ``JetStreamManager.stream_info``, ``add_stream`` and ``get_msg``/``get_last_msg``)."""
    return f"{JS_API}.{_JS_CALLS[call]}.{token(stream)}"
