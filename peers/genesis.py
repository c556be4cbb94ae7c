"""The genesis ceremony's files: secret keys, public identities, drafts and the sealed genesis.

```
OUTDIR/<ID>.key             botc keygen: the member's secret seed, mode 0600 in a 0700 directory
OUTDIR/<ID>.identity.json   botc keygen: id, role, name, public keys, proof of possession
DRAFT.json                  botc genesis draft/add/authorities/params: the genesis being built
GENESIS (genesis.toml)      botc genesis seal: the regulator-sealed genesis every node reads
```

Reading refuses with one line naming the file (``CeremonyError``, exit 2); writing changes
nothing when it refuses. ``botc init`` runs the same functions on one machine.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import stat
from pathlib import Path

import msgspec
import tomli_w

from peers.errors import PeerError
from rfq.errors import DECODE_ERRORS, ValidationError
from rfq.genesis import (
    GenesisDraft,
    PublicIdentity,
    identity_json,
    parse_identity,
    public_identity,
    seal_problem,
)
from rfq.identity import (
    Genesis,
    Identity,
    Role,
    genesis_to_dict,
    parse_genesis,
    parse_key_file,
    validate_member,
)

KEY_SUFFIX = ".key"
IDENTITY_SUFFIX = ".identity.json"


class CeremonyError(PeerError):
    """A key, identity, draft or genesis file the ceremony refuses; one line, exit 2."""


def new_chain_id() -> str:
    """A fresh network's chain id: random, so no two networks' messages can be replayed
    into each other."""
    return "botc-" + os.urandom(6).hex()


def now_created() -> str:
    """A genesis creation time: now, UTC, to the second."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def key_file(outdir: Path, member_id: str) -> Path:
    return outdir / f"{member_id}{KEY_SUFFIX}"


def identity_file(outdir: Path, member_id: str) -> Path:
    return outdir / f"{member_id}{IDENTITY_SUFFIX}"


# --------------------------------------------------------------------------------------------
# botc keygen


def keygen(outdir: str | Path, member_id: str, role: Role, name: str) -> tuple[Path, Path]:
    """Make a member's key in ``outdir``: the secret (0600) and its public identity.

    Refuses a bad id, a directory others can read, and an existing key (a secret is never
    overwritten); returns the key and identity paths.
    """
    out = Path(outdir)
    try:
        return write_new_key(out, member_id, role, name)
    except OSError as exc:
        raise CeremonyError(f"{out}: cannot write the key ({exc.strerror or exc})") from None


def write_new_key(out: Path, member_id: str, role: Role, name: str) -> tuple[Path, Path]:
    """``keygen`` for a caller that reports ``OSError`` itself (``botc init``)."""
    identity = Identity.generate(member_id, role)
    try:
        validate_member(identity.member(name), "identity")
    except ValidationError as exc:
        field = (exc.where or "").rsplit(".", 1)[-1]
        raise CeremonyError(f"--{field}: {exc.message}") from None
    key_path, public_path = key_file(out, member_id), identity_file(out, member_id)
    created = _secret_dir(out)
    for path in (key_path, public_path):
        if path.exists() or path.is_symlink():
            raise CeremonyError(f"{path}: already exists (a key is never overwritten)")
    try:
        write_secret(key_path, identity.key_file_text(), exclusive=True)
        write_atomic(public_path, identity_json(public_identity(identity, name)))
    except BaseException:
        for path in (key_path, public_path):
            with contextlib.suppress(OSError):
                path.unlink()
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    return key_path, public_path


def _secret_dir(out: Path) -> bool:
    """Make ``out`` mode 0700, or check an existing one is not open to others."""
    if out.exists() and not out.is_dir():
        raise CeremonyError(f"{out}: exists and is not a directory")
    if out.is_dir():
        mode = stat.S_IMODE(out.stat().st_mode)
        if mode & 0o077:
            raise CeremonyError(
                f"{out}: directory permissions {mode:04o} are too open for a secret key "
                f"(run: chmod 700 {out}, or name a new directory)"
            )
        return False
    out.parent.mkdir(parents=True, exist_ok=True)
    out.mkdir(mode=0o700)
    os.chmod(out, 0o700)
    return True


def read_key_file(path: Path) -> Identity:
    """A member's secret key, refusing loose permissions and a malformed file."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise CeremonyError(f"{path}: key file is missing") from None
    except OSError as exc:
        raise CeremonyError(f"{path}: cannot read key file ({exc.strerror})") from None
    if mode & 0o077:
        raise CeremonyError(
            f"{path}: key file permissions {mode:04o} are too open (run: chmod 600 {path})"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CeremonyError(f"{path}: cannot read key file ({exc})") from None
    try:
        return parse_key_file(text, source=str(path))
    except ValidationError as exc:
        raise CeremonyError(str(exc)) from None


def read_identity(path: Path) -> PublicIdentity:
    """A public identity file, its proof of possession verified."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CeremonyError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return parse_identity(data, source=str(path))
    except ValidationError as exc:
        raise CeremonyError(str(exc)) from None


# --------------------------------------------------------------------------------------------
# Drafts and the sealed genesis


def read_draft(path: Path) -> GenesisDraft:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CeremonyError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return msgspec.json.decode(data, type=GenesisDraft, strict=True)
    except msgspec.ValidationError as exc:
        raise CeremonyError(f"{path}: not a genesis draft ({exc})") from None
    except ValidationError as exc:  # rating weights check themselves as they decode
        raise CeremonyError(f"{path}: {exc}") from None
    except DECODE_ERRORS:
        raise CeremonyError(f"{path}: not a genesis draft (not valid JSON)") from None


def write_draft(path: Path, draft: GenesisDraft) -> None:
    text = msgspec.json.format(msgspec.json.encode(draft).decode(), indent=2) + "\n"
    try:
        write_atomic(path, text)
    except OSError as exc:
        raise CeremonyError(f"{path}: cannot write ({exc.strerror})") from None


def genesis_text(genesis: Genesis) -> str:
    """The genesis as TOML, what every node reads."""
    comment = (
        f"# B-OTC genesis for {genesis.name}: public, identical on every node.\n"
        "# Members, the initial authority set, formula-1 rating weights, network parameters\n"
        "# and the regulator's seal (botc genesis show prints the hash to compare).\n\n"
    )
    return comment + tomli_w.dumps(genesis_to_dict(genesis))


def parse_sealed_genesis(text: str, *, source: str) -> Genesis:
    """A genesis, well formed and sealed by its regulator; errors name ``source``."""
    try:
        genesis = parse_genesis(text, source=source)
    except ValidationError as exc:
        raise CeremonyError(str(exc)) from None
    problem = seal_problem(genesis)
    if problem is not None:
        raise CeremonyError(f"{source}: seal: {problem}")
    return genesis


def read_unsealed_genesis(path: Path) -> Genesis:
    """A genesis file, well formed, its seal (if any) not checked: what ``botc genesis seal``
    seals again (a network made before genesis files had seals keeps its chain: the hash
    leaves the seal out)."""
    try:
        return parse_genesis(path.read_text(encoding="utf-8"), source=str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise CeremonyError(f"{path}: cannot read ({exc})") from None
    except ValidationError as exc:
        raise CeremonyError(str(exc)) from None


def read_genesis(path: Path) -> Genesis:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise CeremonyError(f"{path}: cannot read ({reason})") from None
    return parse_sealed_genesis(text, source=str(path))


# --------------------------------------------------------------------------------------------
# Writing


def write_atomic(path: Path, text: str) -> None:
    """Write beside ``path`` and rename into place: a reader sees the old file or the new."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_secret(path: Path, text: str, *, exclusive: bool = False) -> None:
    """Create the file 0600 from the start, so the secret is never world-readable;
    ``exclusive`` refuses an existing file."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
