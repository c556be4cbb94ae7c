"""A network directory (NETDIR): what ``botc init`` writes and every peer reads.

```
NETDIR/genesis.toml         members, authority set, rating weights, parameters, the regulator's
                            seal (public; botc genesis seal or botc init)
NETDIR/keys/<ID>.key        a member's secret key file, mode 0600 (botc keygen writes one on each
                            member's machine; botc init writes every member's on one machine)
NETDIR/nats/auth.conf       nats-server authorization: the auth callout (peers.callout) for members,
                            a few static nkey users (the callout's, initial authorities, regulator)
NETDIR/nats/callout.secret  the callout's issuer account and service users' seeds, mode 0600
NETDIR/nats/server.conf     a standalone single-node config (port 4222) including auth.conf
NETDIR/nats/route.secret    the cluster route password, mode 0600 (a server without it
                            cannot join the cluster)
NETDIR/nats/cluster.conf    a docker-compose cluster node (holds the route password, 0600;
                            NETDIR/nats is its /etc/nats)
NETDIR/nats/tls/tls.toml    present: every NATS connection is TLS; names the CA, this machine's
                            server certificate and key, optional client certificate (botc init
                            writes a CA and certificates here unless --no-tls; botc tls use)
NETDIR/nats/tls/ca.key      a one-machine network's CA key, 0600 (in a consortium it stays with
                            the CA's operator: only ca.pem travels); every key here is 0600
NETDIR/run/nats.json        where the running server(s) listen (written by botc nats / up)
NETDIR/data/<ID>/           each peer's own state (SQLite)
NETDIR/logs/                botc up's logs: one per service, up.log, tui-<ID>.log (the terminal)
```
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from bus import subjects
from bus.server import ROUTE_USER, new_route_password
from bus.tls import SETTINGS as TLS_SETTINGS
from bus.tls import TlsError, TlsSettings, read_settings, write_local
from peers.errors import PeerError
from peers.genesis import (
    KEY_SUFFIX,
    CeremonyError,
    genesis_text,
    identity_file,
    key_file,
    new_chain_id,
    now_created,
    read_genesis,
    read_identity,
    read_key_file,
    write_atomic,
    write_new_key,
    write_secret,
)
from rfq.errors import ValidationError
from rfq.genesis import add_identity, new_draft, seal_draft, set_authorities
from rfq.identity import (
    AUTHORITY_ELIGIBLE,
    Genesis,
    Identity,
    Member,
    NetworkParams,
    Role,
)
from rfq.policy import POLICY, Grant, Reach, Scope, Topic, policy

GENESIS = "genesis.toml"
DEFAULT_URL = "nats://127.0.0.1:4222"
CLIENT_RATINGS = ("A", "BBB", "BB", "AA", "B")


class NetDirError(PeerError):
    """A NETDIR that is missing, not a network, or holds a bad file; one line, exit 2."""


class NetDir:
    """Read access to a network directory, with clear errors naming the file at fault."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._genesis: Genesis | None = None

    @property
    def genesis_path(self) -> Path:
        return self.path / GENESIS

    def key_path(self, member_id: str) -> Path:
        return self.path / "keys" / f"{member_id}.key"

    def data_dir(self, member_id: str) -> Path:
        path = self.path / "data" / member_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def follower_store(self, member_id: str, role: str) -> Path:
        """Where a chain follower run as ``member_id`` for ``role`` (``regulator``,
        ``callout``) keeps the blocks it followed and its snapshots (``ChainFollower``)."""
        return self.data_dir(member_id) / f"{role}-follower.db"

    @property
    def log_dir(self) -> Path:
        """Where ``botc up`` and the terminal write their logs."""
        return self.path / "logs"

    def terminal_log(self, member_id: str) -> Path:
        """The trading terminal's log, for ``botc up`` and ``botc tui`` alike."""
        return self.log_dir / f"tui-{member_id}.log"

    @property
    def auth_conf_path(self) -> Path:
        return self.path / "nats" / "auth.conf"

    @property
    def route_secret_path(self) -> Path:
        return self.path / "nats" / "route.secret"

    def route_password(self) -> str | None:
        """The cluster route password ``botc init`` made (None for a network made before
        routes had one: ``NatsCluster`` then makes its own for the run)."""
        try:
            mode = stat.S_IMODE(self.route_secret_path.stat().st_mode)
            text = self.route_secret_path.read_text().strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise NetDirError(f"{self.route_secret_path}: cannot read ({exc.strerror})") from None
        if mode & 0o077:
            raise NetDirError(
                f"{self.route_secret_path}: permissions {mode:04o} are too open "
                f"(run: chmod 600 {self.route_secret_path})"
            )
        if not text.isalnum():
            raise NetDirError(f"{self.route_secret_path}: not a route password")
        return text

    @property
    def run_file(self) -> Path:
        return self.path / "run" / "nats.json"

    @property
    def tls_settings_path(self) -> Path:
        return self.path / "nats" / "tls" / TLS_SETTINGS

    def tls(self) -> TlsSettings | None:
        """The network's TLS settings, or None when NETDIR/nats/tls/tls.toml is absent (plaintext).
        Every server this network starts and every client it opens follows them."""
        if not self.tls_settings_path.exists():
            return None
        try:
            return read_settings(self.tls_settings_path)
        except TlsError as exc:
            raise NetDirError(str(exc)) from None

    def check(self) -> None:
        if not self.path.is_dir():
            raise NetDirError(f"{self.path}: no such directory (create a network with botc init)")
        if not self.genesis_path.is_file():
            raise NetDirError(
                f"{self.path}: not a B-OTC network (no {GENESIS}; create one with botc init)"
            )

    def genesis(self) -> Genesis:
        """The network's genesis, well formed and sealed by its regulator."""
        if self._genesis is None:
            self.check()
            try:
                self._genesis = read_genesis(self.genesis_path)
            except CeremonyError as exc:
                raise NetDirError(str(exc)) from None
        return self._genesis

    def identity(self, member_id: str) -> Identity:
        """Load a member's key, refusing loose permissions and mismatches with the genesis:
        a peer starts only as a member the sealed genesis names, with that member's key."""
        genesis = self.genesis()
        path = self.key_path(member_id)
        try:
            member = genesis.member(member_id)
        except ValidationError:
            if not path.is_file():
                raise NetDirError(f"{self.genesis_path}: no member {member_id!r}") from None
            member = None  # admitted after the genesis: the chain's registry decides its access
        try:
            identity = read_key_file(path)
        except CeremonyError as exc:
            raise NetDirError(str(exc)) from None
        if identity.member_id != member_id:
            raise NetDirError(f"{path}: id is {identity.member_id!r}, expected {member_id!r}")
        if member is None:
            return identity
        if identity.public_nkey != member.sign_key:
            raise NetDirError(f"{path}: key does not match {member_id}'s sign_key in the genesis")
        if identity.role != member.role:
            raise NetDirError(
                f"{path}: role {identity.role} differs from the genesis ({member.role})"
            )
        return identity

    def server_urls(self) -> list[str]:
        """Where the network's NATS listens: the run file if a server is up, else the default."""
        try:
            data = json.loads(self.run_file.read_text())
            urls = [str(u) for u in data["urls"]]
            if urls:
                return urls
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return [DEFAULT_URL]

    def write_run_file(self, urls: Sequence[str]) -> None:
        self.run_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.run_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"urls": list(urls), "pid": os.getpid()}))
        tmp.replace(self.run_file)

    def auth_conf(self) -> str:
        try:
            return self.auth_conf_path.read_text()
        except OSError as exc:
            raise NetDirError(f"{self.auth_conf_path}: cannot read ({exc.strerror})") from None


# --------------------------------------------------------------------------------------------
# Permissions


def permissions(member: Member) -> dict[str, Any]:
    """nats-server subject permissions for one member, from its role's policy (``rfq.policy``).

    Only allow lists: whatever the policy does not grant is refused by the server. JetStream
    calls are granted one by one on the ``CHAIN`` stream (no ``$JS.API.>``): nobody may purge,
    delete or update a stream, nor create one but CHAIN."""
    entry = policy(member.role)
    pub = _subjects(entry.publish, member.id)
    pub += [subjects.js_api(call) for call in sorted(entry.jetstream)]
    perms: dict[str, Any] = {
        "publish": {"allow": pub},
        "subscribe": {"allow": _subjects(entry.subscribe, member.id)},
    }
    if entry.serves_requests:
        perms["allow_responses"] = True
    return perms


def _subjects(grants: Sequence[Grant], member_id: str) -> list[str]:
    out: list[str] = []
    for topic, reach in grants:
        for subject in subjects.patterns(topic, reach, member_id):
            if subject not in out:
                out.append(subject)
    return out


_PLACEHOLDER = "ID"


def permission_table() -> str:
    """The README's permission table, generated from the role-policy table (a unit test
    keeps the README's copy equal to it). ``<id>`` stands for the member's own id."""

    def named(subject_list: Sequence[str]) -> str:
        shown = []
        for subject in subject_list:
            tokens = subject.split(".")
            tokens = ["<id>" if t == _PLACEHOLDER else t for t in tokens]
            text = ".".join(tokens).replace(f"_INBOX_{_PLACEHOLDER}", "_INBOX_<id>")
            shown.append(f"`{text}`")
        return ", ".join(shown) or "none"

    rows = [
        "| role | publishes | subscribes | JetStream API | transactions | queries answered "
        "(own / named / all) |",
        "|---|---|---|---|---|---|",
    ]
    for role, entry in POLICY.items():
        pub = [s for g in entry.publish for s in _shown(g)]
        sub = [s for g in entry.subscribe for s in _shown(g)]
        calls = [subjects.js_api(c) for c in sorted(entry.jetstream)]
        by_scope = {
            scope: [q for q, sc in sorted(entry.queries.items()) if sc == scope]
            for scope in (Scope.OWN, Scope.NAMED, Scope.ALL)
        }
        queries = " / ".join(", ".join(qs) or "-" for qs in by_scope.values())
        replies = " (answers requests)" if entry.serves_requests else ""
        rows.append(
            f"| {role} | {named(pub)}{replies} | {named(sub)} | {named(calls)} | "
            f"{', '.join(sorted(entry.transactions))} | {queries} |"
        )
    return "\n".join(rows) + "\n"


def _shown(grant: Grant) -> list[str]:
    """A grant's subjects for the table (the per-asset-class RFQ subjects as one)."""
    if grant == (Topic.RFQ_PUBLIC, Reach.ANY):
        return [f"{subjects.PREFIX}.rfq.<asset class>.*"]
    return subjects.patterns(*grant, _PLACEHOLDER)


def auth_conf_text(genesis: Genesis) -> str:
    """The ``authorization`` block: one nkey user per member with its role's permissions."""
    users = [{"nkey": m.sign_key, "permissions": permissions(m)} for m in genesis.members]
    body = json.dumps({"users": users}, indent=2)
    return (
        f"# B-OTC network {genesis.name} ({genesis.chain_id}): generated by botc init.\n"
        f"authorization {body}\n"
    )


def cluster_conf_text(route_password: str) -> str:
    """A JetStream cluster node for docker-compose: ``NODE`` names it, the routes name the
    three services ``nats1``..``nats3`` (nats-server expands ``$NODE`` from the environment).
    Routes authenticate with the network's route password, so the file is private (0600)."""
    login = f"{ROUTE_USER}:{route_password}@"
    routes = ", ".join(f"nats-route://{login}nats{i}:6222" for i in (1, 2, 3))
    return (
        "# One node of a three-node JetStream cluster (docker-compose.yml): NODE=n1|n2|n3\n"
        "server_name: $NODE\n"
        "port: 4222\n"
        "max_payload: 8MB\n"
        'jetstream { store_dir: "/data" }\n'
        "cluster {\n"
        "  name: botc\n"
        "  port: 6222\n"
        f'  authorization {{ user: {ROUTE_USER}, password: "{route_password}" }}\n'
        f"  routes: [{routes}]\n"
        "}\n"
        'include "auth.conf"\n'
    )


def server_conf_text(port: int = 4222) -> str:
    return (
        "# A single-node server for this network: nats-server -c server.conf\n"
        "server_name: botc\n"
        "host: 127.0.0.1\n"
        f"port: {port}\n"
        "max_payload: 8MB\n"
        'jetstream { store_dir: "data" }\n'
        'include "auth.conf"\n'
    )


# --------------------------------------------------------------------------------------------
# botc init


def member_ids(dealers: int, clients: int, guarantors: int) -> list[tuple[str, Role]]:
    ids: list[tuple[str, Role]] = [(f"D{i}", Role.DEALER) for i in range(1, dealers + 1)]
    ids.append(("CCP", Role.CCP))
    ids += [(f"G{i}", Role.GUARANTOR) for i in range(1, guarantors + 1)]
    ids += [("REG", Role.REGULATOR), ("ORACLE", Role.ORACLE), ("BANK", Role.BANK)]
    ids += [(f"C{i}", Role.CLIENT) for i in range(1, clients + 1)]
    return ids


_DISPLAY = {
    Role.DEALER: "Dealer",
    Role.CCP: "Central counterparty",
    Role.GUARANTOR: "Guarantor",
    Role.REGULATOR: "Regulator",
    Role.ORACLE: "Price oracle",
    Role.BANK: "Settlement bank",
    Role.CLIENT: "Client",
}


def display_name(role: Role, member_id: str) -> str:
    """A member's default name: ``Dealer D1``, ``Regulator REG``."""
    return f"{_DISPLAY[role]} {member_id}"


_CAPITAL = {
    Role.DEALER: 2.0e8,
    Role.CCP: 1.0e9,
    Role.GUARANTOR: 3.0e8,
    Role.CLIENT: 2.0e7,
}


MIN_DEALERS, MAX_DEALERS = 3, 64
MIN_AUTHORITIES, MAX_AUTHORITIES = 4, 10
"""Every authority checks every other's messages: consensus cost per node grows with the set."""
"""Three dealers and the CCP are the four initial authorities; 64 dealers, the CCP and 16
guarantors leave room for any authority set a network may elect."""
MIN_CLIENTS, MAX_CLIENTS = 1, 1000
MIN_GUARANTORS, MAX_GUARANTORS = 0, 16

_NETWORK_ENTRIES = ("keys", "nats", GENESIS)
"""What ``botc init`` installs into NETDIR, in this order: the genesis last, so a directory is a
network only once everything else is in place."""


def check_sizes(dealers: int, clients: int, guarantors: int, authorities: int = 4) -> None:
    """Refuse member counts outside the documented bounds (before anything is written)."""
    if not MIN_AUTHORITIES <= authorities <= MAX_AUTHORITIES:
        raise NetDirError(
            f"--authorities must be {MIN_AUTHORITIES} to {MAX_AUTHORITIES}, not {authorities} "
            "(a BFT network needs at least 4)"
        )
    least = max(MIN_DEALERS, authorities - 1)
    if dealers < least:
        raise NetDirError(
            f"--dealers must be at least {least} "
            f"({authorities - 1} dealers and a CCP make {authorities} authorities)"
        )
    if dealers > MAX_DEALERS:
        raise NetDirError(f"--dealers must be at most {MAX_DEALERS}, not {dealers}")
    if not MIN_CLIENTS <= clients <= MAX_CLIENTS:
        raise NetDirError(
            f"--clients must be between {MIN_CLIENTS} and {MAX_CLIENTS}, not {clients}"
        )
    if not MIN_GUARANTORS <= guarantors <= MAX_GUARANTORS:
        raise NetDirError(
            f"--guarantors must be between {MIN_GUARANTORS} and {MAX_GUARANTORS}, not {guarantors}"
        )


def create_network(
    path: str | Path,
    *,
    dealers: int = 3,
    clients: int = 5,
    guarantors: int = 1,
    name: str = "botc-local",
    force: bool = False,
    params: NetworkParams | None = None,
    authorities: int = 4,
    tls: bool = False,
) -> NetDir:
    """Write a fresh network; refuse to overwrite one unless ``force``.

    With ``tls`` (``botc init``'s default) NETDIR/nats/tls holds a CA, a server certificate for
    loopback and the docker-compose nodes, and the tls.toml that turns TLS on.

    The initial authorities are the first ``authorities - 1`` dealers and the CCP. Creation is
    all or nothing: the files are written to a staging directory and moved into place, so a
    failure (a full disk, a read-only target, Ctrl-C) leaves no partial network behind, and an
    existing network is replaced only once its successor is complete.
    """
    root = Path(path)
    check_sizes(dealers, clients, guarantors, authorities)
    try:
        _check_target(root, force)
    except OSError as exc:
        raise NetDirError(f"{root}: {_reason(exc)}") from None
    except ValueError as exc:  # e.g. a NUL byte in the path
        raise NetDirError(f"{root!s:.200}: not a usable path ({exc})") from None
    chosen = params or NetworkParams()

    def write(stage: Path) -> None:
        genesis = _local_ceremony(
            stage / "keys", name, dealers, clients, guarantors, authorities, chosen
        )
        settings = None
        if tls:
            settings = write_local(stage / "nats" / "tls", name)
        write_nats_confs(
            stage / "nats", genesis, tls=settings, tls_home=root.resolve() / "nats" / "tls"
        )
        write_atomic(stage / GENESIS, genesis_text(genesis))

    try:
        if root.is_dir():
            _install_into(root, write)
        else:
            _install_new(root, write)
        (root / "run" / "nats.json").unlink(missing_ok=True)
    except OSError as exc:
        raise NetDirError(f"{root}: cannot create the network ({_reason(exc)})") from None
    return NetDir(root)


def member_extras(role: Role, client_no: int = 0) -> dict[str, Any]:
    """What ``botc init`` records beside each member's identity: capital, rating, threshold."""
    extra: dict[str, Any] = {"capital": _CAPITAL.get(role, 0.0)}
    if role == Role.CLIENT:
        extra["external_rating"] = CLIENT_RATINGS[client_no % len(CLIENT_RATINGS)]
        extra["ccr_threshold"] = 5.0e6
    elif role in AUTHORITY_ELIGIBLE:
        extra["external_rating"] = "AA" if role == Role.CCP else "A"
        extra["ccr_threshold"] = 5.0e7
    return extra


def _local_ceremony(
    keys: Path,
    name: str,
    dealers: int,
    clients: int,
    guarantors: int,
    authorities: int,
    params: NetworkParams,
) -> Genesis:
    """The genesis ceremony on one machine, step for step what the institutions run apart:
    a key per member, a draft, each identity added (its proof checked), the authorities,
    the regulator's seal. The initial authorities are the first ``authorities - 1`` dealers
    and the CCP; the other dealers and the guarantors are candidates."""
    ids = member_ids(dealers, clients, guarantors)
    draft = new_draft(name, new_chain_id(), now_created())
    draft = msgspec.structs.replace(draft, params=params)
    client_no = 0
    for member_id, role in ids:
        _, public = write_new_key(keys, member_id, role, display_name(role, member_id))
        extra = member_extras(role, client_no)
        client_no += role == Role.CLIENT
        draft = add_identity(draft, read_identity(public), source=str(public), **extra)
    dealer_ids = [mid for mid, role in ids if role == Role.DEALER]
    initial = (*dealer_ids[: authorities - 1], "CCP")
    candidates = (
        *dealer_ids[authorities - 1 :],
        *(mid for mid, role in ids if role == Role.GUARANTOR),
    )
    draft = set_authorities(draft, initial, candidates)
    regulator = next(mid for mid, role in ids if role == Role.REGULATOR)
    genesis = seal_draft(draft, read_key_file(key_file(keys, regulator)), source="botc init")
    for member_id, _ in ids:  # published in the genesis now: NETDIR/keys holds keys only
        identity_file(keys, member_id).unlink()
    return genesis


def write_nats_confs(
    nats_dir: Path,
    genesis: Genesis,
    *,
    tls: TlsSettings | None = None,
    tls_home: Path | None = None,
) -> None:
    """NETDIR/nats: the auth callout and the static nkey users with their permissions (the
    callout's keys made on first use), a single node, a cluster node; with ``tls``, both
    configs serve TLS (``tls_home``: where the TLS files will finally be).

    The route password is kept if ``nats_dir`` has one (servers of one cluster on several
    machines share it: copy ``route.secret`` and ``cluster.conf`` to each), else made; so are
    the callout's keys (``callout.secret``)."""
    from peers.callout import callout_auth_text, load_or_create_keys

    nats_dir.mkdir(exist_ok=True)
    keys = load_or_create_keys(nats_dir)
    text = (
        f"# B-OTC network {genesis.name} ({genesis.chain_id}): generated by botc init.\n"
        "# Members connect through the auth callout (botc up and botc nats run it).\n"
        + callout_auth_text(genesis, keys, permissions)
    )
    write_atomic(nats_dir / "auth.conf", text)
    secret = nats_dir / "route.secret"
    try:
        route_password = secret.read_text().strip()
    except FileNotFoundError:
        route_password = ""
    if not route_password.isalnum():
        route_password = new_route_password()
        write_secret(secret, route_password + "\n")
    server, cluster = server_conf_text(), cluster_conf_text(route_password)
    if tls is not None:
        server = with_tls(server, moved_tls(tls, tls_home), routes=False)
        cluster = with_tls(cluster, moved_tls(tls, DOCKER_TLS_DIR), routes=True)
    write_atomic(nats_dir / "server.conf", server)
    write_secret(nats_dir / "cluster.conf", cluster)


DOCKER_TLS_DIR = Path("/etc/nats/tls")
"""Where NETDIR/nats/tls is in the docker-compose nats containers (NETDIR/nats is /etc/nats)."""


def moved_tls(tls: TlsSettings, home: Path | None) -> TlsSettings:
    """The settings with each file that lives beside tls.toml found under ``home`` instead
    (the configs name them where the server will read them)."""
    if home is None or tls.source is None:
        return tls
    here = tls.source.parent

    def move(path: Path | None) -> Path | None:
        if path is None or path.parent != here:
            return path
        return home / path.name

    ca = move(tls.ca_file)
    assert ca is not None
    return dataclasses.replace(
        tls, ca_file=ca, cert_file=move(tls.cert_file), key_file=move(tls.key_file)
    )


def with_tls(conf: str, tls: TlsSettings, *, routes: bool) -> str:
    """A server config with TLS for clients and, with ``routes``, mutual TLS for the cluster's
    routes (a ``tls { }`` opening the ``cluster { }`` block, so other cluster settings stay)."""
    if routes:
        conf = conf.replace("cluster {\n", f"cluster {{\n  {tls.route_block()}\n", 1)
    return conf + tls.server_block() + "\n"


def install_genesis(source: Path, root: Path) -> tuple[NetDir, list[str]]:
    """A member's machine takes the regulator's sealed genesis into NETDIR: the seal checked,
    every key already in NETDIR/keys a member's own (returned, by id), a different genesis
    never replaced; then NETDIR/genesis.toml (the file as sent) and NETDIR/nats are written."""
    genesis = read_genesis(source)
    text = source.read_text(encoding="utf-8")
    installed = root / GENESIS
    if installed.exists():
        try:
            same = read_genesis(installed).hash() == genesis.hash()
        except CeremonyError:
            same = False
        if not same:
            raise NetDirError(f"{installed}: a different genesis is installed here")
    mine: list[str] = []
    for path in sorted((root / "keys").glob(f"*{KEY_SUFFIX}")):
        identity = read_key_file(path)
        try:
            member = genesis.member(identity.member_id)
        except ValidationError:
            raise NetDirError(f"{path}: {identity.member_id} is not a member of {source}") from None
        if member.sign_key != identity.public_nkey or member.role != identity.role:
            raise NetDirError(
                f"{path}: key does not match {identity.member_id}'s entry in {source}"
            )
        mine.append(identity.member_id)
    try:
        root.mkdir(parents=True, exist_ok=True)
        tls = NetDir(root).tls()  # a machine that turned TLS on (botc tls use) keeps it
        write_nats_confs(
            root / "nats",
            genesis,
            tls=tls if tls and tls.cert_file else None,
            tls_home=root.resolve() / "nats" / "tls",
        )
        write_atomic(installed, text)
    except OSError as exc:
        raise NetDirError(f"{root}: cannot install the genesis ({_reason(exc)})") from None
    return NetDir(root), mine


def _check_target(root: Path, force: bool) -> None:
    if root.exists() and not root.is_dir():
        raise NetDirError(f"{root}: exists and is not a directory")
    if (root / GENESIS).exists():
        if not force:
            raise NetDirError(f"{root}: a network already exists here (use --force to replace it)")
        return
    if not force:
        for entry in _NETWORK_ENTRIES:
            if (root / entry).exists() or (root / entry).is_symlink():
                raise NetDirError(
                    f"{root / entry}: already exists but {root} is not a network "
                    "(use --force to replace it)"
                )


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _install_new(root: Path, write: Callable[[Path], None]) -> None:
    """Build beside ``root`` and rename the finished directory into place."""
    made = _make_parents(root.parent)
    try:
        stage = root.parent / f".{root.name}.botc-init-{os.urandom(4).hex()}"
        stage.mkdir()
        try:
            write(stage)
            os.rename(stage, root)
        except BaseException:
            _remove(stage)
            raise
    except BaseException:
        for directory in reversed(made):
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise


def _install_into(root: Path, write: Callable[[Path], None]) -> None:
    """Build inside ``root`` (an existing directory), then move each entry into place; the
    entries it replaces are kept aside until every new one is in, and put back on failure."""
    tag = os.urandom(4).hex()
    stage = root / f".botc-init-{tag}"
    aside = root / f".botc-replaced-{tag}"
    moved_aside: list[str] = []
    installed: list[str] = []
    stage.mkdir()
    try:
        write(stage)
        aside.mkdir()
        for entry in _NETWORK_ENTRIES:
            if (root / entry).exists() or (root / entry).is_symlink():
                os.rename(root / entry, aside / entry)
                moved_aside.append(entry)
            os.rename(stage / entry, root / entry)
            installed.append(entry)
    except BaseException:
        for entry in reversed(installed):
            _remove(root / entry)
        for entry in reversed(moved_aside):
            with contextlib.suppress(OSError):
                os.rename(aside / entry, root / entry)
        _remove(stage)
        _remove(aside)
        raise
    _remove(stage)
    _remove(aside)


def _make_parents(directory: Path) -> list[Path]:
    """Create ``directory`` and its missing ancestors; returns those created, outermost first."""
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        if directory.parent == directory:
            break
        directory = directory.parent
    made: list[Path] = []
    try:
        for each in reversed(missing):
            each.mkdir()
            made.append(each)
    except BaseException:
        for each in reversed(made):
            with contextlib.suppress(OSError):
                each.rmdir()
        raise
    return made


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()
