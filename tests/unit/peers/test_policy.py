"""The role-policy table and what is derived from it: permissions, channel roles, TX_ROLES,
query refusals and scopes, the README's table, the route password."""

from __future__ import annotations

import os
import stat
import subprocess
import typing
from pathlib import Path

import pytest

from bus import subjects
from bus.server import NatsServer, find_binary
from peers.authority.queries import QueryService
from peers.authority.store import SqliteChainStore
from peers.netdir import create_network, permission_table, permissions
from rfq import policy
from rfq.identity import AUTHORITY_ELIGIBLE, Role
from rfq.ledger.consensus import CONSENSUS_KINDS
from rfq.ledger.state import LedgerState, Receipt, Receipts, genesis_header
from rfq.ledger.tx import TX_ROLES, Transaction
from rfq.messages import QuoteChannelMessage, RfqChannelMessage
from rfq.queries import (
    GuaranteesQuery,
    PaymentsQuery,
    Query,
    RatingsQuery,
    RatingsReply,
    RegulatorQuery,
    RegulatorReply,
    Reply,
    TradesQuery,
    refusal,
)

README = Path(__file__).resolve().parents[3] / "README.md"


def tags(union: object) -> frozenset[str]:
    return frozenset(str(t.__struct_config__.tag) for t in typing.get_args(union) or (union,))


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    return create_network(tmp_path_factory.mktemp("policy") / "net", dealers=3, clients=3)


def test_the_table_covers_every_role_and_names_only_kinds_that_exist():
    assert set(policy.POLICY) == set(Role)
    channels = policy.CHANNEL_KINDS
    assert channels[policy.BusChannel.RFQS] == tags(RfqChannelMessage)
    assert channels[policy.BusChannel.QUOTES] == tags(QuoteChannelMessage)
    assert channels[policy.BusChannel.QUERY] == tags(Query)
    assert channels[policy.BusChannel.QUERY_REPLY] == tags(Reply)
    assert channels[policy.BusChannel.REGULATOR_QUERY] == tags(RegulatorQuery)
    assert channels[policy.BusChannel.REGULATOR_REPLY] == tags(RegulatorReply)
    assert channels[policy.BusChannel.NOTES] == tags(Receipt | Receipts)
    assert channels[policy.BusChannel.CONSENSUS] == CONSENSUS_KINDS
    assert tags(Transaction) == policy.TRANSACTION_KINDS


def test_tx_roles_is_derived_and_says_what_the_ledger_always_allowed():
    assert policy.transaction_roles() == TX_ROLES
    assert TX_ROLES["accept"] == {Role.CLIENT}
    assert TX_ROLES["close_out"] == {Role.CLIENT, Role.DEALER}
    assert TX_ROLES["fixing_tx"] == {Role.ORACLE}
    assert TX_ROLES["guarantee_grant"] == TX_ROLES["guarantee_revoke"] == {Role.GUARANTOR}
    assert TX_ROLES["payment_confirmed"] == TX_ROLES["payment_failed"] == {Role.BANK}
    for kind in ("credit_event", "rating_update", "register_member", "gov_evict"):
        assert TX_ROLES[kind] == {Role.REGULATOR}
    assert TX_ROLES["evidence"] == frozenset(Role)


def test_only_authority_eligible_roles_vote_seal_publish_blocks_and_touch_jetstream(net):
    consensus = policy.channel_roles(policy.BusChannel.CONSENSUS)
    assert all(roles == AUTHORITY_ELIGIBLE for roles in consensus.values())
    for member in net.genesis().members:
        pub = permissions(member)["publish"]["allow"]
        js = sorted(s for s in pub if s.startswith("$JS"))
        if member.role in AUTHORITY_ELIGIBLE:
            assert subjects.CHAIN_ALL in pub
            assert js == [
                "$JS.API.STREAM.CREATE.CHAIN",
                "$JS.API.STREAM.INFO.CHAIN",
                "$JS.API.STREAM.MSG.GET.CHAIN",
            ]
        else:
            assert subjects.CHAIN_ALL not in pub
            assert js == []
        assert not any(">" in s and s.startswith("$JS") for s in pub)


def test_no_member_but_the_regulator_reads_another_members_subjects(net):
    genesis = net.genesis()
    for member in genesis.members:
        sub = permissions(member)["subscribe"]["allow"]
        others = [m.id for m in genesis.members if m.id != member.id]
        for other in others:
            assert f"_INBOX_{other}.>" not in sub
            assert subjects.notify(other) not in sub
            assert subjects.quotes_for(other) not in sub
        assert ">" not in sub


def test_a_query_beyond_a_roles_scope_is_refused_with_the_reason(net):
    genesis = net.genesis()
    c1, d1, bank, reg = (genesis.member(m) for m in ("C1", "D1", "BANK", "REG"))
    assert "only see its own trades" in (refusal(c1, TradesQuery(party="C2")) or "")
    assert refusal(reg, TradesQuery(party="C2")) is None
    assert refusal(bank, PaymentsQuery(party="C2")) is None
    assert "own payments" in (refusal(d1, PaymentsQuery(party="C2")) or "")
    assert refusal(d1, RatingsQuery(members=("C2",))) is None
    assert "own rating" in (refusal(bank, RatingsQuery(members=("C2",))) or "")
    assert refusal(d1, GuaranteesQuery(client="C2")) is None
    assert "own guarantees" in (refusal(genesis.member("CCP"), GuaranteesQuery(client="C2")) or "")


def test_the_bank_and_the_oracle_asking_every_rating_get_only_their_own(net, tmp_path):
    """They may not name anyone else; before the table, naming no one returned everyone."""
    genesis = net.genesis()
    service = QueryService("D1", SqliteChainStore(tmp_path / "chain.db"))
    state, head = LedgerState(genesis), genesis_header(genesis)

    def ratings(who: str, role: Role) -> RatingsReply:
        reply = service.answer(state, head, 0, who, role, RatingsQuery())
        assert isinstance(reply, RatingsReply)
        return reply

    assert "C1" in ratings("D1", Role.DEALER).ratings
    assert set(ratings("C1", Role.CLIENT).ratings) <= {"C1"}
    assert "C1" not in ratings("BANK", Role.BANK).ratings
    assert "C1" not in ratings("ORACLE", Role.ORACLE).ratings


def test_the_readme_permission_table_is_the_one_the_policy_table_generates():
    text = README.read_text()
    begin, end = "<!-- permission-table:begin -->\n", "<!-- permission-table:end -->"
    shown = text[text.index(begin) + len(begin) : text.index(end)]
    assert shown == permission_table(), (
        "README.md's permission table is stale: paste peers.netdir.permission_table() "
        "between the permission-table markers"
    )


def test_the_route_password_and_the_cluster_config_are_private_and_routes_carry_it(net):
    password = net.route_password()
    assert password and len(password) >= 32
    for name in ("route.secret", "cluster.conf"):
        assert stat.S_IMODE((net.path / "nats" / name).stat().st_mode) == 0o600
    conf = (net.path / "nats" / "cluster.conf").read_text()
    assert f'password: "{password}"' in conf
    assert conf.count(f":{password}@nats") == 3
    # nats-server accepts it.
    checked = subprocess.run(
        [find_binary(), "-c", str(net.path / "nats" / "cluster.conf"), "-t"],
        env={**os.environ, "NODE": "n1"},
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_route_password_with_loose_permissions_is_refused(tmp_path):
    from peers.netdir import NetDirError

    net = create_network(tmp_path / "net")
    os.chmod(net.route_secret_path, 0o644)
    with pytest.raises(NetDirError, match="too open"):
        net.route_password()


def test_a_cluster_nodes_config_holding_the_route_password_is_private(tmp_path):
    node = NatsServer(
        tmp_path, cluster_name="botc", cluster_port=6222, routes=[6223], route_password="ab12"
    )
    assert "nats-route://botc-route:ab12@127.0.0.1:6223" in node.config_text()
    assert 'authorization { user: botc-route, password: "ab12" }' in node.config_text()
    from bus.server import write_private

    write_private(node.config_path, node.config_text())
    assert stat.S_IMODE(node.config_path.stat().st_mode) == 0o600


def test_channel_roles_are_what_the_peers_channels_accept():
    from peers.authority.node import QUERY_CHANNEL, consensus_channel, tx_channel
    from peers.counterparty import QUOTE_CHANNEL
    from peers.dealer import RFQ_CHANNEL
    from peers.ledger_client import NOTE_CHANNEL

    assert dict(tx_channel(1 << 20).roles) == policy.transaction_roles()
    assert dict(consensus_channel(1 << 20).roles) == policy.channel_roles(
        policy.BusChannel.CONSENSUS
    )
    assert dict(QUERY_CHANNEL.roles) == policy.channel_roles(policy.BusChannel.QUERY)
    assert dict(QUOTE_CHANNEL.roles) == {k: {Role.DEALER} for k in ("decline", "quote")}
    assert dict(RFQ_CHANNEL.roles) == {k: {Role.CLIENT} for k in ("rfq", "rfq_cancel")}
    assert dict(NOTE_CHANNEL.roles) == {k: AUTHORITY_ELIGIBLE for k in ("receipt", "receipts")}


def test_installing_the_nats_configs_again_keeps_the_route_password(tmp_path):
    """Servers of one cluster on several machines share the password their operator copied."""
    from peers.netdir import write_nats_confs

    net = create_network(tmp_path / "net")
    before = net.route_password()
    write_nats_confs(net.path / "nats", net.genesis())
    assert net.route_password() == before
    fresh = tmp_path / "elsewhere"
    write_nats_confs(fresh, net.genesis())
    made = (fresh / "route.secret").read_text().strip()
    assert made != before
    assert stat.S_IMODE((fresh / "route.secret").stat().st_mode) == 0o600
    assert f":{made}@nats1" in (fresh / "cluster.conf").read_text()
