"""The capacity knob: an engine that takes N starts a second and refuses the rest (429)."""

from __future__ import annotations

import time

from .helpers import EngineClient


def test_starts_above_the_capacity_are_refused_in_the_engines_format(c8: EngineClient) -> None:
    c8.app.faults.configure(capacity_per_s=2)  # a burst of one, then one per 500 ms
    answers = [c8.start() for _ in range(10)]
    statuses = [a.status_code for a in answers]
    assert statuses[0] == 200
    assert statuses.count(429) >= 5  # ten quick starts: few tokens come back meanwhile
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["title"] == "RESOURCE_EXHAUSTED"
    assert "takes 2 starts per second" in refused.json()["detail"]
    assert c8.app.stats()["faults_injected"]["over_capacity"] == statuses.count(429)
    assert c8.app.count() == statuses.count(200)


def test_the_capacity_refills_with_time(c8: EngineClient) -> None:
    c8.app.faults.configure(capacity_per_s=10, capacity_status=503)  # burst of one
    assert [c8.start().status_code for _ in range(2)] == [200, 503]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # a token every 100 ms: one comes back soon
        response = c8.start()
        if response.status_code == 200:
            break
    assert response.status_code == 200


def test_no_capacity_means_no_limit(c8: EngineClient) -> None:
    c8.app.faults.configure(capacity_per_s=0)
    assert {c8.start().status_code for _ in range(20)} == {200}
