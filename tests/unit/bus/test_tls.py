"""The CA, certificates and settings behind the bus's TLS, with no server: what is made, what
a server or client would refuse, and the nats-server config text."""

from __future__ import annotations

import ssl
import stat

import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bus.server import NatsServer
from bus.tls import (
    TlsError,
    TlsSettings,
    check_pair,
    covers,
    parse_hosts,
    read_settings,
    write_ca,
    write_certificate,
    write_local,
)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def ca(tmp_path):
    write_ca(tmp_path / "ca", "Consortium")
    return tmp_path / "ca"


def test_the_ca_key_is_written_0600_and_the_ca_may_only_sign_end_entities(ca):
    assert mode(ca / "ca.key") == 0o600
    cert = x509.load_pem_x509_certificate((ca / "ca.pem").read_bytes())
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0
    assert "Consortium" in cert.subject.rfc4514_string()


def test_an_existing_ca_is_never_overwritten_without_force(ca):
    before = (ca / "ca.key").read_bytes()
    with pytest.raises(TlsError, match=r"ca\.key: already exists"):
        write_ca(ca, "Again")
    assert (ca / "ca.key").read_bytes() == before
    write_ca(ca, "Again", force=True)
    assert (ca / "ca.key").read_bytes() != before


def test_a_host_certificate_covers_its_names_and_ips_and_serves_both_ends_of_a_route(ca, tmp_path):
    cert_path, key_path = write_certificate(
        ca, tmp_path / "nats1", hosts=["nats1.bank.example", "10.0.0.7"]
    )
    assert (cert_path.name, key_path.name) == ("nats1.pem", "nats1.key")
    assert mode(key_path) == 0o600
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert covers(cert, "nats1.bank.example") and covers(cert, "10.0.0.7")
    assert not covers(cert, "nats2.bank.example") and not covers(cert, "10.0.0.8")
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {u.dotted_string for u in usages} == {"1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"}
    check_pair(ca / "ca.pem", cert_path, key_path, host="10.0.0.7")


def test_a_wildcard_covers_one_label_only(ca, tmp_path):
    cert_path, _ = write_certificate(ca, tmp_path / "wild", hosts=["*.bank.example"])
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert covers(cert, "nats1.bank.example")
    assert not covers(cert, "a.b.bank.example") and not covers(cert, "bank.example")


def test_a_certificate_for_another_host_is_refused_naming_the_host_and_the_file(ca, tmp_path):
    cert, key = write_certificate(ca, tmp_path / "other", hosts=["other.example"])
    with pytest.raises(TlsError) as refused:
        check_pair(ca / "ca.pem", cert, key, host="127.0.0.1")
    assert str(refused.value) == f"{cert}: certificate is for other.example, not for host 127.0.0.1"


def test_a_certificate_another_ca_signed_is_refused(ca, tmp_path):
    write_ca(tmp_path / "rogue", "Rogue")
    cert, key = write_certificate(tmp_path / "rogue", tmp_path / "srv", hosts=["127.0.0.1"])
    with pytest.raises(TlsError, match=f"{cert}: not signed by the CA in {ca / 'ca.pem'}"):
        check_pair(ca / "ca.pem", cert, key, host="127.0.0.1")


def test_a_missing_or_unreadable_or_foreign_key_is_refused_in_one_line(ca, tmp_path):
    cert, key = write_certificate(ca, tmp_path / "srv", hosts=["127.0.0.1"])
    _, other_key = write_certificate(ca, tmp_path / "other", hosts=["127.0.0.1"])
    with pytest.raises(TlsError, match=r"nope\.key: cannot read the server key \(No such file"):
        check_pair(ca / "ca.pem", cert, tmp_path / "nope.key")
    with pytest.raises(TlsError, match=f"{other_key}: not the key of the certificate in {cert}"):
        check_pair(ca / "ca.pem", cert, other_key)
    key.write_text("garbage")
    with pytest.raises(TlsError, match="not an unencrypted PEM private key"):
        check_pair(ca / "ca.pem", cert, key)
    with pytest.raises(TlsError, match="not a PEM certificate"):
        check_pair(ca / "ca.key", cert, key)


def test_host_lists_are_checked_before_anything_is_signed():
    assert parse_hosts("nats1.example, 10.0.0.1,::1") == ["nats1.example", "10.0.0.1", "::1"]
    with pytest.raises(TlsError, match="names no host"):
        parse_hosts(" , ")
    with pytest.raises(TlsError, match="'bad host' is neither"):
        parse_hosts("ok.example,bad host")


def test_a_local_network_s_settings_name_files_beside_tls_toml(tmp_path):
    settings = write_local(tmp_path / "tls", "botc-local")
    assert settings.ca_file == tmp_path / "tls" / "ca.pem"
    assert settings.cert_file == tmp_path / "tls" / "server.pem"
    assert not settings.verify_clients
    for host in ("127.0.0.1", "localhost", "nats1", "nats3"):
        settings.check_server(host)
    assert {mode(p) for p in (tmp_path / "tls").glob("*.key")} == {0o600}
    context = settings.client_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_the_settings_file_refuses_what_it_cannot_mean(tmp_path):
    path = tmp_path / "tls.toml"
    for text, problem in (
        ('cert_file = "s.pem"', "no ca_file"),
        ('ca_file = "ca.pem"\nverify = true', "unknown setting 'verify'"),
        ('ca_file = "ca.pem"\nverify_clients = "yes"', "verify_clients must be true or false"),
        ('ca_file = "ca.pem"\ntimeout = 0', "timeout must be a positive number"),
        ("ca_file = 3", "ca_file must be a path"),
        ("ca_file = ", "not valid TOML"),
    ):
        path.write_text(text)
        with pytest.raises(TlsError, match=problem):
            read_settings(path)


def test_a_client_with_verify_clients_needs_its_own_certificate(tmp_path):
    settings = write_local(tmp_path / "tls", "net")
    without = TlsSettings(ca_file=settings.ca_file, verify_clients=True)
    with pytest.raises(TlsError, match="verify_clients is on but no client_cert_file"):
        without.client_context()
    mutual = TlsSettings(
        ca_file=settings.ca_file,
        verify_clients=True,
        client_cert_file=tmp_path / "tls" / "client.pem",
        client_key_file=tmp_path / "tls" / "client.key",
    )
    mutual.client_context()


def test_the_server_config_serves_clients_tls_first_and_routes_mutual_tls(tmp_path):
    settings = write_local(tmp_path / "tls", "net")
    node = NatsServer(
        tmp_path / "n1", cluster_name="botc", cluster_port=6222, routes=[6223], tls=settings
    )
    text = node.config_text()
    cluster = next(line for line in text.splitlines() if line.startswith("cluster {"))
    client = next(line for line in text.splitlines() if line.startswith("tls {"))
    assert "verify: true" in cluster and str(settings.cert_file) in cluster
    assert "handshake_first: true" in client and "verify: false" in client
    assert "handshake_first" not in cluster


@given(st.binary(max_size=400))
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_garbage_in_tls_toml_is_refused_cleanly_or_read(tmp_path, data):
    path = tmp_path / "tls.toml"
    path.write_bytes(data)
    problem = ""
    try:
        read_settings(path)
    except TlsError as exc:
        problem = str(exc)
    assert "\n" not in problem
    assert not problem or problem.startswith(f"{path}: ")


@given(st.binary(max_size=400))
@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_garbage_certificates_and_keys_are_refused_in_one_line(ca, tmp_path, data):
    cert, key = tmp_path / "g.pem", tmp_path / "g.key"
    cert.write_bytes(data)
    key.write_bytes(data)
    with pytest.raises(TlsError) as refused:
        check_pair(ca / "ca.pem", cert, key)
    assert "\n" not in str(refused.value)
