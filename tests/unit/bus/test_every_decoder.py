"""Malformed msgpack on every subject: every channel's decoder, the ledger and consensus.

Hypothesis generates raw garbage, well-formed msgpack of the wrong shape, and validly signed
envelopes whose bodies are garbage, for every message kind; each must end in a counted drop
(or the ledger's refusal), never an exception.
"""

from __future__ import annotations

import contextlib

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bus.envelope import Channel, Dropped, Outbox, Verifier
from bus.seal import Sealer
from peers.authority.node import QUERY_CHANNEL, consensus_channel, tx_channel
from peers.counterparty import QUOTE_CHANNEL
from peers.dealer import RFQ_CHANNEL
from peers.ledger_client import NOTE_CHANNEL, reply_channel
from peers.market import HISTORY_REPLY, PRICE_CHANNEL
from peers.oracle import HISTORY_CHANNEL
from rfq.identity import Directory, NetworkParams, Role
from rfq.ledger.state import LedgerError, LedgerState
from rfq.queries import ALERT_ROLES, REGULATOR_QUERY_ROLES, RegulatorQuery, RiskAlert
from rfq.signing import SignedMessage

from ..ledger.harness import make_net

PARAMS = NetworkParams()
CHANNELS: dict[str, Channel] = {
    "rfq": RFQ_CHANNEL,
    "quote": QUOTE_CHANNEL,
    "price": PRICE_CHANNEL,
    "oracle_query": HISTORY_CHANNEL,
    "oracle_reply": HISTORY_REPLY,
    "tx": tx_channel(PARAMS.max_block_bytes),
    "ibft": consensus_channel(PARAMS.consensus_max_bytes),
    "query": QUERY_CHANNEL,
    "query_reply": reply_channel(PARAMS.consensus_max_bytes),
    "notes": NOTE_CHANNEL,
    "regulator_query": Channel.of("regulator_query", RegulatorQuery, REGULATOR_QUERY_ROLES),
    "risk_alerts": Channel.of("risk_alerts", RiskAlert, ALERT_ROLES),
}
KINDS = sorted({kind for channel in CHANNELS.values() for kind in channel.roles})

NET = make_net()
CHAIN = NET.genesis.chain_id
DIRECTORY = Directory(NET.genesis.members)
ME = NET.ids["D1"]
# Each kind signed by a member allowed to send it, so the envelope passes and the body is hit.
SENDER_FOR = {
    Role.CLIENT: "C1",
    Role.DEALER: "D2",
    Role.ORACLE: "ORACLE",
    Role.REGULATOR: "REG",
    Role.BANK: "BANK",
    Role.GUARANTOR: "G1",
    Role.CCP: "CCP",
}

msgpack_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=True),
        st.text(max_size=20),
        st.binary(max_size=40),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=20,
)


def verifier() -> Verifier:
    return Verifier(DIRECTORY, CHAIN, sealer=Sealer(ME, DIRECTORY), clock=lambda: 1.9e9)


@pytest.mark.parametrize("channel", sorted(CHANNELS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=600), msgpack_values.map(msgspec.msgpack.encode)))
def test_garbage_on_every_subject_is_dropped_and_counted(channel, data):
    v = verifier()
    result = v.open(data, CHANNELS[channel])
    assert isinstance(result, Dropped)
    assert sum(v.drops.values()) == 1


def _signer_for(kind: str, channel: Channel) -> str:
    role = sorted(channel.roles[kind])[0]
    return SENDER_FOR[role]


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.one_of(st.binary(max_size=300), msgpack_values.map(msgspec.msgpack.encode)))
def test_a_signed_envelope_with_a_garbage_body_is_a_bad_payload_for_every_kind(kind, body):
    channel = next(c for c in CHANNELS.values() if kind in c.roles)
    sender = NET.ids[_signer_for(kind, channel)]
    outbox = Outbox(sender, CHAIN, clock=lambda: 1.9e9)
    unsigned = SignedMessage(
        CHAIN, sender.member_id, 1, 1_900_000_000_000, 1_900_000_060_000, kind, body
    )
    signed = msgspec.structs.replace(unsigned, signature=sender.sign(unsigned.signing_bytes()))
    v = verifier()
    result = v.open(outbox.wire(signed), channel)
    if not isinstance(result, Dropped):  # garbage that happens to be a valid payload
        assert type(result.payload).__struct_config__.tag == kind
        return
    assert result.reason in {"bad_payload", "wrong_role"}


@settings(max_examples=150, deadline=None)
@given(data=st.one_of(st.binary(max_size=600), msgpack_values.map(msgspec.msgpack.encode)))
def test_the_ledger_refuses_any_garbage_transaction_with_a_reason(data):
    state = LedgerState(NET.genesis)
    with pytest.raises(LedgerError) as refused:
        state.check_tx(data, 1_900_000_000_000)
    assert refused.value.reason


@pytest.mark.parametrize("kind", sorted(k for k in KINDS if k in CHANNELS["tx"].roles))
@settings(max_examples=30, deadline=None)
@given(body=msgpack_values.map(msgspec.msgpack.encode))
def test_a_signed_transaction_with_a_garbage_payload_is_refused_not_raised(kind, body):
    sender = NET.ids[_signer_for(kind, CHANNELS["tx"])]
    unsigned = SignedMessage(
        CHAIN, sender.member_id, 1, 1_900_000_000_000, 1_900_000_060_000, kind, body
    )
    signed = msgspec.structs.replace(unsigned, signature=sender.sign(unsigned.signing_bytes()))
    state = LedgerState(NET.genesis)
    with contextlib.suppress(LedgerError):  # anything else escaping fails the test
        state.check_tx(msgspec.msgpack.encode(signed), 1_900_000_000_000)


def test_every_channel_a_peer_defines_is_covered_here():
    import importlib
    import pkgutil

    import peers

    covered = {c.name for c in CHANNELS.values()}
    found = set()
    for module_info in pkgutil.walk_packages(peers.__path__, "peers."):
        if module_info.name.startswith("peers.cli") or module_info.name == "peers.pytest_plugin":
            continue
        module = importlib.import_module(module_info.name)
        found |= {v.name for v in vars(module).values() if isinstance(v, Channel)}
    assert found, "no channels found: the scan is broken"
    assert found <= covered, f"channels without a garbage test: {sorted(found - covered)}"


@pytest.mark.parametrize("kind", KINDS)
def test_a_signed_body_nested_fifty_thousand_deep_is_a_bad_payload_not_a_traceback(kind):
    """A validly signed RFQ whose body nests 50,000 levels deep made every dealer log a
    RecursionError traceback."""
    channel = next(c for c in CHANNELS.values() if kind in c.roles)
    sender = NET.ids[_signer_for(kind, channel)]
    outbox = Outbox(sender, CHAIN, clock=lambda: 1.9e9)
    body = b"\x91" * 50_000 + b"\xc0"  # [[[[...[nil]...]]]]
    unsigned = SignedMessage(
        CHAIN, sender.member_id, 1, 1_900_000_000_000, 1_900_000_060_000, kind, body
    )
    signed = msgspec.structs.replace(unsigned, signature=sender.sign(unsigned.signing_bytes()))
    result = verifier().open(outbox.wire(signed), channel)
    assert isinstance(result, Dropped) and result.reason in {"bad_payload", "wrong_role"}


def test_the_ledger_refuses_a_transaction_nested_fifty_thousand_deep_with_a_reason():
    sender = NET.ids["C1"]
    body = b"\x91" * 50_000 + b"\xc0"
    unsigned = SignedMessage(CHAIN, "C1", 1, 1_900_000_000_000, 1_900_000_060_000, "accept", body)
    signed = msgspec.structs.replace(unsigned, signature=sender.sign(unsigned.signing_bytes()))
    with pytest.raises(LedgerError, match="malformed payload"):
        LedgerState(NET.genesis).check_tx(msgspec.msgpack.encode(signed), 1_900_000_000_000)
