"""TLS per target against a sandbox served over HTTPS: a private CA, mutual TLS, clear failures.

The CA and every certificate are made by the test (`trustme`): the server's
for 127.0.0.1 from one CA, the worker's client certificate from another, and
the server requires a client certificate from that second CA. Jobs go through
the service with real Redis; the token endpoint is the same HTTPS server.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import structlog
import urllib3
from cryptography.hazmat.primitives import serialization
from kombu import Connection

from tests.conftest import make_settings
from tests.support.pki import Pki
from tests.support.service import run
from worker.engines.http import transport_error
from worker.errors import AmbiguousError, ConfigError, PermanentError, TransientError
from worker.local.sandbox import SandboxServer
from worker.local.sandbox.camunda8 import Camunda8App
from worker.runtime import Runtime, build_runtime
from worker.service import RetryLater
from worker.targets import Targets

SECRET = "tls-test-secret"
JOB = {"target": "secure", "process": "order-process", "variables": {"orderId": "T-1"}}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def https_server(pki: Pki) -> Iterator[SandboxServer]:
    with SandboxServer("camunda8", ssl_context=pki.server_context()) as server:
        yield server


@pytest.fixture
def c8(https_server: SandboxServer) -> Iterator[Camunda8App]:
    app = https_server.app("camunda8")
    app.reset()
    app.auth.configure(type="oauth2", client_id="worker", client_secret=SECRET)
    yield app
    app.reset()


def target(server: SandboxServer, pki: Pki, tls: dict[str, Any], **extra: Any) -> Targets:
    raw = {"engine": "camunda8", "base_url": server.base_url("camunda8"), "timeout": 5,
           "auth": {"type": "oauth2", "token_url": server.token_url("camunda8"),
                    "client_id": "worker", "client_secret": SECRET},
           "tls": {k: str(v) for k, v in tls.items()}, **extra}
    return Targets.from_dict({"targets": {"secure": raw}}, env={})


def runtime(redis_url: str, targets: Targets) -> Runtime:
    rt = build_runtime(make_settings(redis_url), targets, Connection(redis_url))
    rt.service.sleep = lambda _s: None
    rt.service.policy.__dict__["sleep"] = lambda _s: None  # frozen dataclass: tests only
    return rt


def mutual(pki: Pki) -> dict[str, Any]:
    return {"ca_file": pki.ca_file, "client_cert": pki.client_cert,
            "client_key": pki.client_key}


def test_mutual_tls_with_a_private_ca_reaches_the_engine_and_the_token_endpoint(
    redis_url: str, https_server: SandboxServer, c8: Camunda8App, pki: Pki
) -> None:
    assert https_server.url.startswith("https://127.0.0.1:")
    rt = runtime(redis_url, target(https_server, pki, mutual(pki)))
    result = run(rt, JOB, "tls-1")
    assert result.status == "created", result.error
    assert result.instance_id == c8.instances[0]["id"]
    assert (c8.stats()["token_requests"], c8.stats()["start_requests"]) == (1, 1)


@pytest.mark.parametrize("auth", ["none", "oauth2"])
def test_without_the_client_certificate_the_job_fails_saying_so_and_nothing_is_sent(
    redis_url: str, https_server: SandboxServer, c8: Camunda8App, pki: Pki, auth: str
) -> None:
    if auth == "none":
        c8.auth.configure(type="none")
    extra = {"auth": {"type": "none"}} if auth == "none" else {}
    rt = runtime(redis_url, target(https_server, pki, {"ca_file": pki.ca_file}, **extra))
    result = run(rt, JOB, f"tls-2-{auth}")
    assert result.status == "failed" and result.error is not None
    assert result.error.kind == "permanent"  # not ambiguous: the handshake came first
    assert "the server requires a client certificate" in result.error.message
    assert "tls.client_cert" in result.error.message and "nothing was sent" in result.error.message
    if auth == "oauth2":
        assert result.error.message.startswith("token endpoint: TLS:")
    assert c8.stats()["requests"] == {} and c8.count() == 0
    assert rt.dead_letters.get(f"tls-2-{auth}") is None


@pytest.mark.parametrize("ca", ["system", "other"])
def test_a_server_certificate_from_another_ca_fails_saying_what_to_set(
    redis_url: str, https_server: SandboxServer, c8: Camunda8App, pki: Pki, ca: str
) -> None:
    tls = mutual(pki)
    if ca == "system":
        del tls["ca_file"]
    else:
        tls["ca_file"] = pki.other_ca
    c8.auth.configure(type="none")
    rt = runtime(redis_url, target(https_server, pki, tls, auth={"type": "none"}))
    result = run(rt, JOB, f"tls-3-{ca}")
    assert result.error is not None and result.error.kind == "permanent"
    assert "the server's certificate was not accepted" in result.error.message
    assert "set tls.ca_file" in result.error.message
    assert c8.stats()["requests"] == {}


def test_a_connection_broken_after_the_request_went_out_is_ambiguous_and_reconciled(
    redis_url: str, https_server: SandboxServer, c8: Camunda8App, pki: Pki
) -> None:
    rt = runtime(redis_url, target(https_server, pki, mutual(pki)))
    c8.faults.script([{"drop": "after_commit"}])
    first = run(rt, JOB, "tls-4")
    assert isinstance(first, RetryLater) and "may exist" in first.reason, first
    second = run(rt, JOB, "tls-4", retries=1)
    assert second.status == "created" and second.instance_id == c8.instances[0]["id"]
    assert c8.count() == 1 and c8.stats()["start_requests"] == 1


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_verify_tls_false_still_works_and_warns_at_start(
    redis_url: str, https_server: SandboxServer, c8: Camunda8App, pki: Pki
) -> None:
    tls = {"client_cert": pki.client_cert, "client_key": pki.client_key}
    targets = target(https_server, pki, tls, verify_tls=False)
    with structlog.testing.capture_logs() as logs:
        rt = runtime(redis_url, targets)
    [warning] = [e for e in logs if e["event"] == "target.tls_unverified"]
    assert warning["log_level"] == "warning" and warning["target"] == "secure"
    assert run(rt, JOB, "tls-5").status == "created"
    with structlog.testing.capture_logs() as quiet:
        runtime(redis_url, target(https_server, pki, mutual(pki)))
    assert not [e for e in quiet if e["event"] == "target.tls_unverified"]


# ---------------------------------------------------------------- the targets file


def load(folder: Path, tls: str, extra: str = "") -> Targets:
    path = folder / "targets.toml"
    path.write_text(f"""
[targets.secure]
engine = "camunda8"
base_url = "https://127.0.0.1:9"
{extra}
tls = {tls}
""", encoding="utf-8")
    return Targets.load(path, env={})


def test_relative_tls_paths_are_read_from_the_targets_files_folder(pki: Pki) -> None:
    secure = load(pki.folder, '{ ca_file = "server-ca.pem", client_cert = "client.pem", '
                              'client_key = "client.key" }')["secure"]
    assert secure.tls.verify(True) == str(pki.ca_file)
    assert secure.tls.cert() == (str(pki.client_cert), str(pki.client_key))


@pytest.mark.parametrize(
    ("tls", "extra", "message"),
    [
        ('{ ca_file = "missing.pem" }', "", "targets.secure.tls: ca_file"),
        ('{ ca_file = "client.key" }', "", "not a PEM CA certificate"),
        ('{ client_key = "client.key" }', "", "client_key needs client_cert"),
        ('{ client_cert = "client.pem", client_key = "server-ca.pem" }', "",
         "cannot use it with"),
        ('{ client_cert = "client.pem", client_key = "encrypted.key" }', "", "cannot use it"),
        ('{ ca_file = "server-ca.pem" }', "verify_tls = false", "would never be used"),
        ('{ ca_fle = "server-ca.pem" }', "", "tls.ca_fle: unknown field (did you mean 'ca_file'?)"),
    ],
    ids=["missing file", "not a CA", "key without cert", "key of another", "encrypted key",
         "ca_file unused", "misspelt key"],
)
def test_bad_tls_settings_stop_the_worker_at_start(
    pki: Pki, tls: str, extra: str, message: str
) -> None:
    key = pki.client.private_key_pem.bytes()
    private = serialization.load_pem_private_key(key, password=None)
    (pki.folder / "encrypted.key").write_bytes(private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase")))
    with pytest.raises(ConfigError) as caught:
        load(pki.folder, tls, extra)
    assert message in str(caught.value)
    assert "PRIVATE KEY" not in str(caught.value)


# ---------------------------------------------------------------- classification


def wrapped(error: ssl.SSLError) -> requests.exceptions.SSLError:
    """As requests raises it: SSLError(MaxRetryError(reason=urllib3 SSLError(ssl error)))."""
    reason = urllib3.exceptions.SSLError(error)
    return requests.exceptions.SSLError(
        urllib3.exceptions.MaxRetryError(None, "https://engine.test/x", reason)  # type: ignore[arg-type]
    )


def alert(reason: str) -> ssl.SSLError:
    error = ssl.SSLError(1, f"[SSL: {reason}] {reason.lower()} (_ssl.c:2580)")
    error.reason = reason
    return error


@pytest.mark.parametrize("written", [None, False, True])
def test_a_refused_client_certificate_is_permanent_whenever_it_is_reported(
    written: bool | None,
) -> None:
    """TLS 1.3 reports it with the first answer, after the request went out: still not sent."""
    mapped = transport_error(wrapped(alert("TLSV13_ALERT_CERTIFICATE_REQUIRED")), "c8", written)
    assert isinstance(mapped, PermanentError) and not isinstance(mapped, AmbiguousError)
    assert mapped.message == (
        "c8: TLS: the server requires a client certificate (tlsv13 alert certificate "
        "required); set tls.client_cert and tls.client_key to a certificate it trusts; "
        "nothing was sent"
    )


def test_a_tls_connection_broken_after_the_request_went_out_is_ambiguous() -> None:
    """It may have been delivered: reconciled, never resent blindly (it used to be a
    transient error, resent at once)."""
    eof = ssl.SSLEOFError(8, "EOF occurred in violation of protocol")
    assert isinstance(transport_error(wrapped(eof), "c8", written=True), AmbiguousError)
    assert type(transport_error(wrapped(eof), "c8", written=False)) is TransientError
    # unknown, and not raised inside the handshake: it may have gone out (the safe side)
    assert type(transport_error(wrapped(eof), "c8")) is AmbiguousError
