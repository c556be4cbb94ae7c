"""The PoA authority: mempool, QBFT committer/validator, SQLite chain, catch-up, queries."""
