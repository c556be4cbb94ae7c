"""``botc init`` and loading a network: files, permissions, and one-line errors (exit 2)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from peers.netdir import NetDir, NetDirError, auth_conf_text, create_network, permissions
from rfq.identity import Role
from tests.unit.peers.cli import one_line_error, run


def test_init_writes_a_genesis_keys_and_a_nats_config(tmp_path, capsys):
    code, out, _ = run(capsys, "init", str(tmp_path / "net"), "--dealers", "4", "--clients", "2")
    assert code == 0 and "created network" in out
    net = NetDir(tmp_path / "net")
    genesis = net.genesis()
    ids = [m.id for m in genesis.members]
    assert ids == ["D1", "D2", "D3", "D4", "CCP", "G1", "REG", "ORACLE", "BANK", "C1", "C2"]
    assert genesis.authorities.initial == ("D1", "D2", "D3", "CCP")
    assert genesis.authorities.candidates == ("D4", "G1")
    for member in genesis.members:
        key = net.key_path(member.id)
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert net.identity(member.id).public_nkey == member.sign_key
    conf = (tmp_path / "net" / "nats" / "auth.conf").read_text()
    static = {"D1", "D2", "D3", "CCP", "REG"}  # the rest connect through the auth callout
    assert {m.id for m in genesis.members if m.sign_key in conf} == static
    assert "auth_callout" in conf
    assert not any(net.identity(m.id).nkey_seed in conf for m in genesis.members)
    secret = tmp_path / "net" / "nats" / "callout.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert not any(seed in conf for seed in json.loads(secret.read_text()).values())


def test_key_files_never_leave_the_seed_in_the_genesis(tmp_path):
    net = create_network(tmp_path / "net")
    genesis_text = net.genesis_path.read_text()
    for member in net.genesis().members:
        seed = net.identity(member.id).nkey_seed
        assert seed not in genesis_text
        assert seed not in repr(net.identity(member.id))


def test_init_refuses_to_overwrite_an_existing_network(tmp_path, capsys):
    assert run(capsys, "init", str(tmp_path / "net"))[0] == 0
    before = (tmp_path / "net" / "genesis.toml").read_text()
    code, _, err = run(capsys, "init", str(tmp_path / "net"))
    assert code == 2
    assert "already exists" in err and "--force" in err
    assert (tmp_path / "net" / "genesis.toml").read_text() == before
    assert run(capsys, "init", str(tmp_path / "net"), "--force")[0] == 0
    assert (tmp_path / "net" / "genesis.toml").read_text() != before


def test_too_few_dealers_for_four_authorities_is_refused(tmp_path, capsys):
    code, _, err = run(capsys, "init", str(tmp_path / "net"), "--dealers", "2")
    assert code == 2 and "--dealers" in err


@pytest.fixture
def net(tmp_path: Path) -> NetDir:
    return create_network(tmp_path / "net")


def test_a_directory_that_is_not_a_network_is_named(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "nats", "--net", str(tmp_path / "empty"))
    assert code == 2
    assert "not a B-OTC network" in one_line_error(err)


def test_a_malformed_genesis_names_the_file_and_field(net, capsys):
    text = net.genesis_path.read_text().replace('role = "dealer"', 'role = "pirate"', 1)
    net.genesis_path.write_text(text)
    code, _, err = run(capsys, "nats", "--net", str(net.path))
    line = one_line_error(err)
    assert code == 2 and "genesis.toml" in line and "role" in line


def test_a_genesis_that_is_not_toml_is_named(net, capsys):
    net.genesis_path.write_text("name = [unterminated\n")
    code, _, err = run(capsys, "nats", "--net", str(net.path))
    assert code == 2 and "not valid TOML" in one_line_error(err)


def test_genesis_weights_that_do_not_sum_to_one_are_refused(net):
    text = net.genesis_path.read_text().replace("alpha = 0.4", "alpha = 0.5")
    net.genesis_path.write_text(text)
    with pytest.raises(NetDirError, match="rating"):
        NetDir(net.path).genesis()


def test_a_missing_key_file_is_named(net):
    net.key_path("D1").unlink()
    with pytest.raises(NetDirError, match=r"D1\.key: key file is missing"):
        net.identity("D1")


def test_a_key_file_with_loose_permissions_is_refused(net):
    os.chmod(net.key_path("C1"), 0o644)
    with pytest.raises(NetDirError, match="too open.*chmod 600"):
        net.identity("C1")


def test_an_unreadable_key_file_is_named(net):
    net.key_path("C2").write_text("seed = 'not a seed'\n")
    with pytest.raises(NetDirError, match=r"C2\.key"):
        net.identity("C2")


def test_a_key_that_does_not_match_the_genesis_is_refused(net):
    net.key_path("C1").write_text(net.key_path("C2").read_text().replace('"C2"', '"C1"'))
    with pytest.raises(NetDirError, match="does not match"):
        net.identity("C1")


def test_clients_may_only_read_their_own_quotes_and_only_the_oracle_prices(net):
    conf = auth_conf_text(net.genesis())
    assert conf.count('"otc.quote.C1.>"') == 1
    genesis = net.genesis()

    c1 = permissions(genesis.member("C1"))
    assert c1["subscribe"]["allow"].count("otc.quote.C1.>") == 1
    assert not any(s.startswith("otc.quote.C2") for s in c1["subscribe"]["allow"])
    publishers_of_prices = [
        m.id for m in genesis.members if "otc.px.*" in permissions(m)["publish"]["allow"]
    ]
    assert publishers_of_prices == ["ORACLE"]
    consensus = [
        m.id for m in genesis.members if "otc.ibft.*" in permissions(m)["publish"]["allow"]
    ]
    assert all(genesis.member(i).role in {Role.DEALER, Role.CCP, Role.GUARANTOR} for i in consensus)
    # The regulator reads every B-OTC subject, and of the inboxes only its own.
    assert permissions(genesis.member("REG"))["subscribe"]["allow"] == ["_INBOX_REG.>", "otc.>"]


def test_a_genesis_creation_time_that_is_not_an_iso_timestamp_is_named(net, capsys):
    text = net.genesis_path.read_text()
    created = next(line for line in text.splitlines() if line.startswith("created = "))
    net.genesis_path.write_text(text.replace(created, 'created = "yesterday"'))
    code, _, err = run(capsys, "nats", "--net", str(net.path))
    assert code == 2
    assert "created: not an ISO date and time" in one_line_error(err)
