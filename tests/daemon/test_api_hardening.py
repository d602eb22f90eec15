"""The control API refuses hostile input before anything changes: non-UTF-8 credentials, JSON
bombs, oversized bodies, foreign Host headers (DNS rebinding) and reasons the store cannot keep;
and its start-up helpers: a minimum token length and a warning for a non-loopback bind."""

import asyncio
import json
import logging
import sqlite3

import pytest
from aiohttp.test_utils import TestServer

import deskd.daemon.api as api
from deskd.daemon.api import ControlAPI
from tests.daemon.helpers import TOKEN, bar, call, runner


def send(r, request: bytes, app_kw=None, **api_kw) -> tuple[int, dict]:
    """Send raw HTTP/1.1 bytes to a ControlAPI for ``r``; the reply's status and JSON body."""
    async def go():
        server = TestServer(ControlAPI(r, TOKEN, **api_kw).app(**(app_kw or {})))
        await server.start_server()
        try:
            reader, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(request)
            await writer.drain()
            reply = await reader.read()
            writer.close()
            return reply
        finally:
            await server.close()
    head, _, body = asyncio.run(go()).partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def post(path: str, body: bytes, host: bytes = b"127.0.0.1:8765", auth: bytes = TOKEN.encode()) -> bytes:
    return (b"POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (path.encode(), host, auth, len(body)) + body)


def get(path: str, host: bytes) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (path.encode(), host)


def errors_logged(caplog) -> list[str]:
    return [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.ERROR]


# -- a: credentials -------------------------------------------------------------------------------
@pytest.mark.parametrize("auth", [b"\xff\xfe", b"t0ken-for-tests\xff", b"\xc3\x28"])
def test_non_utf8_authorization_gets_401_and_logs_no_traceback(tmp_path, caplog, auth):
    r = runner(tmp_path)
    status, got = send(r, post("/halt", b'{"reason": "x"}', auth=auth))
    assert (status, got) == (401, {"error": "missing or wrong bearer token"})
    assert errors_logged(caplog) == [] and r.desk.state.state.value == "RUNNING"


# -- b: JSON bombs and oversized bodies ------------------------------------------------------------
@pytest.mark.parametrize("body,expected", [
    (b"[" * 50_000, 400),  # within the size bound: json raises RecursionError
    (b'{"reason": ' + b"7" * 5_000 + b"}", 400),  # json raises ValueError: int digits over the limit
    (b"[" * 100_000, 413),  # over the size bound: refused before it is parsed
    (json.dumps({"reason": "x" * 70_000}).encode(), 413),
    (b'{"reason": "\xff"}', 400),  # not UTF-8
])
def test_json_bombs_and_oversized_bodies_are_refused_as_json_errors(tmp_path, caplog, body, expected):
    r = runner(tmp_path)
    status, got = send(r, post("/halt", body))
    assert status == expected and "error" in got
    assert errors_logged(caplog) == [] and r.desk.state.state.value == "RUNNING"


# -- c: Host header (DNS rebinding) ----------------------------------------------------------------
@pytest.mark.parametrize("host", [b"evil.example", b"evil.example:8765", b"127.0.0.1.evil.example",
                                  b"127.0.0.1:http", b"[::1]evil", b"[::1", b"localhost:8765:1", b""])
@pytest.mark.parametrize("path", ["/health", "/status", "/positions", "/trades", "/metrics"])
def test_reads_refuse_a_foreign_host_with_421(tmp_path, host, path):
    r = runner(tmp_path)
    r.feed(bar(0))
    assert send(r, get(path, host)) == (421, {"error": "this daemon does not answer to that Host"})


def test_actions_refuse_a_foreign_host_before_the_token_is_checked(tmp_path):
    r = runner(tmp_path)
    assert send(r, post("/halt", b'{"reason": "x"}', host=b"rebound.example:8765"))[0] == 421
    assert r.desk.state.state.value == "RUNNING"


@pytest.mark.parametrize("host", [b"127.0.0.1", b"127.0.0.1:8765", b"localhost", b"LocalHost:1",
                                  b"localhost.:8765", b"[::1]", b"[::1]:8765"])
def test_loopback_hosts_with_any_port_are_answered(tmp_path, host):
    assert send(runner(tmp_path), get("/health", host)) == (200, {"status": "ok", "state": "RUNNING"})


def test_the_bind_host_and_configured_hosts_are_answered(tmp_path):
    r = runner(tmp_path)
    assert send(r, get("/health", b"10.1.2.3:8765"), app_kw={"bind_host": "10.1.2.3"})[0] == 200
    assert send(r, get("/health", b"0.0.0.0:8765"), app_kw={"bind_host": "0.0.0.0"})[0] == 421
    named = {"allowed_hosts": ["desk.lan", "[fd00::1]:8765"]}
    assert send(r, get("/health", b"DESK.lan:8765"), **named)[0] == 200
    assert send(r, get("/health", b"[fd00::1]"), **named)[0] == 200
    assert send(r, get("/health", b"127.0.0.1"), **named)[0] == 421  # the list replaces the default


def test_the_test_client_default_host_still_works(tmp_path):
    assert call(runner(tmp_path), None, "GET", "/health") == (200, {"status": "ok", "state": "RUNNING"})


@pytest.mark.parametrize("bind,expected", [
    ("127.0.0.1", {"127.0.0.1", "localhost", "::1"}), ("0.0.0.0", {"127.0.0.1", "localhost", "::1"}),
    ("::", {"127.0.0.1", "localhost", "::1"}), ("192.168.1.5", {"127.0.0.1", "localhost", "::1", "192.168.1.5"}),
    ("Desk.LAN", {"127.0.0.1", "localhost", "::1", "desk.lan"}),
])
def test_allowed_hosts_for_the_bind_host(bind, expected):
    assert api.allowed_hosts_for(bind) == expected


# -- d: token length and bind warning ---------------------------------------------------------------
def test_check_token_refuses_short_tokens():
    with pytest.raises(ValueError, match="at least 16 characters"):
        api.check_token("x" * 15)
    with pytest.raises(ValueError, match="at least 16 characters"):
        api.check_token("")
    assert api.check_token("x" * 16) is None


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "LOCALHOST", "::1", "[::1]"])
def test_no_bind_warning_for_loopback(host):
    assert api.bind_warning(host) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.168.1.5", "desk.example"])
def test_bind_warning_for_other_addresses(host):
    assert "not loopback" in api.bind_warning(host)


# -- e: reasons the store cannot keep ----------------------------------------------------------------
BAD_REASONS = [
    ("stop\x00now", "control characters"),
    ("line\nbreak", "control characters"),
    ("bell\x07", "control characters"),
    ("x" * 191, "at most 190 characters"),  # stored as "operator: <reason>" in a String(200)
]


@pytest.mark.parametrize("reason,msg", BAD_REASONS)
def test_a_halt_with_a_bad_reason_is_refused_before_anything_changes(tmp_path, reason, msg):
    r = runner(tmp_path)
    status, got = call(r, TOKEN, "POST", "/halt", {"reason": reason})
    assert status == 400 and msg in got["error"]
    assert r.desk.state.state.value == "RUNNING"
    with sqlite3.connect(tmp_path / "desk.db") as c:
        assert c.execute("select count(*) from state_transitions").fetchone() == (0,)


def test_a_lone_surrogate_in_a_reason_is_refused(tmp_path):
    r = runner(tmp_path)
    status, got = send(r, post("/halt", b'{"reason": "\\ud800"}'))
    assert status == 400 and got["error"].startswith("reason: ")
    assert r.desk.state.state.value == "RUNNING"


@pytest.mark.parametrize("reason,msg", BAD_REASONS)
def test_a_resume_with_a_bad_reason_leaves_the_desk_halted(tmp_path, reason, msg):
    r = runner(tmp_path)
    assert call(r, TOKEN, "POST", "/halt", {"reason": "news"}) == (200, {"state": "HALTED"})
    status, got = call(r, TOKEN, "POST", "/resume", {"reason": reason, "force": True})
    assert status == 400 and msg in got["error"]
    assert r.desk.state.state.value == "HALTED"


@pytest.mark.parametrize("reason,msg", BAD_REASONS)
def test_a_flatten_with_a_bad_reason_leaves_the_position_open(tmp_path, reason, msg):
    r = runner(tmp_path)
    r.feed(bar(0))
    r.feed(bar(1))
    assert "EURUSD" in r.desk.ledger.open
    status, got = call(r, TOKEN, "POST", "/flatten", {"reason": reason})
    assert status == 400 and msg in got["error"]
    assert r.desk.flattening == {}
    r.feed(bar(2))
    assert "EURUSD" in r.desk.ledger.open and r.desk.ledger.closed == []


def test_the_longest_reason_fits_the_store(tmp_path):
    r = runner(tmp_path)
    reason = "é" * 190
    assert call(r, TOKEN, "POST", "/halt", {"reason": reason}) == (200, {"state": "HALTED"})
    with sqlite3.connect(tmp_path / "desk.db") as c:
        (stored,) = c.execute("select reason from state_transitions").fetchone()
    assert stored == f"operator: {reason}" and len(stored) == 200
