"""``botc nats --net NETDIR [--cluster N]``: run the network's nats-server(s) until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "nats",
        help="run the network's NATS server(s) in the foreground",
        description=(
            "Run nats-server with JetStream and the network's nkey users and permissions, in "
            "the foreground until Ctrl-C. The listening URLs are written to NETDIR/run/nats.json, "
            "where every other botc command finds them. A node that dies is restarted."
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
    from peers.errors import CliError
    from peers.netdir import NetDir

    log = structlog.get_logger("botc.nats")
    if args.cluster < 1:
        raise CliError("--cluster must be at least 1")
    net = NetDir(args.net)
    net.genesis()
    auth = net.auth_conf()
    store = net.data_dir("nats")
    nodes: list[NatsServer]
    if args.cluster == 1:
        nodes = [NatsServer(store, name="n1", port=args.port, auth=auth).start()]
    else:
        nodes = NatsCluster(store, args.cluster, auth=auth).start().nodes
    urls = [n.url for n in nodes]
    net.write_run_file(urls)
    print(f"nats ready: {' '.join(urls)}  (Ctrl-C to stop)", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            for node in nodes:
                if not node.running:
                    log.error("nats_node_died", server=node.name, log=str(node.log_path))
                    node.start()
    except KeyboardInterrupt:
        pass
    finally:
        for node in nodes:
            node.stop()
        net.run_file.unlink(missing_ok=True)
    return 0
