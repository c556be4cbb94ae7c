"""The one exception root of the pure core, and errors that carry their data."""

from __future__ import annotations

import msgspec

DECODE_ERRORS = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)
"""What decoding untrusted bytes can raise: msgspec reports invalid UTF-8 inside a string as
``UnicodeDecodeError``, not as its own ``DecodeError`` (``ValidationError`` is a subclass),
and nesting deeper than the interpreter's recursion limit (a 50,000-deep array in a signed
body) as ``RecursionError``: every one of them is a malformed message, dropped and counted."""


class RfqError(Exception):
    """Root of every error the pure core raises."""


class ValidationError(RfqError):
    """Input that the core refuses; ``where`` names the file, row, field or id at fault."""

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)
