"""The direct path: engine calls straight through urllib3's pool, requests' own path otherwise.

Each test runs the same call both ways and compares: the bytes that reach a
raw socket server, the prepared request, the error a failure maps to. The
requests path is forced with a pass-through patch of ``HTTPAdapter.send``,
which is what a ``responses`` mock looks like to the worker.
"""

from __future__ import annotations

import contextlib
import pickle
import socket
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses
from opentelemetry import context as otel_context
from requests.adapters import HTTPAdapter

from tests.support.raw_http import CutAnswerServer, HangUpServer, LoopbackServer, TrickleServer
from tests.support.tls import CA_FILE, BrokenTLSServer, Mode
from worker.engines import build_engine
from worker.engines.base import Engine, StartRequest
from worker.engines.http.deadline import ONE_WRITE_BYTES
from worker.engines.http.prepare import DirectRequest
from worker.engines.http.session import EngineResponse
from worker.errors import AmbiguousError, InvalidJob, JobError, PermanentError, TransientError
from worker.targets import Targets
from worker.tracing import context as tracing

ANSWER = b'{"processInstanceKey": "2251799813685251", "note": "caf\xc3\xa9"}'
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class CaptureServer(LoopbackServer):
    """Records every request's raw bytes (head and body) and answers 200 with `ANSWER`."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[bytes] = []

    def handle(self, conn: socket.socket) -> None:
        data = b""
        with conn, contextlib.suppress(OSError):
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(data) < length:
                    data += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + data[:length])
                data = data[length:]
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Set-Cookie: s=1\r\nX-Many: a\r\nx-many: b\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER))


@pytest.fixture
def capture() -> Iterator[CaptureServer]:
    with CaptureServer() as server:
        yield server


@contextlib.contextmanager
def requests_path() -> Iterator[None]:
    """``HTTPAdapter.send`` replaced by a pass-through, as a mock replaces it."""
    original = HTTPAdapter.send

    def passing(self: HTTPAdapter, *args: Any, **kwargs: Any) -> requests.Response:
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(HTTPAdapter, "send", passing)
        yield


def engine(base_url: str, **target: Any) -> Engine:
    raw = {"engine": "camunda8", "base_url": base_url, **target}
    return build_engine(Targets.from_dict({"targets": {"t": raw}}, env={})["t"])


def both_ways(call: Any) -> tuple[Any, Any]:
    """``call()`` on the direct path, then on requests' path."""
    direct = call()
    with requests_path():
        return direct, call()


def outcome(call: Any) -> Any:
    """What ``call()`` returned, or the type and message of the error it raised."""
    try:
        return call()
    except JobError as exc:
        return type(exc), exc.message


def fields(prepared: requests.PreparedRequest) -> tuple[Any, ...]:
    return prepared.method, prepared.url, list(prepared.headers.items()), prepared.body


# ---------------------------------------------------------------- what is sent


REQUESTS = [
    StartRequest("POST", "/v2/process-instances", json={"a": [1, 2.5, None], "é": "ü\u2028"}),
    StartRequest("GET", "/v2/topology", params={"q": "a b&c", "n": "é"}),
    StartRequest("POST", "/v2/process-instances/search"),
    StartRequest("POST", "/v2/process instances/ü%41", json={},
                 headers={"accept": "text/plain", "X-On-Behalf-Of": "maría"}),
]
AUTH = [
    {"type": "none"},
    {"type": "basic", "username": "worker", "password": "s3cret"},
    {"type": "bearer", "token": "t0ken"},
]


@pytest.mark.parametrize("auth", AUTH, ids=lambda a: a["type"])
@pytest.mark.parametrize("request_", REQUESTS, ids=["json", "params", "empty", "headers"])
def test_the_direct_path_prepares_what_requests_prepares(
    capture: CaptureServer, request_: StartRequest, auth: dict[str, str]
) -> None:
    c8 = engine(capture.url, auth=auth)
    direct, fallback = both_ways(lambda: c8.prepare(request_))
    assert type(direct) is DirectRequest and type(fallback) is requests.PreparedRequest
    assert fields(direct) == fields(fallback)


@pytest.mark.parametrize(
    "request_",
    [StartRequest("POST", "/x", json={"n": float("nan")}),
     StartRequest("POST", "/x", headers={"X-Bad": "a\r\nb"}),
     StartRequest("POST", "/x", headers={"X-Bad": 3})],  # type: ignore[dict-item]
    ids=["nan", "crlf", "not a string"],
)
def test_what_requests_refuses_to_prepare_is_refused_on_both_paths(request_: StartRequest) -> None:
    c8 = engine("http://engine.test")
    direct, fallback = both_ways(lambda: outcome(lambda: c8.prepare(request_)))
    assert direct == fallback
    assert direct[0] is InvalidJob


def test_the_wire_bytes_are_the_same_on_both_paths(capture: CaptureServer) -> None:
    c8 = engine(capture.url, auth={"type": "bearer", "token": "t0ken"})
    token = otel_context.attach(tracing.parent_from({"traceparent": PARENT}))  # type: ignore[arg-type]
    try:
        for request_ in REQUESTS:
            direct, fallback = both_ways(lambda r=request_: c8.send(r))
            assert isinstance(direct, EngineResponse)
            assert not isinstance(fallback, EngineResponse)
    finally:
        otel_context.detach(token)
    sent = capture.requests
    assert len(sent) == 2 * len(REQUESTS)
    assert sent[0::2] == sent[1::2]
    assert f"traceparent: {PARENT}".encode() in sent[0]
    assert b"Authorization: Bearer t0ken" in sent[0]
    assert capture.accepted == 1  # one keep-alive connection, the same pool both ways


_SENDS: list[bytes] | None = None
"""Each ``http.client.send`` while a test counts them (an audit hook cannot be removed)."""


def _count_sends(event: str, args: tuple[Any, ...]) -> None:
    if event == "http.client.send" and _SENDS is not None:
        _SENDS.append(bytes(args[1]))


sys.addaudithook(_count_sends)


@pytest.mark.parametrize(
    ("request_", "writes"),
    [(REQUESTS[0], 1), (REQUESTS[1], 1), (REQUESTS[2], 1),
     (StartRequest("POST", "/big", json={"blob": "x" * ONE_WRITE_BYTES}), 2)],
    ids=["json", "no body", "empty body", "over the limit"],
)
def test_a_request_and_its_body_go_out_in_one_write(
    capture: CaptureServer, request_: StartRequest, writes: int
) -> None:
    global _SENDS
    c8 = engine(capture.url)
    for way in (contextlib.nullcontext, requests_path):
        _SENDS = []
        try:
            with way():
                c8.send(request_)
        finally:
            sends, _SENDS = _SENDS, None
        assert len(sends) == writes
        assert b"".join(sends) == capture.requests[-1]  # the same bytes, in order


def test_the_answer_has_the_shape_requests_gives_it(capture: CaptureServer) -> None:
    c8 = engine(capture.url)
    request_ = StartRequest("POST", "/v2/process-instances", json={})
    direct, fallback = both_ways(lambda: c8.send(request_))
    for response in (direct, fallback):
        assert (response.status_code, response.reason, response.encoding) == (200, "OK", "utf-8")
        assert response.headers["x-many"] == "a, b"
        assert response.content == ANSWER
        assert response.json()["note"] == "café"
        assert response.url == capture.url + "/v2/process-instances"
        assert response.request.method == "POST"
        assert dict(response.cookies) == {}  # never collected: credentials travel in headers
        assert response.history == [] and response.elapsed.total_seconds() == 0
    assert dict(direct.headers) == dict(fallback.headers)
    assert pickle.loads(pickle.dumps(direct)).json() == direct.json()


# ---------------------------------------------------------------- when requests' path is taken


@responses.activate
def test_an_active_responses_mock_gets_the_call() -> None:
    """The host does not exist: only the mock can answer."""
    mock = responses.post("http://engine.test/v2/process-instances",
                          json={"processInstanceKey": "1"})
    c8 = engine("http://engine.test")
    request_ = StartRequest("POST", "/v2/process-instances", json={"a": 1})
    assert type(c8.prepare(request_)) is requests.PreparedRequest
    assert c8.execute(request_).instance_id == "1"
    assert mock.call_count == 1


def test_a_proxy_gets_the_call(monkeypatch: pytest.MonkeyPatch, capture: CaptureServer) -> None:
    """The host does not exist: only the proxy, asked for the absolute URL, can answer."""
    monkeypatch.setenv("HTTP_PROXY", capture.url)
    monkeypatch.setenv("http_proxy", capture.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    c8 = engine("http://engine.test")
    request_ = StartRequest("POST", "/v2/process-instances", json={"a": 1})
    assert type(c8.prepare(request_)) is requests.PreparedRequest
    assert c8.execute(request_).instance_id == "2251799813685251"
    assert capture.requests[0].startswith(b"POST http://engine.test/v2/process-instances ")


# ---------------------------------------------------------------- errors map alike


@contextlib.contextmanager
def refusing() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def serving(server: Any) -> Iterator[str]:
    with server:
        yield server.url.removesuffix("/v2/process-instances")


SCENARIOS: dict[str, tuple[Any, dict[str, Any], type[JobError]]] = {
    "refused": (refusing, {}, TransientError),
    "dropped": (lambda: serving(HangUpServer()), {}, AmbiguousError),
    "read timeout": (lambda: serving(HangUpServer(answer=True)), {"timeout": 0.2},
                     AmbiguousError),
    "deadline": (lambda: serving(TrickleServer(interval=0.05)),
                 {"timeout": 0.5, "connect_timeout": 0.5}, AmbiguousError),
    "answer cut short": (lambda: serving(CutAnswerServer()), {}, AmbiguousError),
    "answer stalls": (lambda: serving(CutAnswerServer(answer=True)), {"timeout": 0.2},
                      AmbiguousError),
    "not tls": (lambda: serving(BrokenTLSServer("not_tls")), {}, TransientError),
    "untrusted": (lambda: serving(BrokenTLSServer("handshake_only")), {}, PermanentError),
    "tls broke after sending": (lambda: serving(BrokenTLSServer("corrupt_answer")),
                                {"verify": CA_FILE}, AmbiguousError),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_failure_maps_to_the_same_error_on_both_paths(name: str) -> None:
    server, extra, expected = SCENARIOS[name]
    verify = extra.pop("verify", None)
    with server() as base_url:
        c8 = engine(base_url, **extra)
        if verify is not None:
            c8.session.verify = verify
        request_ = StartRequest("POST", "/v2/process-instances", json={"a": 1})
        assert type(c8.prepare(request_)) is DirectRequest
        direct, fallback = both_ways(lambda: outcome(lambda: c8.send(request_)))
    assert direct == fallback
    assert direct[0] is expected, direct


def test_an_untrusted_server_is_named_on_the_direct_path() -> None:
    mode: Mode = "handshake_only"
    with BrokenTLSServer(mode) as server:
        c8 = engine(server.url.removesuffix("/v2/process-instances"))
        kind, message = outcome(lambda: c8.send(StartRequest("GET", "/v2/topology")))
        assert server.requests_read == 0
    assert kind is PermanentError and "set tls.ca_file" in message
