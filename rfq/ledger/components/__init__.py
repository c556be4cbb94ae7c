"""The ledger's state as components: each owns its maps (and single-value parts), the handlers
of its transaction kinds and its block hooks (``base``); ``registry`` lists them in one place,
and ``rfq.ledger.state.LedgerState`` derives the state root, proofs, snapshot and restore from
that list.

- ``governance``: the authority set (nominate, veto, evict, evidence, liveness, re-election);
- ``members``: registration, external ratings, rating folds, standing;
- ``admission``: envelope checks and the committed ids that refuse replays;
- ``contracts``: trades (accept), fixings, close-outs, the contract book and its outputs;
- ``payments``: instructions, bank confirmations and failures, custody, margin in use;
- ``guarantees``: lines against pledged assets, credit events and the default waterfall.
"""
