"""Smart derivative contracts: the pure engine the PoA authorities run on chain.

- ``Contract`` (``model``): ``Terms`` + agreed price + margin rate + parties + margin terms.
- ``templates``: the template registry, one module per template (its terms' rules, payoff
  scalar and vectorised, fair value, credit exposure, SA-CCR mapping, ticket, random terms).
- ``payoff``: settlement price, value, P&L and initial margin of one contract, scalar, by its
  template.
- ``ContractBook`` (``book``): every contract; apply ``BookEvent``s (``events``), get
  ``BookOutput``s (lifecycle records, ``PaymentInstruction``s, formula-3 ``RatingRecord``s),
  canonical ``state_bytes()`` (or the cheaper sha256 ``state_digest()``) for the state root.
  Live contracts are revalued in numpy columns (``columns``).
- ``waterfall`` (``credit``): collateral, then guarantors, then loss.
- ``offline``: the ``botc contract run`` engine over a terms file and a fixings file.
"""

from __future__ import annotations

from rfq.contracts.book import BookSnapshot, ContractBook, ContractRecord, FixingSeries
from rfq.contracts.credit import ClaimRecovery, Waterfall, waterfall
from rfq.contracts.events import (
    BlockPassed,
    BookEvent,
    BookOutput,
    CloseOut,
    ContractClosedOut,
    ContractDefaulted,
    ContractOpened,
    ContractSettled,
    CreditEvent,
    CreditEventResolved,
    DefaultTriggered,
    Fixing,
    GuaranteeLine,
    GuaranteeUse,
    MarginCallLapsed,
    MarginCalls,
    MarginCallsMet,
    MarginPosted,
    MarginShort,
    NettedMarginPosted,
    OpenContract,
    PaymentInstruction,
    Price,
    RatingRecord,
    decode_event,
    decode_output,
    encode,
)
from rfq.contracts.model import (
    Contract,
    ContractView,
    MarginCall,
    MarginTerms,
    Outcome,
    PaymentKind,
    Status,
    validate_contract,
)

__all__ = [
    "BlockPassed",
    "BookEvent",
    "BookOutput",
    "BookSnapshot",
    "ClaimRecovery",
    "CloseOut",
    "Contract",
    "ContractBook",
    "ContractClosedOut",
    "ContractDefaulted",
    "ContractOpened",
    "ContractRecord",
    "ContractSettled",
    "ContractView",
    "CreditEvent",
    "CreditEventResolved",
    "DefaultTriggered",
    "Fixing",
    "FixingSeries",
    "GuaranteeLine",
    "GuaranteeUse",
    "MarginCall",
    "MarginCallLapsed",
    "MarginCalls",
    "MarginCallsMet",
    "MarginPosted",
    "MarginShort",
    "MarginTerms",
    "NettedMarginPosted",
    "OpenContract",
    "Outcome",
    "PaymentInstruction",
    "PaymentKind",
    "Price",
    "RatingRecord",
    "Status",
    "Waterfall",
    "decode_event",
    "decode_output",
    "encode",
    "validate_contract",
    "waterfall",
]
