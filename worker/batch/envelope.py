"""Start-job messages for a Redis broker: one template per chunk, filled in per row.

``app.send_task`` costs ~150 µs of Python per message (Celery's options,
routing and signals, kombu's serializer and channel), which held a batch to
~3,000 rows/s. So per chunk we let that very path build *one* message, for
a placeholder job, and keep what kombu's Redis channel would push instead of
pushing it (`Recorder`). Each row's message is that text with the row's task
id, delivery tag and body in place of the placeholders, pushed with the
chunk's other messages in one ``LPUSH`` (`Template.push`).

Headers (``traceparent``, publish time, ``kwargsrepr``, ``origin``, ...),
properties, the list key (kombu's priority-list naming) and the JSON layout
are therefore Celery's and kombu's own; tests/batch/test_envelope.py fails
when a message built here differs from what ``app.send_task`` sends for the
same job.
"""

from __future__ import annotations

import json
import re
import uuid
from base64 import b64encode
from collections.abc import Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from kombu.messaging import Producer
from kombu.utils.json import dumps as kombu_dumps

from worker.batch.outgoing import Outgoing, random_ids
from worker.delivery.redis_batch import by_size


class TemplateError(RuntimeError):
    """The recorded message is not the shape this module fills in: send the slow way."""


class Recorder(Producer):
    """A kombu producer on the live channel that keeps the messages it is asked to publish.

    Only kombu's last step is replaced (``_publish``: hand the prepared
    message to the channel); serializing, headers and properties run as for
    any publish, and nothing reaches the broker.
    """

    def __init__(self, channel: Any) -> None:
        super().__init__(channel, auto_declare=False)
        self.recorded: list[tuple[dict[str, Any], str, str]] = []

    def _publish(
        self,
        body: Any,
        priority: Any,
        content_type: Any,
        content_encoding: Any,
        headers: Any,
        properties: Any,
        routing_key: Any,
        mandatory: Any,
        immediate: Any,
        exchange: Any,
        declare: Any,
        timeout: Any = None,
        confirm_timeout: Any = None,
        retry: Any = False,
        retry_policy: Any = None,
    ) -> Any:
        message = self.channel.prepare_message(
            body, priority, content_type, content_encoding, headers, properties
        )
        self.recorded.append((message, exchange, routing_key))


@dataclass(frozen=True)
class Template:
    """A chunk's message, as bytes with ``%s`` where each row's own values go.

    ``fields``: which value fills each ``%s``, in order: 0 the task id, 1 the
    delivery tag, 2 the base64 body.
    """

    key: str
    text: bytes
    fields: tuple[int, ...]
    body_prefix: bytes
    body_suffix: bytes
    expire_ms: int | None
    priority_keys: tuple[str, ...]

    def messages(self, jobs: list[Outgoing]) -> list[bytes]:
        """The message kombu would push for each job (a fresh delivery tag each)."""
        pick = itemgetter(*self.fields)  # >= 3 fields: always a tuple
        prefix, suffix, text = self.body_prefix, self.body_suffix, self.text
        messages = []
        for job, tag in zip(jobs, random_ids(len(jobs)), strict=True):
            body = b64encode(prefix + job.payload + suffix)
            messages.append(text % pick((job.job_id.encode(), tag.encode(), body)))
        return messages

    def push(self, pipe: Any, messages: list[bytes]) -> None:
        """Into ``pipe``: the messages in order, as kombu's one ``LPUSH`` each would leave them."""
        for group in by_size(messages, len):  # one LPUSH per 4 MB
            pipe.lpush(self.key, *group)
        if self.expire_ms is not None:  # a queue declared with x-expires, as kombu's _put
            for key in self.priority_keys:
                pipe.pexpire(key, self.expire_ms)


def record(app: Any, recorder: Recorder, task: str, queue: str, **options: Any) -> Template:
    """Build the template: ``app.send_task`` of a placeholder job, recorded, then laid out."""
    token = uuid.uuid4().hex
    task_id, job, tag, body = (f"startproc-{part}-{token}" for part in ("id", "job", "tag", "body"))
    recorder.recorded.clear()
    app.send_task(
        task,
        kwargs={"job": job},
        task_id=task_id,
        queue=queue,
        routing_key=queue,
        producer=recorder,
        declare=[],
        **options,
    )
    if len(recorder.recorded) != 1:
        raise TemplateError(f"send_task published {len(recorder.recorded)} messages, not 1")
    message, exchange, routing_key = recorder.recorded.pop()
    if exchange:  # exchange routing looks up bindings per message: not a plain list push
        raise TemplateError(f"messages go through exchange {exchange!r}")
    channel = recorder.channel
    serialized = message["body"]  # kombu's json serializer gives text; others bytes
    body_text = serialized.decode() if isinstance(serialized, bytes) else serialized
    prefix, suffix = _split(body_text, json.dumps(job))
    if channel.body_encoding != "base64":
        raise TemplateError(f"body encoding {channel.body_encoding!r}")
    # kombu's virtual Channel.basic_publish and the Redis channel's _put, minus the push
    message["body"] = body
    properties = message["properties"]
    properties.update(body_encoding="base64", delivery_tag=tag)
    properties["delivery_info"].update(exchange=exchange, routing_key=routing_key)
    key = channel._q_for_pri(routing_key, channel._get_message_priority(message, reverse=False))
    expires: Mapping[str, int] = getattr(channel, "_expires", None) or {}
    layout, fields = _layout(kombu_dumps(message), {task_id: 0, tag: 1, body: 2})
    return Template(
        key=key,
        text=layout,
        fields=fields,
        body_prefix=prefix.encode(),
        body_suffix=suffix.encode(),
        expire_ms=expires.get(routing_key),
        priority_keys=tuple(channel._q_for_pri(routing_key, p) for p in channel.priority_steps),
    )


def _split(text: str, placeholder: str) -> tuple[str, str]:
    before, found, after = text.partition(placeholder)
    if not found or placeholder in after:
        raise TemplateError("the job is not in the body exactly once")
    return before, after


def _layout(text: str, placeholders: dict[str, int]) -> tuple[bytes, tuple[int, ...]]:
    """``text`` as a ``%`` template: each placeholder becomes ``%s``; which one, in order."""
    for placeholder in placeholders:
        if placeholder not in text:
            raise TemplateError(f"placeholder {placeholders[placeholder]} is not in the message")
    pattern = re.compile("|".join(re.escape(p) for p in placeholders))
    fields = tuple(placeholders[m.group()] for m in pattern.finditer(text))
    parts = [part.replace("%", "%%") for part in pattern.split(text)]
    return "%s".join(parts).encode(), fields
