"""sd_notify: sent when systemd listens, and never an error when it does not."""

from __future__ import annotations

import socket

from deskd.daemon.systemd import notify


def test_notify_sends_to_the_socket_and_a_gone_socket_is_not_an_error(tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        assert notify("READY=1") is True
        assert sock.recv(64) == b"READY=1"
    # the manager's socket closed (a stopped unit, a test that stopped listening): refused
    assert notify("STOPPING=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "never-there.sock"))
    assert notify("STOPPING=1") is False
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert notify("READY=1") is False
