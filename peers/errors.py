"""The one exception root of the services layer."""

from __future__ import annotations


class PeerError(Exception):
    """Root of every error a service raises."""


class CliError(PeerError):
    """Bad command-line input: printed as one line, exit code 2."""
