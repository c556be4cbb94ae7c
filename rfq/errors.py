"""The one exception root of the pure core, and errors that carry their data."""

from __future__ import annotations


class RfqError(Exception):
    """Root of every error the pure core raises."""


class ValidationError(RfqError):
    """Input that the core refuses; ``where`` names the file, row, field or id at fault."""

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)
