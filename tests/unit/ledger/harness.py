"""An in-memory network for ledger tests: identities, signed transactions, a chain driver."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

import msgspec

from rfq.identity import AuthoritySetup, Genesis, Identity, NetworkParams, Role
from rfq.instruments import Leg, Side, Template, Terms
from rfq.ledger.block import BlockHeader, genesis_block
from rfq.ledger.driver import ChainDriver
from rfq.ledger.state import BlockResult, LedgerState, Receipt
from rfq.messages import Accept, Quote
from rfq.rating import RatingWeights
from rfq.signing import SignedMessage, sign_payload

CHAIN = "botc-test"
T0 = int(dt.datetime(2026, 11, 23, 9, tzinfo=dt.UTC).timestamp() * 1000)  # a Monday
TODAY = dt.date(2026, 11, 23)

MEMBERS: list[tuple[str, Role, dict[str, object]]] = [
    ("D1", Role.DEALER, {"external_rating": "A", "capital": 2e8}),
    ("D2", Role.DEALER, {"external_rating": "A", "capital": 2e8}),
    ("D3", Role.DEALER, {"external_rating": "A", "capital": 2e8}),
    ("CCP", Role.CCP, {"external_rating": "AA", "capital": 1e9}),
    ("G1", Role.GUARANTOR, {"external_rating": "A", "capital": 5e6}),
    ("G2", Role.GUARANTOR, {"external_rating": "A", "capital": 5e6}),
    ("REG", Role.REGULATOR, {}),
    ("ORACLE", Role.ORACLE, {}),
    ("BANK", Role.BANK, {}),
    ("C1", Role.CLIENT, {"external_rating": "BBB", "capital": 2e7}),
    ("C2", Role.CLIENT, {"external_rating": "A", "capital": 2e7}),
]


@dataclass
class Net:
    genesis: Genesis
    ids: dict[str, Identity]
    nonces: dict[str, int] = field(default_factory=dict)

    def sign(
        self, who: str, payload: msgspec.Struct, *, at_ms: int, ttl_ms: int = 60_000
    ) -> SignedMessage:
        self.nonces[who] = self.nonces.get(who, 0) + 1
        return sign_payload(
            self.ids[who],
            payload,
            chain_id=CHAIN,
            nonce=self.nonces[who],
            timestamp_ms=at_ms,
            expires_ms=at_ms + ttl_ms,
        )

    def tx(self, who: str, payload: msgspec.Struct, *, at_ms: int, ttl_ms: int = 60_000) -> bytes:
        return msgspec.msgpack.encode(self.sign(who, payload, at_ms=at_ms, ttl_ms=ttl_ms))


def seeded_identity(member_id: str, role: Role) -> Identity:
    """The same keys every run (a pinned state root needs the same public keys)."""
    return Identity(member_id, role, hashlib.sha256(f"botc-test/{member_id}".encode()).digest())


def make_net(*, seeded: bool = False, **params: object) -> Net:
    """A test network; ``seeded``: keys derived from the member ids instead of random ones."""
    make = seeded_identity if seeded else Identity.generate
    ids = {mid: make(mid, role) for mid, role, _ in MEMBERS}
    members = tuple(ids[mid].member(mid, **extra) for mid, _, extra in MEMBERS)  # type: ignore[arg-type]
    genesis = Genesis(
        name="test",
        chain_id=CHAIN,
        created="2026-11-23T00:00:00+00:00",
        members=members,
        authorities=AuthoritySetup(initial=("CCP", "D1", "D2", "D3"), candidates=("G1",)),
        rating=RatingWeights(alpha=0.4, beta=0.6),
        params=NetworkParams(**params),  # type: ignore[arg-type]
    )
    return Net(genesis, ids)


def swap_terms(
    underlying: str = "RB2705", side: Side = Side.BUY, quantity: float = 1000, days: int = 90
) -> Terms:
    return Terms(
        template=Template.PRICE_SWAP,
        legs=(Leg(underlying),),
        client_side=side,
        quantity=quantity,
        trade_date=TODAY,
        maturity=TODAY + dt.timedelta(days=days),
    )


def trade_tx(
    net: Net,
    *,
    rfq_id: str,
    client: str = "C1",
    dealer: str = "D1",
    price: float = 3200.0,
    terms: Terms | None = None,
    at_ms: int = T0,
    valid_ms: int = 30_000,
    im_rate: float = 0.1,
    credit_line: float = 0.0,
    accept_at_ms: int | None = None,
) -> bytes:
    quote = Quote(
        id=f"{rfq_id}-{dealer}",
        rfq_id=rfq_id,
        client=client,
        dealer=dealer,
        terms=terms or swap_terms(),
        price=price,
        valid_until_ms=at_ms + valid_ms,
        initial_margin_rate=im_rate,
        credit_line=credit_line,
    )
    signed_quote = net.sign(dealer, quote, at_ms=at_ms)
    accept = Accept(
        rfq_id=rfq_id, quote_id=quote.id, client=client, dealer=dealer, quote=signed_quote
    )
    return net.tx(client, accept, at_ms=accept_at_ms or at_ms + 100)


class Chain:
    """Drives a LedgerState block by block with real headers (proposer rotation, rounds)."""

    def __init__(self, net: Net) -> None:
        self.net = net
        genesis_hash = hashlib.sha256(b"genesis").digest()
        initial = LedgerState(net.genesis)
        self.driver = ChainDriver(
            net.genesis,
            genesis_block(
                CHAIN, genesis_hash, initial.authorities, initial.state_root(), T0 - 1000
            ).header,
        )
        self.results: list[BlockResult] = []
        self.blocks: list[tuple[int, int, BlockHeader, tuple[bytes, ...], bytes]] = []
        """(height, timestamp, parent header, txs, state root after) of every block."""

    @property
    def state(self) -> LedgerState:
        return self.driver.state

    @state.setter
    def state(self, state: LedgerState) -> None:
        self.driver.state = state

    @property
    def head(self) -> BlockHeader:
        return self.driver.head

    @head.setter
    def head(self, head: BlockHeader) -> None:
        self.driver.head = head

    def block(self, *txs: bytes, at_ms: int | None = None, round: int = 0) -> BlockResult:
        parent = self.head
        timestamp = at_ms if at_ms is not None else parent.timestamp_ms + 1000
        block, result = self.driver.block(txs, timestamp_ms=timestamp, round=round)
        self.blocks.append((block.height, timestamp, parent, txs, block.header.state_root))
        self.results.append(result)
        return result

    def receipt(self, result: BlockResult, index: int = 0) -> Receipt:
        return result.receipts[index]
