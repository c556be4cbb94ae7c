"""``botc keygen`` and ``botc genesis``: files 0600, no secret in public files, one-line refusals
(exit 2) that leave every file as it was.

Each institution keeps its own directory under ``tmp_path/<ID>``; the regulator REG runs the
genesis steps in ``tmp_path/REG``.
"""

from __future__ import annotations

import json
import shlex
import stat
from pathlib import Path

import pytest

from peers.cli import build_parser
from peers.netdir import NetDir, NetDirError, create_network
from rfq.identity import Role
from tests.unit.peers.cli import one_line_error, run

MEMBERS = {
    "REG": Role.REGULATOR,
    "D1": Role.DEALER,
    "D2": Role.DEALER,
    "D3": Role.DEALER,
    "CCP": Role.CCP,
    "C1": Role.CLIENT,
}


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def keys_dir(root: Path, member_id: str) -> Path:
    return root / member_id / "keys"


def identity_of(root: Path, member_id: str) -> Path:
    return keys_dir(root, member_id) / f"{member_id}.identity.json"


@pytest.fixture
def institutions(tmp_path: Path, capsys) -> Path:
    """Every institution has run ``botc keygen`` into its own ``<ID>/keys``."""
    for member_id, role in MEMBERS.items():
        code, _, err = run(
            capsys, "keygen", "--id", member_id, "--role", role, str(keys_dir(tmp_path, member_id))
        )
        assert code == 0, err
    return tmp_path


@pytest.fixture
def draft(institutions: Path, capsys) -> Path:
    """The regulator's draft, every identity added, the authorities set."""
    path = institutions / "REG" / "draft.json"
    reg = str(identity_of(institutions, "REG"))
    assert run(capsys, "genesis", "draft", "--regulator", reg, "--name", "t", str(path))[0] == 0
    dealers = [str(identity_of(institutions, m)) for m in ("D1", "D2", "D3", "CCP")]
    code, _, err = run(capsys, "genesis", "add", str(path), *dealers, "--rating", "A")
    assert code == 0, err
    client = str(identity_of(institutions, "C1"))
    assert run(capsys, "genesis", "add", str(path), client, "--rating", "BBB")[0] == 0
    code, _, err = run(capsys, "genesis", "authorities", str(path), "--initial", "D1,D2,D3,CCP")
    assert code == 0, err
    return path


@pytest.fixture
def genesis(draft: Path, capsys) -> Path:
    out = draft.parent / "genesis.toml"
    key = str(keys_dir(draft.parent.parent, "REG") / "REG.key")
    code, _, err = run(capsys, "genesis", "seal", str(draft), "--key", key, str(out))
    assert code == 0, err
    return out


# -- keygen ------------------------------------------------------------------------------------


def test_keygen_writes_a_0600_key_in_a_0700_directory_and_a_public_identity(institutions):
    for member_id in MEMBERS:
        keys = keys_dir(institutions, member_id)
        assert stat.S_IMODE(keys.stat().st_mode) == 0o700
        assert stat.S_IMODE((keys / f"{member_id}.key").stat().st_mode) == 0o600
        assert sorted(p.name for p in keys.iterdir()) == [
            f"{member_id}.identity.json",
            f"{member_id}.key",
        ]


def test_the_identity_file_holds_no_secret(institutions):
    key_text = (keys_dir(institutions, "D1") / "D1.key").read_text()
    seed = next(line for line in key_text.splitlines() if line.startswith("seed"))
    seed = seed.split('"')[1]
    public = identity_of(institutions, "D1").read_text()
    assert seed not in public and seed[2:20] not in public
    assert json.loads(public)["role"] == "dealer" and json.loads(public)["name"] == "Dealer D1"


def test_keygen_never_overwrites_a_key(institutions, capsys):
    before = files(institutions)
    code, _, err = run(
        capsys, "keygen", "--id", "D1", "--role", "dealer", str(keys_dir(institutions, "D1"))
    )
    assert code == 2 and "D1.key: already exists" in one_line_error(err)
    assert files(institutions) == before


def test_keygen_refuses_a_bad_id_and_writes_nothing(tmp_path, capsys):
    code, _, err = run(
        capsys, "keygen", "--id", "1-bad id", "--role", "dealer", str(tmp_path / "k")
    )
    assert code == 2 and "--id" in one_line_error(err)
    assert not (tmp_path / "k").exists()


def test_keygen_refuses_a_directory_others_can_read(tmp_path, capsys):
    (tmp_path / "open").mkdir(mode=0o755)
    (tmp_path / "open").chmod(0o755)
    code, _, err = run(capsys, "keygen", "--id", "D1", "--role", "dealer", str(tmp_path / "open"))
    assert code == 2 and "too open" in one_line_error(err)
    assert list((tmp_path / "open").iterdir()) == []


# -- the ceremony ------------------------------------------------------------------------------


def test_show_prints_the_members_and_the_sha256_to_compare(genesis, capsys):
    code, out, _ = run(capsys, "genesis", "show", str(genesis))
    assert code == 0
    net = NetDir(genesis.parent)  # REG's directory holds genesis.toml: read it as a network
    expected = net.genesis().hash().hex()
    assert f"sha256 {expected}" in out.splitlines()
    assert [line.split()[0] for line in out.splitlines()[1:7]] == list(MEMBERS)
    assert "sealed by REG" in out


def test_seal_prints_the_same_sha256_as_show(draft, capsys):
    out_path = draft.parent / "g.toml"
    key = str(keys_dir(draft.parent.parent, "REG") / "REG.key")
    _, sealed, _ = run(capsys, "genesis", "seal", str(draft), "--key", key, str(out_path))
    _, shown, _ = run(capsys, "genesis", "show", str(out_path))
    line = next(x for x in sealed.splitlines() if x.startswith("sha256 "))
    assert line in shown.splitlines()


def test_params_change_the_draft(draft, capsys):
    code, _, err = run(
        capsys, "genesis", "params", str(draft), "--set", "block_time_ms=50",
        "--rating-weights", "0.5,0.5",
    )  # fmt: skip
    assert code == 0, err
    data = json.loads(draft.read_text())
    assert data["params"]["block_time_ms"] == 50 and data["rating"] == {"alpha": 0.5, "beta": 0.5}


def test_install_puts_the_genesis_beside_a_members_key(genesis, institutions, capsys):
    code, out, err = run(capsys, "genesis", "install", str(genesis), str(institutions / "D1"))
    assert code == 0, err
    assert "keys here: D1" in out
    net = NetDir(institutions / "D1")
    assert net.identity("D1").public_nkey == net.genesis().member("D1").sign_key
    assert (institutions / "D1" / "nats" / "auth.conf").is_file()


# -- refusals: one line naming the file, field or member; exit 2; nothing changed ---------------


def refused(capsys, root: Path, *argv: str) -> str:
    before = files(root)
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert files(root) == before
    return one_line_error(err)


def test_a_tampered_identity_file_is_refused(draft, institutions, capsys):
    path = identity_of(institutions, "C1")
    path.write_text(path.read_text().replace("Client C1", "Client C1 Holdings"))
    client = str(identity_of(institutions, "C1"))
    other = draft.parent / "other.json"
    reg = str(identity_of(institutions, "REG"))
    assert run(capsys, "genesis", "draft", "--regulator", reg, str(other))[0] == 0
    line = refused(capsys, institutions, "genesis", "add", str(other), client)
    assert "C1.identity.json: proof" in line and "does not verify" in line


def test_a_proof_by_another_key_is_refused(draft, institutions, capsys):
    c1 = identity_of(institutions, "C1")
    d1 = json.loads(identity_of(institutions, "D1").read_text())
    forged = json.loads(c1.read_text()) | {"proof": d1["proof"]}
    c1.write_text(json.dumps(forged))
    line = refused(capsys, institutions, "genesis", "add", str(draft), str(c1))
    assert "C1.identity.json: proof" in line


def test_an_identity_that_is_not_json_is_refused(draft, institutions, capsys):
    c1 = identity_of(institutions, "C1")
    c1.write_text('{"id": "C1", ')
    line = refused(capsys, institutions, "genesis", "add", str(draft), str(c1))
    assert "C1.identity.json: not a B-OTC identity" in line


def test_an_identity_added_twice_is_refused(draft, institutions, capsys):
    line = refused(
        capsys, institutions, "genesis", "add", str(draft), str(identity_of(institutions, "D2"))
    )
    assert "D2.identity.json: D2 is already in the draft" in line


def test_an_id_that_collides_with_another_members_is_refused(draft, institutions, tmp_path, capsys):
    impostor = tmp_path / "impostor"
    assert run(capsys, "keygen", "--id", "D1", "--role", "dealer", str(impostor))[0] == 0
    line = refused(
        capsys, institutions, "genesis", "add", str(draft), str(impostor / "D1.identity.json")
    )
    assert "id 'D1' is already taken by another member's key" in line


def test_a_batch_with_one_bad_identity_adds_none(draft, institutions, tmp_path, capsys):
    assert run(capsys, "keygen", "--id", "C2", "--role", "client", str(tmp_path / "c2"))[0] == 0
    good, twice = str(tmp_path / "c2" / "C2.identity.json"), str(identity_of(institutions, "D1"))
    refused(capsys, institutions, "genesis", "add", str(draft), good, twice)


def test_sealing_with_a_key_that_is_not_the_regulators_is_refused(draft, institutions, capsys):
    key = str(keys_dir(institutions, "D1") / "D1.key")
    out = str(draft.parent / "g.toml")
    line = refused(capsys, institutions, "genesis", "seal", str(draft), "--key", key, out)
    assert "--key: the key is D1's, not the regulator REG's" in line


def test_a_hand_edited_draft_is_not_sealed(draft, institutions, capsys):
    data = json.loads(draft.read_text())
    mallory = json.loads(identity_of(institutions, "C1").read_text())
    data["members"][2]["sign_key"] = mallory["sign_key"]  # D2's entry, C1's key
    draft.write_text(json.dumps(data))
    key = str(keys_dir(institutions, "REG") / "REG.key")
    out = str(draft.parent / "g.toml")
    line = refused(capsys, institutions, "genesis", "seal", str(draft), "--key", key, out)
    assert "members[2]: D2:" in line


def test_a_genesis_whose_seal_fails_is_refused_by_show_and_by_every_peer(genesis, capsys):
    genesis.write_text(genesis.read_text().replace('name = "Dealer D1"', 'name = "Dealer D1 plc"'))
    line = refused(capsys, genesis.parent, "genesis", "show", str(genesis))
    assert "genesis.toml: seal:" in line and "does not verify" in line
    line = refused(capsys, genesis.parent, "nats", "--net", str(genesis.parent))
    assert "genesis.toml: seal:" in line


def test_an_unsealed_genesis_is_refused_by_every_peer(genesis, capsys):
    text = genesis.read_text()
    seal = next(x for x in text.splitlines() if x.startswith("seal = "))
    genesis.write_text(text.replace(seal + "\n", ""))
    line = refused(capsys, genesis.parent, "nats", "--net", str(genesis.parent))
    assert "not sealed by the regulator" in line


def test_a_peer_started_with_a_key_that_is_not_in_the_genesis_is_refused(
    genesis, institutions, tmp_path, capsys
):
    assert run(capsys, "genesis", "install", str(genesis), str(institutions / "C1"))[0] == 0
    key = keys_dir(institutions, "C1") / "C1.key"
    key.unlink()
    assert run(capsys, "keygen", "--id", "C1", "--role", "client", str(tmp_path / "new"))[0] == 0
    key.write_bytes((tmp_path / "new" / "C1.key").read_bytes())
    key.chmod(0o600)
    with pytest.raises(NetDirError, match=r"C1\.key: key does not match C1's sign_key"):
        NetDir(institutions / "C1").identity("C1")
    line = refused(capsys, institutions, "tui", "--net", str(institutions / "C1"), "--as", "C1")
    assert "C1.key: key does not match C1's sign_key in the genesis" in line


def test_install_refuses_a_key_that_is_not_a_member(genesis, tmp_path, capsys):
    assert (
        run(capsys, "keygen", "--id", "X1", "--role", "dealer", str(tmp_path / "x" / "keys"))[0]
        == 0
    )
    line = refused(capsys, tmp_path, "genesis", "install", str(genesis), str(tmp_path / "x"))
    assert "X1.key: X1 is not a member" in line


def test_a_network_made_before_seals_is_sealed_in_place_and_keeps_its_hash(tmp_path, capsys):
    net = create_network(tmp_path / "net")
    chain_hash = net.genesis().hash()
    text = net.genesis_path.read_text()
    seal = next(x for x in text.splitlines() if x.startswith("seal = "))
    net.genesis_path.write_text(text.replace(seal + "\n", ""))  # as botc init wrote it before
    assert "not sealed" in refused(capsys, tmp_path, "status", "--net", str(net.path))
    genesis, key = str(net.genesis_path), str(net.key_path("REG"))
    code, out, err = run(capsys, "genesis", "seal", genesis, "--key", key, genesis, "--force")
    assert code == 0, err
    assert f"sha256 {chain_hash.hex()}" in out.splitlines()
    assert NetDir(net.path).genesis().hash() == chain_hash
    wrong = str(net.key_path("D1"))
    line = refused(capsys, tmp_path, "genesis", "seal", genesis, "--key", wrong, genesis, "--force")
    assert "not the regulator REG's" in line


def readme_ceremony_commands() -> list[list[str]]:
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    section = readme.split("### Genesis ceremony", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    lines = (line.split("#", 1)[0].strip() for line in block.splitlines())
    return [shlex.split(line) for line in lines if line.startswith("botc ")]


def test_every_command_of_the_readme_ceremony_is_one_botc_accepts():
    commands = readme_ceremony_commands()
    steps = {tuple(c[1:3]) if c[1] == "genesis" else (c[1],) for c in commands}
    assert steps >= {
        ("keygen",),
        *(("genesis", s) for s in ("draft", "add", "authorities", "params", "seal", "show")),
        ("genesis", "install"),
    }
    parser = build_parser()
    for command in commands:
        parser.parse_args(command[1:])  # exits 2 on an option botc does not have


def test_a_bad_rating_names_the_field_and_adds_nothing(draft, tmp_path, capsys):
    assert run(capsys, "keygen", "--id", "C2", "--role", "client", str(tmp_path / "c2"))[0] == 0
    c2 = str(tmp_path / "c2" / "C2.identity.json")
    line = refused(capsys, draft.parent, "genesis", "add", str(draft), c2, "--rating", "ZZZ")
    assert "external_rating" in line and "ZZZ" in line
