"""The pooled session, its adapter, and the direct path past requests' ``prepare``/``send``.

requests' preparation and adapter cost about 0.3 M instructions per engine
call on top of urllib3 (benchmarks/engine_call.py). On the direct path (no
proxy, no credentials in the URL, requests' own ``send``) a call is prepared
by `worker.engines.http.prepare` and handed to the same urllib3 pool
requests would use, with the same TLS settings, retries and redirects off;
urllib3's errors are raised as the requests exceptions they would have
become, so they are classified alike. Anything else (a proxy, a test's
``responses`` mock, a mounted fake) keeps requests' own path.
"""

from __future__ import annotations

import datetime
import functools
import os
from collections.abc import Callable, Mapping
from typing import Any, cast

import requests
from requests.adapters import HTTPAdapter
from requests.compat import has_simplejson
from requests.cookies import RequestsCookieJar
from requests.exceptions import InvalidSchema, InvalidURL
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from urllib3 import HTTPConnectionPool
from urllib3.exceptions import LocationValueError
from urllib3.util.timeout import Timeout

from worker import __version__
from worker.engines.http.deadline import DEADLINE_POOLS
from worker.engines.http.errors import reading_error, sending_error
from worker.engines.http.prepare import DirectRequest, plain_headers, prepare_json

USER_AGENT = f"process-start-worker/{__version__}"
_NO_TIME = datetime.timedelta(0)
# requests' own ``send``; None if this is imported while a mock replaces it (no direct path)
_REQUESTS_SEND = HTTPAdapter.send if HTTPAdapter.send.__qualname__ == "HTTPAdapter.send" else None


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


def direct(session: requests.Session, url: str, adapter: Any) -> bool:
    """Whether a call to ``url`` through ``adapter`` takes the direct path: requests
    would add nothing to it.

    Not with a proxy, credentials in the URL, or an adapter whose ``send`` is
    not requests' own (a test's ``responses`` mock patches ``HTTPAdapter.send``;
    a mounted fake).
    """
    return (
        not session.proxies
        and "@" not in url
        and isinstance(adapter, EngineAdapter)
        and getattr(adapter.send, "__func__", None) is _REQUESTS_SEND
    )


def prepare_direct(
    session: requests.Session,
    method: str,
    url: str,
    headers: Mapping[str, str],
    params: Mapping[str, str],
    body: Any,
    auth: Callable[[requests.PreparedRequest], requests.PreparedRequest] | None,
) -> DirectRequest | None:
    """`prepare_json` with the session's headers for a call on the `direct` path, else
    None: requests prepares it (also when requests encodes JSON with simplejson)."""
    try:
        adapter = session.get_adapter(url)
    except InvalidSchema:
        return None
    if has_simplejson or not direct(session, url, adapter):
        return None
    merged = {**plain_headers(session.headers), **headers}
    prepared = prepare_json(method, url, merged, params, body, auth)
    prepared.adapter = adapter
    return prepared


def exchange(
    session: requests.Session, request: requests.PreparedRequest, timeout: tuple[float, float]
) -> requests.Response:
    """Send ``request`` on ``session`` and read the whole answer.

    On the `direct` path straight to the adapter's urllib3 pool
    (`EngineAdapter.send_direct`), otherwise through requests' ``send``.
    """
    url = request.url or ""
    adapter = getattr(request, "adapter", None) or session.get_adapter(url)
    verify = True if session.verify is None else session.verify
    if direct(session, url, adapter):
        return cast(EngineAdapter, adapter).send_direct(request, timeout, verify, session.cert)
    response = adapter.send(
        request, timeout=timeout, verify=verify, cert=session.cert, proxies=session.proxies
    )
    _ = response.content  # read it all now, so the connection goes back to the pool
    return response


@functools.lru_cache(maxsize=64)
def _timeout(connect: float, read: float) -> Timeout:
    """requests' ``(connect, read)`` as urllib3's `Timeout` (the pool clones it to use it)."""
    return Timeout(connect=connect, read=read)


class EngineAdapter(HTTPAdapter):
    """requests' adapter without the per-call work an engine API never needs.

    Engine calls carry their credentials in headers and never follow
    redirects, so the server's cookies are not collected into a jar; the pool
    for an origin and TLS setting is looked up once, not re-derived from the
    URL on every call; and a call without proxies sends the plain path. About
    0.1 ms of CPU per call (benchmarks/README.md). Engine calls on the direct
    path take `send_direct`; ``send`` itself is requests' own, so mocks that
    patch ``HTTPAdapter.send`` still apply (and turn the direct path off). Its
    connections read responses within `call_deadline` (also through an HTTP
    proxy; a SOCKS proxy keeps urllib3's per-read timeouts only).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pools: dict[tuple[str, str, str], HTTPConnectionPool] = {}

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = DEADLINE_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = DEADLINE_POOLS
        return manager

    def send_direct(
        self,
        request: requests.PreparedRequest,
        timeout: tuple[float, float],
        verify: bool | str,
        cert: Any = None,
    ) -> requests.Response:
        """`send` for a call without proxies, with the answer read: requests' work between
        the prepared request and urllib3 skipped, nothing else.

        The same pool, TLS settings (`cert_verify`), bytes on the wire and
        urllib3 options (no retries, no redirects); urllib3's errors become
        the exceptions `send` and ``Response.content`` raise for them.
        """
        try:
            pool = self.get_connection_with_tls_context(request, verify, None, cert)
        except LocationValueError as exc:
            raise InvalidURL(exc, request=request) from exc
        url = request.url or ""
        self.cert_verify(pool, url, verify, cert)  # type: ignore[no-untyped-call]
        body = request.body
        try:
            raw = pool.urlopen(
                method=request.method or "",
                url=request.path_url,
                body=cast(Any, body),
                headers=plain_headers(request.headers),
                redirect=False,
                assert_same_host=False,
                preload_content=False,
                decode_content=False,
                retries=self.max_retries,
                timeout=_timeout(*timeout),
                chunked=not (body is None or "Content-Length" in request.headers),
            )
        except Exception as exc:
            error = sending_error(exc, request)
            if error is exc:
                raise
            raise error from exc
        try:
            content = raw.read(decode_content=True)
        except Exception as exc:
            error = reading_error(exc)
            if error is exc:
                raise
            raise error from exc
        return EngineResponse(request, raw, content, self)

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
        _set_answer(response, req, resp, self)
        return response

    def close(self) -> None:
        self._pools.clear()
        super().close()


class EngineResponse(requests.Response):
    """The `requests.Response` of a call on the direct path, its answer read.

    Made as `EngineAdapter.build_response` makes one, but without
    ``Response.__init__``, whose empty cookie jar is most of its cost: the
    jar is made only if ``cookies`` is read (engine code never does).
    """

    def __init__(
        self, request: requests.PreparedRequest, raw: Any, content: bytes, adapter: HTTPAdapter
    ) -> None:
        self._content = content
        self._content_consumed = True
        self._next = None
        self.history = []
        self.elapsed = _NO_TIME
        _set_answer(self, request, raw, adapter)

    def __getattr__(self, name: str) -> Any:
        if name != "cookies":
            raise AttributeError(name)
        self.cookies = RequestsCookieJar()  # what cookiejar_from_dict({}) makes
        return self.cookies


def _set_answer(
    response: requests.Response, request: requests.PreparedRequest, raw: Any, adapter: HTTPAdapter
) -> None:
    """Give ``response`` the fields urllib3's ``raw`` answer sets (requests' ``build_response``
    without its cookie jar): one place for `EngineAdapter.build_response` and for
    `EngineResponse`, which skips ``Response.__init__`` and so sets its fields itself."""
    response.status_code = raw.status
    response.headers = CaseInsensitiveDict(raw.headers)
    response.encoding = get_encoding_from_headers(response.headers)
    response.raw = raw
    response.reason = raw.reason
    response.url = request.url or ""
    response.request = request
    response.connection = adapter
