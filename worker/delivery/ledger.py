"""The idempotency ledger: who may call the engine for a key, and what came of it.

One Redis hash per (target, idempotency key)::

    state        IN_FLIGHT -> SUCCEEDED | FAILED | AMBIGUOUS | RELEASED
    fingerprint  hash of the normalised payload (same key, other payload = conflict)
    job_id       the job that claimed it last; instance_id once SUCCEEDED
    fence        grows on every claim; a holder with an older fence can't write (an
                 entry Redis lost is rebuilt by its holder's outcome, see `finish`)
    lease_until  ms epoch (Redis server time); an IN_FLIGHT entry past it belongs
                 to a dead worker
    holder       the worker process that claimed it (`worker.delivery.liveness`); once that
                 worker's heartbeat key is gone and its last attempt is surely over
                 (``attempt_ms`` since its last write), the lease counts as run out
    sent_fence   the fence of the last holder that was about to send; cleared only
                 when a send is known not to have created anything (RELEASED), so a
                 takeover knows whether any earlier holder may have created an instance
    attempts     start requests sent for this key
    lost_send    1 once a send's outcome was never learned (an AMBIGUOUS answer, or a
                 holder that died after marking a send); never cleared, so every later
                 claim reconciles first: the lost instance may show up in a search
                 long after a later send was settled (RELEASED or FAILED)
    claim_call   a token of the claim call that holds the key, and ``claim_reply``
                 its answer: redis-py resends a command whose answer was lost
                 (a timeout), and the resent claim must get the same answer, not
                 "busy" from its own lease

A Redis that restarts or fails over may come back without its last writes (the
last second of an ``everysec`` AOF after a host crash, a replica that lagged):
claims, sends, outcomes, acknowledgements. The key ``startproc:redis-epoch``
names the server the ledger last saw (``run_id``); a claim that meets another
server notes the time (``since``). From then on an entry last written before
that time, or missing for a job enqueued before it, may have lost a send. Such a
key is busy for a few seconds after the switch (a holder from before it may still
be sending, and its outcome rebuilds the entry); then the claim reconciles first
(``maybe_sent`` 3), like a takeover after a crash, and its fence jumps to the clock
(ms), above any fence the lost writes handed out, so a holder from before the
switch can no longer mark a send or write over it.

Every transition is one Lua script, so two workers racing on a key can never
both be told to call the engine (like arq's atomic enqueue: the outcome is a
return value, not an exception). Times come from the Redis server's clock
(``TIME``), as in the rate limiter: a lease written by one worker and judged
expired by another is compared on one clock, so skew between worker hosts
cannot end a live holder's lease early. The interface (`claim`, `mark_sending`,
`finish`) is small enough for a SQL implementation with row locks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis

from worker.delivery.ledger_scripts import (
    CLAIM as _CLAIM,
)
from worker.delivery.ledger_scripts import (
    FINISH as _FINISH,
)
from worker.delivery.ledger_scripts import (
    MARK_SENDING as _MARK_SENDING,
)
from worker.delivery.ledger_scripts import (
    PREPARE_REPLAY as _PREPARE_REPLAY,
)
from worker.delivery.ledger_scripts import (
    SETTLE_CREATED as _SETTLE_CREATED,
)
from worker.delivery.redis_batch import ScriptCall
from worker.keys import REDIS_EPOCH, alive_key, ledger_key, unique_id

ClaimStatus = Literal["claimed", "duplicate", "conflict", "busy"]
CLOCK_SKEW_MARGIN = 5.0
"""Seconds a clock (a producer's ``enqueued_at``, the old Redis server's) may run ahead of
the new server's and a write made before a switch still be doubted."""
FinalState = Literal["SUCCEEDED", "FAILED", "AMBIGUOUS", "RELEASED"]

ReplayMode = Literal["lookup", "unknown", "not_created"]


@dataclass(frozen=True)
class Claim:
    """The ledger's answer to "may I call the engine for this key?"."""

    status: ClaimStatus
    fence: int = 0
    other_job_id: str = ""
    instance_id: str = ""
    maybe_sent: bool = False
    """True when a previous holder may have created an instance: reconcile first."""
    holder_died: bool = False
    """``maybe_sent`` because a holder died after marking a send (not an answer lost)."""
    writes_lost: bool = False
    """``maybe_sent`` because Redis switched since the entry was written (or it is missing)."""
    since_send: float = 0.0
    """With ``maybe_sent``: seconds since that holder's last write (its send or its outcome),
    or since the switch (``writes_lost``)."""
    wait_ms: int = 0
    attempts: int = 0
    sending: bool = False
    """True when the claim also marked the first send (``claim(send=True)`` on a new key)."""

    @property
    def why(self) -> str:
        """Why a claim reconciles first, for the log."""
        if self.writes_lost:
            return "redis_switched"
        return "holder_died" if self.holder_died else "answer_lost"


@dataclass(frozen=True)
class ClaimCall:
    """One claim of a key, built once (a call token of its own), run once or resent."""

    script: ScriptCall
    send: bool

    def run(self) -> Claim:
        return self.read(self.script.run())

    def read(self, raw: Sequence[Any]) -> Claim:
        """The claim script's reply as a `Claim`."""
        status, fence, other, instance, extra, attempts, since = raw
        if status == "busy":
            return Claim("busy", other_job_id=other, wait_ms=int(extra))
        return Claim(
            status,
            fence=int(fence),
            other_job_id=other,
            instance_id=instance,
            maybe_sent=bool(int(extra)),
            holder_died=int(extra) == 2,
            writes_lost=int(extra) == 3,
            since_send=int(since) / 1000,
            attempts=int(attempts),
            sending=self.send and status == "claimed" and int(fence) == 1 and int(attempts) == 1,
        )


class Ledger:
    """Redis implementation of the ledger. Thread-safe (redis-py pools connections)."""

    def __init__(self, client: redis.Redis, lease_seconds: int, retention_days: int) -> None:
        self.client = client
        self.lease_ms = lease_seconds * 1000
        self.ttl = retention_days * 86400
        self._claim = client.register_script(_CLAIM)
        self._mark = client.register_script(_MARK_SENDING)
        self._finish = client.register_script(_FINISH)
        self._prepare_replay = client.register_script(_PREPARE_REPLAY)
        self._settle_created = client.register_script(_SETTLE_CREATED)

    def claim(self, *args: Any, **kwargs: Any) -> Claim:
        """`claim_call` (the same arguments), run now."""
        return self.claim_call(*args, **kwargs).run()

    def claim_call(
        self,
        target: str,
        key: str,
        fingerprint: str,
        job_id: str,
        send: bool = False,
        holder: str = "",
        attempt_seconds: float = 0.0,
        call: str | None = None,
        enqueued_at: float | None = None,
    ) -> ClaimCall:
        """Ask for the key: run on its own (`ClaimCall.run`), or inside a delivery's
        arrival (`worker.delivery.deliveries.Deliveries.arrive`).

        ``send``: a key nobody had is also marked as being sent. That saves
        `mark_sending`'s round trip for the common first attempt; the caller
        then checks `Claim.sending` and skips it once. ``holder``: this worker
        process (`worker.delivery.liveness`), recorded with the claim.
        ``attempt_seconds``: the longest one HTTP attempt to the target can
        take; a dead holder's lease is taken over that long after its last write.
        ``call`` identifies this call (a fresh token by default), so the client
        library may safely resend it after a timeout. ``enqueued_at`` (Unix
        time; None: unknown, so maybe long ago): a job enqueued before a Redis
        switch, or within `CLOCK_SKEW_MARGIN` or one attempt after it, finding no
        entry waits until then (busy) and reconciles first.
        """
        enqueued_ms = 0 if enqueued_at is None else int(enqueued_at * 1000)
        script = ScriptCall(
            self._claim,
            [ledger_key(target, key), REDIS_EPOCH],
            [
                fingerprint,
                job_id,
                self.lease_ms,
                self.ttl,
                "1" if send else "0",
                holder,
                int(attempt_seconds * 1000),
                alive_key(""),
                call or unique_id().hex,
                max(enqueued_ms, 0),
                int(CLOCK_SKEW_MARGIN * 1000),
            ],
        )
        return ClaimCall(script, send)

    def mark_sending(self, target: str, key: str, fence: int) -> int | None:
        """Record that this holder is about to send; extends the lease.

        None if fenced out, or if the key is no longer in flight: after Redis lost
        an entry two holders can share a fence number, and a key another holder
        already decided must not be sent again.
        """
        attempts = ScriptCall(self._mark, [ledger_key(target, key)], [fence, self.lease_ms]).run()
        return int(attempts) or None

    def finish(self, *args: Any, **kwargs: Any) -> bool:
        """`finish_call` (the same arguments), run now: False for a stale holder."""
        return bool(self.finish_call(*args, **kwargs).run())

    def finish_call(
        self,
        target: str,
        key: str,
        fence: int,
        state: FinalState,
        instance_id: str = "",
        *,
        fingerprint: str = "",
        job_id: str = "",
        attempts: int = 0,
    ) -> ScriptCall:
        """The outcome, if this holder still owns the key, as a script call (to send in a
        `Batch` with other steps; its answer: 1 written, 0 for a stale holder).

        A holder owns the key unless a *higher* fence took it over. When Redis
        lost the entry (failover to a lagging replica, an AOF tail, a restart),
        the outcome rebuilds it from ``fingerprint``, ``job_id`` and ``attempts``,
        and a success also replaces a lower-fenced claim made after the loss:
        a success dropped there would let the next job start a second instance.
        Without a ``fingerprint`` a lost entry is left alone.
        """
        return ScriptCall(
            self._finish,
            [ledger_key(target, key)],
            [fence, state, instance_id, self.ttl, fingerprint, job_id, attempts],
        )

    def get(self, target: str, key: str) -> dict[str, str]:
        return dict(self.client.hgetall(ledger_key(target, key)))  # type: ignore[arg-type]

    # ---- settling dead letters by hand (`worker.delivery.settle`)

    def prepare_replay(
        self, target: str, key: str, fingerprint: str, job_id: str, mode: ReplayMode, last: float
    ) -> str:
        """Make the entry say what a replay may do before its job is sent again.

        ``lookup`` (an engine with a lookup): whatever the entry says, the
        replay looks the instance up first (an entry forgotten after the
        retention is recreated as AMBIGUOUS, last written at ``last``, a
        Unix time, so one lookup is enough). ``unknown`` (no lookup): only a
        forgotten entry is recreated as AMBIGUOUS. ``not_created`` (a person
        checked): the entry is RELEASED, so the replay sends.

        Returns ``UNKNOWN`` (recreated), ``LOOKUP``, ``MAYBE_SENT`` (no
        lookup, and an instance may exist), ``RELEASED``, ``ABSENT``,
        ``BUSY`` (a worker holds the key now) or the entry's state otherwise.
        """
        answer = self._prepare_replay(
            keys=[ledger_key(target, key)],
            args=[fingerprint, job_id, mode, int(last * 1000), self.ttl],
        )
        return str(answer)

    def settle_created(
        self, target: str, key: str, fingerprint: str, job_id: str, instance_id: str
    ) -> tuple[str, str, str]:
        """Record a success a person found in the engine: (verdict, instance id, job id).

        ``SUCCEEDED`` (written), ``ALREADY`` (that very instance was recorded),
        ``CONFLICT`` (another instance is recorded: returned with it) or
        ``BUSY`` (a worker holds the key now). Other holders are fenced out.
        """
        verdict, instance, job = self._settle_created(
            keys=[ledger_key(target, key)], args=[fingerprint, job_id, instance_id, self.ttl]
        )
        return str(verdict), str(instance), str(job)
