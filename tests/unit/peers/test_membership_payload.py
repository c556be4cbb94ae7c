"""``botc regulator admit`` and ``suspend``/``offboard`` check their input against the chain's
state before anything is sent: one line naming the file, field or member."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from peers.errors import CliError
from peers.genesis import keygen
from peers.membership import admission_payload, standing_payload, sync_directory
from rfq.identity import Directory, Role
from rfq.ledger.state import LedgerState
from rfq.ledger.tx import OffboardMember, RegisterMember, SuspendMember
from tests.unit.ledger.harness import make_net


@pytest.fixture
def state() -> LedgerState:
    return LedgerState(make_net().genesis)


def identity_file(tmp_path: Path, member_id: str, role: Role = Role.DEALER) -> Path:
    _, path = keygen(tmp_path / f"keys-{member_id}", member_id, role, f"Member {member_id}")
    return path


def test_a_good_identity_file_becomes_a_register_member_with_its_proof(tmp_path, state):
    path = identity_file(tmp_path, "D9")
    tx = admission_payload(path, state, rating="A", capital=1e8, ccr_threshold=5e7)
    assert isinstance(tx, RegisterMember)
    assert (tx.member.id, tx.member.external_rating, tx.member.capital) == ("D9", "A", 1e8)
    assert tx.proof == json.loads(path.read_text())["proof"]


def test_a_tampered_file_or_a_bad_proof_is_refused_naming_the_file_and_field(tmp_path, state):
    path = identity_file(tmp_path, "D9")
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "role": "client"}))
    with pytest.raises(CliError, match=rf"^{path}: proof: proof of possession does not verify"):
        admission_payload(path, state)
    path.write_text(json.dumps({**data, "proof": "AAAA"}))
    with pytest.raises(CliError, match=rf"^{path}: proof: proof is not a base64 Ed25519"):
        admission_payload(path, state)
    path.write_text("{not json")
    with pytest.raises(CliError, match=rf"^{path}: not a B-OTC identity"):
        admission_payload(path, state)


def test_an_id_or_a_key_the_chain_already_has_is_refused(tmp_path, state):
    with pytest.raises(CliError, match=r"id: C1 is already a member \(another key holds the id\)"):
        admission_payload(identity_file(tmp_path, "C1", Role.CLIENT), state)
    path = identity_file(tmp_path, "D9")
    state.members["D9"] = admission_payload(path, state).member
    with pytest.raises(CliError, match=r"id: D9 is already a member \(this identity was admitted"):
        admission_payload(path, state)
    renamed = msgspec.structs.replace(state.members["D9"], id="D8")
    state.members["D8"] = renamed
    del state.members["D9"]
    with pytest.raises(CliError, match=r"sign_key: already the key of member D8"):
        admission_payload(path, state)


def test_bad_limits_and_a_second_regulator_are_refused(tmp_path, state):
    path = identity_file(tmp_path, "D9")
    with pytest.raises(CliError, match=r"--rating 'Z' is not one of"):
        admission_payload(path, state, rating="Z")
    with pytest.raises(CliError, match=r"cannot be negative"):
        admission_payload(path, state, capital=-1)
    regulator = identity_file(tmp_path, "REG2", Role.REGULATOR)
    with pytest.raises(CliError, match=rf"^{regulator}: role: a network has one regulator"):
        admission_payload(regulator, state)


def test_suspend_and_offboard_need_a_member_on_chain_and_a_reason(state):
    assert standing_payload(state, "suspend", "C1", " review ") == SuspendMember("C1", "review")
    assert standing_payload(state, "offboard", "C1", "gone") == OffboardMember("C1", "gone")
    with pytest.raises(CliError, match=r"no member 'X1' on chain \(height 0\)"):
        standing_payload(state, "suspend", "X1", "why")
    with pytest.raises(CliError, match="offboard needs --reason"):
        standing_payload(state, "offboard", "C1", "  ")


def test_a_bus_directory_learns_the_members_the_chain_registered(tmp_path, state):
    directory = Directory(state.genesis.members)
    member = admission_payload(identity_file(tmp_path, "D9"), state).member
    state.members["D9"] = member
    assert sync_directory(directory, state.members.values()) == 1
    assert directory.get("D9") == member
    assert sync_directory(directory, state.members.values()) == 0


def test_a_chain_follower_syncs_the_bus_directory_only_after_a_block_that_registered_a_member(
    tmp_path, state, monkeypatch
):
    from types import SimpleNamespace

    import peers.observer
    from peers.observer import ChainFollower

    passes: list[int] = []

    def counted(directory: Directory, members: object) -> int:
        passes.append(1)
        return sync_directory(directory, members)  # type: ignore[arg-type]

    monkeypatch.setattr(peers.observer, "sync_directory", counted)
    bus = SimpleNamespace(directory=Directory(state.genesis.members))
    follower = ChainFollower(bus, state.genesis)  # type: ignore[arg-type]
    follower.executor.state = state
    follower._sync_members()
    follower._sync_members()  # a block that registered no one: no pass over every member
    assert len(passes) == 1
    state.members["D9"] = admission_payload(identity_file(tmp_path, "D9"), state).member
    follower._sync_members()
    assert len(passes) == 2
    assert "D9" in bus.directory
