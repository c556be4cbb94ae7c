"""Delay and loss on a host's outgoing traffic, for kernels built without ``sch_netem``.

``tc qdisc add dev eth0 root netem delay 100ms loss 5%`` delays and drops what a host sends.
Where the kernel has no netem (``tc`` answers "Specified qdisc kind is unknown"), this does
the same in user space, inside the host's namespace: a TUN device ``slow0`` takes every
packet the host sends to the subnet (a routing rule sends unmarked traffic there), this
process holds each one for the delay, drops the given share, and writes the rest to a raw
socket marked so that the host's routing sends it out of ``eth0`` as usual. What the host
receives is untouched, as with netem on the host's ``eth0``.

Run on the host: ``ip netns exec NS python slowlink.py DELAY_MS LOSS`` (LOSS a share, 0.05);
it prints ``ready`` once ``slow0`` exists; SIGTERM stops it (the harness then removes the
rules; the device goes with the process).
"""

from __future__ import annotations

import fcntl
import heapq
import os
import random
import select
import signal
import socket
import struct
import sys
import threading
import time

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
DEVICE = "slow0"
MARK = 0x5107
"""Packets this process sends out carry this mark; the routing rule lets them use eth0."""


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def main(argv: list[str]) -> int:
    delay_s, loss = int(argv[1]) / 1000, float(argv[2])
    tun = open_tun(DEVICE)
    out = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    out.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, MARK)
    held: list[tuple[float, int, bytes]] = []
    lock = threading.Condition()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    rng = random.Random(5107)

    def send() -> None:
        while not stop.is_set():
            with lock:
                while not held and not stop.is_set():
                    lock.wait(0.2)
                if stop.is_set():
                    return
                due, _, packet = held[0]
                wait = due - time.monotonic()
                if wait > 0:
                    lock.wait(wait)
                    continue
                heapq.heappop(held)
            if len(packet) >= 20 and packet[0] >> 4 == 4:
                destination = socket.inet_ntoa(packet[16:20])
                try:
                    out.sendto(packet, (destination, 0))
                except OSError:
                    pass  # as a wire would: the packet is lost

    threading.Thread(target=send, daemon=True).start()
    print("ready", flush=True)
    seq = 0
    while not stop.is_set():
        readable, _, _ = select.select([tun], [], [], 0.2)
        if not readable:
            continue
        packet = os.read(tun, 65536)
        if rng.random() < loss:
            continue
        seq += 1
        with lock:
            heapq.heappush(held, (time.monotonic() + delay_s, seq, packet))
            lock.notify()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
