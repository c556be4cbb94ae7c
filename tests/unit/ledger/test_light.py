"""The light client: an answer is believed only under a final header of the set it follows."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rfq.errors import DECODE_ERRORS
from rfq.identity import Directory
from rfq.ledger.block import make_seal
from rfq.ledger.light import AnswerProof, LightClient, LightError, witness_of
from rfq.ledger.proof import GOVERNANCE
from rfq.ledger.state import Payment
from rfq.ledger.tx import Evict

from .harness import T0, Chain, Net, make_net, trade_tx


@pytest.fixture
def net() -> Net:
    return make_net()


@pytest.fixture
def chain(net: Net) -> Chain:
    c = Chain(net)
    c.block(trade_tx(net, rfq_id="r1", at_ms=T0 - 500), at_ms=T0)
    return c


def answer(
    chain: Chain, sealers: tuple[str, ...], witnesses: tuple[tuple[str, str], ...] = ()
) -> AnswerProof:
    """What an authority attaches: the head, seals by ``sealers``, the governance, witnesses."""
    head = chain.head
    seals = tuple(make_seal(chain.net.ids[s], head.hash(), head.round) for s in sealers)
    gov = chain.state.prove(GOVERNANCE)
    assert gov.value is not None
    return AnswerProof(
        head,
        seals,
        gov.parts,
        gov.value,
        tuple(witness_of(chain.state.prove(c, k)) for c, k in witnesses),
    )


def light(net: Net) -> LightClient:
    return LightClient(net.genesis, Directory(net.genesis.members))


def payment_ids(chain: Chain) -> list[str]:
    return sorted(chain.state.payments)


def test_a_payment_proven_under_a_header_sealed_by_three_of_four_authorities_is_believed(
    net, chain
):
    [pid] = payment_ids(chain)
    verified = light(net).verify(answer(chain, ("CCP", "D1", "D2"), (("payments", pid),)))
    row = chain.state.payments[pid]
    assert verified.rows("payments", [row], lambda p: p.id, Payment) == [row]
    assert verified.height == chain.head.height


def test_two_seals_of_four_are_not_final(net, chain):
    with pytest.raises(LightError) as err:
        light(net).verify(answer(chain, ("CCP", "D1")))
    assert err.value.kind == "not_final"


def test_seals_by_a_member_outside_the_authority_set_do_not_count(net, chain):
    with pytest.raises(LightError) as err:
        light(net).verify(answer(chain, ("CCP", "D1", "G1", "C1")))
    assert err.value.kind == "not_final"


def test_a_seal_over_another_header_does_not_count(net, chain):
    proof = answer(chain, ("CCP", "D1", "D2"))
    other = make_seal(net.ids["D2"], b"\x01" * 32, 0)
    forged = msgspec.structs.replace(proof, seals=(*proof.seals[:2], other))
    with pytest.raises(LightError) as err:
        light(net).verify(forged)
    assert err.value.kind == "not_final"


def test_a_row_that_differs_from_its_proven_entry_is_refused(net, chain):
    [pid] = payment_ids(chain)
    verified = light(net).verify(answer(chain, ("CCP", "D1", "D2"), (("payments", pid),)))
    made_up = msgspec.structs.replace(chain.state.payments[pid], amount=1_000_000.0)
    with pytest.raises(LightError) as err:
        verified.rows("payments", [made_up], lambda p: p.id, Payment)
    assert err.value.kind == "bad_row"


def test_a_row_without_a_witness_is_refused(net, chain):
    [pid] = payment_ids(chain)
    verified = light(net).verify(answer(chain, ("CCP", "D1", "D2")))
    with pytest.raises(LightError) as err:
        verified.rows("payments", [chain.state.payments[pid]], lambda p: p.id, Payment)
    assert err.value.kind == "unproven"


def test_a_tampered_witness_is_refused(net, chain):
    [pid] = payment_ids(chain)
    proof = answer(chain, ("CCP", "D1", "D2"), (("payments", pid),))
    [w] = proof.witnesses
    made_up = msgspec.msgpack.encode(msgspec.structs.replace(chain.state.payments[pid], payer="C2"))
    forged = msgspec.structs.replace(proof, witnesses=(msgspec.structs.replace(w, value=made_up),))
    with pytest.raises(LightError) as err:
        light(net).verify(forged)
    assert err.value.kind == "bad_witness"


def test_root_parts_of_another_height_are_refused(net, chain):
    old = answer(chain, ("CCP", "D1", "D2"))
    chain.block()
    new = answer(chain, ("CCP", "D1", "D2"))
    with pytest.raises(LightError) as err:
        light(net).verify(msgspec.structs.replace(new, parts=old.parts))
    assert err.value.kind == "bad_root"


def test_a_stranger_is_proven_absent_from_the_registry(net, chain):
    verified = light(net).verify(answer(chain, ("CCP", "D1", "D2"), (("members", "ZZ_NOBODY"),)))
    assert not verified.entry("members", "ZZ_NOBODY").present
    with pytest.raises(LightError):  # only what was witnessed is proven
        verified.entry("members", "C1")


def test_a_committed_transaction_is_proven_by_its_id(net, chain):
    tx_id = chain.results[-1].receipts[0].tx_id
    verified = light(net).verify(
        answer(chain, ("CCP", "D1", "D2"), (("committed", tx_id), ("committed", "ab" * 32)))
    )
    assert verified.committed(tx_id)
    assert not verified.committed("ab" * 32)


def test_the_client_follows_an_eviction_and_trusts_the_authority_that_joined(net, chain):
    client = light(net)
    chain.block(net.tx("REG", Evict("D3", "test"), at_ms=T0 + 1000), at_ms=T0 + 1000)
    client.verify(answer(chain, ("CCP", "D1", "D2")))  # still sealed by the old set
    assert client.authorities == ("CCP", "D1", "D2", "G1")
    chain.block(at_ms=T0 + 2000)
    with pytest.raises(LightError) as err:
        client.verify(answer(chain, ("CCP", "D1", "D3")))  # D3's seal no longer counts
    assert err.value.kind == "not_final"
    client.verify(answer(chain, ("CCP", "D1", "G1")))
    assert client.height == chain.head.height


def test_a_header_found_final_once_needs_no_second_check_of_its_seals(net, chain):
    client = light(net)
    client.verify(answer(chain, ("CCP", "D1", "D2")))
    assert client.verify(answer(chain, ())).height == chain.head.height
    with pytest.raises(LightError) as err:
        light(net).verify(answer(chain, ()))  # a client that never saw it final
    assert err.value.kind == "not_final"


def test_a_new_set_that_too_few_followed_authorities_vouch_for_is_unlinked(net, chain):
    client = light(net)  # follows CCP, D1, D2, D3 from the genesis
    chain.block(net.tx("REG", Evict("D3", "test"), at_ms=T0 + 1000), at_ms=T0 + 1000)
    chain.block(
        net.tx("REG", Evict("D2", "test"), at_ms=T0 + 2000),
        net.tx("REG", Evict("D1", "test"), at_ms=T0 + 2000),
        at_ms=T0 + 2000,
    )
    chain.block(at_ms=T0 + 3000)
    assert chain.state.authorities == ("CCP", "G1")  # one candidate only: the set shrinks
    with pytest.raises(LightError) as err:
        client.verify(answer(chain, ("CCP", "G1")))
    assert err.value.kind == "unlinked"


def test_an_answer_a_minute_older_than_one_already_verified_is_stale(net, chain):
    client = light(net)
    old = answer(chain, ("CCP", "D1", "D2"))
    chain.block(at_ms=T0 + 120_000)
    client.verify(answer(chain, ("CCP", "D1", "D2")))
    with pytest.raises(LightError) as err:
        client.verify(old)
    assert err.value.kind == "stale"


def test_an_answer_without_a_proof_is_refused(net):
    with pytest.raises(LightError) as err:
        light(net).verify(None)
    assert err.value.kind == "no_proof"


_proof_decoder = msgspec.msgpack.Decoder(AnswerProof)


@pytest.fixture(scope="module")
def valid_proof() -> tuple[Net, bytes]:
    net = make_net()
    chain = Chain(net)
    chain.block(trade_tx(net, rfq_id="r1", at_ms=T0 - 500), at_ms=T0)
    [pid] = sorted(chain.state.payments)
    proof = answer(chain, ("CCP", "D1", "D2"), (("payments", pid), ("members", "ZZ")))
    return net, msgspec.msgpack.encode(proof)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_a_mangled_proof_is_refused_with_a_reason_and_nothing_else(valid_proof, data):
    """Garbage in, a clean ``LightError`` out (or, for bytes that still verify, an answer)."""
    net, encoded = valid_proof
    raw = bytearray(encoded)
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        proof = _proof_decoder.decode(bytes(raw))
    except DECODE_ERRORS:
        event("the bytes no longer decode")
        return
    try:
        light(net).verify(proof)
        event("still verifies")
    except LightError as exc:
        event(exc.kind)
