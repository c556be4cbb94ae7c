"""``botc up --net DIR`` creates the network the README promises when DIR is new or empty,
and refuses (one line, exit 2) a directory with other things in it."""

from __future__ import annotations

import os

import pytest

from peers.cli import main
from peers.marketplace import default_netdir, ensure_network
from peers.netdir import NetDirError, create_network


def test_a_directory_that_does_not_exist_gets_a_network(tmp_path):
    net, created = ensure_network(tmp_path / "new")
    assert created and net.genesis().authorities.initial == ("D1", "D2", "D3", "CCP")


def test_an_empty_directory_gets_a_network(tmp_path):
    (tmp_path / "empty").mkdir()
    net, created = ensure_network(tmp_path / "empty")
    assert created and net.genesis_path == tmp_path / "empty" / "genesis.toml"
    assert net.genesis_path.is_file()


def test_an_existing_network_is_used_as_it_is(tmp_path):
    chain_id = create_network(tmp_path / "net").genesis().chain_id
    net, created = ensure_network(tmp_path / "net")
    assert not created and net.genesis().chain_id == chain_id


def test_a_directory_with_other_files_is_refused_and_left_alone(tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("mine")
    with pytest.raises(NetDirError, match="not a B-OTC network"):
        ensure_network(tmp_path / "stuff")
    assert os.listdir(tmp_path / "stuff") == ["notes.txt"]


def test_the_default_network_lives_in_the_users_data_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    assert default_netdir() == tmp_path / "share" / "botc" / "network"
    net, created = ensure_network(None)
    assert created and net.path == tmp_path / "share" / "botc" / "network"


def test_botc_up_on_a_new_directory_says_it_created_the_network(tmp_path, capsys):
    # An unknown --as stops botc up right after the network exists, before any process starts.
    code = main(["up", "--net", str(tmp_path / "new"), "--as", "NOBODY"])
    out, err = capsys.readouterr()
    assert code == 2
    assert f"created a network in {tmp_path / 'new'}" in out
    assert "--as NOBODY: no such member" in err
    assert (tmp_path / "new" / "genesis.toml").is_file()


def test_botc_up_on_a_directory_that_is_not_a_network_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("mine")
    code = main(["up", "--net", str(tmp_path / "stuff")])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "not a B-OTC network" in lines[0]
    assert os.listdir(tmp_path / "stuff") == ["notes.txt"]
