"""State proofs over random runs, and a verifier that meets every mutation of a valid proof
with a ``ProofError`` (never another exception, never a false statement), as the decoders
refuse garbage."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from rfq.instruments import Side
from rfq.ledger.proof import (
    ProofError,
    ProofResult,
    StateProof,
    decode_state_proof,
    encode_state_proof,
    verify_state_proof,
)
from rfq.ledger.state import MAP_TYPES, LedgerState

from .test_snapshot_roundtrip import NET, Run, _op

COMPONENTS = ("governance", "contracts", *MAP_TYPES)


def expected_value(state: LedgerState, component: str, key: str) -> bytes | None:
    if component == "governance":
        return msgspec.msgpack.encode(state.gov)
    if component == "contracts":
        return state.book.record_bytes(key) if key in state.book else None
    entries = getattr(state, component)
    return msgspec.msgpack.encode(entries[key]) if key in entries else None


def keys_of(state: LedgerState, component: str) -> list[str]:
    if component == "governance":
        return [""]
    if component == "contracts":
        return state.book.ids()
    return sorted(getattr(state, component))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(_op, min_size=5, max_size=40), st.data())
def test_random_entries_at_random_heights_are_proven_against_the_root_of_their_height(ops, data):
    run = Run()
    roots: dict[int, bytes] = {}
    proofs: list[tuple[StateProof, bytes | None]] = []
    for op in ops:
        run.step(op)
        state = run.chain.state
        assert run.chain.head.state_root == state.state_root()
        roots[state.height] = run.chain.head.state_root
        for m in state.maps():
            assert m.full_digest() == m.digest(), m.name
        filled = [c for c in COMPONENTS if c != "governance" and keys_of(state, c)]
        for _ in range(3):
            if filled and data.draw(st.booleans()):
                component = data.draw(st.sampled_from(filled))
                key = data.draw(st.sampled_from(keys_of(state, component)))
            else:
                component = data.draw(st.sampled_from(COMPONENTS))
                key = "" if component == "governance" else f"absent-{op[0]}"
            value = expected_value(state, component, key)
            event(f"{component} {'present' if value is not None else 'absent'}")
            proofs.append((state.prove(component, key), value))
    restored = LedgerState.restore(NET.genesis, run.chain.state.snapshot())
    for proof, value in proofs:
        height = proof.parts.height
        result = verify_state_proof(proof, roots[height])
        assert (result.component, result.key, result.value) == (proof.component, proof.key, value)
        if height == restored.height:
            assert restored.prove(proof.component, proof.key) == proof
        for other, root in roots.items():
            if root != roots[height]:
                try:
                    verify_state_proof(proof, root)
                except ProofError:
                    continue
                raise AssertionError(f"a proof of height {height} verified at {other}")
        tampered = msgspec.structs.replace(proof, value=(value or b"") + b"\x01")
        try:
            verify_state_proof(tampered, roots[height])
        except ProofError:
            continue
        raise AssertionError("a tampered value verified")


# --------------------------------------------------------------------------------------------
# Mutations of valid proofs


def _sample_proofs() -> list[tuple[StateProof, bytes, LedgerState]]:
    run = Run()
    for op in [
        ("trade", "C1", "D1", Side.BUY, 100, 30, False, 0.1, 0),
        ("trade", "C2", "D2", Side.SELL, 250.5, 30, True, 0.0, 1000),
        ("grant", "C1", 5e4),
        ("confirm", 1.0),
        ("fix", 0.01),
        ("credit", "C2"),
    ]:
        run.step(op)
    state, root = run.chain.state, run.chain.head.state_root
    wanted = [
        ("members", "C1"),
        ("payments", "r1/initial_margin/1"),
        ("contracts", "r1"),
        ("contracts", "absent"),
        ("standing", "C2"),
        ("standing", "C1"),
        ("guarantees", "g3"),
        ("governance", ""),
    ]
    return [(state.prove(c, k), root, state) for c, k in wanted]


SAMPLES = _sample_proofs()


def _positions(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every field and element position inside a proof, itself included."""
    found = [path]
    if isinstance(obj, msgspec.Struct):
        for name in obj.__struct_fields__:
            found += _positions(getattr(obj, name), (*path, name))
    elif isinstance(obj, tuple):
        for i, item in enumerate(obj):
            found += _positions(item, (*path, i))
    return found


def _get(obj: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        obj = getattr(obj, step) if isinstance(step, str) else obj[step]
    return obj


def _put(obj: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(head, str):
        return msgspec.structs.replace(obj, **{head: _put(getattr(obj, head), rest, new)})
    items = list(obj)
    items[head] = _put(items[head], rest, new)
    return tuple(items)


def _mutations(old: Any) -> st.SearchStrategy[Any]:
    anything = st.one_of(
        st.none(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.booleans(),
        st.binary(max_size=40),
        st.text(max_size=8),
        st.just("\ud800"),  # a lone surrogate: not encodable
        st.just([b"\x00" * 32]),
        st.just(()),
    )
    if isinstance(old, bytes):
        flips = st.integers(0, max(len(old) * 8 - 1, 0)).map(
            lambda bit: (
                bytes(b ^ (1 << bit % 8) if i == bit // 8 else b for i, b in enumerate(old))
                if old
                else b"\x01"
            )
        )
        return st.one_of(flips, st.just(old[:-1]), st.just(old + b"\x00"), anything)
    if isinstance(old, str):
        return st.one_of(st.just(old + "x"), st.just(old[:-1]), anything)
    if isinstance(old, int):
        return st.one_of(st.just(old + 1), st.just(old - 1), anything)
    if isinstance(old, tuple):
        return st.one_of(
            st.just(old[:-1]), st.just((*old, *old[-1:])), st.just(old[::-1]), anything
        )
    return anything


def assert_true_of(state: LedgerState, result: ProofResult) -> None:
    """A proof that verifies (mutated or not) tells the truth about the state it came from:
    a mutation may at most turn it into another true statement (a sparse tree's absence proof
    also proves the absence of keys whose paths run through the same empty subtrees)."""
    assert result.height == state.height
    assert result.value == expected_value(state, result.component, result.key), result


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(SAMPLES), st.data())
def test_a_mutated_proof_is_refused_with_a_proof_error_or_still_tells_the_truth(sample, data):
    proof, root, state = sample
    path = data.draw(st.sampled_from(_positions(proof)[1:]))
    mutated = _put(proof, path, data.draw(_mutations(_get(proof, path))))
    try:
        result = verify_state_proof(mutated, root)
    except ProofError as exc:
        event(exc.reason.split(" ")[-1])
        return
    event("verified" if mutated == proof else "verified, changed")
    assert_true_of(state, result)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(SAMPLES), st.data())
def test_mutated_proof_bytes_are_refused_cleanly_or_still_tell_the_truth(sample, data):
    proof, root, state = sample
    raw = bytearray(encode_state_proof(proof))
    kind = data.draw(st.sampled_from(["flip", "truncate", "insert"]))
    at = data.draw(st.integers(0, len(raw) - 1))
    if kind == "flip":
        raw[at] ^= 1 << data.draw(st.integers(0, 7))
    elif kind == "truncate":
        del raw[at:]
    else:
        raw.insert(at, data.draw(st.integers(0, 255)))
    try:
        result = verify_state_proof(decode_state_proof(bytes(raw)), root)
    except ProofError as exc:
        event("undecodable" if exc.reason.startswith("not a state proof") else "refused")
        return
    event("verified")
    assert_true_of(state, result)


@given(st.binary(max_size=300))
def test_garbage_bytes_never_make_a_proof(blob):
    try:
        verify_state_proof(decode_state_proof(blob), b"\x00" * 32)
    except ProofError:
        return
    raise AssertionError("garbage verified")


def test_each_sample_proof_verifies_before_it_is_mutated():
    for proof, root, _ in SAMPLES:
        assert verify_state_proof(proof, root).component == proof.component
