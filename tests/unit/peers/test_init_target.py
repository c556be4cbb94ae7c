"""``botc init`` on a bad target or with bad sizes: one line, exit 2, and nothing left behind.

A network is created all or nothing: a failure part-way (a full disk, Ctrl-C) leaves neither a
partial network nor a staging directory, and a network replaced with ``--force`` survives
intact unless its successor was written completely.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import peers.genesis
from peers.cli import main
from peers.netdir import (
    MAX_CLIENTS,
    MAX_DEALERS,
    MAX_GUARANTORS,
    NetDir,
    NetDirError,
    create_network,
)
from tests.unit.peers.cli import one_line_error, run


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (directories show up through their files)."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def fail_on_the_fifth_key(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    real = peers.genesis.write_secret
    written: list[Path] = []

    def flaky(path: Path, text: str, *, exclusive: bool = False) -> None:
        if len(written) == 4:
            raise error
        written.append(path)
        real(path, text, exclusive=exclusive)

    monkeypatch.setattr(peers.genesis, "write_secret", flaky)


@pytest.mark.parametrize("target", ["/proc/nope", "/proc/self/nope/net"])
def test_an_unwritable_target_is_one_line_naming_the_path(target, capsys):
    code, out, err = run(capsys, "init", target)
    assert code == 2 and out == ""
    line = one_line_error(err)
    assert target in line and "cannot create" in line


def test_a_target_below_a_regular_file_is_one_line_naming_the_path(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, _, err = run(capsys, "init", str(tmp_path / "file" / "net"))
    assert code == 2
    line = one_line_error(err)
    assert str(tmp_path / "file" / "net") in line and "Not a directory" in line
    assert os.listdir(tmp_path) == ["file"]


def test_a_target_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, _, err = run(capsys, "init", str(tmp_path / "file"))
    assert code == 2 and "is not a directory" in one_line_error(err)


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--dealers", "100000"),
        ("--dealers", str(MAX_DEALERS + 1)),
        ("--dealers", "0"),
        ("--clients", str(MAX_CLIENTS + 1)),
        ("--clients", "-1"),
        ("--guarantors", str(MAX_GUARANTORS + 1)),
        ("--guarantors", "-1"),
    ],
)
def test_sizes_out_of_bounds_are_refused_before_anything_is_written(tmp_path, capsys, flag, value):
    code, _, err = run(capsys, "init", str(tmp_path / "net"), flag, value)
    assert code == 2 and flag in one_line_error(err)
    assert os.listdir(tmp_path) == []


def test_the_largest_network_within_bounds_is_created(tmp_path):
    net = create_network(
        tmp_path / "net", dealers=MAX_DEALERS, clients=MAX_CLIENTS, guarantors=MAX_GUARANTORS
    )
    genesis = net.genesis()
    eligible = len(genesis.authorities.initial) + len(genesis.authorities.candidates)
    assert eligible == MAX_DEALERS + 1 + MAX_GUARANTORS >= 10
    assert len(list((tmp_path / "net" / "keys").iterdir())) == len(genesis.members)


def test_the_bounds_leave_room_for_ten_authorities_from_dealers_and_the_ccp(tmp_path):
    net = create_network(tmp_path / "net", dealers=9, guarantors=0, authorities=10)
    assert len(net.genesis().authorities.initial) == 10


def test_a_failure_part_way_leaves_nothing_behind(tmp_path, monkeypatch):
    fail_on_the_fifth_key(monkeypatch, OSError(28, "No space left on device"))
    with pytest.raises(NetDirError, match=r"net: cannot create the network \(No space left"):
        create_network(tmp_path / "a" / "b" / "net")
    assert os.listdir(tmp_path) == []  # not even the parents it made


def test_ctrl_c_part_way_leaves_nothing_behind(tmp_path, monkeypatch):
    fail_on_the_fifth_key(monkeypatch, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        create_network(tmp_path / "net")
    assert os.listdir(tmp_path) == []


def test_a_failure_part_way_in_an_existing_empty_directory_leaves_it_empty(tmp_path, monkeypatch):
    (tmp_path / "net").mkdir()
    fail_on_the_fifth_key(monkeypatch, OSError(28, "No space left on device"))
    with pytest.raises(NetDirError):
        create_network(tmp_path / "net")
    assert os.listdir(tmp_path / "net") == []


def test_a_failed_force_leaves_the_old_network_as_it_was(tmp_path, monkeypatch, capsys):
    create_network(tmp_path / "net")
    (tmp_path / "net" / "data" / "D1").mkdir(parents=True)
    (tmp_path / "net" / "data" / "D1" / "chain.db").write_text("blocks")
    before = snapshot(tmp_path / "net")
    fail_on_the_fifth_key(monkeypatch, OSError(28, "No space left on device"))
    code, _, err = run(capsys, "init", str(tmp_path / "net"), "--force")
    assert code == 2 and "No space left on device" in one_line_error(err)
    assert snapshot(tmp_path / "net") == before
    assert sorted(os.listdir(tmp_path / "net")) == ["data", "genesis.toml", "keys", "nats"]
    NetDir(tmp_path / "net").identity("D1")  # still a working network


def test_a_force_with_bad_sizes_leaves_the_old_network_as_it_was(tmp_path, capsys):
    create_network(tmp_path / "net")
    before = snapshot(tmp_path / "net")
    code, _, _ = run(capsys, "init", str(tmp_path / "net"), "--force", "--dealers", "65")
    assert code == 2
    assert snapshot(tmp_path / "net") == before


def test_a_successful_force_replaces_every_key_and_keeps_no_staging_directory(tmp_path):
    old_chain = create_network(tmp_path / "net", dealers=5, clients=3).genesis().chain_id
    old_keys = set(os.listdir(tmp_path / "net" / "keys"))
    new = create_network(tmp_path / "net", dealers=3, clients=2, force=True)
    assert new.genesis().chain_id != old_chain
    assert set(os.listdir(tmp_path / "net" / "keys")) < old_keys  # D4, D5, C3 are gone
    assert sorted(os.listdir(tmp_path / "net")) == ["genesis.toml", "keys", "nats"]
    for member in new.genesis().members:
        NetDir(tmp_path / "net").identity(member.id)


def test_a_half_written_directory_is_not_silently_mixed_into(tmp_path, capsys):
    (tmp_path / "net" / "keys").mkdir(parents=True)
    (tmp_path / "net" / "keys" / "D1.key").write_text("old")
    code, _, err = run(capsys, "init", str(tmp_path / "net"))
    assert code == 2 and "--force" in one_line_error(err)
    assert (tmp_path / "net" / "keys" / "D1.key").read_text() == "old"
    assert run(capsys, "init", str(tmp_path / "net"), "--force")[0] == 0
    NetDir(tmp_path / "net").identity("D1")


def test_init_into_a_directory_with_other_files_keeps_them(tmp_path, capsys):
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "notes.txt").write_text("mine")
    assert run(capsys, "init", str(tmp_path / "net"))[0] == 0
    assert (tmp_path / "net" / "notes.txt").read_text() == "mine"
    assert sorted(os.listdir(tmp_path / "net")) == ["genesis.toml", "keys", "nats", "notes.txt"]


def test_init_help_states_the_bounds_it_enforces(capsys):
    from peers.netdir import MIN_CLIENTS, MIN_DEALERS, MIN_GUARANTORS

    with pytest.raises(SystemExit):
        main(["init", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"dealers, {MIN_DEALERS} to {MAX_DEALERS}" in text
    assert f"clients, {MIN_CLIENTS} to {MAX_CLIENTS}" in text
    assert f"guarantors, {MIN_GUARANTORS} to {MAX_GUARANTORS}" in text


def test_init_with_seven_authorities_makes_six_dealers_and_the_ccp_the_initial_set(
    tmp_path, capsys
):
    code, out, _ = run(capsys, "init", str(tmp_path / "net"), "--authorities", "7")
    assert code == 0
    genesis = NetDir(tmp_path / "net").genesis()
    assert genesis.authorities.initial == ("D1", "D2", "D3", "D4", "D5", "D6", "CCP")
    assert "authorities: D1, D2, D3, D4, D5, D6, CCP" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--authorities", "11"), "--authorities must be 4 to 10, not 11"),
        (("--authorities", "3"), "--authorities must be 4 to 10, not 3"),
        (("--authorities", "7", "--dealers", "4"), "--dealers must be at least 6"),
    ],
)
def test_an_authority_set_outside_4_to_10_or_without_enough_dealers_is_refused(
    tmp_path, capsys, argv, message
):
    code, _, err = run(capsys, "init", str(tmp_path / "net"), *argv)
    assert code == 2
    assert message in one_line_error(err)
    assert not (tmp_path / "net").exists()
