"""``botc genesis draft|add|authorities|params|seal|show|install``: the genesis ceremony.

Each step reads its files, checks everything, and only then writes: a refused step (one line,
exit 2) leaves every file as it was.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DESCRIPTION = """\
Build a network's genesis from identities the institutions made themselves (botc keygen), so
no one ever holds another member's key. The regulator runs the steps:

  draft --regulator REG.identity.json DRAFT   start a draft with the regulator as its first member
  add DRAFT ID.identity.json [--rating G]     add members (each proof of possession is checked)
  authorities DRAFT --initial A,B,C,D         the initial authorities (and --candidates)
  params DRAFT --set NAME=VALUE               network parameters (and --rating-weights A,B)
  seal DRAFT --key REG.key GENESIS            sign the finished genesis with the regulator's key
  show GENESIS                                members, authorities, the seal and the sha256 to
                                              compare out of band
  install GENESIS NETDIR                      a member puts the sealed genesis in its NETDIR

Every peer checks the seal and its own key against the genesis when it starts.
"""


def _ids(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "genesis",
        help="the genesis ceremony: draft, add, authorities, params, seal, show, install",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    steps = parser.add_subparsers(dest="step", metavar="STEP", required=True)

    draft = steps.add_parser(
        "draft",
        help="start a draft genesis",
        description="Start a draft genesis whose first member is the regulator.",
    )
    draft.add_argument("out", metavar="DRAFT", help="the draft file to create (JSON)")
    draft.add_argument(
        "--regulator", required=True, metavar="IDENTITY", help="the regulator's identity file"
    )
    draft.add_argument("--name", default="botc", help="network name (default botc)")
    draft.add_argument("--chain-id", default=None, help="chain id (default: a fresh random one)")
    draft.add_argument("--force", action="store_true", help="replace an existing draft")
    draft.set_defaults(handler=run_draft)

    add = steps.add_parser(
        "add",
        help="add members from their identity files",
        description=(
            "Add one or more members from their identity files. Each proof of possession is "
            "checked; an identity added twice, an id another member has and a key another "
            "member has are refused, and then nothing is added."
        ),
    )
    add.add_argument("draft", metavar="DRAFT", help="the draft file")
    add.add_argument("identities", nargs="+", metavar="IDENTITY", help="identity files")
    add.add_argument("--rating", default=None, help="external agency grade: AAA AA A BBB BB B CCC")
    add.add_argument("--capital", type=float, default=0.0, help="capital (default 0)")
    add.add_argument(
        "--ccr-threshold", type=float, default=0.0, help="risk alert threshold (default 0)"
    )
    add.set_defaults(handler=run_add)

    authorities = steps.add_parser(
        "authorities",
        help="set the initial authorities and candidates",
        description="Set the initial authority set (at least 4) and the candidate pool.",
    )
    authorities.add_argument("draft", metavar="DRAFT", help="the draft file")
    authorities.add_argument(
        "--initial", required=True, type=_ids, help="comma-separated ids, e.g. D1,D2,D3,CCP"
    )
    authorities.add_argument(
        "--candidates", type=_ids, default=(), help="comma-separated ids, e.g. D4,G1"
    )
    authorities.set_defaults(handler=run_authorities)

    params = steps.add_parser(
        "params",
        help="set network parameters and rating weights",
        description="Set network parameters (NAME=VALUE, e.g. block_time_ms=200) and weights.",
    )
    params.add_argument("draft", metavar="DRAFT", help="the draft file")
    params.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="one parameter"
    )
    params.add_argument(
        "--rating-weights", default=None, metavar="ALPHA,BETA", help="formula 1 weights"
    )
    params.set_defaults(handler=run_params)

    seal = steps.add_parser(
        "seal",
        help="seal the genesis with the regulator's key",
        description=(
            "Check the draft (every member's proof again, the authorities, the parameters) and "
            "write the genesis signed by the regulator's key. Given a genesis file (.toml) "
            "instead, seal it as it is: a network made before genesis files had seals keeps "
            "its chain (the genesis hash leaves the seal out)."
        ),
    )
    seal.add_argument("draft", metavar="DRAFT", help="the draft file (or a genesis .toml)")
    seal.add_argument("genesis", metavar="GENESIS", help="the genesis file to write (TOML)")
    seal.add_argument("--key", required=True, help="the regulator's key file")
    seal.add_argument("--force", action="store_true", help="replace an existing genesis file")
    seal.set_defaults(handler=run_seal)

    show = steps.add_parser(
        "show",
        help="print a sealed genesis and its sha256",
        description=(
            "Check the regulator's seal and print the members, the authorities and a line "
            "'sha256 HEX': every member compares it with the regulator's out of band."
        ),
    )
    show.add_argument("genesis", metavar="GENESIS", help="a genesis file")
    show.set_defaults(handler=run_show)

    install = steps.add_parser(
        "install",
        help="put a sealed genesis into a network directory",
        description=(
            "Check the seal, check that every key in NETDIR/keys is a member's, then write "
            "NETDIR/genesis.toml and the nats-server configuration."
        ),
    )
    install.add_argument("genesis", metavar="GENESIS", help="the sealed genesis file")
    install.add_argument("netdir", metavar="NETDIR", help="the network directory")
    install.set_defaults(handler=run_install)


def run_draft(args: argparse.Namespace) -> int:
    from peers.errors import CliError
    from peers.genesis import new_chain_id, now_created, read_identity, write_draft
    from rfq.genesis import add_identity, new_draft
    from rfq.identity import Role

    out = Path(args.out)
    if out.exists() and not args.force:
        raise CliError(f"{out}: already exists (use --force to replace it)")
    regulator_file = Path(args.regulator)
    regulator = read_identity(regulator_file)
    if regulator.role != Role.REGULATOR:
        raise CliError(f"{regulator_file}: role is {regulator.role}, not regulator")
    draft = new_draft(args.name, args.chain_id or new_chain_id(), now_created())
    draft = add_identity(draft, regulator, source=str(regulator_file))
    write_draft(out, draft)
    print(f"draft {draft.name} ({draft.chain_id}) in {out}, regulator {regulator.id}")
    return 0


def run_add(args: argparse.Namespace) -> int:
    from peers.genesis import read_draft, read_identity, write_draft
    from rfq.genesis import add_identity

    path = Path(args.draft)
    draft = read_draft(path)
    extra: dict[str, Any] = {"capital": args.capital, "ccr_threshold": args.ccr_threshold}
    if args.rating is not None:
        extra["external_rating"] = args.rating
    added = []
    for name in args.identities:
        identity = read_identity(Path(name))
        draft = add_identity(draft, identity, source=name, **extra)
        added.append(f"{identity.id} ({identity.role})")
    write_draft(path, draft)
    print(f"added {', '.join(added)}: {len(draft.members)} members in {path}")
    return 0


def run_authorities(args: argparse.Namespace) -> int:
    from peers.genesis import read_draft, write_draft
    from rfq.genesis import set_authorities

    path = Path(args.draft)
    draft = set_authorities(read_draft(path), args.initial, args.candidates)
    write_draft(path, draft)
    print(f"authorities: {', '.join(draft.authorities.initial)}")
    print(f"candidates:  {', '.join(draft.authorities.candidates) or '-'}")
    return 0


def run_params(args: argparse.Namespace) -> int:
    from peers.errors import CliError
    from peers.genesis import read_draft, write_draft
    from rfq.genesis import set_params

    values: dict[str, str] = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise CliError(f"--set {item!r}: expected NAME=VALUE")
        values[name.strip()] = value.strip()
    rating = None
    if args.rating_weights is not None:
        try:
            alpha, beta = (float(x) for x in args.rating_weights.split(","))
        except ValueError:
            raise CliError(
                f"--rating-weights {args.rating_weights!r}: expected ALPHA,BETA"
            ) from None
        rating = (alpha, beta)
    path = Path(args.draft)
    draft = set_params(read_draft(path), values, rating)
    write_draft(path, draft)
    changed = ", ".join(f"{k}={getattr(draft.params, k)}" for k in values) or "no parameters"
    print(f"{changed}; rating weights {draft.rating.alpha}, {draft.rating.beta}")
    return 0


def run_seal(args: argparse.Namespace) -> int:
    from peers.errors import CliError
    from peers.genesis import (
        genesis_text,
        read_draft,
        read_key_file,
        read_unsealed_genesis,
        write_atomic,
    )
    from rfq.genesis import seal_as_regulator, seal_draft

    out = Path(args.genesis)
    if out.exists() and not args.force:
        raise CliError(f"{out}: already exists (use --force to replace it)")
    path = Path(args.draft)
    key = read_key_file(Path(args.key))
    if path.suffix == ".toml":  # a genesis made without a draft (before seals): seal it as is
        genesis = seal_as_regulator(read_unsealed_genesis(path), key)
    else:
        genesis = seal_draft(read_draft(path), key, source=str(path))
    try:
        write_atomic(out, genesis_text(genesis))
    except OSError as exc:
        raise CliError(f"{out}: cannot write ({exc.strerror})") from None
    print(f"sealed {genesis.name} ({genesis.chain_id}): {len(genesis.members)} members -> {out}")
    print(f"sha256 {genesis.hash().hex()}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from peers.genesis import read_genesis

    genesis = read_genesis(Path(args.genesis))
    print(f"genesis {genesis.name} ({genesis.chain_id}), created {genesis.created}")
    width = max(len(m.id) for m in genesis.members)
    for m in genesis.members:
        rating = m.external_rating or "-"
        print(f"  {m.id:<{width}}  {m.role.value:<9}  {rating:<3}  {m.sign_key}  {m.name}")
    print(f"authorities: {', '.join(genesis.authorities.initial)}")
    print(f"candidates:  {', '.join(genesis.authorities.candidates) or '-'}")
    print(f"sealed by {genesis.regulator.id} (the seal verifies)")
    print(f"sha256 {genesis.hash().hex()}")
    return 0


def run_install(args: argparse.Namespace) -> int:
    from peers.netdir import install_genesis

    net, mine = install_genesis(Path(args.genesis), Path(args.netdir))
    genesis = net.genesis()
    print(f"installed {genesis.name} ({genesis.chain_id}) in {net.path}")
    print(f"  keys here: {', '.join(mine) or '-'}")
    print(f"sha256 {genesis.hash().hex()}")
    return 0
