"""``botc nats --net NETDIR [--cluster N]``: run the network's nats-server(s) until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import time
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "nats",
        help="run the network's NATS server(s) in the foreground",
        description=(
            "Run nats-server with JetStream and the network's nkey users and permissions, in "
            "the foreground until Ctrl-C. The listening URLs are written to NETDIR/run/nats.json, "
            "where every other botc command finds them. A node that dies is restarted. With "
            "NETDIR/nats/tls/tls.toml, clients connect over TLS and a cluster's routes use mutual "
            "TLS (its certificate is checked first: readable, the CA's, for this host)."
        ),
    )
    parser.add_argument("--net", required=True, metavar="NETDIR", help="network directory")
    parser.add_argument("--cluster", type=int, default=1, metavar="N", help="nodes (default 1)")
    parser.add_argument(
        "--port", type=int, default=4222, help="client port of a single node (0: any; default 4222)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import structlog

    from bus.server import NatsCluster, NatsServer
    from peers.callout import CalloutThread, start_callout
    from peers.errors import CliError
    from peers.netdir import NetDir

    log = structlog.get_logger("botc.nats")
    if args.cluster < 1:
        raise CliError("--cluster must be at least 1")
    net = NetDir(args.net)
    net.genesis()
    auth = net.auth_conf()
    tls = net.tls()
    store = net.data_dir("nats")
    nodes: list[NatsServer]
    if args.cluster == 1:
        nodes = [NatsServer(store, name="n1", port=args.port, auth=auth, tls=tls)]
    else:
        cluster = NatsCluster(
            store, args.cluster, auth=auth, route_password=net.route_password(), tls=tls
        )
        nodes = cluster.nodes
    callouts: list[CalloutThread] = []
    previous = _stop_on_signals()
    try:
        if args.cluster == 1:
            nodes[0].start()
        else:
            cluster.start()
        urls = [n.url for n in nodes]
        net.write_run_file(urls)
        for url in urls:  # one auth callout per node: members connect as the chain says
            callout = start_callout(net, [url])
            if callout is not None:
                callouts.append(callout)
        print(f"nats ready: {' '.join(urls)}  (Ctrl-C to stop)", flush=True)
        while True:
            time.sleep(0.5)
            for node in nodes:
                if not node.running:
                    log.error("nats_node_died", server=node.name, log=str(node.log_path))
                    node.start()
    except KeyboardInterrupt:
        pass
    finally:
        for sig in previous:  # a second signal must not cut the stop short
            signal.signal(sig, signal.SIG_IGN)
        try:
            for callout in callouts:
                callout.stop()
            for node in nodes:
                node.stop()
            net.run_file.unlink(missing_ok=True)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return 0


def _stop_on_signals() -> dict[int, Any]:
    """Ctrl-C, SIGTERM and SIGHUP (the terminal closed) all stop the server(s); a SIGHUP
    already ignored (``nohup botc nats``) stays ignored. Returns the handlers replaced."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
            continue
        previous[sig] = signal.signal(sig, interrupt)
    return previous
