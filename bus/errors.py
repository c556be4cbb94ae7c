"""The one exception root of the transport layer."""

from __future__ import annotations


class BusError(Exception):
    """Root of every error the transport raises."""
