"""Hosts apart on one machine: a Linux network namespace per host, joined by a bridge.

The bridge lives in a namespace of its own (the switch), so nothing reaches the machine's
own namespace and nothing leaves the private subnet: each host namespace has loopback and
one veth (``eth0``) whose other end is a port of the switch's bridge; there is no default
route anywhere. Faults act on these links: a port set down, ``tc netem`` on both ends of a
link, blackhole routes that split the hosts in two groups.

Every namespace is named ``botcmh<pid>-<host>`` (``pid``: the test process), so ``cleanup``
removes what a crashed earlier run left (its processes, namespaces and with them the veths
and the bridge) and never touches a run that is still going.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "botcmh"
SLOWLINK = Path(__file__).with_name("slowlink.py")
SLOW_TABLE = 5107
SLOW_MARK = 0x5107
"""``slowlink``'s mark and routing table (its own constants, kept equal)."""
SUBNETS = ("10.231.77.0/24", "10.173.19.0/24", "172.29.213.0/24", "192.168.247.0/24")
"""Candidates, the first that no address or route of this machine overlaps is used."""


class HarnessError(Exception):
    """The harness cannot build its hosts: says what is missing or what failed."""


def missing_requirements() -> list[str]:
    """What this machine lacks to run the harness (empty: nothing)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (network namespaces need CAP_NET_ADMIN; run pytest as root)")
    for tool, package in (("ip", "iproute2"), ("tc", "iproute2")):
        if shutil.which(tool) is None:
            missing.append(f"the '{tool}' command (package {package})")
    return missing


def requirements_message() -> str | None:
    """The one line a test fails with when the machine cannot run the harness (None: it can)."""
    missing = missing_requirements()
    return f"the multi-host harness needs {' and '.join(missing)}" if missing else None


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise HarnessError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def _taken_networks() -> list[ipaddress.IPv4Network]:
    out = run("ip", "-4", "-o", "addr", "show").stdout + run("ip", "-4", "route", "show").stdout
    taken = []
    for cidr in re.findall(r"\b(\d+\.\d+\.\d+\.\d+(?:/\d+)?)", out):
        with contextlib.suppress(ValueError):
            taken.append(ipaddress.ip_network(cidr, strict=False))
    return taken


def free_subnet() -> ipaddress.IPv4Network:
    taken = _taken_networks()
    for text in SUBNETS:
        net = ipaddress.IPv4Network(text)
        if not any(net.overlaps(t) for t in taken if t.prefixlen > 0):
            return net
    raise HarnessError(f"every candidate subnet ({', '.join(SUBNETS)}) is in use here")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def namespaces() -> list[str]:
    out = run("ip", "netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def kill_namespace(ns: str) -> None:
    """Kill every process in ``ns``, then delete it (its veths and bridge go with it)."""
    for _ in range(50):
        pids = [int(p) for p in run("ip", "netns", "pids", ns, check=False).stdout.split()]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    run("ip", "netns", "delete", ns, check=False)


def cleanup_leftovers() -> list[str]:
    """Remove the namespaces of earlier runs whose test process is gone; returns them."""
    removed = []
    for ns in namespaces():
        found = re.fullmatch(rf"{PREFIX}(\d+)-.+", ns)
        if found and not _pid_alive(int(found.group(1))):
            kill_namespace(ns)
            removed.append(ns)
    return removed


@dataclass
class Host:
    name: str
    ns: str
    ip: str
    port: str
    """The switch-side end of its link (``eth0`` is the host's end)."""

    @property
    def exec(self) -> tuple[str, ...]:
        """The argv prefix that runs a command on this host."""
        return ("ip", "netns", "exec", self.ns)


@dataclass
class Topology:
    """Host namespaces on a private /24, one switch; faults on their links."""

    names: Sequence[str]
    tag: str = field(default_factory=lambda: f"{PREFIX}{os.getpid()}")
    hosts: dict[str, Host] = field(default_factory=dict)
    subnet: ipaddress.IPv4Network | None = None
    _cut: list[tuple[Host, str]] = field(default_factory=list)
    _netem: bool | None = None
    _slow: dict[str, subprocess.Popen[str]] = field(default_factory=dict)

    @property
    def switch(self) -> str:
        return f"{self.tag}-switch"

    def create(self) -> Topology:
        cleanup_leftovers()
        self.subnet = free_subnet()
        addresses = list(self.subnet.hosts())
        run("ip", "netns", "add", self.switch)
        run("ip", "-n", self.switch, "link", "set", "lo", "up")
        run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.switch, "link", "set", "br0", "up")
        for i, name in enumerate(self.names):
            ns = f"{self.tag}-{name.lower()}"
            port = f"p{i}-{name.lower()}"[:15]
            host = Host(name, ns, str(addresses[10 + i]), port)
            run("ip", "netns", "add", ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run(
                "ip", "-n", self.switch, "link", "add", port,
                "type", "veth", "peer", "name", "eth0", "netns", ns,
            )  # fmt: skip
            run("ip", "-n", self.switch, "link", "set", port, "master", "br0", "up")
            run("ip", "-n", ns, "addr", "add", f"{host.ip}/{self.subnet.prefixlen}", "dev", "eth0")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
            self.hosts[name] = host
        return self

    def destroy(self) -> None:
        for name in list(self._slow):
            self.clear_impairment(name)
        for host in self.hosts.values():
            kill_namespace(host.ns)
        kill_namespace(self.switch)
        self.hosts.clear()

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    # -- faults ----------------------------------------------------------------------------

    def link(self, name: str, *, up: bool) -> None:
        """The host's switch port down (the host sees no carrier) or up again."""
        run("ip", "-n", self.switch, "link", "set", self[name].port, "up" if up else "down")

    def has_netem(self) -> bool:
        """Whether this kernel has the netem qdisc (``sch_netem``); tried on the switch."""
        if self._netem is None:
            added = run(
                "tc", "-n", self.switch, "qdisc", "add", "dev", "lo", "root",
                "netem", "delay", "1ms", check=False,
            )  # fmt: skip
            self._netem = added.returncode == 0
            if self._netem:
                run("tc", "-n", self.switch, "qdisc", "del", "dev", "lo", "root", check=False)
            elif "unknown" not in added.stderr:
                raise HarnessError(f"tc netem: {added.stderr.strip()}")
        return self._netem

    def impair(self, name: str, *, delay_ms: int, loss_pct: float) -> str:
        """Delay and loss on what the host sends (``tc netem`` on its ``eth0``, or, on a
        kernel without netem, the same in user space: ``slowlink``); returns which."""
        host = self[name]
        if self.has_netem():
            spec = ("netem", "delay", f"{delay_ms}ms", "loss", f"{loss_pct}%")
            run("tc", "-n", host.ns, "qdisc", "replace", "dev", "eth0", "root", *spec)
            return "tc netem"
        assert self.subnet is not None
        process = subprocess.Popen(
            [*host.exec, sys.executable, str(SLOWLINK), str(delay_ms), str(loss_pct / 100)],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            process.kill()
            raise HarnessError(f"slowlink on {name} did not start (exit {process.wait()})")
        self._slow[name] = process
        ns, table = host.ns, str(SLOW_TABLE)
        loose = "; ".join(  # replies arrive on eth0, which is not the way out now
            f"echo 0 > /proc/sys/net/ipv4/conf/{dev}/rp_filter" for dev in ("all", "eth0")
        )
        run("ip", "netns", "exec", ns, "sh", "-c", loose)
        run("ip", "-n", ns, "link", "set", "slow0", "up")
        run("ip", "-n", ns, "route", "add", str(self.subnet), "dev", "slow0", "src", host.ip,
            "table", table)  # fmt: skip
        run("ip", "-n", ns, "rule", "add", "not", "fwmark", hex(SLOW_MARK), "table", table,
            "pref", "100")  # fmt: skip
        return "slowlink (this kernel has no netem)"

    def clear_impairment(self, name: str) -> None:
        host = self[name]
        process = self._slow.pop(name, None)
        if process is None:
            run("tc", "-n", host.ns, "qdisc", "del", "dev", "eth0", "root", check=False)
            return
        run("ip", "-n", host.ns, "rule", "del", "pref", "100", check=False)
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def split(self, side_a: Iterable[str], side_b: Iterable[str]) -> None:
        """No packet between a host of ``side_a`` and one of ``side_b`` (blackhole routes on
        both ends); every other pair still talks."""
        a, b = [self[n] for n in side_a], [self[n] for n in side_b]
        for here, there in [(x, y) for x in a for y in b] + [(y, x) for x in a for y in b]:
            run("ip", "-n", here.ns, "route", "add", "blackhole", f"{there.ip}/32")
            self._cut.append((here, there.ip))

    def heal(self) -> None:
        for here, ip in self._cut:
            run("ip", "-n", here.ns, "route", "del", "blackhole", f"{ip}/32", check=False)
        self._cut.clear()
