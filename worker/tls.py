"""TLS per target: a private CA, a client certificate, and failures that say what to fix.

``[targets.X] tls = { ca_file = "...", client_cert = "...", client_key = "..." }``
applies to everything the worker sends for that target, the engine API and
its OAuth2 token endpoint alike (they share the target's session). ``ca_file``
replaces the system's CAs for those calls: a token endpoint with a public
certificate needs its CA in the file too. The files
are checked when the targets file is loaded (they exist, are PEM, the key
fits the certificate), so a typo stops the worker at start, not at the first
job. The key file must not be encrypted (the worker has no passphrase to
give); keep it readable by the worker's user only.

A handshake the server refuses (our client certificate missing or not
trusted) or a server certificate we cannot verify is no job's fault and no
retry fixes it: `tls_failure` turns those into one clear sentence, and the
caller fails the job ``permanent``. Nothing reached the engine: the server
refuses before it reads a request, also when TLS 1.3 reports the refusal
only with the first answer.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, model_validator

_CLIENT_CERT_REFUSED = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the server requires a client certificate",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the server refused our client certificate",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "the server refused our client certificate",
    "TLSV1_ALERT_UNKNOWN_CA": "the server does not trust the CA of our client certificate",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the server says our client certificate expired",
    "SSLV3_ALERT_CERTIFICATE_REVOKED": "the server says our client certificate is revoked",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": "the server cannot use our client certificate",
    "TLSV1_ALERT_ACCESS_DENIED": "the server denied access to our client certificate",
}
_HANDSHAKE_REFUSED = {"SSLV3_ALERT_HANDSHAKE_FAILURE", "TLSV1_ALERT_PROTOCOL_VERSION",
                      "TLSV1_ALERT_INSUFFICIENT_SECURITY"}


class TargetTls(BaseModel):
    """``[targets.X] tls``: files are PEM; relative paths are from the targets file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None

    @model_validator(mode="after")
    def _usable(self) -> TargetTls:
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key needs client_cert (the certificate it belongs to)")
        context = ssl.create_default_context()
        if self.ca_file is not None:
            _readable(self.ca_file, "ca_file")
            try:
                context.load_verify_locations(cafile=str(self.ca_file))
            except ssl.SSLError as exc:
                raise ValueError(f"ca_file {self.ca_file}: not a PEM CA certificate "
                                 f"({exc.reason or exc})") from None
        if self.client_cert is not None:
            _readable(self.client_cert, "client_cert")
            if self.client_key is not None:
                _readable(self.client_key, "client_key")
            try:
                context.load_cert_chain(str(self.client_cert), _str(self.client_key),
                                        password=_no_passphrase)
            except (ssl.SSLError, ValueError, TypeError) as exc:
                raise ValueError(
                    f"client_cert {self.client_cert}: cannot use it with "
                    f"{self.client_key or 'the key inside it'} ({_reason(exc)}); both PEM, "
                    "the key unencrypted and matching the certificate"
                ) from None
        return self

    def verify(self, verify_tls: bool) -> bool | str:
        """What `requests` takes as ``verify``: the CA file, or on/off."""
        if not verify_tls:
            return False
        return str(self.ca_file) if self.ca_file is not None else True

    def cert(self) -> str | tuple[str, str] | None:
        """What `requests` takes as ``cert``."""
        if self.client_cert is None:
            return None
        if self.client_key is None:
            return str(self.client_cert)
        return str(self.client_cert), str(self.client_key)


def resolve_paths(raw: object, base: Path) -> object:
    """A ``tls`` table with its relative paths made relative to ``base`` (the file's folder)."""
    if not isinstance(raw, dict):
        return raw
    out = dict(raw)
    for name in ("ca_file", "client_cert", "client_key"):
        value = out.get(name)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            out[name] = str(base / value)
    return out


def tls_failure(chain: Iterable[BaseException]) -> str | None:
    """One sentence for a refused handshake or an unverifiable server, else None."""
    for exc in chain:
        if isinstance(exc, ssl.SSLCertVerificationError):
            detail = (getattr(exc, "verify_message", None) or getattr(exc, "reason", None)
                      or "certificate verify failed")
            return (f"TLS: the server's certificate was not accepted ({detail}); set "
                    "tls.ca_file to the CA that issued it (or fix the server's certificate)")
        if isinstance(exc, ssl.SSLError):
            reason = str(getattr(exc, "reason", None) or "")
            if reason in _CLIENT_CERT_REFUSED:
                return (f"TLS: {_CLIENT_CERT_REFUSED[reason]} ({_words(reason)}); set "
                        "tls.client_cert and tls.client_key to a certificate it trusts; "
                        "nothing was sent")
            if reason in _HANDSHAKE_REFUSED:
                return (f"TLS: the server refused the handshake ({_words(reason)}): protocol, "
                        "ciphers or client certificate do not match; nothing was sent")
    return None


def _readable(path: Path, name: str) -> None:
    if not path.is_file():
        raise ValueError(f"{name} {path}: no such file")
    try:
        path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{name} {path}: cannot be read ({exc.strerror})") from None


def _no_passphrase() -> str:
    raise ValueError("the key is encrypted")


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc).lower().replace("_", " ")


def _words(reason: str) -> str:
    return reason.lower().replace("_", " ")
