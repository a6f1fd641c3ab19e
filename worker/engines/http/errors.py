"""Transport errors: transient (nothing sent), ambiguous (maybe sent) or permanent (TLS).

Transport failures split in two by one question, *could the engine have
received the request?* A refused connection, a connect timeout or a failed
TLS handshake cannot have created anything (transient, safe to resend); a
read timeout, a connection dropped mid-answer or a TLS error while reading
the answer may have (ambiguous, reconcile before resending).

TLS errors need to know when they happened: a handshake that fails sent
nothing (transient), but a TLS connection that breaks once the request went
out may have delivered it (ambiguous). A call's `CallState` notes when its
request starts to go out; a refused handshake or an untrusted server is
neither (``permanent``, `worker.tls.tls_failure`).

urllib3's own errors, raised on the direct path (`worker.engines.http.session`),
are first turned into the exceptions requests raises for them
(`sending_error`, `reading_error`), so both paths are classified alike.
"""

from __future__ import annotations

import ssl

import requests
from requests import exceptions as rex
from urllib3 import exceptions as u3
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.ssl_match_hostname import CertificateError

from worker.engines.http.deadline import CallDeadlineExceeded
from worker.errors import AmbiguousError, JobError, PermanentError, TransientError
from worker.tls import tls_failure

_NOT_SENT = (NewConnectionError, ConnectTimeoutError, NameResolutionError)


def sending_error(
    error: Exception, request: requests.PreparedRequest
) -> Exception:
    """What `requests.adapters.HTTPAdapter.send` raises for ``error`` from ``urlopen``."""
    if isinstance(error, u3.ProtocolError | OSError):
        return rex.ConnectionError(error, request=request)
    if isinstance(error, u3.MaxRetryError):
        reason = error.reason
        if isinstance(reason, ConnectTimeoutError) and not isinstance(reason, NewConnectionError):
            return rex.ConnectTimeout(error, request=request)
        if isinstance(reason, u3.ResponseError):
            return rex.RetryError(error, request=request)
        if isinstance(reason, u3.ProxyError):
            return rex.ProxyError(error, request=request)
        if isinstance(reason, u3.SSLError):
            return rex.SSLError(error, request=request)
        return rex.ConnectionError(error, request=request)
    if isinstance(error, u3.ClosedPoolError):
        return rex.ConnectionError(error, request=request)
    if isinstance(error, u3.ProxyError):
        return rex.ProxyError(error)
    if isinstance(error, u3.SSLError):
        return rex.SSLError(error, request=request)
    if isinstance(error, u3.ReadTimeoutError):
        return rex.ReadTimeout(error, request=request)
    if isinstance(error, u3.InvalidHeader):
        return rex.InvalidHeader(error, request=request)
    return error


def reading_error(error: Exception) -> Exception:
    """What `requests.Response.content` raises for ``error`` while reading the body."""
    if isinstance(error, u3.ProtocolError):
        return rex.ChunkedEncodingError(error)
    if isinstance(error, u3.DecodeError):
        return rex.ContentDecodingError(error)
    if isinstance(error, u3.ReadTimeoutError):
        return rex.ConnectionError(error)
    if isinstance(error, u3.SSLError):
        return rex.SSLError(error)
    return error


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
