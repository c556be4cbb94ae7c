"""Bus access from the chain's member registry: the nats-server auth callout service.

Every NATS server of a network runs with ``auth_callout`` (``callout_auth_text``): a
connection is handed to this service unless its user is one of the few static ones, and the
service answers from the member registry as its own ``ChainFollower`` verified it from the
final blocks (no single authority is asked): a member the chain knows, not suspended or
offboarded, connects with its role's permissions (``peers.netdir.permissions``); an unknown
key, a signature over the server's nonce that does not verify, or a barred member is refused.
So a member the regulator admits connects within a block of its admission, and no server is
restarted or reconfigured for it.

A member suspended or offboarded while connected is disconnected by the server's own kick
API: at the block that bars it, the service asks every server for the member's connections
(``$SYS.REQ.SERVER.PING.CONNZ`` filtered by user) and kicks each
(``$SYS.REQ.SERVER.<id>.KICK``), as a user of the system account; its reconnection comes back
here and is refused.

Who runs it: whoever operates a NATS server runs one callout beside it (``botc up`` runs one
per server it starts), following the chain as a member with a chain view (the regulator in
``botc up``). The static users, which never depend on the callout, are the callout's own two
service users, the genesis's initial authorities and the regulator: consensus and the final
blocks the callout learns the registry from must flow while no callout is up (a server
restarted before its callout would otherwise wait for ever). Their access is the genesis's:
the chain governs authorities by eviction, and a static user cannot be refused later.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import msgspec
import nkeys
import structlog
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from bus.callout import AUTH_SUBJECT, AuthRequest, CalloutError, allow, deny, parse_request
from bus.tls import TlsSettings, connect_options
from peers.errors import PeerError
from peers.observer import ChainFollower
from peers.service import Service, ServiceStatus
from rfq.identity import Genesis, Member
from rfq.ledger.block import Block
from rfq.ledger.components.members import OFFBOARDED, SUSPENDED
from rfq.ledger.state import BlockResult

log = structlog.get_logger(__name__)

BARRED = frozenset({SUSPENDED, OFFBOARDED})
"""Standings that end a member's bus access (a defaulted member keeps it: its contracts
still settle and it still sees them)."""
QUEUE = "botc-callout"
"""One callout of a cluster answers each request (NATS prefers the local one)."""
KEYS_FILE = "callout.secret"
SYSTEM_ACCOUNT = "BOTC_SYS"
CONNZ_WAIT_S = 0.5


class CalloutKeysError(PeerError):
    """The callout's key file is missing or malformed; one line, exit 2."""


class CalloutKeys(msgspec.Struct, frozen=True):
    """The secrets of a network's NATS operator: the issuer account key that signs the
    callout's answers, the callout's own user and its system-account user (to kick)."""

    issuer_seed: str
    service_seed: str
    system_seed: str

    @staticmethod
    def generate() -> CalloutKeys:
        def seed(prefix: int) -> str:
            encoded: bytes = nkeys.encode_seed(os.urandom(32), prefix)
            return encoded.decode()

        return CalloutKeys(
            issuer_seed=seed(nkeys.PREFIX_BYTE_ACCOUNT),
            service_seed=seed(nkeys.PREFIX_BYTE_USER),
            system_seed=seed(nkeys.PREFIX_BYTE_USER),
        )

    @staticmethod
    def public(seed: str) -> str:
        key: bytes = nkeys.from_seed(bytearray(seed.encode())).public_key
        return key.decode()

    @property
    def issuer(self) -> Any:
        return nkeys.from_seed(bytearray(self.issuer_seed.encode()))


def load_or_create_keys(nats_dir: Path) -> CalloutKeys:
    """``nats_dir/callout.secret`` (mode 0600), made on first use: the same keys across
    rewrites of the config, so a running server and its callout keep agreeing."""
    path = nats_dir / KEYS_FILE
    if path.exists():
        return read_keys(path)
    keys = CalloutKeys.generate()
    nats_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, msgspec.json.encode(keys))
    finally:
        os.close(fd)
    return keys


def read_keys(path: Path) -> CalloutKeys:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        data = path.read_bytes()
    except OSError as exc:
        raise CalloutKeysError(f"{path}: cannot read ({exc.strerror})") from None
    if mode & 0o077:
        raise CalloutKeysError(f"{path}: permissions {mode:04o} are too open (chmod 600 {path})")
    try:
        return msgspec.json.decode(data, type=CalloutKeys)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CalloutKeysError(f"{path}: not a callout key file ({exc})") from None


def static_members(genesis: Genesis) -> list[Member]:
    """The members that connect without the callout: the initial authorities and the
    regulator (see the module docstring)."""
    keep = {*genesis.authorities.initial, genesis.regulator.id}
    return [m for m in genesis.members if m.id in keep]


def callout_auth_text(
    genesis: Genesis,
    keys: CalloutKeys,
    permissions: Callable[[Member], dict[str, Any]],
) -> str:
    """The server config's auth: the static users, ``auth_callout`` for everyone else, and
    the system account the callout kicks connections from."""
    service = CalloutKeys.public(keys.service_seed)
    system = CalloutKeys.public(keys.system_seed)
    users: list[dict[str, Any]] = [
        {"nkey": m.sign_key, "permissions": permissions(m)} for m in static_members(genesis)
    ]
    users.append(
        {
            "nkey": service,
            "permissions": {
                "publish": {"deny": [">"]},
                "subscribe": {"allow": [AUTH_SUBJECT]},
                "allow_responses": True,
            },
        }
    )
    auth = {
        "users": users,
        "auth_callout": {
            "issuer": CalloutKeys.public(keys.issuer_seed),
            "auth_users": [*(u["nkey"] for u in users), system],
        },
    }
    accounts = {SYSTEM_ACCOUNT: {"users": [{"nkey": system}]}}
    return (
        f"authorization {json.dumps(auth, indent=2)}\n"
        f"accounts {json.dumps(accounts, indent=2)}\n"
        f"system_account: {SYSTEM_ACCOUNT}\n"
    )


@dataclass(frozen=True)
class Decision:
    member: str | None
    reason: str
    """Empty when admitted."""


class AuthCallout(Service):
    """Answers ``$SYS.REQ.USER.AUTH`` from ``follower``'s state and kicks members the chain
    bars. ``async with AuthCallout(...)``; ``stats`` counts answers and kicks."""

    def __init__(
        self,
        follower: ChainFollower,
        keys: CalloutKeys,
        servers: Sequence[str],
        *,
        permissions: Callable[[Member], dict[str, Any]] | None = None,
        tls: TlsSettings | None = None,
    ) -> None:
        if permissions is None:
            from peers.netdir import permissions as role_permissions

            permissions = role_permissions
        self.follower = follower
        self.keys = keys
        self.issuer = keys.issuer
        self.servers = list(servers)
        self.permissions = permissions
        self.tls = tls
        self.stats: Counter[str] = Counter()
        self.refusals: list[str] = []
        self._nc: NatsClient | None = None
        self._sys: NatsClient | None = None
        self._by_key: dict[str, str] = {}
        self._indexed_height = -1
        self._barred: set[str] = set()
        self._kicks: set[asyncio.Task[int]] = set()

    async def start(self) -> Self:
        if self.status != ServiceStatus.NEW:
            return self
        self._nc = await self._connect(self.keys.service_seed, "botc-callout")
        self._sys = await self._connect(self.keys.system_seed, "botc-callout-system")
        await self._nc.subscribe(AUTH_SUBJECT, queue=QUEUE, cb=self._on_request)
        await self._nc.flush()
        self.follower.listeners.append(self._on_block)
        self.status = ServiceStatus.RUNNING
        self._schedule_kicks()  # members barred before this callout started
        return self

    async def _connect(self, seed: str, name: str) -> NatsClient:
        nc = NatsClient()
        await nc.connect(
            servers=self.servers,
            name=name,
            nkeys_seed_str=seed,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.25,  # type: ignore[arg-type]
            connect_timeout=3,
            **connect_options(self.tls),  # type: ignore[arg-type]
        )
        return nc

    async def _shutdown(self) -> None:
        with contextlib.suppress(ValueError):
            self.follower.listeners.remove(self._on_block)
        for task in list(self._kicks):
            task.cancel()
        for nc in (self._nc, self._sys):
            if nc is not None:
                with contextlib.suppress(Exception):
                    await nc.close()

    # -- answering ---------------------------------------------------------------------------

    def decide(self, request: AuthRequest) -> Decision:
        """Whether the connection may join, and as whom, from the verified chain state."""
        problem = request.client_key_problem()
        if problem is not None:
            return Decision(None, problem)
        state = self.follower.state
        if self._indexed_height != state.height or not self._by_key:
            self._by_key = {m.sign_key: m.id for m in state.members.values()}
            self._indexed_height = state.height
        member_id = self._by_key.get(request.client_nkey)
        if member_id is None:
            return Decision(None, f"no member holds this key on chain (height {state.height})")
        standing = state.standing.get(member_id)
        if standing is not None and standing.status in BARRED:
            return Decision(member_id, f"{member_id} is {standing.status} on chain")
        return Decision(member_id, "")

    async def _on_request(self, msg: Msg) -> None:
        try:
            request = parse_request(msg.data)
        except CalloutError as exc:
            self.stats["malformed"] += 1
            log.warning("callout_malformed_request", error=str(exc))
            return
        decision = self.decide(request)
        if decision.reason:
            self.stats["refused"] += 1
            self.refusals = [*self.refusals[-99:], decision.reason]
            log.info("callout_refused", member=decision.member, reason=decision.reason)
            answer = deny(request, self.issuer, decision.reason)
        else:
            assert decision.member is not None
            member = self.follower.state.members[decision.member]
            self.stats["admitted"] += 1
            answer = allow(request, self.issuer, member.id, self.permissions(member))
        await msg.respond(answer)

    # -- kicking -------------------------------------------------------------------------------

    def _on_block(self, block: Block, result: BlockResult) -> None:
        self._schedule_kicks()

    def _schedule_kicks(self) -> None:
        barred = {m for m, s in self.follower.state.standing.items() if s.status in BARRED}
        for member_id in sorted(barred - self._barred):
            task = asyncio.get_running_loop().create_task(self.kick(member_id))
            self._kicks.add(task)
            task.add_done_callback(self._kicks.discard)
        self._barred = barred

    async def kick(self, member_id: str) -> int:
        """Disconnect every connection of ``member_id`` on every server; returns how many."""
        sys_nc = self._sys
        if sys_nc is None:
            return 0
        found: list[tuple[str, int]] = []

        async def on_reply(msg: Msg) -> None:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                reply = json.loads(msg.data)
                server = reply["server"]["id"]
                for conn in reply["data"].get("connections") or ():
                    found.append((server, int(conn["cid"])))

        inbox = sys_nc.new_inbox()
        sub = await sys_nc.subscribe(inbox, cb=on_reply)
        try:
            query = json.dumps({"user": member_id, "auth": True, "limit": 1024}).encode()
            await sys_nc.publish("$SYS.REQ.SERVER.PING.CONNZ", query, reply=inbox)
            await asyncio.sleep(CONNZ_WAIT_S)
        finally:
            await sub.unsubscribe()
        kicked = 0
        for server, cid in found:
            try:
                await sys_nc.request(
                    f"$SYS.REQ.SERVER.{server}.KICK", json.dumps({"cid": cid}).encode(), timeout=2
                )
                kicked += 1
            except Exception as exc:  # one server's silence must not stop the rest
                log.warning("callout_kick_failed", member=member_id, server=server, error=repr(exc))
        self.stats["kicked"] += kicked
        log.info("callout_kicked", member=member_id, connections=kicked)
        return kicked


# --------------------------------------------------------------------------------------------
# Running one beside a server


async def open_callout(
    net: Any, servers: Sequence[str], *, member: str | None = None
) -> tuple[AuthCallout, ChainFollower, Any]:
    """A started callout for ``net``'s servers, following the chain as ``member`` (default:
    the regulator); returns the callout, its follower and the follower's bus."""
    from peers.runtime import open_bus

    genesis = net.genesis()
    keys = read_keys(net.auth_conf_path.parent / KEYS_FILE)
    member_id = member or genesis.regulator.id
    bus = await open_bus(net, member_id, servers=servers)
    follower = ChainFollower(bus, genesis, store_path=net.follower_store(member_id, "callout"))
    callout = AuthCallout(follower, keys, servers, tls=net.tls())
    await callout.start()
    await follower.start()
    return callout, follower, bus


def uses_callout(auth_text: str) -> bool:
    """Whether a server config's auth hands connections to a callout (older networks' static
    user lists do not)."""
    return "auth_callout" in auth_text


class CalloutThread:
    """One callout on its own event loop in a thread: what ``botc up``, ``botc nats`` and the
    test fixtures run beside the servers they start. ``start()`` returns once it serves."""

    def __init__(self, net: Any, servers: Sequence[str], *, member: str | None = None) -> None:
        import threading

        self.net = net
        self.servers = list(servers)
        self.member = member
        self.callout: AuthCallout | None = None
        self.follower: ChainFollower | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="botc-callout", daemon=True)

    def start(self, timeout: float = 15.0) -> CalloutThread:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise PeerError(f"the auth callout did not start within {timeout:.0f}s")
        if self.error is not None:
            raise PeerError(f"the auth callout could not start: {self.error}") from self.error
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by start()
            self.error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        callout, follower, bus = await open_callout(self.net, self.servers, member=self.member)
        self.callout, self.follower = callout, follower
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await callout.close()
            await follower.close()
            await bus.close()

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread.is_alive():
            self._thread.join(timeout)


def start_callout(net: Any, servers: Sequence[str]) -> CalloutThread | None:
    """The callout for servers started with ``net.auth_conf()``, or None if that config has
    no callout (a network made before there was one)."""
    if not uses_callout(net.auth_conf()):
        return None
    return CalloutThread(net, servers).start()
