"""``botc tls``, ``botc init``'s TLS and the refusals of ``botc nats``: files 0600, one line and
exit 2 for every bad file, nothing overwritten."""

from __future__ import annotations

import os
import stat
import subprocess

from bus.server import find_binary
from bus.tls import write_ca, write_certificate
from peers.netdir import DOCKER_TLS_DIR, NetDir, create_network
from tests.unit.peers.cli import run


def refused(capsys, *argv: str) -> str:
    """The one line of an exit-2 refusal."""
    code, _, err = run(capsys, *argv)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_botc_tls_ca_writes_a_key_only_its_owner_reads_and_never_replaces_it(tmp_path, capsys):
    code, out, _ = run(capsys, "tls", "ca", str(tmp_path / "ca"), "--name", "Consortium")
    assert code == 0
    assert mode(tmp_path / "ca" / "ca.key") == 0o600
    assert "ca.pem" in out
    key = (tmp_path / "ca" / "ca.key").read_bytes()
    line = refused(capsys, "tls", "ca", str(tmp_path / "ca"))
    key_path = tmp_path / "ca" / "ca.key"
    assert line == f"botc tls: error: {key_path}: already exists (use --force to replace it)"
    assert (tmp_path / "ca" / "ca.key").read_bytes() == key


def test_botc_tls_cert_signs_server_and_client_certificates_with_keys_0600(tmp_path, capsys):
    ca = tmp_path / "ca"
    assert run(capsys, "tls", "ca", str(ca))[0] == 0
    code, out, _ = run(
        capsys,
        "tls",
        "cert",
        "--ca",
        str(ca),
        "--host",
        "nats1.example,10.0.0.1",
        str(tmp_path / "n1"),
    )
    assert code == 0 and "hosts nats1.example, 10.0.0.1" in out
    code, out, _ = run(
        capsys, "tls", "cert", "--ca", str(ca), "--client", "C1", str(tmp_path / "c1")
    )
    assert code == 0 and "client C1" in out
    assert mode(tmp_path / "n1.key") == mode(tmp_path / "c1.key") == 0o600


def test_botc_tls_cert_refuses_a_missing_ca_a_bad_host_and_an_existing_file(tmp_path, capsys):
    line = refused(
        capsys, "tls", "cert", "--ca", str(tmp_path / "none"), "--host", "h", str(tmp_path / "x")
    )
    assert "none/ca.key: cannot read the CA key (No such file or directory)" in line
    write_ca(tmp_path / "ca", "c")
    line = refused(
        capsys, "tls", "cert", "--ca", str(tmp_path / "ca"), "--host", "a b", str(tmp_path / "x")
    )
    assert "'a b' is neither a DNS name nor an IP address" in line
    assert not (tmp_path / "x.pem").exists() and not (tmp_path / "x.key").exists()
    write_certificate(tmp_path / "ca", tmp_path / "x", hosts=["h"])
    line = refused(
        capsys, "tls", "cert", "--ca", str(tmp_path / "ca"), "--host", "h", str(tmp_path / "x")
    )
    assert "already exists" in line
    line = refused(capsys, "tls", "ca", str(tmp_path / "ca2"), "--days", "0")
    assert "--days must be at least 1" in line


def test_botc_init_turns_tls_on_unless_told_not_to(tmp_path, capsys):
    code, out, _ = run(capsys, "init", str(tmp_path / "tls-net"))
    assert code == 0 and "tls:         on" in out
    net = NetDir(tmp_path / "tls-net")
    settings = net.tls()
    assert settings is not None and settings.ca_file == net.path / "nats" / "tls" / "ca.pem"
    assert {mode(p) for p in (net.path / "nats" / "tls").iterdir()} == {0o600}
    assert "handshake_first: true" in (net.path / "nats" / "server.conf").read_text()
    code, out, _ = run(capsys, "init", str(tmp_path / "plain"), "--no-tls")
    assert code == 0 and "tls:         off" in out
    assert NetDir(tmp_path / "plain").tls() is None
    assert "tls" not in (tmp_path / "plain" / "nats" / "server.conf").read_text()


def test_botc_tls_check_passes_a_fresh_network_and_names_host_and_file_for_another_host(
    tmp_path, capsys
):
    net = create_network(tmp_path / "net", tls=True)
    code, out, _ = run(capsys, "tls", "check", "--net", str(net.path))
    assert code == 0 and "server.pem is the CA's, for 127.0.0.1" in out
    line = refused(capsys, "tls", "check", "--net", str(net.path), "--host", "10.9.9.9")
    assert line.startswith(f"botc tls: error: {net.path / 'nats' / 'tls' / 'server.pem'}: ")
    assert line.endswith("not for host 10.9.9.9")
    plain = create_network(tmp_path / "plain")
    assert "TLS is off" in refused(capsys, "tls", "check", "--net", str(plain.path))


def test_botc_nats_refuses_a_server_certificate_for_another_host_before_starting(tmp_path, capsys):
    net = create_network(tmp_path / "net", tls=True)
    tls_dir = net.path / "nats" / "tls"
    write_certificate(tls_dir, tls_dir / "server", hosts=["other.example"], force=True)
    line = refused(capsys, "nats", "--net", str(net.path), "--port", "0")
    assert line == (
        f"botc nats: error: {tls_dir / 'server.pem'}: certificate is for other.example, "
        "not for host 127.0.0.1"
    )
    assert not net.run_file.exists()


def test_botc_nats_refuses_a_missing_key_and_a_certificate_another_ca_signed(tmp_path, capsys):
    net = create_network(tmp_path / "net", tls=True)
    tls_dir = net.path / "nats" / "tls"
    (tls_dir / "server.key").unlink()
    line = refused(capsys, "nats", "--net", str(net.path), "--port", "0")
    assert line == (
        f"botc nats: error: {tls_dir / 'server.key'}: cannot read the server key "
        "(No such file or directory)"
    )
    write_ca(tmp_path / "rogue", "Rogue")
    write_certificate(tmp_path / "rogue", tls_dir / "server", hosts=["127.0.0.1"], force=True)
    line = refused(capsys, "nats", "--net", str(net.path), "--port", "0")
    assert line.endswith(f"server.pem: not signed by the CA in {tls_dir / 'ca.pem'}")


def test_an_unreadable_key_is_refused_in_one_line(tmp_path, capsys):
    net = create_network(tmp_path / "net", tls=True)
    key = net.path / "nats" / "tls" / "server.key"
    key.unlink()
    key.mkdir()  # unreadable as a file, even for root
    line = refused(capsys, "nats", "--net", str(net.path), "--port", "0")
    assert line == f"botc nats: error: {key}: cannot read the server key (Is a directory)"


def test_botc_tls_use_takes_an_institution_s_own_files_after_checking_them(tmp_path, capsys):
    net = create_network(tmp_path / "net")
    pki = tmp_path / "pki"
    write_ca(pki, "Bank PKI")
    cert, key = write_certificate(pki, pki / "nats", hosts=["127.0.0.1"])
    write_ca(tmp_path / "rogue", "Rogue")
    foreign, foreign_key = write_certificate(
        tmp_path / "rogue", tmp_path / "f", hosts=["127.0.0.1"]
    )
    line = refused(
        capsys, "tls", "use", "--net", str(net.path), "--ca-file", str(pki / "ca.pem"),
        "--cert-file", str(foreign), "--key-file", str(foreign_key),
    )  # fmt: skip
    assert line.endswith(f"{foreign}: not signed by the CA in {pki / 'ca.pem'}")
    assert net.tls() is None
    code, _, err = run(
        capsys, "tls", "use", "--net", str(net.path), "--ca-file", str(pki / "ca.pem"),
        "--cert-file", str(cert), "--key-file", str(key),
    )  # fmt: skip
    assert code == 0, err
    settings = net.tls()
    assert settings is not None and settings.cert_file == cert
    assert str(cert) in (net.path / "nats" / "server.conf").read_text()
    assert "already exists" in refused(
        capsys, "tls", "use", "--net", str(net.path), "--ca-file", str(pki / "ca.pem")
    )


def test_the_docker_cluster_config_of_a_tls_network_is_valid_for_the_real_nats_server(tmp_path):
    net = create_network(tmp_path / "net", tls=True)
    conf = (net.path / "nats" / "cluster.conf").read_text()
    assert str(DOCKER_TLS_DIR / "server.pem") in conf
    assert conf.count("verify: true") == 1  # the routes
    local = net.path / "nats" / "local-cluster.conf"
    local.write_text(conf.replace(str(DOCKER_TLS_DIR), str(net.path / "nats" / "tls")))
    checked = subprocess.run(
        [find_binary(), "-c", str(local), "-t"],
        env={**os.environ, "NODE": "n1"},
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_peer_whose_ca_file_is_missing_is_refused_in_one_line_naming_it(tmp_path, capsys):
    net = create_network(tmp_path / "net", tls=True)
    ca = net.path / "nats" / "tls" / "ca.pem"
    ca.unlink()
    line = refused(capsys, "status", "--net", str(net.path), "--servers", "nats://127.0.0.1:1")
    assert line == (
        f"botc status: error: {ca}: cannot read the CA certificate (No such file or directory)"
    )


def test_a_malformed_tls_toml_is_refused_by_every_command_naming_it(tmp_path, capsys):
    net = create_network(tmp_path / "net", tls=True)
    net.tls_settings_path.write_text("verify_clients = maybe\n")
    line = refused(capsys, "nats", "--net", str(net.path), "--port", "0")
    assert line.startswith(f"botc nats: error: {net.tls_settings_path}: not valid TOML")


def test_botc_tls_use_names_files_in_the_networks_tls_directory_by_name_so_it_can_move(
    tmp_path, capsys
):
    net = create_network(tmp_path / "net", tls=False)
    pki = tmp_path / "pki"
    write_ca(pki, "consortium")
    here = net.path / "nats" / "tls"
    cert, key = write_certificate(pki, here / "nats1", hosts=["nats1"])
    (here / "ca.pem").write_bytes((pki / "ca.pem").read_bytes())
    code, _, err = run(
        capsys, "tls", "use", "--net", str(net.path), "--ca-file", str(here / "ca.pem"),
        "--cert-file", str(cert), "--key-file", str(key), "--host", "nats1",
    )  # fmt: skip
    assert code == 0, err
    text = (here / "tls.toml").read_text()
    assert 'ca_file = "ca.pem"' in text and 'cert_file = "nats1.pem"' in text
    moved = tmp_path / "elsewhere"
    net.path.rename(moved)  # a container mounts the directory at /net
    settings = NetDir(moved).tls()
    assert settings is not None and settings.ca_file == moved / "nats" / "tls" / "ca.pem"
    settings.check_server("nats1")
