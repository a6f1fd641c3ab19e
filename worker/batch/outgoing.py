"""A spooled row as the start job it becomes: its id and its JSON, without a dict per row.

A batch sends the same job shape a million times, so the parts every job
shares are encoded once (`JobText`) and each row only adds its own
variables (already JSON text in the spool), key, id, enqueue time and
business key. The result is ``json.dumps(job)`` of the dict the producers
build, to the byte (tests/batch/test_envelope.py); it is what the in-flight
note stores and what the message body carries.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii as json_string  # json.dumps of a str
from typing import Any, NamedTuple


class Outgoing(NamedTuple):
    """One row's start job, ready to send: its id, its idempotency key, the job as JSON."""

    job_id: str
    key: str
    payload: bytes


def random_ids(count: int) -> list[str]:
    """``count`` random version-4 UUIDs as text, like ``str(uuid.uuid4())`` each.

    One ``os.urandom`` for all of them: ``uuid4()`` builds a `uuid.UUID`
    per id, which cost more than the rest of a job's JSON.
    """
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = bytes(b & 0x0F | 0x40 for b in raw[6::16])  # version 4
    raw[8::16] = bytes(b & 0x3F | 0x80 for b in raw[8::16])  # RFC 4122 variant
    text = raw.hex()
    return [
        f"{text[i : i + 8]}-{text[i + 8 : i + 12]}-{text[i + 12 : i + 16]}-"
        f"{text[i + 16 : i + 20]}-{text[i + 20 : i + 32]}"
        for i in range(0, len(text), 32)
    ]


class JobText:
    """Start jobs as ``json.dumps(job)`` of the job dict, composed from encoded parts.

    ``base``: the fields every job of the batch shares (target, process,
    batch id, ...), first in the job as in the dict; then per row
    ``variables``, ``idempotency_key``, ``job_id``, ``enqueued_at`` and, when
    the row has one, ``business_key``.
    """

    def __init__(self, base: Mapping[str, Any]) -> None:
        if not base:
            raise ValueError("a job has at least a target and a process")
        self._head = json.dumps(dict(base), default=str)[:-1]  # left open: rows add fields

    def job(
        self,
        job_id: str,
        variables: str,
        key: str,
        business_key: str | None,
        enqueued_at: str,
    ) -> Outgoing:
        """``variables``: the row's variables as ``json.dumps`` text."""
        tail = "}" if business_key is None else f', "business_key": {json_string(business_key)}}}'
        text = (
            f'{self._head}, "variables": {variables}, "idempotency_key": {json_string(key)}, '
            f'"job_id": {json_string(job_id)}, "enqueued_at": {json_string(enqueued_at)}{tail}'
        )
        return Outgoing(job_id, key, text.encode())
