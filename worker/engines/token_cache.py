"""OAuth2 tokens shared by every worker process of a target, through Redis.

With ``token_cache = "redis"`` fifty worker processes ask the token endpoint
once, not fifty times. The token is a secret: it lives under one key of
`worker.keys` (named after a hash of the client's identity: token URL,
client id, audience, scope, grant and user; never the secret), with a TTL that
ends when the token should be renewed, before it expires, and is never
logged. One process fetches (it holds a short lock) while the others wait for
the token to appear; a lock holder that died is waited out for one token
call at most. A token the engine rejected is dropped from Redis only if it
is still the one stored (another process may have renewed it already). When
Redis does not answer, each process fetches its own token, as without the
cache.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
import structlog

from worker.keys import oauth_token_key, oauth_token_lock

log = structlog.get_logger("worker.engines.token_cache")

_DROP_IF_SAME = """
local stored = redis.call('GET', KEYS[1])
if stored and cjson.decode(stored)['access_token'] == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
_UNLOCK_IF_OURS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
POLL_SECONDS = 0.05


@dataclass(frozen=True)
class SharedToken:
    """A token read from Redis: it is good for ``fresh_for`` more seconds before renewal."""

    access_token: str
    fresh_for: float
    margin: float

    def __repr__(self) -> str:
        return f"SharedToken(fresh_for={self.fresh_for:.1f})"


class SharedTokens:
    """One client identity's token in Redis (`worker.engines.auth.OAuth2` decides when to renew)."""

    def __init__(
        self,
        client: redis.Redis,
        identity: str,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._key = oauth_token_key(identity)
        self._lock_key = oauth_token_lock(identity)
        self._drop = client.register_script(_DROP_IF_SAME)
        self._unlock = client.register_script(_UNLOCK_IF_OURS)
        self._sleep = sleep
        self._clock = clock

    def get(self) -> SharedToken | None:
        pipe = self._client.pipeline(transaction=False)
        pipe.get(self._key)
        pipe.pttl(self._key)
        raw, pttl = pipe.execute()
        if not raw or pttl is None or int(pttl) <= 0:
            return None
        try:
            stored = json.loads(raw)
            return SharedToken(str(stored["access_token"]), int(pttl) / 1000.0,
                               float(stored["margin"]))
        except (ValueError, KeyError, TypeError):
            return None  # not ours to read: fetch a new one, which replaces it

    def put(self, access_token: str, fresh_for: float, margin: float) -> None:
        """Store the token until its renewal is due (``fresh_for`` seconds)."""
        if fresh_for <= 0:
            return
        value = json.dumps({"access_token": access_token, "margin": margin})
        self._client.set(self._key, value, px=max(1, int(fresh_for * 1000)))

    def drop(self, access_token: str) -> None:
        """Forget the token the engine rejected, unless another process renewed it already."""
        self._drop(keys=[self._key], args=[access_token])

    def fetch_once(self, fetch: Callable[[], SharedToken], wait: float | None) -> SharedToken:
        """The stored token, else one fetched by this process or by the one holding the lock.

        ``wait``: seconds to wait for another process's fetch (None: do not wait,
        raise `Busy`). A holder that does not deliver in time is done without.
        """
        found = self.get()
        if found is not None:
            return found
        owner = secrets.token_hex(8)
        lock_ms = int(((wait or 0.0) + 5.0) * 1000)
        if self._client.set(self._lock_key, owner, nx=True, px=lock_ms):
            try:
                found = self.get()  # stored while we took the lock
                if found is not None:
                    return found
                fetched = fetch()
                self.put(fetched.access_token, fetched.fresh_for, fetched.margin)
                return fetched
            finally:
                self._unlock(keys=[self._lock_key], args=[owner])
        if wait is None:
            raise Busy("another worker is fetching the shared token")
        deadline = self._clock() + wait
        while self._clock() < deadline:
            self._sleep(POLL_SECONDS)
            found = self.get()
            if found is not None:
                return found
        log.warning("oauth.shared_fetch_not_delivered", key=self._key)
        fetched = fetch()
        self.put(fetched.access_token, fetched.fresh_for, fetched.margin)
        return fetched


class Busy(Exception):
    """Another process holds the fetch lock (only when asked not to wait)."""
