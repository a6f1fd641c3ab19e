"""The ledger's transitions on a real Redis: one winner per key, fences, takeovers."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from tests.support.redis_proxy import ReplyDropper
from worker.delivery.ledger import Ledger
from worker.keys import REDIS_EPOCH as EPOCH


def make(client: redis.Redis, lease: int = 60) -> Ledger:
    return Ledger(client, lease_seconds=lease, retention_days=1)


def test_first_claim_wins_then_duplicate_after_success(redis_client: redis.Redis) -> None:
    ledger = make(redis_client)
    first = ledger.claim("t", "k", "fp", "job-1")
    assert first.status == "claimed" and first.fence == 1 and not first.maybe_sent
    assert ledger.mark_sending("t", "k", first.fence) == 1
    assert ledger.finish("t", "k", first.fence, "SUCCEEDED", "inst-1")
    again = ledger.claim("t", "k", "fp", "job-2")
    assert again.status == "duplicate"
    assert again.instance_id == "inst-1" and again.other_job_id == "job-1" and again.attempts == 1


def test_other_payload_is_a_conflict(redis_client: redis.Redis) -> None:
    ledger = make(redis_client)
    ledger.claim("t", "k", "fp-a", "job-1")
    conflict = ledger.claim("t", "k", "fp-b", "job-2")
    assert conflict.status == "conflict" and conflict.other_job_id == "job-1"


def test_keys_are_scoped_by_target(redis_client: redis.Redis) -> None:
    ledger = make(redis_client)
    assert ledger.claim("a", "k", "fp", "j1").status == "claimed"
    assert ledger.claim("b", "k", "other", "j2").status == "claimed"


def test_a_live_lease_makes_others_wait(redis_client: redis.Redis) -> None:
    ledger = make(redis_client, lease=60)
    ledger.claim("t", "k", "fp", "job-1")
    busy = ledger.claim("t", "k", "fp", "job-2")
    assert busy.status == "busy" and 0 < busy.wait_ms <= 60_000


def test_leases_are_judged_on_the_redis_clock_not_the_workers(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker whose clock runs an hour ahead must not take over a live lease."""
    ledger = make(redis_client, lease=60)
    holder = ledger.claim("t", "k", "fp", "job-1", send=True)
    assert holder.sending
    skewed = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: skewed)
    assert ledger.claim("t", "k", "fp", "job-2").status == "busy"
    assert ledger.mark_sending("t", "k", holder.fence) == 2
    seconds, micros = redis_client.time()
    server_ms = seconds * 1000 + micros // 1000
    lease_until = int(ledger.get("t", "k")["lease_until"])
    assert server_ms < lease_until <= server_ms + 60_000


def test_expired_lease_is_taken_over_and_the_old_holder_is_fenced(
    redis_client: redis.Redis,
) -> None:
    ledger = make(redis_client)
    old = ledger.claim("t", "k", "fp", "job-1")
    redis_client.hset("startproc:ledger:t:k", "lease_until", 0)  # the holder died
    new = ledger.claim("t", "k", "fp", "job-1")
    assert new.status == "claimed" and new.fence == old.fence + 1
    assert not new.maybe_sent  # the dead holder never marked itself as sending
    assert ledger.mark_sending("t", "k", old.fence) is None
    assert not ledger.finish("t", "k", old.fence, "SUCCEEDED", "stale")
    assert ledger.finish("t", "k", new.fence, "SUCCEEDED", "fresh")
    assert ledger.get("t", "k")["instance_id"] == "fresh"


def test_takeover_after_a_send_must_reconcile(redis_client: redis.Redis) -> None:
    ledger = make(redis_client)
    old = ledger.claim("t", "k", "fp", "job-1")
    ledger.mark_sending("t", "k", old.fence)
    redis_client.hset("startproc:ledger:t:k", "lease_until", 0)
    assert ledger.claim("t", "k", "fp", "job-1").maybe_sent


def test_ambiguous_outcomes_reconcile_and_released_ones_do_not(redis_client: redis.Redis) -> None:
    ledger = make(redis_client)
    c = ledger.claim("t", "amb", "fp", "j")
    ledger.mark_sending("t", "amb", c.fence)
    ledger.finish("t", "amb", c.fence, "AMBIGUOUS")
    assert ledger.claim("t", "amb", "fp", "j").maybe_sent
    c = ledger.claim("t", "rel", "fp", "j")
    ledger.mark_sending("t", "rel", c.fence)
    ledger.finish("t", "rel", c.fence, "RELEASED")
    retry = ledger.claim("t", "rel", "fp", "j")
    assert retry.status == "claimed" and not retry.maybe_sent


def test_entries_expire_after_the_retention(redis_client: redis.Redis) -> None:
    ledger = make(redis_client)
    ledger.claim("t", "k", "fp", "j")
    assert 0 < redis_client.ttl("startproc:ledger:t:k") <= 86400


def test_racing_workers_get_exactly_one_claim(redis_client: redis.Redis) -> None:
    ledger = make(redis_client)
    barrier = threading.Barrier(20)
    outcomes: list[str] = []
    lock = threading.Lock()

    def race(i: int) -> None:
        barrier.wait()
        claim = ledger.claim("t", "hot", "fp", f"job-{i}")
        with lock:
            outcomes.append(claim.status)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert outcomes.count("claimed") == 1
    assert outcomes.count("busy") == 19


def test_lease_deadline_is_in_the_future(redis_client: redis.Redis) -> None:
    ledger = make(redis_client, lease=30)
    ledger.claim("t", "k", "fp", "j")
    lease_until = int(ledger.get("t", "k")["lease_until"])
    assert time.time() * 1000 < lease_until <= time.time() * 1000 + 30_000


def test_claim_with_send_marks_a_new_key_as_sent_in_the_same_step(
    redis_client: redis.Redis,
) -> None:
    ledger = make(redis_client)
    first = ledger.claim("t", "k", "fp", "job-1", send=True)
    assert first.status == "claimed" and first.sending and first.attempts == 1
    assert ledger.get("t", "k")["sent_fence"] == "1"
    redis_client.hset("startproc:ledger:t:k", "lease_until", 0)  # the holder died
    takeover = ledger.claim("t", "k", "fp", "job-2", send=True)
    # ...so the takeover reconciles first, and marks its own send separately
    assert takeover.status == "claimed" and takeover.maybe_sent and not takeover.sending
    assert takeover.attempts == 1


def test_claim_with_send_on_a_released_key_does_not_mark(redis_client: redis.Redis) -> None:
    ledger = make(redis_client)
    first = ledger.claim("t", "k", "fp", "job-1", send=True)
    assert ledger.finish("t", "k", first.fence, "RELEASED")
    again = ledger.claim("t", "k", "fp", "job-2", send=True)
    assert again.status == "claimed" and not again.sending and not again.maybe_sent
    assert ledger.mark_sending("t", "k", again.fence) == 2


def test_finish_call_runs_in_a_batch_with_other_steps(redis_client: redis.Redis) -> None:
    from worker.delivery.redis_batch import Batch

    ledger = make(redis_client)
    claim = ledger.claim("t", "k", "fp", "job-1", send=True)
    batch = Batch(redis_client)
    stale = batch.script(ledger.finish_call("t", "k", claim.fence + 1, "SUCCEEDED", "i"))
    fresh = batch.script(ledger.finish_call("t", "k", claim.fence, "SUCCEEDED", "inst-1"))
    answers = batch.execute()
    assert answers[stale] == 0 and answers[fresh] == 1
    assert ledger.claim("t", "k", "fp", "job-2").instance_id == "inst-1"


def test_a_holder_dying_while_it_reconciles_leaves_the_earlier_send_unresolved(
    redis_client: redis.Redis,
) -> None:
    """Found by the chaos run: holder 1 sent and died; holder 2 took over to reconcile
    and died before sending; holder 3 must reconcile too, not send blindly."""
    ledger = make(redis_client)
    first = ledger.claim("t", "k", "fp", "job-1")
    ledger.mark_sending("t", "k", first.fence)
    redis_client.hset("startproc:ledger:t:k", "lease_until", 0)  # holder 1 died after sending
    second = ledger.claim("t", "k", "fp", "job-1")
    assert second.maybe_sent
    redis_client.hset("startproc:ledger:t:k", "lease_until", 0)  # holder 2 died reconciling
    third = ledger.claim("t", "k", "fp", "job-1")
    assert third.status == "claimed" and third.fence == 3
    assert third.maybe_sent


def test_a_released_key_has_no_unresolved_send(redis_client: redis.Redis) -> None:
    ledger = make(redis_client)
    first = ledger.claim("t", "k", "fp", "job-1")
    ledger.mark_sending("t", "k", first.fence)
    ledger.finish("t", "k", first.fence, "RELEASED")  # the engine said 503: nothing created
    second = ledger.claim("t", "k", "fp", "job-2")
    redis_client.hset("startproc:ledger:t:k", "lease_until", 0)  # died before sending
    assert not ledger.claim("t", "k", "fp", "job-2").maybe_sent
    assert second.fence == 2


def test_a_takeover_says_why_it_must_reconcile_and_how_long_ago_the_send_was(
    redis_client: redis.Redis,
) -> None:
    ledger = make(redis_client)
    first = ledger.claim("t", "dead", "fp", "job-1")
    ledger.mark_sending("t", "dead", first.fence)
    sent_ms = int(time.time() * 1000) - 30_000
    redis_client.hset("startproc:ledger:t:dead", mapping={"lease_until": 0, "updated_at": sent_ms})
    died = ledger.claim("t", "dead", "fp", "job-1")
    assert died.maybe_sent and died.holder_died and 29.0 < died.since_send < 60.0

    c = ledger.claim("t", "amb", "fp", "job-2")
    ledger.mark_sending("t", "amb", c.fence)
    ledger.finish("t", "amb", c.fence, "AMBIGUOUS")
    lost = ledger.claim("t", "amb", "fp", "job-2")
    assert lost.maybe_sent and not lost.holder_died and 0.0 <= lost.since_send < 5.0


def lose_an_answer(ledger: Ledger, key: str, how: str) -> None:
    """Leave ``key`` with a send whose outcome was never learned."""
    first = ledger.claim("t", key, "fp", "job-1")
    ledger.mark_sending("t", key, first.fence)
    if how == "ambiguous":
        ledger.finish("t", key, first.fence, "AMBIGUOUS")
    else:  # the holder died after sending
        ledger.client.hset(f"startproc:ledger:t:{key}", "lease_until", 0)


@pytest.mark.parametrize("how", ["ambiguous", "holder died"])
@pytest.mark.parametrize("then", ["RELEASED", "FAILED"])
def test_a_key_that_was_ever_ambiguous_always_reconciles(
    redis_client: redis.Redis, how: str, then: str
) -> None:
    """The lost send may still show up later (a lagging search): a later send's
    known outcome (nothing created: RELEASED; refused: FAILED) does not settle it."""
    ledger = make(redis_client)
    lose_an_answer(ledger, "k", how)
    second = ledger.claim("t", "k", "fp", "job-1")
    assert second.maybe_sent  # looked up, found nothing (yet), sent again:
    ledger.mark_sending("t", "k", second.fence)
    ledger.finish("t", "k", second.fence, then)
    third = ledger.claim("t", "k", "fp", "job-2")
    assert third.status == "claimed" and third.maybe_sent and not third.holder_died
    assert ledger.finish("t", "k", third.fence, "RELEASED")
    assert ledger.claim("t", "k", "fp", "job-3").maybe_sent  # and so on, for good


def test_a_claim_that_marks_its_send_never_forgets_an_earlier_loss(
    redis_client: redis.Redis,
) -> None:
    ledger = make(redis_client)
    lose_an_answer(ledger, "k", "ambiguous")
    second = ledger.claim("t", "k", "fp", "job-1", send=True)
    assert second.maybe_sent and not second.sending
    ledger.finish("t", "k", second.fence, "RELEASED")
    assert ledger.claim("t", "k", "fp", "job-1", send=True).maybe_sent


def test_a_success_is_recorded_when_the_entry_was_lost(redis_client: redis.Redis) -> None:
    """Redis lost the claim (failover to a lagging replica, an AOF tail, an OOM restart)
    while the holder's start was in flight: its success rebuilds the entry."""
    ledger = make(redis_client)
    holder = ledger.claim("t", "k", "fp", "job-1", send=True)
    redis_client.delete("startproc:ledger:t:k")
    assert ledger.finish(
        "t", "k", holder.fence, "SUCCEEDED", "inst-1", fingerprint="fp", job_id="job-1", attempts=1
    )
    again = ledger.claim("t", "k", "fp", "job-2")
    assert again.status == "duplicate" and again.instance_id == "inst-1"
    assert again.other_job_id == "job-1" and again.attempts == 1
    assert ledger.claim("t", "k", "other-fp", "job-3").status == "conflict"
    assert 0 < redis_client.ttl("startproc:ledger:t:k") <= 86400


def test_a_success_outranks_a_claim_made_after_the_loss(redis_client: redis.Redis) -> None:
    """The fence counter was lost too: a new claim got a lower fence than the holder's.
    Only a higher fence means someone took the key over from this holder."""
    ledger = make(redis_client)
    ledger.claim("t", "k", "fp", "job-1")
    redis_client.hset("startproc:ledger:t:k", "lease_until", 0)
    holder = ledger.claim("t", "k", "fp", "job-1", send=True)  # a takeover: fence 2
    redis_client.delete("startproc:ledger:t:k")
    late = ledger.claim("t", "k", "fp", "job-2")  # after the loss: fence 1, not sent yet
    assert late.status == "claimed" and late.fence < holder.fence
    assert ledger.finish(
        "t", "k", holder.fence, "SUCCEEDED", "inst-1", fingerprint="fp", job_id="job-1"
    )
    assert ledger.mark_sending("t", "k", late.fence) is None  # so it never sends
    assert ledger.claim("t", "k", "fp", "job-3").instance_id == "inst-1"


def test_a_higher_fence_still_refuses_a_stale_success(redis_client: redis.Redis) -> None:
    ledger = make(redis_client)
    old = ledger.claim("t", "k", "fp", "job-1", send=True)
    redis_client.hset("startproc:ledger:t:k", "lease_until", 0)
    new = ledger.claim("t", "k", "fp", "job-1")
    assert not ledger.finish(
        "t", "k", old.fence, "SUCCEEDED", "stale", fingerprint="fp", job_id="job-1"
    )
    assert ledger.get("t", "k")["state"] == "IN_FLIGHT"
    assert ledger.get("t", "k")["fence"] == str(new.fence)


def test_a_decided_key_is_never_marked_for_sending(redis_client: redis.Redis) -> None:
    """After a loss two holders can share a fence number; a decided key stops both."""
    ledger = make(redis_client)
    claim = ledger.claim("t", "k", "fp", "job-1")
    assert ledger.finish("t", "k", claim.fence, "SUCCEEDED", "inst-1")
    assert ledger.mark_sending("t", "k", claim.fence) is None
    assert ledger.get("t", "k")["state"] == "SUCCEEDED"


def test_a_claim_resent_by_redis_py_after_a_timeout_still_belongs_to_its_holder(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """The claim ran, its answer was lost, and redis-py's automatic retry (the worker's
    client settings) ran it again: the holder must get its claim, not "busy" from its
    own lease (a wait, then a takeover; for Blueworks and TAS a dead letter)."""
    from worker.broker.connections import redis_client as worker_client

    probe = make(redis_client)
    redis_client.script_load(probe._claim.script)  # the first run must really run
    with ReplyDropper(redis_url) as proxy:
        client = worker_client(proxy.url)
        client.connection_pool.connection_kwargs["socket_timeout"] = 0.5
        proxy.drop_reply_to(probe._claim.sha.encode())
        claim = make(client).claim("t", "k", "fp", "job-1", send=True)
        client.close()
    assert proxy.dropped.is_set() and proxy.dropped_reply.startswith(b"*")  # it had run
    assert claim.status == "claimed" and claim.fence == 1 and claim.sending
    entry = probe.get("t", "k")
    assert entry["fence"] == "1" and entry["attempts"] == "1"
    assert probe.claim("t", "k", "fp", "job-2").status == "busy"  # the lease is the holder's


def test_a_repeated_takeover_claim_gives_the_first_answer_again(
    redis_client: redis.Redis,
) -> None:
    ledger = make(redis_client)
    first = ledger.claim("t", "k", "fp", "job-1", send=True)
    redis_client.hset("startproc:ledger:t:k", "lease_until", 0)  # the holder died after sending
    takeover = ledger.claim("t", "k", "fp", "job-1", call="h-2")
    again = ledger.claim("t", "k", "fp", "job-1", call="h-2")
    assert takeover.maybe_sent and takeover.holder_died and takeover.fence == first.fence + 1
    assert again == takeover
    assert ledger.claim("t", "k", "fp", "job-1", call="h-3").status == "busy"


def test_a_dead_holders_lease_ends_once_its_last_attempt_is_surely_over(
    redis_client: redis.Redis,
) -> None:
    """A holder whose heartbeat expired (`worker.delivery.liveness`) keeps its lease only as long as
    its last HTTP attempt could still be running, then a claim takes over and reconciles."""
    from worker.keys import alive_key, ledger_key

    ledger = make(redis_client, lease=120)
    first = ledger.claim("t", "k", "fp", "job-1", send=True, holder="host:1", attempt_seconds=16)
    redis_client.set(alive_key("host:1"), "1", ex=20)
    alive = ledger.claim("t", "k", "fp", "job-1", holder="host:2", attempt_seconds=16)
    assert alive.status == "busy" and alive.wait_ms > 100_000  # its lease, all of it

    redis_client.delete(alive_key("host:1"))  # the heartbeat expired: host:1 is dead
    fresh = ledger.claim("t", "k", "fp", "job-1", holder="host:2", attempt_seconds=16)
    assert fresh.status == "busy" and 15_000 < fresh.wait_ms <= 16_000  # its send may be out

    seconds, _ = redis_client.time()
    redis_client.hset(ledger_key("t", "k"), "updated_at", (int(seconds) - 17) * 1000)
    taken = ledger.claim("t", "k", "fp", "job-1", holder="host:2", attempt_seconds=16)
    assert taken.status == "claimed" and taken.fence == first.fence + 1
    assert taken.maybe_sent and taken.holder_died and taken.since_send >= 17
    assert ledger.get("t", "k")["holder"] == "host:2"
    assert ledger.mark_sending("t", "k", first.fence) is None  # the old holder is fenced out


def test_a_claim_without_a_holder_keeps_the_plain_lease(redis_client: redis.Redis) -> None:
    ledger = make(redis_client, lease=120)
    ledger.claim("t", "k", "fp", "job-1", send=True)
    from worker.keys import ledger_key

    redis_client.hset(ledger_key("t", "k"), "updated_at", 0)
    assert ledger.claim("t", "k", "fp", "job-2", holder="h:2", attempt_seconds=1).status == "busy"


def test_a_replay_after_the_entry_expired_finds_it_ambiguous(redis_client: redis.Redis) -> None:
    """A forgotten key is not a fresh key: an earlier attempt may have created the instance."""
    ledger = make(redis_client)
    dead_at = time.time() - 40 * 86400
    assert ledger.prepare_replay("t", "k", "fp", "dead", "unknown", dead_at) == "UNKNOWN"
    claim = ledger.claim("t", "k", "fp", "replay")
    assert claim.status == "claimed" and claim.maybe_sent and claim.since_send > 39 * 86400


def test_a_replay_on_an_engine_with_lookup_always_looks_up(redis_client: redis.Redis) -> None:
    ledger = make(redis_client)
    first = ledger.claim("t", "k", "fp", "job-1", send=True)
    ledger.finish("t", "k", first.fence, "RELEASED")  # known not created...
    assert ledger.prepare_replay("t", "k", "fp", "job-1", "unknown", time.time()) == "RELEASED"
    assert not ledger.claim("t", "k", "fp", "x").maybe_sent  # ...the ledger may say so
    ledger.client.hset("startproc:ledger:t:k", "lease_until", 0)
    assert ledger.prepare_replay("t", "k", "fp", "job-1", "lookup", time.time()) == "LOOKUP"
    assert ledger.claim("t", "k", "fp", "replay").maybe_sent  # ...but a replay looks anyway


def test_not_created_releases_an_ambiguous_entry(redis_client: redis.Redis) -> None:
    ledger = make(redis_client)
    first = ledger.claim("t", "k", "fp", "job-1", send=True)
    ledger.finish("t", "k", first.fence, "AMBIGUOUS")
    assert ledger.prepare_replay("t", "k", "fp", "job-1", "unknown", 0) == "MAYBE_SENT"
    assert ledger.prepare_replay("t", "k", "fp", "job-1", "not_created", 0) == "RELEASED"
    claim = ledger.claim("t", "k", "fp", "replay")
    assert claim.status == "claimed" and not claim.maybe_sent
    assert ledger.mark_sending("t", "k", first.fence) is None  # the old holder is fenced out


def test_a_success_found_by_hand_is_recorded_once(redis_client: redis.Redis) -> None:
    ledger = make(redis_client)
    first = ledger.claim("t", "k", "fp", "job-1", send=True)
    ledger.finish("t", "k", first.fence, "AMBIGUOUS")
    assert ledger.settle_created("t", "k", "fp", "job-1", "i-7") == ("SUCCEEDED", "i-7", "job-1")
    assert ledger.settle_created("t", "k", "fp", "job-1", "i-7")[0] == "ALREADY"
    assert ledger.settle_created("t", "k", "fp", "job-1", "i-8") == ("CONFLICT", "i-7", "job-1")
    duplicate = ledger.claim("t", "k", "fp", "job-2")
    assert duplicate.status == "duplicate" and duplicate.instance_id == "i-7"
    assert not ledger.finish("t", "k", first.fence, "SUCCEEDED", "i-9")  # fenced out
    assert ledger.settle_created("t", "gone", "fp", "job-3", "i-1")[0] == "SUCCEEDED"
    live = ledger.claim("t", "busy", "fp", "job-4")
    assert live.status == "claimed"
    assert ledger.settle_created("t", "busy", "fp", "job-4", "i-2")[0] == "BUSY"


def switch_servers(client: redis.Redis) -> None:
    """As if the ledger had last been used on another server: what a restart or a
    failover looks like to the claim script (the epoch names another run_id)."""
    client.hset(EPOCH, mapping={"run_id": "0" * 40, "since": 0})


def age_the_switch(client: redis.Redis, seconds: float = 60.0) -> None:
    """As if the switch had been noticed ``seconds`` ago: its wait is over."""
    since = int(client.hget(EPOCH, "since") or 0)
    assert since > 0, "no claim has noticed the switch yet"
    client.hset(EPOCH, "since", since - int(seconds * 1000))


def test_the_first_server_the_ledger_sees_doubts_nothing(redis_client: redis.Redis) -> None:
    ledger = make(redis_client)
    fresh = ledger.claim("t", "k", "fp", "job-1", send=True, enqueued_at=0.0)
    assert fresh.sending and not fresh.maybe_sent
    epoch = redis_client.hgetall(EPOCH)
    assert epoch == {"run_id": redis_client.info("server")["run_id"], "since": "0"}


def test_a_job_enqueued_before_a_redis_switch_reconciles_its_missing_entry(
    redis_client: redis.Redis,
) -> None:
    """Its claim, send and outcome may have been in the writes the switch lost."""
    ledger = make(redis_client)
    before = time.time() - 120
    holder = ledger.claim("t", "k", "fp", "job-1", send=True, enqueued_at=before)
    redis_client.delete("startproc:ledger:t:k")  # ...lost with the switch
    switch_servers(redis_client)
    # First it waits: a holder from before the switch may still be sending for the key
    waiting = ledger.claim("t", "k", "fp", "job-1", send=True, enqueued_at=before)
    assert waiting.status == "busy" and 4_000 < waiting.wait_ms <= 5_000  # the clock margin
    assert not redis_client.exists("startproc:ledger:t:k")
    assert int(redis_client.hget(EPOCH, "since") or 0) > 0
    age_the_switch(redis_client)
    again = ledger.claim("t", "k", "fp", "job-1", send=True, enqueued_at=before)
    assert again.status == "claimed" and again.maybe_sent and again.writes_lost
    assert not again.sending and not again.holder_died
    assert 59.0 < again.since_send < 65.0  # since the switch
    assert again.fence > 1_000_000_000_000  # the clock: above any fence handed out before
    assert ledger.mark_sending("t", "k", holder.fence) is None  # the old holder cannot send
    redis_client.hset("startproc:ledger:t:k", "lease_until", 0)  # died while reconciling
    assert ledger.claim("t", "k", "fp", "job-1", enqueued_at=before).maybe_sent  # for good
    unknown = ledger.claim("t", "other", "fp", "job-2", enqueued_at=None)
    assert unknown.maybe_sent and unknown.writes_lost  # when it was enqueued is not known


def test_a_job_enqueued_after_a_redis_switch_is_a_plain_fresh_key(
    redis_client: redis.Redis,
) -> None:
    ledger = make(redis_client)
    ledger.claim("t", "first", "fp", "job-0")
    switch_servers(redis_client)
    assert ledger.claim("t", "notices", "fp", "job-0").status == "busy"
    later = time.time() + 10  # past the switch and the clock margin
    fresh = ledger.claim("t", "k", "fp", "job-1", send=True, enqueued_at=later)
    assert fresh.sending and fresh.fence == 1 and not fresh.maybe_sent
    # ...unless a send from before the switch may still be in the air for the key: its
    # holder's outcome rebuilds the entry only when the answer comes, one attempt later
    soon = ledger.claim("t", "k2", "fp", "job-2", attempt_seconds=30, enqueued_at=later)
    assert soon.status == "busy" and 25_000 < soon.wait_ms <= 30_000


def test_an_entry_last_written_before_a_redis_switch_reconciles_on_takeover(
    redis_client: redis.Redis,
) -> None:
    """The entry says RELEASED (a 503: nothing created), but a later claim and send may
    have been lost with the switch, and with them the holder's fence."""
    ledger = make(redis_client)
    first = ledger.claim("t", "k", "fp", "job-1", send=True)
    assert ledger.finish("t", "k", first.fence, "RELEASED")
    assert not ledger.claim("t", "plain", "fp", "job-9").maybe_sent
    two_minutes_ago = int((time.time() - 120) * 1000)
    redis_client.hset("startproc:ledger:t:k", "updated_at", two_minutes_ago)
    switch_servers(redis_client)
    assert ledger.claim("t", "k", "fp", "job-1", send=True).status == "busy"
    age_the_switch(redis_client)  # a minute ago: after that last write
    retry = ledger.claim("t", "k", "fp", "job-1", send=True)
    assert retry.status == "claimed" and retry.maybe_sent and retry.writes_lost
    assert 59.0 < retry.since_send < 65.0 and retry.fence > 1_000_000_000_000
    assert ledger.mark_sending("t", "k", first.fence + 1) is None  # a lost holder's fence
    assert ledger.mark_sending("t", "k", retry.fence) == 2
    assert ledger.finish("t", "k", retry.fence, "SUCCEEDED", "inst-1")
    assert ledger.claim("t", "k", "fp", "job-2").status == "duplicate"


def test_a_real_restart_without_the_last_writes_is_noticed() -> None:
    """The server really comes back without its last second (see `EmbeddedRedis.rewind`)."""
    from worker.local.embedded import EmbeddedRedis

    with EmbeddedRedis(appendonly=True, appendfsync="everysec") as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        ledger = make(client)
        enqueued = time.time() - 120  # before the switch, also once it is aged
        assert not ledger.claim("t", "seen", "fp", "job-0", enqueued_at=enqueued).maybe_sent
        snapshot = server.snapshot()
        holder = ledger.claim("t", "k", "fp", "job-1", send=True, enqueued_at=enqueued)
        assert ledger.finish("t", "k", holder.fence, "SUCCEEDED", "inst-1")
        server.rewind(snapshot)
        client = redis.Redis.from_url(server.url, decode_responses=True)
        ledger = make(client)
        assert ledger.claim("t", "k", "fp", "job-1", enqueued_at=enqueued).status == "busy"
        age_the_switch(client)
        again = ledger.claim("t", "k", "fp", "job-1", send=True, enqueued_at=enqueued)
        assert again.status == "claimed" and again.writes_lost and not again.sending


def test_a_redis_that_refuses_info_still_serves_claims_without_noticing_switches(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Managed services may deny INFO to the workers' user: no detection, no failure."""
    redis_client.execute_command(
        "ACL", "SETUSER", "no-info", "on", ">pw", "~*", "+@all", "-info"
    )
    try:
        url = redis_url.replace("redis://", "redis://no-info:pw@")
        ledger = make(redis.Redis.from_url(url, decode_responses=True))
        switch_servers(redis_client)
        claim = ledger.claim("t", "k", "fp", "job-1", send=True, enqueued_at=0.0)
        assert claim.sending and not claim.maybe_sent
    finally:
        redis_client.execute_command("ACL", "DELUSER", "no-info")
