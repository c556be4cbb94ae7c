"""Ledger transactions: what members submit to the authorities, and who may submit each.

Every transaction is a ``SignedMessage`` whose payload is one of the structs below (or the
pre-trade ``Accept``: a trade is the client's signed accept carrying the dealer's signed
quote). The transaction id is the digest of the signed message, so a replayed transaction is
the same id and is refused as a duplicate.

| kind | payload | signed by |
|---|---|---|
| ``accept`` | ``rfq.messages.Accept`` (quote inside) | the client |
| ``fixing_tx`` | ``PriceFixing``: the day's closes | the oracle |
| ``close_out`` | ``CloseOutRequest``: done when both parties ask the same | client, dealer |
| ``credit_event`` | ``CreditEventTx``: a member defaults | the regulator |
| ``payment_confirmed`` | ``PaymentConfirmed``: the bank moved the money | the bank |
| ``payment_failed`` | ``PaymentFailed``: the bank could not | the bank |
| ``guarantee_grant`` | ``GuaranteeGrant``: a line against a pledged asset | a guarantor |
| ``guarantee_revoke`` | ``GuaranteeRevoke`` | the granting guarantor |
| ``rating_update`` | ``ExternalRating``: an agency's new grade | the regulator |
| ``register_member`` | ``RegisterMember``: a member admitted after the genesis | the regulator |
| ``suspend_member`` | ``SuspendMember``: the member may no longer trade | the regulator |
| ``offboard_member`` | ``OffboardMember``: the member may send nothing more | the regulator |
| ``reinstate_member`` | ``ReinstateMember``: a suspended member may trade again | the regulator |
| ``gov_nominate``, ``gov_veto``, ``gov_evict`` | the authority set | the regulator |
| ``evidence`` | ``ByzantineEvidence``: two conflicting consensus messages | any member |
"""

from __future__ import annotations

import datetime as dt
from typing import Final

import msgspec

from rfq.identity import Member, Role
from rfq.messages import Accept
from rfq.money import Micros
from rfq.policy import transaction_roles
from rfq.signing import SignedMessage


class PriceFixing(msgspec.Struct, frozen=True, tag="fixing_tx"):
    """Official closes of ``date``; contracts mark, margin and settle on them."""

    date: dt.date
    prices: tuple[tuple[str, float], ...]


class CloseOutRequest(msgspec.Struct, frozen=True, tag="close_out"):
    """One party asks to terminate ``contract_id`` at ``price`` (a settlement level) or, when
    None, at the day's fixing. It executes when the other party asks the same."""

    contract_id: str
    price: float | None = None


class CreditEventTx(msgspec.Struct, frozen=True, tag="credit_event"):
    party: str
    reason: str


class PaymentConfirmed(msgspec.Struct, frozen=True, tag="payment_confirmed"):
    instruction_id: str
    amount: Micros
    bank_ref: str


class PaymentFailed(msgspec.Struct, frozen=True, tag="payment_failed"):
    instruction_id: str
    reason: str


class GuaranteeGrant(msgspec.Struct, frozen=True, tag="guarantee_grant"):
    """A credit line for ``client`` backed by an off-chain asset pledged with the guarantor.

    ``asset_id`` is the SHA-256 (hex) of the asset's off-chain identifier: one asset backs one
    live guarantee. ``line`` may not exceed ``asset_value`` nor the guarantor's free capacity.
    Both are money in micros (``rfq.money``).
    """

    id: str
    client: str
    line: Micros
    asset_id: str
    asset_value: Micros


class GuaranteeRevoke(msgspec.Struct, frozen=True, tag="guarantee_revoke"):
    id: str


class ExternalRating(msgspec.Struct, frozen=True, tag="rating_update"):
    member: str
    grade: str


class RegisterMember(msgspec.Struct, frozen=True, tag="register_member"):
    """Admit ``member`` after the genesis. ``proof`` is the proof of possession of its
    identity file (``rfq.genesis.identity_bytes`` signed by its key, base64): the ledger
    checks it again, so no one can be registered under a key its holder did not present."""

    member: Member
    proof: str = ""


class SuspendMember(msgspec.Struct, frozen=True, tag="suspend_member"):
    """The member may no longer trade (its ``standing`` becomes ``suspended``); its bus
    access ends with it (``peers.callout``)."""

    member: str
    reason: str


class OffboardMember(msgspec.Struct, frozen=True, tag="offboard_member"):
    """The member leaves: admission refuses any transaction it signs from the next one on;
    its live contracts run to maturity on the fixings and the bank's payments."""

    member: str
    reason: str


class ReinstateMember(msgspec.Struct, frozen=True, tag="reinstate_member"):
    """A suspended member may trade again (its ``standing`` entry ends) and its bus access
    comes back (``peers.callout``). Offboarding is final, and a default is a credit event,
    not the regulator's to lift: both are refused."""

    member: str
    reason: str


class Nominate(msgspec.Struct, frozen=True, tag="gov_nominate"):
    member: str


class Veto(msgspec.Struct, frozen=True, tag="gov_veto"):
    member: str


class Evict(msgspec.Struct, frozen=True, tag="gov_evict"):
    member: str
    reason: str


class ByzantineEvidence(msgspec.Struct, frozen=True, tag="evidence"):
    """Two consensus messages one authority signed for the same height, round and step with
    different content: proof of equivocation."""

    first: SignedMessage
    second: SignedMessage


Transaction = (
    Accept
    | PriceFixing
    | CloseOutRequest
    | CreditEventTx
    | PaymentConfirmed
    | PaymentFailed
    | GuaranteeGrant
    | GuaranteeRevoke
    | ExternalRating
    | RegisterMember
    | SuspendMember
    | OffboardMember
    | ReinstateMember
    | Nominate
    | Veto
    | Evict
    | ByzantineEvidence
)

TX_ROLES: Final[dict[str, frozenset[Role]]] = transaction_roles()
"""Who may submit each kind: derived from the role-policy table (``rfq.policy``)."""

tx_decoder: Final = msgspec.msgpack.Decoder(Transaction)
signed_decoder: Final = msgspec.msgpack.Decoder(SignedMessage)
