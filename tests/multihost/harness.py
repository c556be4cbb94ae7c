"""The marketplace across hosts: each institution's peers in its own network namespace.

The network is built by the genesis ceremony (``tests.ceremony``), one directory per
institution. The regulator runs the bus: its CA (``botc tls ca``) signs one certificate per
NATS host for that host's address (``botc tls cert --host IP``), and its three NATS hosts
(``nats1``..``nats3``) form a JetStream cluster over mutual TLS, each with its auth callout
(``botc callout``). Every other institution gets only the CA's certificate (``botc tls use
--ca-file``) and connects over TLS. Each peer is the real ``botc`` command under the
supervisor (``peers.supervisor``), run with ``ip netns exec`` on its institution's host:
the four authorities (D1, D2, D3, CCP), the dealers' bots, the oracle, the bank, the
regulator and the clients (``botc load``, one per client).

The test process stays in the machine's own namespace, which has no link to the hosts: it
watches the chain through the authorities' databases (read only, SQLite in WAL mode) and
the peers' logs, and checks the soak's invariants (``peers.soak``) after each fault.
"""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from bus.server import ROUTE_USER, find_binary, write_private
from bus.tls import TlsSettings
from peers.authority.store import SqliteChainStore
from peers.authority.verify import verify_chain
from peers.bank import JournalState
from peers.soak import (
    Allowance,
    BankView,
    ChainFacts,
    LogRecord,
    ProgressSample,
    Violation,
    block_hashes,
    check_bank_conserves,
    check_chain_progress,
    check_chain_verifies,
    check_no_bad_trades,
    check_no_error_logs,
    log_offsets,
    progress_bound_s,
    read_bank,
    read_chain,
    read_logs,
)
from peers.supervisor import Service, Supervisor
from rfq.identity import Genesis, NetworkParams
from rfq.ledger.block import Block

from ..ceremony import INITIAL_AUTHORITIES, Institutions, botc, ceremony
from .netns import Host, Topology

AUTHORITIES = INITIAL_AUTHORITIES
DEALERS = ("D1", "D2", "D3")
CLIENTS = ("C1", "C2")
NATS_HOSTS = ("nats1", "nats2", "nats3")
INSTITUTIONS = ("D1", "D2", "D3", "CCP", "REG", "ORACLE", "BANK", "C1", "C2")
"""Every institution that runs a peer here (the candidate G1 takes part in the ceremony only)."""
CLIENT_PORT, ROUTE_PORT = 4222, 6222

PARAMS = NetworkParams(
    block_time_ms=100,
    idle_block_ms=500,
    round_timeout_ms=1000,
    liveness_missed_rounds=10_000,
)
"""2-10 blocks a second; a round that fails times out after a second. An authority cut off
for 30 s misses more than the default five turns in a row and would be evicted (replaced
by the candidate G1, which runs nothing here): these faults are about an authority that
comes back and catches up, so the bound is out of reach."""


class NatsNode:
    """One nats-server of the cluster on its own host, listening on the host's address."""

    def __init__(
        self,
        name: str,
        host: Host,
        others: Sequence[Host],
        store: Path,
        *,
        auth: str,
        route_password: str,
        tls: TlsSettings,
    ) -> None:
        self.name, self.host, self.others, self.store = name, host, others, store
        self.auth, self.route_password, self.tls = auth, route_password, tls
        self.process: subprocess.Popen[bytes] | None = None
        self.conf = store / f"{name}.conf"
        self.log = store / f"{name}.log"

    @property
    def url(self) -> str:
        return f"nats://{self.host.ip}:{CLIENT_PORT}"

    def config_text(self) -> str:
        login = f"{ROUTE_USER}:{self.route_password}@"
        routes = ", ".join(f"nats-route://{login}{h.ip}:{ROUTE_PORT}" for h in self.others)
        return "\n".join(
            [
                f'server_name: "{self.name}"',
                f"host: {self.host.ip}",
                f"port: {CLIENT_PORT}",
                "max_payload: 8388608",
                f'jetstream {{ store_dir: "{self.store / "js"}" }}',
                f"cluster {{ name: botc, host: {self.host.ip}, port: {ROUTE_PORT}, "
                f'authorization {{ user: {ROUTE_USER}, password: "{self.route_password}" }}, '
                f"routes: [{routes}], {self.tls.route_block()} }}",
                self.tls.server_block(),
                self.auth,
            ]
        )

    def start(self) -> None:
        self.tls.check_server(self.host.ip)  # the certificate names this host's address
        self.store.mkdir(parents=True, exist_ok=True)
        write_private(self.conf, self.config_text())
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [*self.host.exec, find_binary(), "-c", str(self.conf)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_ready(self, since: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "Server is ready" in self.log.read_text(errors="replace")[since:]:
                return
            if self.process is None or self.process.poll() is not None:
                break
            time.sleep(0.05)
        tail = self.log.read_text(errors="replace")[-1500:]
        raise AssertionError(f"nats-server {self.name} on {self.host.ip} not ready:\n{tail}")

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(5)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


@dataclass
class Report:
    """The soak invariants at one moment, with the figures a fault report quotes."""

    violations: list[Violation]
    heights: dict[str, int]
    facts: ChainFacts
    longest_stall_s: float
    errors_allowed: dict[str, int] = field(default_factory=dict)

    def problems(self) -> list[str]:
        return [f"{v.invariant}: {v.detail}" for v in self.violations]


class MultiHost:
    """The namespaced network: build, start, fault, check, stop."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.topology = Topology([*INSTITUTIONS, *NATS_HOSTS])
        self.network: Institutions | None = None
        self.nats: dict[str, NatsNode] = {}
        self.supervisor: Supervisor | None = None
        self.log_dir = root / "logs"
        self.samples: list[ProgressSample] = []
        self.host_of: dict[str, str] = {}
        """Each supervised service's host."""
        self.silenced: set[str] = set()
        """Authorities cut off by a fault: sampled as not answering (the progress clock runs
        only while a quorum answers)."""
        self.started = time.monotonic()
        self._sampling = threading.Event()
        self._sampler: threading.Thread | None = None

    # -- building ----------------------------------------------------------------------------

    @property
    def net(self) -> Institutions:
        assert self.network is not None
        return self.network

    @property
    def genesis(self) -> Genesis:
        return self.net.genesis()

    def home(self, member_id: str) -> Path:
        return self.net.root / member_id

    def build(self) -> None:
        self.topology.create()
        self.network = ceremony(self.root / "machines", PARAMS)
        self._tls()
        reg = self.net.home("REG")
        tls = reg.tls()
        assert tls is not None
        nats_hosts = [self.topology[n] for n in NATS_HOSTS]
        for i, name in enumerate(NATS_HOSTS):
            node = f"n{i + 1}"
            self.nats[name] = NatsNode(
                node,
                nats_hosts[i],
                [h for h in nats_hosts if h is not nats_hosts[i]],
                self.home("REG") / "data" / "nats" / node,
                auth=reg.auth_conf(),
                route_password=reg.route_password() or "",
                tls=replace(
                    tls,
                    cert_file=self.home("REG") / "nats" / "tls" / f"{node}.pem",
                    key_file=self.home("REG") / "nats" / "tls" / f"{node}.key",
                ),
            )
        urls = [n.url for n in self.nats.values()]
        for member_id in INSTITUTIONS:
            self.net.home(member_id).write_run_file(urls)

    def _tls(self) -> None:
        """The regulator's CA and one certificate per NATS host, for its address; the CA's
        certificate (public) to every other institution."""
        reg = self.home("REG")
        botc("tls", "ca", reg / "ca", "--name", "multihost")
        tls_dir = reg / "nats" / "tls"
        for i, name in enumerate(NATS_HOSTS):
            botc("tls", "cert", "--ca", reg / "ca", "--host", self.topology[name].ip,
                 tls_dir / f"n{i + 1}")  # fmt: skip
        botc(
            "tls", "use", "--net", reg, "--ca-file", reg / "ca" / "ca.pem",
            "--cert-file", tls_dir / "n1.pem", "--key-file", tls_dir / "n1.key",
            "--host", self.topology["nats1"].ip,
        )  # fmt: skip
        for member_id in INSTITUTIONS:
            if member_id == "REG":
                continue
            mine = self.home(member_id) / "nats" / "tls"
            mine.mkdir(parents=True, exist_ok=True)
            shutil.copy(reg / "ca" / "ca.pem", mine / "ca.pem")
            botc("tls", "use", "--net", self.home(member_id), "--ca-file", mine / "ca.pem")

    def services(self) -> list[Service]:
        def on(member_id: str, name: str, *args: str | Path) -> Service:
            self.host_of[name] = member_id
            return Service(
                name,
                tuple(str(a) for a in args),
                wrapper=self.topology[member_id].exec,
            )

        reg = str(self.home("REG"))
        self.host_of.update({f"callout-{n.name}": h for h, n in self.nats.items()})
        out = [
            Service(
                f"callout-{node.name}",
                ("callout", "--net", reg, "--servers", node.url),
                wrapper=node.host.exec,
            )
            for node in self.nats.values()
        ]
        for a in AUTHORITIES:
            out.append(on(a, f"authority-{a}", "authority", "--net", self.home(a), "--id", a))
        for d in DEALERS:
            out.append(on(d, f"dealer-{d}", "dealer", "--net", self.home(d), "--id", d))
        out.append(
            on(
                "ORACLE",
                "oracle",
                "oracle",
                "--net",
                self.home("ORACLE"),
                "--simulate",
                "--day-seconds",
                "30",
            )
        )
        out.append(on("BANK", "bank", "bank", "--net", self.home("BANK")))
        out.append(on("REG", "regulator", "regulator", "--net", reg))
        for c in CLIENTS:
            others = [x for x in CLIENTS if x != c]
            out.append(
                on(
                    c,
                    f"load-{c}",
                    "load",
                    "--net",
                    self.home(c),
                    "--clients",
                    "1",
                    *[f"--exclude={x}" for x in others],
                    "--rate",
                    "0.5",
                    "--duration",
                    "100000",
                    "--stats-file",
                    self.root / f"load-{c}.json",
                )
            )
        return out

    # -- running -----------------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> None:
        self.build()
        for node in self.nats.values():
            node.start()
        for node in self.nats.values():
            node.wait_ready(0)
        self.supervisor = Supervisor(self.services(), self.log_dir)
        names = [s.name for s in self.supervisor.services]
        callouts = [n for n in names if n.startswith("callout-")]
        self.supervisor.start(callouts)
        self._must_be_ready(callouts, timeout)
        market = [n for n in names if not n.startswith(("callout-", "load-"))]
        self.supervisor.start(market)
        self._must_be_ready(market, timeout)
        self.supervisor.start([n for n in names if n.startswith("load-")])
        self._sampler = threading.Thread(target=self._sample, daemon=True, name="heights")
        self._sampler.start()

    def _must_be_ready(self, names: Sequence[str], timeout: float) -> None:
        assert self.supervisor is not None
        missing = self.supervisor.wait_ready(timeout, names)
        if missing:
            details = []
            for s in missing:
                out = self.log_dir / f"{s.name}.out"
                tail = out.read_text(errors="replace")[-600:] if out.exists() else ""
                details.append(f"{s.name} (exit {s.last_exit}): {tail}")
            listing = "\n".join(details)
            raise AssertionError(f"not ready within {timeout:.0f}s:\n{listing}")

    def stop(self) -> None:
        self._sampling.set()
        try:
            if self.supervisor is not None:
                self.supervisor.stop()
            for node in self.nats.values():
                node.stop()
        finally:
            self.topology.destroy()

    # -- watching ----------------------------------------------------------------------------

    def chain_db(self, authority: str) -> Path:
        return self.home(authority) / "data" / authority / "chain.db"

    def height(self, authority: str) -> int:
        """The authority's stored height (read only; 0 before its database exists)."""
        path = self.chain_db(authority)
        if not path.exists():
            return 0
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
            try:
                row = db.execute("SELECT MAX(height) FROM blocks").fetchone()
            finally:
                db.close()
        except sqlite3.Error:
            return 0
        return int(row[0]) if row and row[0] is not None else 0

    def heights(self) -> dict[str, int]:
        return {a: self.height(a) for a in AUTHORITIES}

    def _sample(self) -> None:
        while not self._sampling.wait(0.5):
            heights = self.heights()
            self.samples.append(
                ProgressSample(
                    time.monotonic() - self.started,
                    {a: (None if a in self.silenced else h) for a, h in heights.items()},
                    AUTHORITIES,
                )
            )

    def until(
        self, predicate: Callable[[], bool], *, timeout: float, what: str, poll: float = 0.2
    ) -> float:
        """Wait for ``predicate``; returns the seconds it took."""
        start = time.monotonic()
        while not predicate():
            if time.monotonic() - start > timeout:
                raise AssertionError(
                    f"timed out after {timeout:.0f}s waiting for {what} (heights {self.heights()})"
                )
            time.sleep(poll)
        return time.monotonic() - start

    def in_step(self, among: Iterable[str] = AUTHORITIES, lag: int = 2) -> bool:
        heights = [self.height(a) for a in among]
        return max(heights) - min(heights) <= lag

    def wait_advance(self, blocks: int, *, among: Sequence[str], timeout: float) -> float:
        """Until every authority of ``among`` has stored ``blocks`` more blocks than now."""
        targets = {a: self.height(a) + blocks for a in among}
        return self.until(
            lambda: all(self.height(a) >= t for a, t in targets.items()),
            timeout=timeout,
            what=f"{blocks} more blocks at {', '.join(among)}",
        )

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Every authority in step and the chain moving (the state a fault starts from)."""
        self.until(self.in_step, timeout=timeout, what="all authorities in step")
        self.wait_advance(3, among=AUTHORITIES, timeout=timeout)

    def blocks_since(self, authority: str, height: int) -> list[Block]:
        """The blocks above ``height`` in the authority's database."""
        store = SqliteChainStore(self.chain_db(authority))
        try:
            return list(store.blocks(height + 1))
        finally:
            store.close()

    def took_part(self, authority: str, height: int) -> tuple[int, int]:
        """Blocks above ``height`` the authority proposed, and those it sealed (as D1 has
        them)."""
        blocks = self.blocks_since("D1", height)
        proposed = sum(b.header.proposer == authority for b in blocks)
        sealed = sum(any(s.authority == authority for s in b.seals) for b in blocks)
        return proposed, sealed

    def chain_facts(self) -> ChainFacts:
        """The chain's facts as the tallest authority's database has them."""
        tallest = max(AUTHORITIES, key=self.height)
        store = SqliteChainStore(self.chain_db(tallest))
        try:
            return read_chain(self.genesis, store)
        finally:
            store.close()

    def log_offsets(self) -> dict[str, int]:
        return log_offsets(self.log_dir)

    def log_lines(self, service: str, since: Mapping[str, int], needle: str) -> list[str]:
        path = self.log_dir / f"{service}.log"
        if not path.exists():
            return []
        with path.open("rb") as f:
            f.seek(since.get(path.name, 0))
            text = f.read().decode("utf-8", errors="replace")
        return [line for line in text.splitlines() if needle in line]

    # -- the soak's invariants ---------------------------------------------------------------

    def check(
        self,
        *,
        since_t: float,
        offsets: Mapping[str, int],
        allowances: Sequence[Allowance | Tolerated] = (),
        due_s: float = 90.0,
    ) -> Report:
        """The soak's invariants now: every authority's database re-verifies and all hold the
        same block at every common height (no fork); the chain never stood still past the
        bound while a quorum was up (since ``since_t``); the bank's books conserve money and
        match the chain; no error line in any peer's log since ``offsets`` (but
        ``allowances``); no bad trade."""
        genesis = self.genesis
        stores = {a: SqliteChainStore(self.chain_db(a)) for a in AUTHORITIES}
        try:
            verdicts = {a: verify_chain(genesis, s) for a, s in stores.items()}
            hashes = {a: block_hashes(s) for a, s in stores.items()}
            tips = {a: s.height() for a, s in stores.items()}
            facts = read_chain(genesis, stores[max(tips, key=lambda a: tips[a])])
        finally:
            for store in stores.values():
                store.close()
        bank = as_of(read_bank(self.home("BANK") / "data" / "BANK" / "bank.db"), facts.tip)
        violations = check_chain_verifies(verdicts, hashes)
        window = [s for s in self.samples if s.t_s >= since_t]
        stalls, longest = check_chain_progress(window, bound_s=progress_bound_s(genesis.params))
        violations += stalls
        violations += check_bank_conserves(
            bank,
            facts.payments,
            block_ms=facts.block_ms,
            end_ms=int(time.time() * 1000),
            due_s=due_s,
        )
        logged, _, allowed = check_no_error_logs(
            read_logs(self.log_dir, offsets),
            allowances=allowances,  # type: ignore[arg-type]  # each has ``covers``
        )
        violations += logged
        violations += check_no_bad_trades(facts.trades, defaults=facts.defaults)
        return Report(violations, tips, facts, longest, allowed)

    def now_s(self) -> float:
        return time.monotonic() - self.started


def as_of(bank: BankView | None, tip: int) -> BankView | None:
    """The books as the chain up to ``tip`` would find them: the market runs on while the
    chain is re-verified, and an outcome the bank learnt from a later block is, at ``tip``,
    an execution still waiting for its confirmation (the books are read after the chain, so
    every confirmation up to ``tip`` has its execution in them)."""
    if bank is None:
        return None
    journal = [
        replace(e, state=JournalState.EXECUTED, height=None)
        if e.state != JournalState.EXECUTED and e.height is not None and e.height > tip
        else e
        for e in bank.journal
    ]
    return BankView(journal, bank.funding, bank.balances)


@dataclass(frozen=True)
class Tolerated:
    """Error lines a fault causes by design, as the soak's ``Allowance``s are given: in this
    service's log, holding this text (plain lines from nats-py carry their time in the text,
    so they are matched by what they say). The logs checked are the fault's own (read from
    the offsets taken as it began)."""

    service: str
    text: str

    def covers(self, record: LogRecord) -> bool:
        return record.service == self.service and self.text in record.line
