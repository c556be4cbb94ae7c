"""TLS for the bus: a consortium CA, per-host certificates, and what nats-server and nats-py
need to use them.

The CA signs one certificate per nats-server host (server and route authentication, so the
same certificate serves clients and meshes the cluster); with ``verify_clients`` each peer
also presents a CA-signed client certificate (mutual TLS on top of the nkey login). Every
setting is a path: the files may come from ``botc tls`` or from an institution's own PKI.

Client connections use TLS from the first byte (``handshake_first``): a client that speaks
plaintext is never served, and a server that does not speak TLS is never trusted with a login.
Routes use mutual TLS (``verify: true``): a server without a CA-signed certificate cannot
join the cluster.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import ssl
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bus.errors import BusError

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
SETTINGS = "tls.toml"
"""The file in NETDIR/nats/tls whose presence turns TLS on for the network."""
CA_DAYS = 3650
CERT_DAYS = 825
DEFAULT_TIMEOUT_S = 3.0
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "nats1", "nats2", "nats3")
"""What a one-machine network's server certificate covers: loopback, and the three
docker-compose nodes (their peers connect to ``nats1:4222``...)."""


class TlsError(BusError):
    """A TLS file that is missing, unreadable, malformed, or does not verify: one line that
    names the file (and the host, for a certificate issued to another)."""


# --------------------------------------------------------------------------------------------
# Making a CA and certificates


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def new_ca(name: str, days: int = CA_DAYS) -> tuple[bytes, bytes]:
    """A fresh CA: (key PEM, certificate PEM). P-256, may sign end-entity certificates only."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA"),
        ]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _key_pem(key), cert.public_bytes(serialization.Encoding.PEM)


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def parse_hosts(text: str) -> list[str]:
    """``HOST[,IP...]`` as the command line gives it; each a DNS name or an IP address."""
    hosts = [h.strip() for h in text.split(",") if h.strip()]
    if not hosts:
        raise TlsError("--host names no host")
    for host in hosts:
        if not _is_ip(host) and not all(
            part and all(c.isalnum() or c in "-*" for c in part) for part in host.split(".")
        ):
            raise TlsError(f"--host: {host!r} is neither a DNS name nor an IP address")
    return hosts


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def new_certificate(
    ca_key_pem: bytes,
    ca_cert_pem: bytes,
    *,
    hosts: Sequence[str] = (),
    client: str | None = None,
    days: int = CERT_DAYS,
) -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM) signed by the CA: for ``hosts`` (server and route use), or
    for a ``client`` (a member id: client use only)."""
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise TlsError("the CA key is neither EC nor RSA")
    key = ec.generate_private_key(ec.SECP256R1())
    common = client or (hosts[0] if hosts else "")
    if not common:
        raise TlsError("a certificate needs a host or a client name")
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if hosts:
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(h) for h in hosts]), critical=False
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    return _key_pem(key), cert.public_bytes(serialization.Encoding.PEM)


def _write_new(path: Path, data: bytes, mode: int, force: bool) -> None:
    """Write ``path`` with ``mode`` from its creation on (a key is never readable by others)."""
    if path.exists() and not force:
        raise TlsError(f"{path}: already exists (use --force to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        if mode == 0o600:  # a key: never more, whatever the umask; a certificate follows it
            os.chmod(tmp, mode)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_ca(outdir: str | Path, name: str, *, days: int = CA_DAYS, force: bool = False) -> Path:
    """OUTDIR/ca.key (0600) and OUTDIR/ca.pem (public; as the umask allows); returns the
    certificate's path."""
    out = Path(outdir)
    for path in (out / CA_KEY, out / CA_CERT):
        if path.exists() and not force:
            raise TlsError(f"{path}: already exists (use --force to replace it)")
    key, cert = new_ca(name, days)
    try:
        _write_new(out / CA_KEY, key, 0o600, force)
        _write_new(out / CA_CERT, cert, 0o644, force)
    except OSError as exc:
        raise TlsError(f"{out}: cannot write the CA ({exc.strerror or exc})") from None
    return out / CA_CERT


def cert_paths(out: str | Path) -> tuple[Path, Path]:
    """Where ``botc tls cert ... OUT`` writes: OUT.pem and OUT.key (``.pem`` in OUT is kept)."""
    path = Path(out)
    stem = path.with_suffix("") if path.suffix in (".pem", ".crt", ".key") else path
    return stem.with_name(stem.name + ".pem"), stem.with_name(stem.name + ".key")


def write_certificate(
    ca_dir: str | Path,
    out: str | Path,
    *,
    hosts: Sequence[str] = (),
    client: str | None = None,
    days: int = CERT_DAYS,
    force: bool = False,
) -> tuple[Path, Path]:
    """OUT.pem and OUT.key (0600), signed by the CA in ``ca_dir``."""
    ca = Path(ca_dir)
    ca_key = _read(ca / CA_KEY, "the CA key")
    ca_cert = _read(ca / CA_CERT, "the CA certificate")
    _load_key(ca / CA_KEY, ca_key)
    _load_cert(ca / CA_CERT, ca_cert)
    cert_path, key_path = cert_paths(out)
    for path in (cert_path, key_path):
        if path.exists() and not force:
            raise TlsError(f"{path}: already exists (use --force to replace it)")
    key, cert = new_certificate(ca_key, ca_cert, hosts=hosts, client=client, days=days)
    try:
        _write_new(key_path, key, 0o600, force)
        _write_new(cert_path, cert, 0o644, force)
    except OSError as exc:
        raise TlsError(f"{cert_path}: cannot write ({exc.strerror or exc})") from None
    return cert_path, key_path


# --------------------------------------------------------------------------------------------
# Reading and checking


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TlsError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None


def _load_cert(path: Path, data: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise TlsError(f"{path}: not a PEM certificate") from None


def _load_key(path: Path, data: bytes) -> object:
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise TlsError(f"{path}: not an unencrypted PEM private key") from None


def _hosts_of(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names: list[str] = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return names


def covers(cert: x509.Certificate, host: str) -> bool:
    """Whether ``cert`` is valid for ``host`` (an IP exactly, a name exactly or by a
    left-most ``*`` label), as a verifying client decides."""
    if _is_ip(host):
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return False
        wanted = ipaddress.ip_address(host)
        return any(ip == wanted for ip in san.get_values_for_type(x509.IPAddress))
    host = host.lower().rstrip(".")
    for name in _hosts_of(cert):
        name = name.lower().rstrip(".")
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


def check_pair(
    ca_file: Path,
    cert_file: Path,
    key_file: Path,
    *,
    host: str | None = None,
    purpose: str = "server",
) -> None:
    """Refuse, in one line naming the file, a certificate the peers would refuse: unreadable
    files, a key that is not the certificate's, a certificate not signed by the CA, expired,
    or (with ``host``) issued for another host."""
    ca = _load_cert(ca_file, _read(ca_file, "the CA certificate"))
    cert = _load_cert(cert_file, _read(cert_file, f"the {purpose} certificate"))
    key = _load_key(key_file, _read(key_file, f"the {purpose} key"))
    public = getattr(key, "public_key", None)
    if public is None or public().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise TlsError(f"{key_file}: not the key of the certificate in {cert_file}")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise TlsError(f"{cert_file}: not signed by the CA in {ca_file}") from None
    now = _now()
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise TlsError(
            f"{cert_file}: not valid now (valid {cert.not_valid_before_utc:%Y-%m-%d} "
            f"to {cert.not_valid_after_utc:%Y-%m-%d})"
        )
    if host is not None and host not in ("0.0.0.0", "::") and not covers(cert, host):
        names = ", ".join(_hosts_of(cert)) or "no host"
        raise TlsError(f"{cert_file}: certificate is for {names}, not for host {host}")


@dataclass(frozen=True)
class TlsSettings:
    """A network's TLS: which files, what is verified (``NETDIR/nats/tls/tls.toml``)."""

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None
    client_cert_file: Path | None = None
    client_key_file: Path | None = None
    verify_clients: bool = False
    server_name: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    source: Path | None = None

    # -- the server side ----------------------------------------------------------------------

    def server_files(self) -> tuple[Path, Path]:
        where = f" in {self.source}" if self.source else ""
        if self.cert_file is None or self.key_file is None:
            raise TlsError(f"no cert_file and key_file{where}: this machine cannot run a server")
        return self.cert_file, self.key_file

    def check_server(self, host: str | None = None) -> None:
        cert, key = self.server_files()
        check_pair(self.ca_file, cert, key, host=host, purpose="server")

    def _block(self, verify: bool, *, first: bool) -> str:
        cert, key = self.server_files()
        fields = [
            f"cert_file: {_quote(str(cert))}",
            f"key_file: {_quote(str(key))}",
            f"ca_file: {_quote(str(self.ca_file))}",
            f"verify: {'true' if verify else 'false'}",
            f"timeout: {self.timeout_s:g}",
        ]
        if first:
            fields.append("handshake_first: true")
        return "tls { " + ", ".join(fields) + " }"

    def server_block(self) -> str:
        """nats-server's client-facing ``tls { ... }``: TLS from the first byte; client
        certificates required with ``verify_clients``."""
        return self._block(self.verify_clients, first=True)

    def route_block(self) -> str:
        """The ``tls { ... }`` inside ``cluster { }``: mutual TLS between servers."""
        return self._block(True, first=False)

    # -- the client side ----------------------------------------------------------------------

    def check_client(self) -> None:
        _load_cert(self.ca_file, _read(self.ca_file, "the CA certificate"))
        if self.verify_clients:
            cert, key = self.client_files()
            check_pair(self.ca_file, cert, key, purpose="client")

    def client_files(self) -> tuple[Path, Path]:
        where = f" in {self.source}" if self.source else ""
        if self.client_cert_file is None or self.client_key_file is None:
            raise TlsError(
                f"verify_clients is on but no client_cert_file and client_key_file{where}"
            )
        return self.client_cert_file, self.client_key_file

    def client_context(self) -> ssl.SSLContext:
        """What nats-py connects with: the CA trusted alone, the host name checked."""
        self.check_client()
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.verify_clients:
            cert, key = self.client_files()
            try:
                context.load_cert_chain(str(cert), str(key))
            except (OSError, ssl.SSLError) as exc:
                raise TlsError(f"{cert}: cannot load with {key} ({exc})") from None
        return context


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_PATH_FIELDS = ("ca_file", "cert_file", "key_file", "client_cert_file", "client_key_file")


def read_settings(path: Path) -> TlsSettings:
    """``tls.toml``: paths relative to its directory, or absolute."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TlsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TlsError(f"{path}: not valid TOML ({exc})") from None
    known = {*_PATH_FIELDS, "verify_clients", "server_name", "timeout"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise TlsError(f"{path}: unknown setting {unknown[0]!r}")
    paths: dict[str, Path | None] = {}
    for field in _PATH_FIELDS:
        value = data.get(field)
        if value is not None and not isinstance(value, str):
            raise TlsError(f"{path}: {field} must be a path (a string)")
        paths[field] = (path.parent / value) if value else None
    ca = paths.pop("ca_file")
    if ca is None:
        raise TlsError(f"{path}: no ca_file (the CA every peer trusts)")
    verify = data.get("verify_clients", False)
    timeout = data.get("timeout", DEFAULT_TIMEOUT_S)
    server_name = data.get("server_name")
    if not isinstance(verify, bool):
        raise TlsError(f"{path}: verify_clients must be true or false")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise TlsError(f"{path}: timeout must be a positive number of seconds")
    if server_name is not None and not isinstance(server_name, str):
        raise TlsError(f"{path}: server_name must be a host name")
    return TlsSettings(
        ca_file=ca,
        cert_file=paths["cert_file"],
        key_file=paths["key_file"],
        client_cert_file=paths["client_cert_file"],
        client_key_file=paths["client_key_file"],
        verify_clients=verify,
        server_name=server_name or None,
        timeout_s=float(timeout),
        source=path,
    )


def settings_text(
    *,
    ca_file: str,
    cert_file: str | None = None,
    key_file: str | None = None,
    client_cert_file: str | None = None,
    client_key_file: str | None = None,
    verify_clients: bool = False,
    server_name: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> str:
    """A ``tls.toml`` (what ``botc init`` and ``botc tls use`` write)."""

    def line(name: str, value: str | None, comment: str) -> str:
        if value is None:
            return f"# {name} = ...{' ' * max(1, 22 - len(name))}# {comment}"
        return f"{name} = {_quote(value)}  # {comment}"

    lines = [
        "# TLS for this network's NATS connections (botc init, botc tls use).",
        "# Paths are relative to this directory, or absolute. Remove this file to turn TLS off.",
        line("ca_file", ca_file, "the CA every server and client trusts"),
        line("cert_file", cert_file, "this machine's nats-server certificate (clients, routes)"),
        line("key_file", key_file, "its key (mode 0600)"),
        line("client_cert_file", client_cert_file, "with verify_clients: this peer's certificate"),
        line("client_key_file", client_key_file, "and its key"),
        f"verify_clients = {'true' if verify_clients else 'false'}"
        "  # true: the server requires CA-signed client certificates (mutual TLS)",
        line("server_name", server_name, "check the server's certificate for this name"),
        f"timeout = {timeout_s:g}  # seconds for a TLS handshake",
    ]
    return "\n".join(lines) + "\n"


def write_local(tls_dir: Path, name: str, hosts: Sequence[str] = LOCAL_HOSTS) -> TlsSettings:
    """A one-machine network's TLS in ``tls_dir``: a CA, the server's certificate for
    ``hosts``, a client certificate for mutual TLS when it is turned on, and tls.toml."""
    write_ca(tls_dir, name)
    write_certificate(tls_dir, tls_dir / "server", hosts=hosts)
    write_certificate(tls_dir, tls_dir / "client", client=f"{name} peers")
    _write_new(
        tls_dir / SETTINGS,
        settings_text(
            ca_file=CA_CERT,
            cert_file="server.pem",
            key_file="server.key",
            client_cert_file="client.pem",
            client_key_file="client.key",
        ).encode(),
        0o644,
        False,
    )
    return read_settings(tls_dir / SETTINGS)


def connect_options(settings: TlsSettings | None) -> dict[str, object]:
    """The nats-py ``connect()`` options for these settings (none without TLS)."""
    if settings is None:
        return {}
    options: dict[str, object] = {
        "tls": settings.client_context(),
        "tls_handshake_first": True,
    }
    if settings.server_name:
        options["tls_hostname"] = settings.server_name
    return options
