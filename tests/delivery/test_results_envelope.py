"""The results envelope on a Redis broker: kombu reads it as a message it stored itself."""

from __future__ import annotations

import json

from kombu import Connection

from worker.delivery.results import kombu_redis_envelope, results_queue


def test_kombu_decodes_the_envelope_to_the_stored_result(redis_url: str) -> None:
    body = json.dumps({"job_id": "j-1", "status": "created", "note": "é \"quoted\""})
    first = kombu_redis_envelope(body, "env.results")
    second = kombu_redis_envelope(body, "env.results")
    assert json.loads(first)["properties"]["delivery_tag"] != json.loads(second)["properties"][
        "delivery_tag"
    ]
    with Connection(redis_url) as conn:
        client = conn.default_channel.client
        client.lpush("env.results", first)
        message = conn.SimpleQueue(results_queue("env.results", "classic")).get(timeout=5)
        assert message.payload == json.loads(body)
        assert message.delivery_info["routing_key"] == "env.results"
        message.ack()


def test_a_queue_name_is_escaped_as_json() -> None:
    envelope = json.loads(kombu_redis_envelope("{}", 'odd "queue"\\name'))
    assert envelope["properties"]["delivery_info"]["routing_key"] == 'odd "queue"\\name'
