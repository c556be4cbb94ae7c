"""The genesis ceremony, machine by machine (each machine a directory), for the tests that
build a network the way institutions do: ``tests/e2e/test_ceremony.py`` (one process) and
``tests/multihost`` (a network namespace per institution)."""

from __future__ import annotations

import shutil
from pathlib import Path

from peers.cli import main
from peers.netdir import NetDir, member_extras, member_ids
from rfq.identity import NetworkParams, Role

MEMBERS = member_ids(dealers=3, clients=2, guarantors=1)
INITIAL_AUTHORITIES = ("D1", "D2", "D3", "CCP")


def botc(*argv: str | Path) -> None:
    code = main([str(a) for a in argv])
    assert code == 0, f"botc {' '.join(map(str, argv))} exited {code}"


class Institutions(NetDir):
    """The regulator's NETDIR, as the test's marketplace sees the network: the nats-server's
    auth and run file live there, while each member keeps its data in its own directory."""

    def __init__(self, root: Path) -> None:
        super().__init__(root / "REG")
        self.root = root

    def home(self, member_id: str) -> NetDir:
        return NetDir(self.root / member_id)

    def data_dir(self, member_id: str) -> Path:
        return self.home(member_id).data_dir(member_id)


def ceremony(root: Path, params: NetworkParams) -> Institutions:
    """The README's steps, machine by machine (each machine a directory under ``root``)."""
    for member_id, role in MEMBERS:  # on each institution's machine
        botc("keygen", "--id", member_id, "--role", role, root / member_id / "keys")
    reg = root / "REG"
    inbox = reg / "inbox"  # what the institutions send the regulator: public files only
    inbox.mkdir()
    for member_id, _ in MEMBERS:
        name = f"{member_id}.identity.json"
        shutil.copy(root / member_id / "keys" / name, inbox / name)
    draft = reg / "draft.json"
    botc("genesis", "draft", "--regulator", inbox / "REG.identity.json", "--name", "t", draft)
    clients = 0
    for member_id, role in MEMBERS:
        if role == Role.REGULATOR:
            continue
        extra = member_extras(role, clients)
        clients += role == Role.CLIENT
        options = ["--capital", extra["capital"], "--ccr-threshold", extra.get("ccr_threshold", 0)]
        if "external_rating" in extra:
            options += ["--rating", extra["external_rating"]]
        botc("genesis", "add", draft, inbox / f"{member_id}.identity.json", *options)
    botc(
        "genesis", "authorities", draft,
        "--initial", ",".join(INITIAL_AUTHORITIES), "--candidates", "G1",
    )  # fmt: skip
    chosen = ["block_time_ms", "idle_block_ms", "round_timeout_ms"]
    chosen += [  # and any other parameter the test sets
        name
        for name in params.__struct_fields__
        if name not in chosen and getattr(params, name) != getattr(NetworkParams(), name)
    ]
    settings = [f"--set={name}={getattr(params, name)}" for name in chosen]
    botc("genesis", "params", draft, *settings)
    sealed = reg / "genesis.sealed.toml"
    botc("genesis", "seal", draft, "--key", reg / "keys" / "REG.key", sealed)
    for member_id, _ in MEMBERS:  # each machine checks the sha256 and installs the genesis
        botc("genesis", "show", sealed)
        botc("genesis", "install", sealed, root / member_id)
    return Institutions(root)


def foreign_secrets(network: Institutions) -> list[str]:
    """Every place a member's directory holds a key file that is not its own, or another
    member's secret seed (empty: each directory holds its own secret only)."""
    seeds = {mid: network.home(mid).identity(mid).nkey_seed for mid, _ in MEMBERS}
    found = []
    for member_id, _ in MEMBERS:
        home = network.root / member_id
        keys = sorted(p.name for p in (home / "keys").rglob("*.key"))
        if keys != [f"{member_id}.key"]:
            found.append(f"{home}/keys holds {keys}")
        text = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
        for other, seed in seeds.items():
            if (seed.encode() in text) != (other == member_id):
                found.append(
                    f"{home}: {other}'s seed is {'' if other != member_id else 'not '}here"
                )
    return found
