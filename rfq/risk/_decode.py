"""Turn msgspec's JSON-path errors into messages that name the netting set, trade or institution.

msgspec reports a bad field as ``... - at `$.netting_sets[0].trades[3].notional```; a user who
wrote the file thinks in ids, not indices, so we look the ids up in the raw document.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec

from rfq.errors import DECODE_ERRORS, ValidationError

_AT = re.compile(r"^(?P<message>.*?)(?: - at `(?P<path>\$[^`]*)`)?$", re.DOTALL)
_SEGMENT = re.compile(r"\.(?P<key>[A-Za-z_][A-Za-z0-9_]*)|\[(?P<index>\d+)\]")

T = TypeVar("T")

# (container key, element) -> a human name for the element, e.g. "trade 'T1'".
Namer = Callable[[str, Any, int], str | None]


def decode(raw: bytes, kind: type[T], namer: Namer) -> T:
    """Decode ``raw`` JSON into ``kind``; any refusal becomes a ``ValidationError`` naming ids."""
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        message, where = _split(str(exc))
        raise ValidationError(message, where=_locate(raw, where, namer)) from None
    except DECODE_ERRORS as exc:
        raise ValidationError(f"invalid JSON: {exc}") from None


def _split(text: str) -> tuple[str, str | None]:
    match = _AT.match(text)
    if match is None:  # pragma: no cover - the pattern matches any string
        return text, None
    return match.group("message"), match.group("path")


def _locate(raw: bytes, path: str | None, namer: Namer) -> str | None:
    """Rewrite ``$.a[0].b[2].field`` as ``a 'id0', b 'id2', field`` using ids from ``raw``."""
    if path is None:
        return None
    try:
        node: Any = msgspec.json.decode(raw)
    except msgspec.DecodeError:  # pragma: no cover - typed decoding already parsed it
        return path
    names: list[str] = []
    key = ""
    for match in _SEGMENT.finditer(path):
        if match.group("key") is not None:
            key = match.group("key")
            node = node.get(key) if isinstance(node, dict) else None
            continue
        index = int(match.group("index"))
        element = node[index] if isinstance(node, list) and index < len(node) else None
        names.append(namer(key, element, index) or f"{key}[{index}]")
        node = element
        key = ""
    if key:
        names.append(f"field {key!r}")
    return ", ".join(names) if names else path
