"""State proofs: any entry of the ledger, or its absence, proven against a header's state root."""

from __future__ import annotations

import hashlib
import itertools

import msgspec
import pytest

from rfq.contracts.book import ContractRecord
from rfq.identity import Member
from rfq.ledger.digest import (
    ARITY,
    DEPTH,
    EMPTY,
    BucketPath,
    BucketTree,
    DigestMap,
    bucket_of,
    value_hash,
)
from rfq.ledger.proof import (
    ProofError,
    StateProof,
    decode_state_proof,
    encode_state_proof,
    path_digest,
    verify_state_proof,
)
from rfq.ledger.state import (
    MAP_TYPES,
    Governance,
    Guarantee,
    LedgerState,
    Payment,
    RatingState,
    Standing,
    Trade,
)
from rfq.ledger.tx import CreditEventTx, GuaranteeGrant
from rfq.money import to_micros

from .harness import Chain, make_net, trade_tx

NET = make_net(margin_cure_days=1)


@pytest.fixture(scope="module")
def chain() -> Chain:
    """A trade each for C1 and C2, a guarantee for C1, then a credit event of C2."""
    c = Chain(NET)
    at = c.head.timestamp_ms + 1000
    asset = hashlib.sha256(b"warehouse receipt 7").hexdigest()
    c.block(
        trade_tx(NET, rfq_id="r1", at_ms=at - 500),
        trade_tx(NET, rfq_id="r2", client="C2", dealer="D2", at_ms=at - 500),
        NET.tx(
            "G1", GuaranteeGrant("g1", "C1", to_micros(50_000), asset, to_micros(100_000)), at_ms=at
        ),
        at_ms=at,
    )
    at += 1000
    c.block(NET.tx("REG", CreditEventTx("C2", "missed a payment"), at_ms=at), at_ms=at)
    return c


def verified(chain: Chain, component: str, key: str = "") -> msgspec.Struct:
    proof = chain.state.prove(component, key)
    return verify_state_proof(proof, chain.head.state_root, component=component, key=key)


def test_a_members_record_is_proven_against_the_state_root_of_the_block_header(chain):
    result = verified(chain, "members", "C1")
    assert result.present and result.height == chain.head.height
    assert result.decode(Member) == chain.state.members["C1"]


@pytest.mark.parametrize(
    ("component", "key", "value_type"),
    [
        ("ratings", "C1", RatingState),
        ("trades", "r1", Trade),
        ("payments", "r1/initial_margin/1", Payment),
        ("guarantees", "g1", Guarantee),
        ("standing", "C2", Standing),
    ],
)
def test_every_kind_of_ledger_entry_is_provable_and_decodes_to_the_live_value(
    chain, component, key, value_type
):
    result = verified(chain, component, key)
    assert result.decode(value_type) == getattr(chain.state, component)[key]


def test_a_committed_transaction_id_is_provable_with_its_expiry(chain):
    tx_hex = chain.results[-1].receipts[0].tx_id
    result = verified(chain, "committed", tx_hex)
    assert result.decode(int) == chain.state.committed[tx_hex]


def test_a_contract_is_proven_by_its_id_as_its_canonical_record(chain):
    result = verified(chain, "contracts", "r1")
    record = result.decode(ContractRecord)
    assert record.contract == chain.state.book.get("r1").contract
    assert result.value == chain.state.book.record_bytes("r1")


def test_the_governance_struct_is_proven_as_one_value(chain):
    result = verified(chain, "governance")
    assert result.decode(Governance) == chain.state.gov
    with pytest.raises(ProofError, match="governance is one value"):
        chain.state.prove("governance", "authorities")


def test_a_key_that_is_not_there_is_proven_absent_in_a_map_and_in_the_book(chain):
    for component in ("payments", "contracts", "standing"):
        result = verified(chain, component, "no-such-key")
        assert not result.present
        with pytest.raises(ProofError, match="no entry"):
            result.decode(Payment)


def test_an_absence_proof_cannot_be_relabelled_to_deny_an_entry_that_exists(chain):
    proof = chain.state.prove("standing", "C1")  # C1 is in good standing: absent
    denial = msgspec.structs.replace(proof, key="C2")
    with pytest.raises(ProofError):
        verify_state_proof(denial, chain.head.state_root)
    claim = msgspec.structs.replace(proof, value=msgspec.msgpack.encode(Standing("x", "y", 1)))
    with pytest.raises(ProofError, match="do not hash"):
        verify_state_proof(claim, chain.head.state_root)


def test_a_proof_of_one_height_fails_against_the_root_of_another_with_a_reason():
    c = Chain(NET)
    c.block(trade_tx(NET, rfq_id="r1"))
    proof, root = c.state.prove("trades", "r1"), c.head.state_root
    c.block()
    assert verify_state_proof(proof, root).present
    with pytest.raises(ProofError, match="do not hash to this state root"):
        verify_state_proof(proof, c.head.state_root)


def test_a_tampered_value_sibling_or_bucket_entry_fails_with_a_reason(chain):
    proof = chain.state.prove("payments", "r1/initial_margin/1")
    root = chain.head.state_root
    path = proof.path
    assert path is not None
    level = next(i for i, group in enumerate(path.siblings) if any(group))
    group = path.siblings[level]
    k = next(i for i, h in enumerate(group) if h)
    bad_group = (*group[:k], bytes(32), *group[k + 1 :])
    bad_siblings = (*path.siblings[:level], bad_group, *path.siblings[level + 1 :])
    cases = {
        "do not hash": msgspec.structs.replace(proof, value=(proof.value or b"") + b"\x00"),
        "do not hash ": msgspec.structs.replace(proof, path=BucketPath(path.entries, bad_siblings)),
        "levels": msgspec.structs.replace(proof, path=BucketPath(path.entries, path.siblings[:-1])),
        "hold 15 hashes": msgspec.structs.replace(
            proof, path=BucketPath(path.entries, (group[:-1], *path.siblings[1:]))
        ),
        "32 bytes or empty": msgspec.structs.replace(
            proof, path=BucketPath(path.entries, ((b"x", *group[1:]), *path.siblings[1:]))
        ),
        "no bucket path": msgspec.structs.replace(proof, path=None),
        "contract by contract": msgspec.structs.replace(proof, component="book"),
        "no component": msgspec.structs.replace(proof, component="nonsense"),
    }
    for reason, bad in cases.items():
        with pytest.raises(ProofError, match=reason.strip()):
            verify_state_proof(bad, root)


def test_a_contract_proof_depends_on_the_book_header_it_carries(chain):
    proof = chain.state.prove("contracts", "r2")
    for header in (bytes(32), None, b"short"):
        with pytest.raises(ProofError):
            verify_state_proof(msgspec.structs.replace(proof, book_header=header), b"\x00" * 32)
        with pytest.raises(ProofError):
            verify_state_proof(
                msgspec.structs.replace(proof, book_header=header), chain.head.state_root
            )


def test_the_verifier_refuses_a_valid_proof_of_another_entry_when_told_what_to_expect(chain):
    proof = chain.state.prove("members", "C1")
    with pytest.raises(ProofError, match="about key 'C1', not 'C2'"):
        verify_state_proof(proof, chain.head.state_root, key="C2")
    with pytest.raises(ProofError, match="about 'members', not 'ratings'"):
        verify_state_proof(proof, chain.head.state_root, component="ratings")


def test_a_proof_travels_as_bytes_of_about_two_kilobytes_and_verifies_after_decoding(chain):
    for component, key in (("payments", "r1/initial_margin/1"), ("contracts", "r1")):
        proof = chain.state.prove(component, key)
        data = encode_state_proof(proof)
        assert decode_state_proof(data) == proof
        assert verify_state_proof(decode_state_proof(data), chain.head.state_root).present
        overhead = len(data) - len(proof.value or b"")
        assert overhead < 3_000, (component, overhead)
    with pytest.raises(ProofError, match="not a state proof"):
        decode_state_proof(data[:-3])


def test_an_unknown_component_cannot_be_proven_and_the_error_lists_the_known_ones(chain):
    with pytest.raises(ProofError, match="one of governance, contracts, members"):
        chain.state.prove("wallets", "C1")


def test_a_restored_state_gives_the_same_proofs(chain):
    restored = LedgerState.restore(NET.genesis, chain.state.snapshot())
    for component, key in (("contracts", "r2"), ("ratings", "C2"), ("governance", "")):
        assert restored.prove(component, key) == chain.state.prove(component, key)


def test_every_map_of_the_ledger_is_a_root_part_under_its_own_name(chain):
    names = [name for name, _ in chain.state.root_parts().components]
    assert names == ["governance", "book", *MAP_TYPES]
    assert not {"governance", "book", "contracts"} & set(MAP_TYPES), "reserved for proofs"


# --------------------------------------------------------------------------------------------
# The bucketed tree


def keys_sharing_a_bucket(n: int) -> tuple[int, list[str]]:
    """``n`` keys of one bucket (a birthday search over short keys)."""
    seen: dict[int, list[str]] = {}
    for i in itertools.count():
        key = f"k{i}"
        group = seen.setdefault(bucket_of(key), [])
        group.append(key)
        if len(group) == n:
            return bucket_of(key), group
    raise AssertionError  # pragma: no cover


def test_a_map_digest_does_not_depend_on_the_order_or_history_of_its_writes():
    a, b = DigestMap("ratings", int), DigestMap("ratings", int)
    for i in range(300):
        a[f"m{i}"] = i
    a.digest()
    for i in reversed(range(300)):
        b[f"m{i}"] = -1
        b[f"extra{i}"] = i
    for i in range(300):
        b[f"m{i}"] = i
        del b[f"extra{i}"]
    assert a.digest() == b.digest() == a.full_digest() == b.full_digest()
    assert DigestMap("members", int).digest() != DigestMap("ratings", int).digest()


def test_a_map_emptied_again_has_the_digest_of_an_empty_map():
    m = DigestMap("custody", float)
    empty = m.digest()
    m["C1"] = 1.0
    assert m.digest() != empty
    del m["C1"]
    assert m.digest() == empty == m.full_digest()


def test_incremental_digests_equal_a_full_rehash_for_ten_thousand_entries_with_deletions():
    m = DigestMap("committed", int)
    for i in range(10_000):
        m[f"{i:064x}"] = i
    assert m.digest() == m.full_digest()
    for i in range(0, 10_000, 3):
        del m[f"{i:064x}"]
    for i in range(0, 10_000, 7):
        m[f"{i:064x}"] = -i
    assert m.digest() == m.full_digest()


def test_a_map_canonicalises_values_so_a_restored_copy_hashes_the_same():
    live, restored = DigestMap("custody", float), DigestMap("custody", float)
    live["C1"] = 0  # an int in a float map, as arithmetic may leave it
    restored.decode_into(live.encode())
    assert live.digest() == restored.digest()
    assert live.prove("C1") == restored.prove("C1")


def test_entries_that_share_a_bucket_are_each_proven_with_their_neighbours():
    bucket, keys = keys_sharing_a_bucket(3)
    tree = BucketTree(b"pledges")
    for key in keys[:2]:
        tree.put(key, value_hash(key.encode()))
    tree.digest()
    path = tree.path(keys[0])
    assert [k for k, _ in path.entries] == [keys[1]]
    absent = tree.path(keys[2])
    assert sorted(k for k, _ in absent.entries) == sorted(keys[:2])
    assert len(path.siblings) == DEPTH and all(len(g) == ARITY - 1 for g in path.siblings)
    assert bucket == bucket_of(keys[2])


def test_a_sparse_map_sends_its_empty_subtrees_as_empty_siblings():
    tree = BucketTree(b"members")
    tree.put("C1", value_hash(b"x"))
    path = tree.path("C1")
    assert path.entries == () and all(h == b"" for g in path.siblings for h in g)
    assert EMPTY[DEPTH] not in (h for g in path.siblings for h in g)
    assert tree.full_digest() == tree.digest()


def test_proofs_of_neighbours_in_one_bucket_verify_against_a_real_state_root():
    _, keys = keys_sharing_a_bucket(3)
    c = Chain(NET)
    for key in keys[:2]:
        c.state.pledges[key] = f"g-{key}"
    root = c.state.state_root()
    for key in keys:
        result = verify_state_proof(c.state.prove("pledges", key), root)
        assert result.present == (key in keys[:2])
    proof = c.state.prove("pledges", keys[2])
    assert proof.path is not None
    entries = proof.path.entries
    shuffled = BucketPath(tuple(reversed(entries)), proof.path.siblings)
    dropped = BucketPath(entries[1:], proof.path.siblings)
    cases = {
        "increasing key order": shuffled,
        "do not hash": dropped,
    }
    for reason, path in cases.items():
        with pytest.raises(ProofError, match=reason):
            verify_state_proof(msgspec.structs.replace(proof, path=path), root)


def test_an_absence_proof_through_empty_subtrees_also_proves_other_absent_keys_there():
    """Not a weakness: every key whose path runs through the same empty subtree is absent."""
    tree = BucketTree(b"members")
    tree.put("C1", value_hash(b"x"))
    digest = tree.digest()
    top = bucket_of("C1") >> 12
    far = [k for i in range(200) if bucket_of(k := f"n{i}") >> 12 != top]
    a = far[0]
    b = next(k for k in far[1:] if bucket_of(k) >> 12 == bucket_of(a) >> 12)
    assert tree.path(a) == tree.path(b)
    for key in (a, b):
        assert path_digest(b"members", key, None, tree.path(a)) == digest


def test_a_state_proof_is_a_msgspec_struct_that_round_trips_through_msgpack(chain):
    proof = chain.state.prove("guarantees", "g1")
    assert isinstance(proof, StateProof)
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(proof), type=StateProof) == proof
