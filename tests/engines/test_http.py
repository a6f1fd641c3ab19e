"""HTTP plumbing: transport error classes, the pooled session (Retry-After: test_retry_after).

The transport tests that need a real socket use a tiny TCP server on
127.0.0.1 that counts connections (tests/support/raw_http.py), so "no
urllib3 retries" is observed on the wire rather than read from a setting.
"""

from __future__ import annotations

import http.client
import http.server
import io
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.util.retry import Retry

import worker.engines.http
from tests.support.raw_http import HangUpServer, TrickleServer
from tests.support.tls import CA_FILE, BrokenTLSServer, Mode
from worker import __version__
from worker.engines import build_engine
from worker.engines.base import StartRequest
from worker.engines.http import USER_AGENT, make_session, transport_error
from worker.engines.http.deadline import _DeadlineReader
from worker.errors import AmbiguousError, PermanentError, TransientError
from worker.targets import Targets

URL = "http://engine.test/v2/process-instances"

# ---------------------------------------------------------------- transport_error


def refused() -> requests.ConnectionError:
    reason = NewConnectionError(None, "Failed to establish a new connection: refused")  # type: ignore[arg-type]
    return requests.ConnectionError(MaxRetryError(None, URL, reason))  # type: ignore[arg-type]


def unresolvable() -> requests.ConnectionError:
    reason = NameResolutionError("engine.test", None, socket.gaierror(-2, "Name not known"))  # type: ignore[arg-type]
    return requests.ConnectionError(MaxRetryError(None, URL, reason))  # type: ignore[arg-type]


def connect_timeout() -> requests.ConnectTimeout:
    reason = ConnectTimeoutError(None, "timed out")
    return requests.ConnectTimeout(MaxRetryError(None, URL, reason))  # type: ignore[arg-type]


def read_timeout() -> requests.ReadTimeout:
    return requests.ReadTimeout(ReadTimeoutError(None, URL, "Read timed out."))  # type: ignore[arg-type]


def dropped() -> requests.ConnectionError:
    cause = http.client.RemoteDisconnected("Remote end closed connection without response")
    return requests.ConnectionError(ProtocolError("Connection aborted.", cause))


def chained_refusal() -> requests.ConnectionError:
    """A refusal that is only reachable through ``__context__``."""
    exc = requests.ConnectionError("wrapped")
    exc.__context__ = NewConnectionError(None, "refused")  # type: ignore[arg-type]
    return exc


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (refused, TransientError),
        (unresolvable, TransientError),
        (connect_timeout, TransientError),
        (lambda: requests.ConnectTimeout("bare connect timeout"), TransientError),
        (chained_refusal, TransientError),
        (read_timeout, AmbiguousError),
        (lambda: requests.ReadTimeout("bare read timeout"), AmbiguousError),
        (dropped, AmbiguousError),
        (lambda: requests.ConnectionError("Connection reset by peer"), AmbiguousError),
        (lambda: requests.exceptions.ChunkedEncodingError("broken"), AmbiguousError),
        (lambda: requests.exceptions.ContentDecodingError("bad gzip"), AmbiguousError),
        (lambda: requests.RequestException("anything else"), AmbiguousError),
    ],
)
def test_transport_error_classes(make: Any, error: type[Exception]) -> None:
    mapped = transport_error(make(), "camunda8")
    assert type(mapped) is error
    assert mapped.message.startswith("camunda8: ")
    assert mapped.http_status is None
    if error is AmbiguousError:
        assert "may exist" in mapped.message
    else:
        assert "could not connect" in mapped.message


def test_transport_error_names_the_root_cause() -> None:
    assert "NewConnectionError" in transport_error(refused(), "c8").message
    assert "NameResolutionError" in transport_error(unresolvable(), "c8").message


def test_transport_error_survives_a_cyclic_chain() -> None:
    first = requests.ConnectionError("a")
    second = ValueError("b")
    first.__context__ = second
    second.__context__ = first
    assert type(transport_error(first, "c8")) is AmbiguousError


# ---------------------------------------------------------------- make_session


def test_session_pool_and_no_urllib3_retries() -> None:
    session = make_session(pool_size=7)
    http_adapter = session.get_adapter("http://x.test/")
    https_adapter = session.get_adapter("https://x.test/")
    assert isinstance(http_adapter, HTTPAdapter)
    assert http_adapter is https_adapter
    assert http_adapter._pool_maxsize == 7  # type: ignore[attr-defined]
    assert http_adapter.poolmanager.connection_pool_kw["maxsize"] == 7
    retries = http_adapter.max_retries
    assert isinstance(retries, Retry)
    assert retries.total == 0
    with pytest.raises((MaxRetryError, ProtocolError)):
        retries.increment("POST", URL, error=ProtocolError("dropped"))
    with pytest.raises(MaxRetryError):
        retries.increment("POST", URL, error=NewConnectionError(None, "refused"))  # type: ignore[arg-type]


def test_session_user_agent_and_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    expected = f"process-start-worker/{__version__}"
    assert make_session().headers["User-Agent"] == expected
    assert expected == USER_AGENT
    assert make_session().verify is True
    assert make_session(verify=False).verify is False


def test_environment_is_read_once_when_the_session_is_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/private-ca.pem")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.test:3128")
    monkeypatch.setenv("NO_PROXY", "internal.test")
    session = make_session(base_url="https://engine.test")
    assert session.trust_env is False
    assert session.verify == "/etc/ssl/private-ca.pem"
    assert session.proxies["https"] == "http://proxy.test:3128"
    assert make_session(base_url="https://engine.internal.test").proxies == {}
    assert make_session(verify=False).verify is False


def test_default_pool_size() -> None:
    adapter = make_session().get_adapter("http://x.test/")
    assert adapter.poolmanager.connection_pool_kw["maxsize"] == 64  # type: ignore[attr-defined]


@pytest.fixture
def hang_up() -> Iterator[HangUpServer]:
    with HangUpServer() as server:
        yield server


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_a_dropped_connection_is_tried_once_and_ambiguous(
    hang_up: HangUpServer, method: str
) -> None:
    session = make_session()
    with pytest.raises(requests.RequestException) as caught:
        session.request(method, hang_up.url, json={"a": 1}, timeout=(2, 2))
    assert hang_up.accepted == 1
    assert type(transport_error(caught.value, "c8")) is AmbiguousError


def test_the_connection_counter_sees_urllib3_retries(hang_up: HangUpServer) -> None:
    """The same server counts 1 + 3 connections for a session that does retry."""
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=Retry(total=3, backoff_factor=0)))
    with pytest.raises(requests.RequestException):
        session.get(hang_up.url, timeout=(2, 2))
    assert hang_up.accepted == 4


def test_a_read_timeout_on_a_real_socket_is_ambiguous() -> None:
    with HangUpServer(answer=True) as server:
        with pytest.raises(requests.ReadTimeout) as caught:
            make_session().post(server.url, json={}, timeout=(2, 0.05))
        assert server.accepted == 1
    assert type(transport_error(caught.value, "c8")) is AmbiguousError


def test_a_refused_connection_on_a_real_socket_is_transient() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(requests.ConnectionError) as caught:
        make_session().post(f"http://127.0.0.1:{port}/", json={}, timeout=(2, 2))
    assert type(transport_error(caught.value, "c8")) is TransientError


def test_an_ssl_error_while_reading_the_answer_is_ambiguous() -> None:
    """The request went out over TLS; the answer could not be decrypted: it may exist."""
    with BrokenTLSServer("corrupt_answer") as server:
        session = make_session()
        session.verify = CA_FILE
        with pytest.raises(requests.exceptions.SSLError) as caught:
            session.post(server.url, json={"a": 1}, timeout=(2, 2))
        assert server.requests_read == 1
    assert type(transport_error(caught.value, "c8")) is AmbiguousError


@pytest.mark.parametrize(
    ("mode", "expected"),
    # nothing was sent either way; a certificate the client does not trust is a setup
    # problem no retry fixes (permanent, naming tls.ca_file), a server not speaking TLS
    # may be restarting (transient)
    [("not_tls", TransientError), ("handshake_only", PermanentError)],
)
def test_a_failed_tls_handshake_is_not_sent(mode: Mode, expected: type[Exception]) -> None:
    with BrokenTLSServer(mode) as server:
        with pytest.raises(requests.exceptions.SSLError) as caught:
            make_session().post(server.url, json={"a": 1}, timeout=(2, 2))
        assert server.requests_read == 0
    assert type(transport_error(caught.value, "c8")) is expected


# ---------------------------------------------------------------- EngineAdapter


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like an engine

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b'{"ok": true}'
        self.send_response(201)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Set-Cookie", "session=abc; Path=/")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def engine_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/start"
    finally:
        server.shutdown()
        server.server_close()


def test_sessions_use_the_engine_adapter() -> None:
    adapter = make_session().get_adapter("https://x.test/")
    assert isinstance(adapter, worker.engines.http.EngineAdapter)


def test_the_engine_adapter_answers_like_requests_without_a_cookie_jar(engine_url: str) -> None:
    session = make_session()
    response = session.post(engine_url, json={"a": 1}, timeout=(2, 2))
    assert response.status_code == 201
    assert response.reason == "Created"
    assert response.json() == {"ok": True}
    assert response.encoding == "utf-8"
    assert response.headers["content-type"].startswith("application/json")
    assert response.url == engine_url
    assert response.request is not None and response.request.url == engine_url
    assert dict(response.cookies) == {}  # credentials travel in headers, never in cookies


def test_the_engine_adapter_reuses_its_pool(engine_url: str) -> None:
    session = make_session()
    adapter = session.get_adapter(engine_url)
    assert isinstance(adapter, worker.engines.http.EngineAdapter)
    for _ in range(3):
        assert session.post(engine_url, json={}, timeout=(2, 2)).status_code == 201
    (pool,) = adapter._pools.values()
    assert pool.num_connections == 1  # one keep-alive connection for three calls
    adapter.close()
    assert adapter._pools == {}


def test_the_engine_adapter_keeps_tls_settings_apart(engine_url: str) -> None:
    session = make_session()
    adapter = session.get_adapter(engine_url)
    request = requests.Request("POST", engine_url).prepare()
    first = adapter.get_connection_with_tls_context(request, True)
    assert adapter.get_connection_with_tls_context(request, True) is first
    assert adapter.get_connection_with_tls_context(request, False) is not first


def test_the_engine_adapter_leaves_proxied_calls_to_requests() -> None:
    adapter = worker.engines.http.EngineAdapter()
    request = requests.Request("POST", URL + "?a=1").prepare()
    proxies = {"http": "http://proxy.test:3128"}
    assert adapter.request_url(request, proxies) == URL + "?a=1"
    assert adapter.request_url(request, {}) == "/v2/process-instances?a=1"
    adapter.get_connection_with_tls_context(request, True, proxies=proxies)
    assert adapter._pools == {}


# ---------------------------------------------------------------- call deadline


def test_a_trickling_status_line_is_cut_at_the_deadline_and_ambiguous() -> None:
    with TrickleServer(interval=0.05) as server:
        started = time.monotonic()
        with (
            pytest.raises(requests.RequestException) as caught,
            worker.engines.http.call_deadline(0.5),
        ):
            make_session().post(server.url, json={}, timeout=(2, 2))
        elapsed = time.monotonic() - started
    error = transport_error(caught.value, "c8")
    assert type(error) is AmbiguousError and "deadline" in error.message
    assert 0.5 <= elapsed < 2.0  # the 4 s answer was cut, though each byte came within 2 s


def test_a_call_within_its_deadline_reads_the_whole_answer() -> None:
    with TrickleServer(interval=0.002) as server:
        with worker.engines.http.call_deadline(30):
            response = make_session().post(server.url, json={}, timeout=(2, 2))
        assert response.json() == {}


class _TimeoutSpy:
    """A socket's timeout, and every change made to it."""

    def __init__(self, timeout: float) -> None:
        self.timeout, self.changes = timeout, list[float]()

    def gettimeout(self) -> float:
        return self.timeout

    def settimeout(self, value: float) -> None:
        self.changes.append(value)
        self.timeout = value


@pytest.mark.parametrize(("left", "changed"), [(60.0, False), (1.0, True)])
def test_a_read_changes_the_socket_timeout_only_to_keep_the_deadline(
    left: float, changed: bool
) -> None:
    """Each ``settimeout`` is an ioctl that gives up the GIL: the per-read timeout urllib3
    set stays while the deadline is further away than it."""
    sock = _TimeoutSpy(5.0)
    reader = _DeadlineReader(io.BytesIO(b"HTTP/1.1 200 OK"), sock, time.monotonic() + left)
    assert reader.readinto(bytearray(4)) == 4
    assert bool(sock.changes) is changed
    assert sock.timeout <= min(5.0, left)


def test_engine_calls_under_a_deadline_still_reuse_one_connection(engine_url: str) -> None:
    root = engine_url.removesuffix("/api/start")
    targets = Targets.from_dict({"targets": {"t": {"engine": "camunda8", "base_url": root}}})
    engine = build_engine(targets["t"])
    for _ in range(3):
        assert engine.fetch(StartRequest("POST", "/api/start", json={})) == {"ok": True}
    (pool,) = engine.session.get_adapter(root)._pools.values()  # type: ignore[attr-defined]
    assert pool.num_connections == 1
