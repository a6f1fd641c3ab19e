"""HTTP plumbing shared by every engine: the pooled session, Retry-After, transport errors.

Transport failures split in two by one question, *could the engine have
received the request?* A refused connection, a connect timeout or a failed
TLS handshake cannot have created anything (transient, safe to resend); a
read timeout, a connection dropped mid-answer or a TLS error while reading
the answer may have (ambiguous, reconcile before resending).

urllib3's timeouts bound each socket read, not a call: an answer that
trickles in a byte at a time never times out. Inside `call_deadline` every
read of a response (status line, headers, body) waits at most until the
deadline, so a call ends by then and one that runs over is ambiguous.

TLS errors need to know when they happened: a handshake that fails sent
nothing (transient), but a TLS connection that breaks once the request went
out may have delivered it (ambiguous). A call's `CallState` notes when its
request starts to go out; a refused handshake or an untrusted server is
neither (``permanent``, `worker.tls.tls_failure`).
"""

from __future__ import annotations

import email.utils
import http.client
import io
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from time import monotonic  # apart from ``time``, which tests replace to fix the wall clock
from typing import Any, cast

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.ssl_match_hostname import CertificateError

from worker import __version__
from worker.errors import AmbiguousError, JobError, PermanentError, TransientError
from worker.tls import tls_failure

USER_AGENT = f"process-start-worker/{__version__}"
_NOT_SENT = (NewConnectionError, ConnectTimeoutError, NameResolutionError)
_call = threading.local()


class CallDeadlineExceeded(TimeoutError):
    """A response was still being read when its call's deadline passed."""


@dataclass
class CallState:
    """How far one call got: ``written`` once its request started to go out."""

    written: bool = False


@contextmanager
def call_deadline(seconds: float, state: CallState | None = None) -> Iterator[None]:
    """Responses read in this block (on an `EngineAdapter`) end ``seconds`` from now;
    ``state`` notes when the request starts to go out."""
    outer, outer_state = getattr(_call, "deadline", None), getattr(_call, "state", None)
    _call.deadline, _call.state = monotonic() + seconds, state
    try:
        yield
    finally:
        _call.deadline, _call.state = outer, outer_state


def _note_written() -> None:
    state = getattr(_call, "state", None)
    if state is not None:
        state.written = True


class _DeadlineReader(io.RawIOBase):
    """A response's socket reader whose every read waits at most until the deadline."""

    def __init__(self, raw: io.RawIOBase, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._raw = raw
        self._sock = sock
        self._deadline = deadline
        self._per_read = sock.gettimeout()  # urllib3's read timeout, set before the response

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._raw.fileno()

    def readinto(self, buffer: Any) -> int | None:
        left = self._deadline - monotonic()
        if left <= 0:
            raise CallDeadlineExceeded("the call's deadline passed while reading the answer")
        self._sock.settimeout(left if self._per_read is None else min(self._per_read, left))
        try:
            return self._raw.readinto(buffer)
        except TimeoutError:
            if monotonic() >= self._deadline:
                raise CallDeadlineExceeded(
                    "the call's deadline passed while reading the answer"
                ) from None
            raise

    def close(self) -> None:
        self._raw.close()
        super().close()


class _DeadlineResponse(http.client.HTTPResponse):
    """http.client's response, read through a `_DeadlineReader` inside `call_deadline`."""

    def __init__(
        self, sock: socket.socket, debuglevel: int = 0, method: str | None = None, url: Any = None
    ) -> None:
        super().__init__(sock, debuglevel, method, url)
        deadline = getattr(_call, "deadline", None)
        if deadline is not None:
            self.fp = io.BufferedReader(_DeadlineReader(self.fp.detach(), sock, deadline))


class _HTTPConnection(HTTPConnection):
    response_class = _DeadlineResponse

    def request(self, *args: Any, **kwargs: Any) -> None:
        _note_written()
        super().request(*args, **kwargs)


class _HTTPSConnection(HTTPSConnection):
    """Connected (the TLS handshake done) by the pool before `request` is called."""

    response_class = _DeadlineResponse

    def request(self, *args: Any, **kwargs: Any) -> None:
        _note_written()
        super().request(*args, **kwargs)


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_DEADLINE_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


def make_session(
    pool_size: int = 64,
    verify: bool | str = True,
    base_url: str | None = None,
    cert: str | tuple[str, str] | None = None,
) -> requests.Session:
    """A session with a connection pool sized for the worker's concurrency.

    urllib3's own retries are off: retrying is the retry policy's decision,
    and a silent urllib3 retry after a read error could double-start.
    Proxy and CA-bundle variables are read once here instead of on every
    request (``trust_env`` costs a fraction of a millisecond per call), and
    ``~/.netrc`` is never consulted: credentials come from the targets file.
    ``verify`` is on/off or a target's own CA file (which the CA-bundle
    variables do not override); ``cert`` its client certificate (`worker.tls`).
    """
    session = requests.Session()
    session.trust_env = False
    if base_url:
        session.proxies.update(requests.utils.get_environ_proxies(base_url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    adapter = EngineAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    session.verify = bundle if verify is True and bundle else verify
    session.cert = cert
    return session


class EngineAdapter(HTTPAdapter):
    """requests' adapter without the per-call work an engine API never needs.

    Engine calls carry their credentials in headers and never follow
    redirects, so the server's cookies are not collected into a jar; the pool
    for an origin and TLS setting is looked up once, not re-derived from the
    URL on every call; and a call without proxies sends the plain path. About
    0.1 ms of CPU per call (benchmarks/README.md). ``send`` itself is requests'
    own, so mocks that patch ``HTTPAdapter.send`` still apply. Its connections
    read responses within `call_deadline` (also through an HTTP proxy; a SOCKS
    proxy keeps urllib3's per-read timeouts only).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pools: dict[tuple[str, str, str], HTTPConnectionPool] = {}

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _DEADLINE_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _DEADLINE_POOLS
        return manager

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: Any,
        proxies: Mapping[str, str] | None = None,
        cert: Any = None,
    ) -> HTTPConnectionPool:
        url = request.url or ""
        if proxies or "@" in url:
            return self._pool_for(request, verify, proxies, cert)
        end = url.find("/", url.find("//") + 2)
        key = (url if end < 0 else url[:end], repr(verify), repr(cert))
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = self._pool_for(request, verify, proxies, cert)
        return pool

    def _pool_for(
        self, request: requests.PreparedRequest, verify: Any, proxies: Any, cert: Any
    ) -> HTTPConnectionPool:
        pool = super().get_connection_with_tls_context(request, verify, proxies, cert)
        return cast(HTTPConnectionPool, pool)

    def request_url(
        self, request: requests.PreparedRequest, proxies: Mapping[str, str] | None
    ) -> str:
        return request.path_url if not proxies else super().request_url(request, proxies)

    def build_response(self, req: requests.PreparedRequest, resp: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = resp.status
        response.headers = CaseInsensitiveDict(resp.headers)
        response.encoding = get_encoding_from_headers(response.headers)
        response.raw = resp
        response.reason = resp.reason
        response.url = req.url or ""
        response.request = req
        response.connection = self
        return response

    def close(self) -> None:
        self._pools.clear()
        super().close()


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        nested = (
            current.args[0] if current.args and isinstance(current.args[0], BaseException) else None
        )
        reason = getattr(current, "reason", None)
        current = reason if isinstance(reason, BaseException) else nested or current.__context__
    return seen


def _tls_handshake_failed(chain: list[BaseException]) -> bool:
    """Whether a TLS error came from the handshake (nothing sent), not from reading the answer.

    requests raises the same ``SSLError`` for both. A certificate that fails
    verification is a handshake failure; any other TLS error is one only if
    it was raised inside ``SSLSocket.do_handshake``.
    """
    for error in chain:
        if isinstance(error, ssl.SSLCertVerificationError | CertificateError):
            return True
        if isinstance(error, ssl.SSLError) and _raised_in(error, "do_handshake"):
            return True
    return False


def _raised_in(error: BaseException, function: str) -> bool:
    trace = error.__traceback__
    while trace is not None:
        if trace.tb_frame.f_code.co_name == function:
            return True
        trace = trace.tb_next
    return False


def tls_refusal(exc: BaseException) -> str | None:
    """`worker.tls.tls_failure` of everything ``exc`` wraps."""
    return tls_failure(_chain(exc))


def transport_error(
    exc: requests.RequestException, engine: str, written: bool | None = None
) -> JobError:
    """Map a `requests` exception to transient (not sent) or ambiguous (maybe sent).

    ``written``: whether the request had started to go out (`CallState`), which
    only TLS errors need (None: unknown, taken as a failed handshake). A TLS
    refusal or an untrusted server is permanent: no retry fixes a certificate.
    """
    chain = _chain(exc)
    if any(isinstance(e, CallDeadlineExceeded) for e in chain):
        return AmbiguousError(
            f"{engine}: no whole answer within the call's deadline; the instance may exist"
        )
    refused = tls_failure(chain)
    if refused is not None:
        return PermanentError(f"{engine}: {refused}")
    tls_broke = isinstance(exc, requests.exceptions.SSLError)
    # Whether the request had gone out: known from the call's state, else from where
    # the TLS error was raised (a handshake sends nothing).
    sent = written if written is not None else not _tls_handshake_failed(chain)
    if tls_broke and sent:
        return AmbiguousError(
            f"{engine}: the TLS connection broke after the request was sent "
            f"({type(chain[-1]).__name__}); the instance may exist"
        )
    not_sent = isinstance(exc, requests.ConnectTimeout) or tls_broke
    if not_sent or any(isinstance(e, _NOT_SENT) for e in chain):
        return TransientError(f"{engine}: could not connect ({type(chain[-1]).__name__})")
    if isinstance(exc, requests.Timeout):
        return AmbiguousError(f"{engine}: no answer before the timeout; the instance may exist")
    return AmbiguousError(
        f"{engine}: connection lost after the request was sent ({type(exc).__name__}); "
        "the instance may exist"
    )


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"[0-9]+", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return max(0.0, (when - current).total_seconds())
