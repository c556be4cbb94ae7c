"""B-OTC pure core: schemas, pricing, rating, risk, contracts and ledger rules.

Nothing in this package does I/O, touches asyncio or reads a clock: every decision the
marketplace makes is a deterministic function here, tested without a server.
"""
