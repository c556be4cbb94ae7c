"""``botc tls ca|cert|use|check``: the consortium CA, per-host certificates, a network's TLS."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DESCRIPTION = """\
TLS for the network's NATS connections. The consortium's CA signs one certificate per
nats-server host (used for clients and for the cluster's routes, which are mutual TLS: a server
without a CA-signed certificate cannot join) and, for mutual TLS with clients, a certificate
per peer. Keys are written mode 0600; nothing existing is overwritten without --force.

  botc tls ca CADIR --name NAME                       CADIR/ca.key (0600) and CADIR/ca.pem
  botc tls cert --ca CADIR --host HOST[,IP...] OUT    OUT.pem and OUT.key, for those hosts
  botc tls cert --ca CADIR --client ID OUT            a client certificate for member ID
  botc tls use --net NETDIR --ca-file ca.pem ...      turn TLS on with these files (any PKI's)
  botc tls check --net NETDIR [--host HOST]           what a server and a client would refuse

botc init writes a one-machine CA and certificates into NETDIR/nats/tls (unless --no-tls).
"""


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "tls",
        help="make a CA and certificates; turn a network's TLS on",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="tls_command", metavar="ACTION", required=True)

    ca = sub.add_parser("ca", help="a consortium CA: OUTDIR/ca.key (0600) and OUTDIR/ca.pem")
    ca.add_argument("outdir", metavar="OUTDIR", help="directory for the CA's key and certificate")
    ca.add_argument("--name", default="botc", help="the consortium's name (default botc)")
    ca.add_argument("--days", type=int, default=3650, help="validity (default 3650)")
    ca.add_argument("--force", action="store_true", help="replace an existing CA")
    ca.set_defaults(handler=run_ca)

    cert = sub.add_parser("cert", help="a certificate signed by the CA: OUT.pem and OUT.key")
    cert.add_argument("out", metavar="OUT", help="writes OUT.pem and OUT.key (0600)")
    cert.add_argument("--ca", required=True, metavar="CADIR", help="the CA's directory")
    who = cert.add_mutually_exclusive_group(required=True)
    who.add_argument(
        "--host", metavar="HOST[,IP...]", help="a server certificate for these names and IPs"
    )
    who.add_argument("--client", metavar="ID", help="a client certificate for a member")
    cert.add_argument("--days", type=int, default=825, help="validity (default 825)")
    cert.add_argument("--force", action="store_true", help="replace existing files")
    cert.set_defaults(handler=run_cert)

    use = sub.add_parser(
        "use", help="turn TLS on for a network with these files (writes NETDIR/nats/tls/tls.toml)"
    )
    use.add_argument("--net", required=True, metavar="NETDIR", help="network directory")
    use.add_argument("--ca-file", required=True, help="the CA certificate every peer trusts")
    use.add_argument("--cert-file", help="this machine's nats-server certificate")
    use.add_argument("--key-file", help="its key")
    use.add_argument("--client-cert-file", help="this machine's client certificate")
    use.add_argument("--client-key-file", help="its key")
    use.add_argument(
        "--verify-clients",
        action="store_true",
        help="servers require CA-signed client certificates (mutual TLS)",
    )
    use.add_argument("--server-name", help="check servers' certificates for this name")
    use.add_argument(
        "--host", default="127.0.0.1", help="the host the server listens on (default 127.0.0.1)"
    )
    use.add_argument("--force", action="store_true", help="replace an existing tls.toml")
    use.set_defaults(handler=run_use)

    check = sub.add_parser("check", help="check a network's TLS files as servers and peers will")
    check.add_argument("--net", required=True, metavar="NETDIR", help="network directory")
    check.add_argument(
        "--host", default="127.0.0.1", help="the host the server listens on (default 127.0.0.1)"
    )
    check.set_defaults(handler=run_check)


def _positive_days(days: int) -> None:
    from peers.errors import CliError

    if days < 1:
        raise CliError(f"--days must be at least 1, not {days}")


def run_ca(args: argparse.Namespace) -> int:
    from bus.tls import CA_KEY, write_ca

    _positive_days(args.days)
    cert = write_ca(args.outdir, args.name, days=args.days, force=args.force)
    print(f"CA certificate: {cert}  (give it to every member)")
    print(f"CA key:         {Path(args.outdir) / CA_KEY}  (mode 0600; keep it with the CA)")
    return 0


def run_cert(args: argparse.Namespace) -> int:
    from bus.tls import parse_hosts, write_certificate

    _positive_days(args.days)
    hosts = parse_hosts(args.host) if args.host is not None else []
    if args.client is not None and not args.client.strip():
        from peers.errors import CliError

        raise CliError("--client names no member")
    cert, key = write_certificate(
        args.ca, args.out, hosts=hosts, client=args.client, days=args.days, force=args.force
    )
    what = f"hosts {', '.join(hosts)}" if hosts else f"client {args.client}"
    print(f"certificate: {cert}  ({what})")
    print(f"key:         {key}  (mode 0600)")
    return 0


def run_use(args: argparse.Namespace) -> int:
    from bus.tls import TlsError, read_settings, settings_text
    from peers.errors import CliError
    from peers.netdir import NetDir, write_nats_confs

    net = NetDir(args.net)
    genesis = net.genesis()
    if (args.cert_file is None) != (args.key_file is None):
        raise CliError("--cert-file and --key-file go together")
    if (args.client_cert_file is None) != (args.client_key_file is None):
        raise CliError("--client-cert-file and --client-key-file go together")
    if args.verify_clients and args.client_cert_file is None:
        raise CliError("--verify-clients needs --client-cert-file and --client-key-file")
    target = net.tls_settings_path
    if target.exists() and not args.force:
        raise CliError(f"{target}: already exists (use --force to replace it)")

    here = target.parent.resolve()

    def absolute(path: str | None) -> str | None:
        """A file in NETDIR/nats/tls by its name (the directory can move: a container mounts
        NETDIR elsewhere), any other by its absolute path."""
        if path is None:
            return None
        resolved = Path(path).resolve()
        return resolved.name if resolved.parent == here else str(resolved)

    text = settings_text(
        ca_file=str(absolute(args.ca_file)),
        cert_file=absolute(args.cert_file),
        key_file=absolute(args.key_file),
        client_cert_file=absolute(args.client_cert_file),
        client_key_file=absolute(args.client_key_file),
        verify_clients=args.verify_clients,
        server_name=args.server_name,
    )
    staged = target.with_name(".tls.toml.new")
    staged.parent.mkdir(parents=True, exist_ok=True)
    staged.write_text(text)
    try:
        settings = read_settings(staged)
        if settings.cert_file is not None:
            settings.check_server(args.host)
        settings.check_client()
    except TlsError:
        staged.unlink(missing_ok=True)
        raise
    staged.replace(target)
    settings = read_settings(target)
    write_nats_confs(net.path / "nats", genesis, tls=settings if settings.cert_file else None)
    print(f"tls on: {target}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from peers.errors import CliError
    from peers.netdir import NetDir

    net = NetDir(args.net)
    net.genesis()
    settings = net.tls()
    if settings is None:
        raise CliError(f"{net.path}: TLS is off (no {net.tls_settings_path})")
    if settings.cert_file is not None:
        settings.check_server(args.host)
        print(f"server: {settings.cert_file} is the CA's, for {args.host}, with its key")
    settings.check_client()
    client = "with client certificate" if settings.verify_clients else "no client certificate"
    print(f"client: trusts {settings.ca_file}; {client}")
    return 0
