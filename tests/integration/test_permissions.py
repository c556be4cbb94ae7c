"""The role-policy table, walked against a live nats-server.

For one member of every role: each subject it may publish reaches a reader, each subject it
may subscribe receives from a member allowed to publish there, each JetStream call it may make
is answered; and every other member's own subjects, every family it holds no grant for and
the JetStream calls nobody holds are refused by the server (a permissions violation).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from nats.aio.msg import Msg
from nats.js.api import StreamConfig

from bus import subjects
from bus.client import Bus
from peers.netdir import permissions
from rfq.identity import Role
from rfq.policy import JsCall

pytestmark = pytest.mark.integration

MEMBER_OF = {
    Role.CLIENT: "C1",
    Role.DEALER: "D1",
    Role.CCP: "CCP",
    Role.GUARANTOR: "G1",
    Role.REGULATOR: "REG",
    Role.ORACLE: "ORACLE",
    Role.BANK: "BANK",
}
OTHER_OF = {
    "C1": "C2",
    "D1": "D2",
    "CCP": "D2",
    "G1": "D2",
    "REG": "C2",
    "ORACLE": "C2",
    "BANK": "C2",
}
"""Another member, whose own subjects ``MEMBER_OF``'s member must not use."""

JS_CALLS_NOBODY_MAKES = (
    "$JS.API.STREAM.DELETE.CHAIN",
    "$JS.API.STREAM.PURGE.CHAIN",
    "$JS.API.STREAM.UPDATE.CHAIN",
    "$JS.API.STREAM.MSG.DELETE.CHAIN",
    "$JS.API.STREAM.CREATE.SNOOP",
    "$JS.API.STREAM.LIST",
    "$JS.API.CONSUMER.CREATE.CHAIN",
    "$JS.API.DIRECT.GET.CHAIN",
    "$JS.API.INFO",
)


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` one or more."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


def concrete(pattern: str, fill: str = "T9") -> str:
    """A subject the pattern matches, its wildcards filled with ``fill``."""
    return ".".join(
        fill if t == "*" else (f"{fill}.{fill}" if t == ">" else t) for t in pattern.split(".")
    )


def allowed(member_perms: dict, direction: str, subject: str) -> bool:
    return any(matches(p, subject) for p in member_perms[direction]["allow"])


async def until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.01)


def refused(bus: Bus, direction: str, subject: str) -> Callable[[], bool]:
    # nats-py reports the server's -ERR in lower case, subject and all.
    needle = f'permissions violation for {direction} to "{subject}"'.lower()
    return lambda: any(needle in e.lower() for e in bus.errors)


class Heard:
    """Every subject a subscription saw (``on_msg`` is its callback)."""

    def __init__(self) -> None:
        self.subjects: set[str] = set()

    async def on_msg(self, msg: Msg) -> None:
        self.subjects.add(msg.subject)


@pytest.fixture
async def members(nats_server, network, bus_factory) -> dict[str, Bus]:
    ids = {m.id for m in network.genesis().members}
    wanted = sorted({*MEMBER_OF.values(), *OTHER_OF.values()} & ids)
    return {mid: await bus_factory(mid) for mid in wanted}


def all_own_subjects(network) -> dict[str, list[str]]:
    """Every subject some member's grants name, instantiated."""
    out: dict[str, list[str]] = {}
    for member in network.genesis().members:
        perms = permissions(member)
        out[member.id] = [
            concrete(p)
            for p in (*perms["publish"]["allow"], *perms["subscribe"]["allow"])
            if not p.startswith("$JS")
        ]
    return out


@pytest.mark.parametrize("role", list(Role))
async def test_every_publish_grant_reaches_a_reader(role, network, members):
    me = MEMBER_OF[role]
    perms = permissions(network.genesis().member(me))
    reg = members["REG"]
    heard = Heard()
    await reg.nc.subscribe(subjects.MARKET_ALL, cb=heard.on_msg)
    await reg.flush()
    wanted = [concrete(p) for p in perms["publish"]["allow"] if not p.startswith("$JS")]
    assert wanted
    for subject in wanted:
        assert matches(subjects.MARKET_ALL, subject), subject  # the regulator reads it all
        # Core NATS is at-most-once: publish until the regulator hears it.
        deadline = time.monotonic() + 5
        while subject not in heard.subjects:
            assert time.monotonic() < deadline, f"{me}'s publish on {subject} never arrived"
            await members[me].nc.publish(subject, b"policy walk")
            await members[me].flush()
            await asyncio.sleep(0.02)
    assert not any("permissions violation" in e.lower() for e in members[me].errors)


@pytest.mark.parametrize("role", list(Role))
async def test_every_subscribe_grant_hears_a_member_allowed_to_publish_there(
    role, network, members
):
    genesis = network.genesis()
    me = MEMBER_OF[role]
    perms = permissions(genesis.member(me))
    publishers = {mid: permissions(genesis.member(mid)) for mid in members}
    for pattern in perms["subscribe"]["allow"]:
        heard = Heard()
        sub = await members[me].nc.subscribe(pattern, cb=heard.on_msg)
        await members[me].flush()
        if pattern.startswith("_INBOX_"):  # replies: a service answers a request
            server = members["CCP"]

            async def answer(msg: Msg, server: Bus = server) -> None:
                await server.nc.publish(msg.reply, b"answer")

            service = await server.nc.subscribe(subjects.query("CCP"), cb=answer)
            await server.flush()
            # Core NATS is at-most-once (a fresh server has lost first messages): ask again.
            for _ in range(20):
                try:
                    reply = await members[me].nc.request(subjects.query("CCP"), b"ask", timeout=0.5)
                    break
                except TimeoutError:
                    continue
            else:
                raise AssertionError(f"{me} never heard the CCP's reply in its inbox")
            assert reply.data == b"answer"
            await service.unsubscribe()
            await sub.unsubscribe()
            continue
        sender, subject = next(
            (
                (m, concrete(p, fill=me))
                for m, perms_of in sorted(publishers.items(), key=lambda mp: mp[0] == me)
                for p in perms_of["publish"]["allow"]
                if matches(pattern, concrete(p, fill=me))
            ),
            ("", ""),
        )
        assert sender, f"nobody may publish on {pattern}, which {me} subscribes"
        deadline = time.monotonic() + 5
        while subject not in heard.subjects:
            assert time.monotonic() < deadline, f"{me} never heard {sender} on {subject}"
            await members[sender].nc.publish(subject, b"policy walk")
            await members[sender].flush()
            await asyncio.sleep(0.02)
        await sub.unsubscribe()
    assert not any("permissions violation" in e.lower() for e in members[me].errors)


@pytest.mark.parametrize("role", list(Role))
async def test_everything_outside_a_roles_grants_is_refused(role, network, members):
    genesis = network.genesis()
    me = MEMBER_OF[role]
    bus = members[me]
    perms = permissions(genesis.member(me))
    candidates = sorted(
        {s for own in all_own_subjects(network).values() for s in own}
        | {f"{subjects.inbox_prefix(OTHER_OF[me])}.T9", *JS_CALLS_NOBODY_MAKES}
    )
    pubs = [s for s in candidates if not allowed(perms, "publish", s)]
    subs = [s for s in candidates if not allowed(perms, "subscribe", s)]
    assert pubs and subs
    for subject in pubs:
        await bus.nc.publish(subject, b"not mine")
    for subject in subs:
        await bus.nc.subscribe(subject)
    await bus.flush()
    for subject in pubs:
        await until(refused(bus, "publish", subject), f"{me}'s publish on {subject} refused")
    for subject in subs:
        await until(refused(bus, "subscription", subject), f"{me}'s sub to {subject} refused")
    # Representative: every role but the regulator is refused these outright.
    if role != Role.REGULATOR:
        assert f"otc.note.{OTHER_OF[me]}" in subs
        assert f"otc.tx.{OTHER_OF[me]}" in pubs
    assert "$JS.API.STREAM.DELETE.CHAIN" in pubs
    assert "$JS.API.STREAM.PURGE.CHAIN" in pubs


@pytest.mark.parametrize("role", list(Role))
async def test_only_authorities_make_the_jetstream_calls_catch_up_needs(role, network, members):
    me = MEMBER_OF[role]
    bus = members[me]
    js = bus.nc.jetstream(timeout=2)
    perms = permissions(network.genesis().member(me))
    grants = [p for p in perms["publish"]["allow"] if p.startswith("$JS")]
    if role not in (Role.DEALER, Role.CCP, Role.GUARANTOR):
        assert grants == []
        with pytest.raises(Exception):  # noqa: B017, PT011 -- no reply comes: a timeout
            await js.stream_info(subjects.CHAIN_STREAM)
        await until(
            refused(bus, "publish", subjects.js_api(JsCall.STREAM_INFO)),
            f"{me}'s stream info refused",
        )
        return
    assert sorted(grants) == sorted(
        f"$JS.API.{call}.CHAIN" for call in ("STREAM.INFO", "STREAM.CREATE", "STREAM.MSG.GET")
    )
    await js.add_stream(
        StreamConfig(
            name=subjects.CHAIN_STREAM,
            subjects=[subjects.CHAIN_ALL],
            deny_delete=True,
            deny_purge=True,
            max_msgs_per_subject=1,
        )
    )
    info = await js.stream_info(subjects.CHAIN_STREAM)
    assert info.config.deny_delete and info.config.deny_purge
    ack = await js.publish(subjects.chain_block(1), b"block one")
    assert ack.stream == subjects.CHAIN_STREAM
    msg = await js.get_last_msg(subjects.CHAIN_STREAM, subjects.chain_block(1))
    assert msg.data == b"block one"
    assert not any("permissions violation" in e.lower() for e in bus.errors)
