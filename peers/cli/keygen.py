"""``botc keygen --id ID --role ROLE OUTDIR``: an institution's own key, made on its own machine."""

from __future__ import annotations

import argparse
from typing import Any

from rfq.identity import Role

DESCRIPTION = """\
Make one member's key on the machine that will run it. Writes OUTDIR/ID.key, the secret
(mode 0600, in a directory only you can read), and OUTDIR/ID.identity.json, the public identity:
id, role, name, both public keys and a signature by the new key over them, which proves to the
regulator that whoever sent the file holds the secret. Send only the identity file to the
regulator; the key never leaves OUTDIR. Use NETDIR/keys as OUTDIR to run the member from NETDIR.
An existing key is never overwritten.
"""


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "keygen",
        help="make a member's secret key and its public identity file",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("outdir", metavar="OUTDIR", help="directory for the key (made 0700)")
    parser.add_argument("--id", required=True, dest="member", help="member id, e.g. D1")
    parser.add_argument(
        "--role", required=True, choices=[r.value for r in Role], help="the member's role"
    )
    parser.add_argument("--name", default=None, help="display name (default: e.g. 'Dealer D1')")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from peers.genesis import keygen
    from peers.netdir import display_name

    role = Role(args.role)
    name = args.name if args.name is not None else display_name(role, args.member)
    key, public = keygen(args.outdir, args.member, role, name)
    print(f"secret key:      {key}  (mode 0600; keep it on this machine)")
    print(f"public identity: {public}  (send this file to the regulator)")
    return 0
