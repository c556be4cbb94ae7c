"""The ceremony's pure parts: identities with proof of possession, drafts, the regulator's seal.

Named actors: Regina the regulator, dealers Dana, Dave, Dora and the CCP Cleo, client Carl;
Mallory holds a key of her own and tries to pass it off as someone else's.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import TypeVar

import msgspec
import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rfq.errors import ValidationError
from rfq.genesis import (
    GenesisDraft,
    PublicIdentity,
    add_identity,
    identity_json,
    new_draft,
    parse_identity,
    proof_problem,
    public_identity,
    seal_draft,
    seal_genesis,
    seal_problem,
    set_authorities,
    set_params,
)
from rfq.identity import (
    AuthoritySetup,
    Genesis,
    Identity,
    Member,
    NetworkParams,
    Role,
    genesis_to_dict,
    parse_genesis,
)
from rfq.rating import RatingWeights

CREATED = "2026-01-02T03:04:05+00:00"
KEYS = {
    "REG": Identity("REG", Role.REGULATOR, bytes([1]) * 32),
    "D1": Identity("D1", Role.DEALER, bytes([2]) * 32),
    "D2": Identity("D2", Role.DEALER, bytes([3]) * 32),
    "D3": Identity("D3", Role.DEALER, bytes([4]) * 32),
    "CCP": Identity("CCP", Role.CCP, bytes([5]) * 32),
    "C1": Identity("C1", Role.CLIENT, bytes([6]) * 32),
}
NAMES = {
    "REG": "Regina",
    "D1": "Dana",
    "D2": "Dave",
    "D3": "Dora",
    "CCP": "Cleo",
    "C1": "Carl",
}
MALLORY = Identity("MAL", Role.DEALER, bytes([9]) * 32)


T = TypeVar("T")


def outcome(call: Callable[[], T]) -> tuple[T | None, str | None]:
    """What a check returns, or the reason it refused (any other exception fails the test)."""
    try:
        return call(), None
    except ValidationError as exc:
        return None, str(exc)


def published(member_id: str) -> PublicIdentity:
    return public_identity(KEYS[member_id], NAMES[member_id])


def full_draft() -> GenesisDraft:
    draft = new_draft("test-net", "botc-test", CREATED)
    for member_id in KEYS:
        draft = add_identity(draft, published(member_id), source=f"{member_id}.identity.json")
    return set_authorities(draft, ("D1", "D2", "D3", "CCP"))


def sealed() -> Genesis:
    return seal_draft(full_draft(), KEYS["REG"], source="draft.json")


# -- identities --------------------------------------------------------------------------------


def test_a_published_identity_proves_its_key_and_reads_back_from_its_file():
    dana = published("D1")
    assert proof_problem(dana, dana.proof) is None
    assert parse_identity(identity_json(dana), source="D1.identity.json") == dana
    assert dana.sign_key == KEYS["D1"].public_nkey


def test_the_identity_file_carries_no_secret():
    text = identity_json(published("D1"))
    assert KEYS["D1"].nkey_seed not in text
    assert set(msgspec.json.decode(text)) == {"id", "role", "name", "sign_key", "box_key", "proof"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "D9"),
        ("role", Role.CCP),
        ("name", "Dana Ltd"),
        ("sign_key", MALLORY.public_nkey),
        ("box_key", MALLORY.box_public_b64),
    ],
)
def test_changing_any_field_of_an_identity_breaks_its_proof(field, value):
    forged = msgspec.structs.replace(published("D1"), **{field: value})
    problem = proof_problem(forged, forged.proof)
    assert problem is not None and "does not verify" in problem
    with pytest.raises(ValidationError, match=r"D1\.identity\.json: proof"):
        parse_identity(identity_json(forged), source="D1.identity.json")


def test_mallory_cannot_claim_dana_s_key_with_her_own_signature():
    dana = published("D1")
    mallory_signs = public_identity(MALLORY, "Dana")
    forged = msgspec.structs.replace(dana, proof=mallory_signs.proof)
    assert proof_problem(forged, forged.proof) == (
        "proof of possession does not verify against sign_key"
    )


def test_a_proof_that_is_not_a_signature_is_named():
    forged = msgspec.structs.replace(published("D1"), proof="not base64!")
    assert proof_problem(forged, forged.proof) == "proof is not a base64 Ed25519 signature"


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_tampered_identity_file_is_refused_with_a_reason_never_an_exception(data):
    original = published("D1")
    raw = bytearray(identity_json(original).encode())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    parsed, reason = outcome(lambda: parse_identity(bytes(raw), source="D1.identity.json"))
    if reason is not None:
        assert reason.startswith("D1.identity.json")
    else:  # a change JSON does not see (whitespace, an escape): the same identity
        assert parsed == original


@settings(max_examples=200)
@given(st.binary(max_size=400))
def test_garbage_is_not_an_identity(garbage):
    with pytest.raises(ValidationError, match="^G.json"):
        parse_identity(garbage, source="G.json")


# -- drafts ------------------------------------------------------------------------------------


def test_members_join_a_draft_in_the_order_they_are_added_with_their_proofs():
    draft = full_draft()
    assert [m.id for m in draft.members] == list(KEYS)
    assert draft.proofs["D1"] == published("D1").proof


def test_an_identity_added_twice_is_refused():
    draft = full_draft()
    with pytest.raises(ValidationError, match=r"D1\.identity\.json: D1 is already in the draft"):
        add_identity(draft, published("D1"), source="D1.identity.json")


def test_an_id_another_member_has_is_refused():
    mallory_as_d1 = public_identity(Identity("D1", Role.DEALER, bytes([9]) * 32), "Dana")
    with pytest.raises(ValidationError, match="id 'D1' is already taken by another member"):
        add_identity(full_draft(), mallory_as_d1, source="mal.identity.json")


def test_a_key_another_member_has_is_refused():
    dana_again = public_identity(Identity("D9", Role.DEALER, bytes([2]) * 32), "Dana")
    with pytest.raises(ValidationError, match="sign_key: D9's sign_key is already D1's"):
        add_identity(full_draft(), dana_again, source="d9.identity.json")


def test_a_second_regulator_is_refused():
    rival = public_identity(Identity("REG2", Role.REGULATOR, bytes([8]) * 32), "Rival")
    with pytest.raises(ValidationError, match="one regulator and REG is it"):
        add_identity(full_draft(), rival, source="reg2.identity.json")


def test_a_forged_proof_is_refused_when_added():
    forged = msgspec.structs.replace(published("C1"), name="Carl & Co")
    with pytest.raises(ValidationError, match=r"C1\.identity\.json: proof"):
        add_identity(full_draft(), forged, source="C1.identity.json")


def test_authorities_must_be_eligible_members_and_at_least_four():
    draft = full_draft()
    with pytest.raises(ValidationError, match="'X1' is not a member"):
        set_authorities(draft, ("D1", "D2", "D3", "X1"))
    with pytest.raises(ValidationError, match="C1 is a client"):
        set_authorities(draft, ("D1", "D2", "D3", "C1"))
    with pytest.raises(ValidationError, match="at least 4"):
        set_authorities(draft, ("D1", "D2", "D3"))


def test_params_are_set_from_text_and_bad_ones_are_named():
    draft = set_params(full_draft(), {"block_time_ms": "50"}, (0.5, 0.5))
    assert draft.params.block_time_ms == 50 and draft.rating == RatingWeights(0.5, 0.5)
    with pytest.raises(ValidationError, match="no parameter 'blocktime'"):
        set_params(draft, {"blocktime": "50"})
    with pytest.raises(ValidationError, match="params.round_timeout_ms"):
        set_params(draft, {"round_timeout_ms": "soon"})


# -- the seal ----------------------------------------------------------------------------------


def test_a_sealed_genesis_verifies_and_its_hash_ignores_the_seal():
    genesis = sealed()
    assert seal_problem(genesis) is None
    assert genesis.hash() == msgspec.structs.replace(genesis, seal=None).hash()


class _GenesisBeforeSeals(msgspec.Struct, frozen=True):
    """The genesis as it was before it had a seal: its hash must not change."""

    name: str
    chain_id: str
    created: str
    members: tuple[Member, ...]
    authorities: AuthoritySetup
    rating: RatingWeights
    params: NetworkParams


def test_the_genesis_hash_is_what_it_was_before_genesis_files_had_a_seal():
    genesis = sealed()
    fields = {f: getattr(genesis, f) for f in _GenesisBeforeSeals.__struct_fields__}
    old = _GenesisBeforeSeals(**fields)
    assert genesis.hash() == hashlib.sha256(msgspec.msgpack.encode(old)).digest()


def test_an_unsealed_genesis_is_named_as_such():
    assert "not sealed" in (seal_problem(full_draft().genesis()) or "")


def test_only_the_regulator_s_key_seals():
    with pytest.raises(ValidationError, match="--key: the key is D1's, not the regulator REG's"):
        seal_draft(full_draft(), KEYS["D1"], source="draft.json")
    forged = seal_genesis(full_draft().genesis(), MALLORY)
    assert "seal does not verify" in (seal_problem(forged) or "")


def test_a_draft_whose_member_key_was_swapped_is_not_sealed():
    draft = full_draft()
    members = tuple(
        msgspec.structs.replace(m, sign_key=MALLORY.public_nkey) if m.id == "D2" else m
        for m in draft.members
    )
    swapped = msgspec.structs.replace(draft, members=members)
    with pytest.raises(ValidationError, match=r"draft\.json: members\[2\]: D2: proof"):
        seal_draft(swapped, KEYS["REG"], source="draft.json")


def test_an_altered_genesis_fails_its_seal():
    genesis = sealed()
    for altered in (
        msgspec.structs.replace(genesis, chain_id="botc-other"),
        msgspec.structs.replace(genesis, authorities=AuthoritySetup(("D1", "D2", "CCP", "D3"))),
        msgspec.structs.replace(genesis, params=NetworkParams(block_time_ms=1)),
    ):
        assert altered.hash() != genesis.hash()
        assert "does not verify" in (seal_problem(altered) or "")
    assert seal_problem(msgspec.structs.replace(genesis, seal="AAAA")) is not None


def toml_of(genesis: Genesis) -> bytes:
    return tomli_w.dumps(genesis_to_dict(genesis)).encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_tampered_genesis_file_is_refused_with_a_reason_never_an_exception(data):
    original = sealed()
    raw = bytearray(toml_of(original))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    text = bytes(raw).decode("utf-8", errors="replace")
    genesis, reason = outcome(lambda: parse_genesis(text, source="g.toml"))
    if genesis is None:
        assert reason is not None and reason.startswith("g.toml")
        return
    problem = seal_problem(genesis)
    if problem is None:  # TOML that reads the same (a comment, a quote style): same genesis
        assert genesis.hash() == original.hash() and genesis.seal == original.seal
    else:
        assert isinstance(problem, str) and problem


def test_a_seal_over_another_domain_does_not_count():
    genesis = sealed()
    plain = base64.b64encode(KEYS["REG"].sign(genesis.hash())).decode()
    assert "does not verify" in (seal_problem(msgspec.structs.replace(genesis, seal=plain)) or "")
