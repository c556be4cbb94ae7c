"""Benchmarks behind ``botc bench``; each reports its figures next to a same-run baseline."""
