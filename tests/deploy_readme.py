"""The README's "Deploying a consortium" section, read by the tests that keep it true: its
``sh`` blocks are the ceremony's commands, machine by machine (``tests/e2e``), and its
``botc keygen`` lines name the consortium's institutions (``tests/unit/peers/test_compose``).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Deploying a consortium\n"


def section(readme: Path = ROOT / "README.md") -> str:
    text = readme.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start : end if end >= 0 else len(text)]


def sh_blocks(text: str | None = None) -> list[str]:
    """The section's ``sh`` code blocks, in order (other blocks need a running network)."""
    return re.findall(r"^```sh\n(.*?)^```$", text or section(), re.S | re.M)


def commands(text: str | None = None) -> list[list[str]]:
    """Each shell command of the ``sh`` blocks as words (continuation lines joined)."""
    joined = "\n".join(sh_blocks(text)).replace("\\\n", " ")
    found = []
    for line in joined.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            found.append(shlex.split(line))
    return found


def institutions(text: str | None = None) -> dict[str, str]:
    """Each institution's id and role, from its ``botc keygen`` line."""
    members = {}
    for words in commands(text):
        if words[:2] == ["botc", "keygen"]:
            members[words[words.index("--id") + 1]] = words[words.index("--role") + 1]
    return members
