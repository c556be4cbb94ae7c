"""``botc regulator --net NETDIR [ACTION ...]``: the regulator peer and its governance actions.

Without an action it runs the risk monitor and consensus watch until Ctrl-C. With one it signs
one governance transaction, waits for its receipt and prints it as JSON: exit 0 when the chain
applied it, 1 when the chain refused it (the reason is in the receipt), 2 on bad input.
"""

from __future__ import annotations

import argparse
from typing import Any

DESCRIPTION = """\
Run the regulator (no ACTION): follow the chain through the authorities, recompute the SA-CCR
exposure of every bilateral netting set and each institution's expected loss
(EL = PD x EAD x LGD) at every new final block, raise a risk alert on otc.risk.alert, with the
cascade its default would cause, when an institution's exposure crosses its ccr_threshold in the
genesis (once per crossing), answer the terminals' risk and what-if questions, and report to the
chain any authority that signs two conflicting consensus messages.

Or run one governance action and print its receipt
({"action", "member", "tx_id", "ok", "height", "reason", "refs"}):

  nominate MEMBER                 make a dealer, CCP or guarantor a candidate authority
  veto MEMBER                     strike a candidate from the pool
  evict MEMBER --reason TEXT      remove an authority; the next candidate takes its place
  credit-event MEMBER --reason T  declare a member's default (its contracts run the waterfall;
                                  an authority is evicted)
  rating MEMBER GRADE             record an external agency grade (AAA AA A BBB BB B CCC)
  admit IDENTITY.json             admit the member botc keygen made (its proof checked here
    [--rating G] [--capital X]    and again by the ledger); its bus access follows at once
    [--ccr-threshold X]
  suspend MEMBER --reason TEXT    the member may no longer trade; its connections end
  reinstate MEMBER --reason TEXT  lift a suspension: it trades and connects again
  offboard MEMBER --reason TEXT   the member may send nothing more; its connections end
                                  (its live contracts run to maturity)

Exit codes: 0 applied, 1 refused by the chain, 2 bad input or no authority reachable.
"""


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "regulator",
        help="run the risk monitor, or a governance action (nominate, veto, evict, ...)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--net", required=True, metavar="NETDIR", help="network directory")
    parser.add_argument("--id", dest="member", default=None, help="regulator id (default: genesis)")
    parser.add_argument("--servers", default=None, help="comma-separated NATS URLs")
    parser.add_argument(
        "--poll", type=float, default=0.5, help="seconds between chain polls (default 0.5)"
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for a receipt (default 30)"
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    for name, text in (
        ("nominate", "make MEMBER a candidate authority"),
        ("veto", "strike MEMBER from the candidates"),
    ):
        sub = actions.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        sub.add_argument("target", metavar="MEMBER", help="a member id, e.g. D4 or G1")
    for name, text in (
        ("evict", "remove authority MEMBER"),
        ("credit-event", "declare MEMBER's default"),
    ):
        sub = actions.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        sub.add_argument("target", metavar="MEMBER", help="a member id, e.g. D1 or C2")
        sub.add_argument("--reason", required=True, help="recorded on chain")
    sub = actions.add_parser(
        "rating",
        help="record an external grade for MEMBER",
        description="Record an external agency grade for MEMBER; its rating follows.",
    )
    sub.add_argument("target", metavar="MEMBER", help="a member id, e.g. C1")
    sub.add_argument("grade", metavar="GRADE", help="AAA, AA, A, BBB, BB, B or CCC")
    sub = actions.add_parser(
        "admit",
        help="admit a new member from its identity file",
        description="Admit the member whose identity file botc keygen wrote.",
    )
    sub.add_argument("target", metavar="IDENTITY.json", help="the member's public identity file")
    sub.add_argument("--rating", default=None, help="its external grade (AAA ... CCC)")
    sub.add_argument("--capital", type=float, default=0.0, help="its capital (risk monitor)")
    sub.add_argument(
        "--ccr-threshold", type=float, default=0.0, help="its exposure alert threshold"
    )
    for name, text in (
        ("suspend", "stop MEMBER trading and end its bus access"),
        ("reinstate", "lift MEMBER's suspension: it trades and connects again"),
        ("offboard", "remove MEMBER: it may send nothing more"),
    ):
        sub = actions.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        sub.add_argument("target", metavar="MEMBER", help="a member id, e.g. C3")
        sub.add_argument("--reason", required=True, help="recorded on chain")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from peers.errors import CliError
    from peers.netdir import NetDir

    if args.poll <= 0 or args.timeout <= 0:
        raise CliError("--poll and --timeout must be positive")
    net = NetDir(args.net)
    genesis = net.genesis()
    member = args.member or genesis.regulator.id
    servers = args.servers.split(",") if args.servers else None
    if args.action is None:
        return _serve(net, member, servers, args.poll)
    return _one_shot(net, member, servers, args)


def _serve(net: Any, member: str, servers: list[str] | None, poll: float) -> int:
    import asyncio

    from peers.regulator import RegulatorService
    from peers.runtime import open_bus, run_until_signal
    from rfq.identity import Role
    from rfq.queries import RiskAlert

    def show(alert: RiskAlert) -> None:
        spread = " -> ".join("+".join(r) for r in alert.cascade_rounds)
        print(
            f"ALERT height {alert.height}: {alert.institution} EAD {alert.ead:,.0f} > "
            f"threshold {alert.threshold:,.0f}; cascade {spread}",
            flush=True,
        )

    async def main(stop: asyncio.Event) -> int:
        bus = await open_bus(net, member, servers=servers, roles={Role.REGULATOR})
        service = RegulatorService(
            bus,
            net.genesis(),
            poll_s=poll,
            store_path=net.follower_store(member, "regulator"),
        )
        service.alert_listeners.append(show)
        await service.start()
        # ready once the monitor holds the market (a supervisor waits for this line), not
        # while it still reads a large state in
        waits = [asyncio.ensure_future(e.wait()) for e in (service.assessed, stop)]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for waiting in waits:
            waiting.cancel()
        if service.assessed.is_set():
            print(
                f"regulator {member} monitoring {len(service.monitor.live):,} live contracts "
                f"at height {service.height} (Ctrl-C to stop)",
                flush=True,
            )
        await stop.wait()
        await service.close()
        await bus.close()
        return 0

    return run_until_signal(main)


def _one_shot(net: Any, member: str, servers: list[str] | None, args: argparse.Namespace) -> int:
    import asyncio
    import json
    import sys
    from pathlib import Path

    import msgspec

    from peers.errors import CliError
    from peers.ledger_client import LedgerClient
    from peers.regulator import governance_payload
    from peers.runtime import open_bus
    from rfq.identity import Role
    from rfq.ledger.tx import RegisterMember

    payload: msgspec.Struct | None = None

    genesis = net.genesis()
    membership = args.action in MEMBERSHIP_ACTIONS
    if membership:
        path = Path(args.target)
        if args.action == "admit" and not path.is_file():
            raise CliError(f"{path}: no such identity file")
    elif args.target not in {m.id for m in genesis.members}:
        membership = True  # admitted after the genesis: checked against the chain's registry
    else:
        payload = governance_payload(
            genesis,
            args.action,
            args.target,
            reason=getattr(args, "reason", "") or "",
            grade=getattr(args, "grade", "") or "",
        )

    async def main() -> int:
        nonlocal payload
        bus = await open_bus(net, member, servers=servers, roles={Role.REGULATOR})
        try:
            if membership:
                payload = await _membership_payload(bus, genesis, args)
            assert payload is not None
            ledger = await LedgerClient(bus, genesis).start()
            receipt = await ledger.submit_and_wait(payload, timeout=args.timeout)
        finally:
            await bus.close()
        target = payload.member.id if isinstance(payload, RegisterMember) else args.target
        print(
            json.dumps(
                {
                    "action": args.action,
                    "member": target,
                    "tx_id": receipt.tx_id,
                    "ok": receipt.ok,
                    "height": receipt.height,
                    "reason": receipt.reason,
                    "refs": list(receipt.refs),
                }
            ),
            flush=True,
        )
        if not receipt.ok:
            print(f"botc regulator: refused: {receipt.reason}", file=sys.stderr)
            return 1
        return 0

    return asyncio.run(main())


MEMBERSHIP_ACTIONS = ("admit", "suspend", "reinstate", "offboard")
"""Actions checked against the chain's state before they are sent (exit 2 when it refuses)."""


async def _membership_payload(bus: Any, genesis: Any, args: argparse.Namespace) -> Any:
    """Admit, suspend, reinstate or offboard, checked against the state this regulator
    verified itself: a follower executes the final blocks from the genesis (no single
    authority is trusted)."""
    from pathlib import Path

    from peers.membership import admission_payload, standing_payload
    from peers.observer import ChainFollower

    follower = ChainFollower(bus, genesis)
    await follower.catch_up()
    if args.action == "admit":
        return admission_payload(
            Path(args.target),
            follower.state,
            rating=args.rating,
            capital=args.capital,
            ccr_threshold=args.ccr_threshold,
        )
    if args.action in MEMBERSHIP_ACTIONS:
        return standing_payload(follower.state, args.action, args.target, args.reason)
    from peers.regulator import governance_payload

    return governance_payload(
        genesis,
        args.action,
        args.target,
        reason=getattr(args, "reason", "") or "",
        grade=getattr(args, "grade", "") or "",
        members=follower.state.members,
    )
