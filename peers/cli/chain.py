"""`botc chain` (not yet built)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser("chain", help="(not yet built)")
    parser.set_defaults(handler=lambda args: parser.error("not yet built"))
