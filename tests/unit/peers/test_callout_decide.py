"""What the auth callout decides from the chain state it follows (no server needed)."""

from __future__ import annotations

import base64
from types import SimpleNamespace

from bus.callout import AuthRequest
from peers.callout import AuthCallout, CalloutKeys, static_members
from rfq.identity import Identity, Role
from rfq.ledger.components.members import Standing
from rfq.ledger.state import LedgerState
from tests.unit.ledger.harness import make_net


def request_from(identity: Identity, nonce: str = "abc") -> AuthRequest:
    sig = base64.b64encode(identity.sign(nonce.encode())).decode()
    return AuthRequest("NSERVER", "UUSER", 1, identity.public_nkey, sig, nonce, identity.member_id)


def callout_for(state: LedgerState) -> AuthCallout:
    follower = SimpleNamespace(state=state, listeners=[])
    return AuthCallout(follower, CalloutKeys.generate(), [], permissions=lambda m: {})  # type: ignore[arg-type]


def test_a_member_of_the_chain_is_admitted_and_a_stranger_is_not():
    net = make_net()
    callout = callout_for(LedgerState(net.genesis))
    assert callout.decide(request_from(net.ids["C1"])).reason == ""
    assert callout.decide(request_from(net.ids["C1"])).member == "C1"
    stranger = callout.decide(request_from(Identity.generate("C1", Role.CLIENT)))
    assert stranger.reason == "no member holds this key on chain (height 0)"


def test_a_signature_that_is_not_over_the_servers_nonce_is_refused():
    net = make_net()
    callout = callout_for(LedgerState(net.genesis))
    replayed = request_from(net.ids["C1"], nonce="old")
    fresh = AuthRequest(*[*vars(replayed).values()][:5], "new", "C1")
    assert callout.decide(fresh).reason == "the signed nonce does not verify against the nkey"


def test_suspended_and_offboarded_members_are_refused_and_a_defaulted_one_is_not():
    net = make_net()
    state = LedgerState(net.genesis)
    state.standing["C1"] = Standing("suspended", "review", 3)
    state.standing["C2"] = Standing("offboarded", "gone", 4)
    state.standing["D3"] = Standing("defaulted", "margin", 5)
    callout = callout_for(state)
    assert callout.decide(request_from(net.ids["C1"])).reason == "C1 is suspended on chain"
    assert callout.decide(request_from(net.ids["C2"])).reason == "C2 is offboarded on chain"
    assert callout.decide(request_from(net.ids["D3"])).reason == ""


def test_only_the_initial_authorities_and_the_regulator_are_static_users():
    genesis = make_net().genesis
    assert sorted(m.id for m in static_members(genesis)) == ["CCP", "D1", "D2", "D3", "REG"]
