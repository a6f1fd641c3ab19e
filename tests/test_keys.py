"""worker.keys: the ids that must be unique (delivery tags, claim call tokens)."""

from __future__ import annotations

import os
import random
import uuid

from worker.keys import unique_id


def test_unique_ids_are_version_4_uuids_and_do_not_repeat() -> None:
    ids = [unique_id() for _ in range(10_000)]
    assert all(i.version == 4 and i.variant == uuid.RFC_4122 for i in ids)
    assert len(set(ids)) == len(ids)


def test_seeding_the_shared_generator_does_not_repeat_unique_ids() -> None:
    """A library that calls ``random.seed(42)`` in two workers must not give them one
    stream of call tokens (two holders of one claim)."""
    state = random.getstate()
    try:
        random.seed(42)
        first = unique_id()
        random.seed(42)
        assert unique_id() != first
    finally:
        random.setstate(state)  # the shared generator as other tests found it


def test_a_forked_child_draws_ids_of_its_own() -> None:
    """Without a reseed after fork a child's next id is its parent's next id."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id to the parent, then out without cleanup
        os.close(read)
        os.write(write, unique_id().bytes)
        os._exit(0)
    os.close(write)
    try:
        child = os.read(read, 16)
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert len(child) == 16
    assert uuid.UUID(bytes=child) != unique_id()
