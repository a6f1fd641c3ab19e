"""A private PKI made by the test (trustme): server and client CAs, their certificates."""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme


class Pki:
    """PEM files of a server CA, a client CA, and their certificates, in one folder."""

    def __init__(self, folder: Path) -> None:
        self.server_ca, self.client_ca = trustme.CA(), trustme.CA()
        self.server = self.server_ca.issue_cert("127.0.0.1")
        self.client = self.client_ca.issue_cert("startproc-worker")
        self.folder = folder
        self.ca_file = self._write("server-ca.pem", self.server_ca.cert_pem.bytes())
        self.client_cert = self._write("client.pem", self.client.cert_chain_pems[0].bytes())
        self.client_key = self._write("client.key", self.client.private_key_pem.bytes())
        self.other_ca = self._write("other-ca.pem", trustme.CA().cert_pem.bytes())

    def _write(self, name: str, data: bytes) -> Path:
        path = self.folder / name
        path.write_bytes(data)
        return path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server.configure_cert(context)
        self.client_ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED
        return context
