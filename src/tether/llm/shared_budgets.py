"""Budgets shared by every gateway replica: reservations and settlements as atomic Redis scripts.

The in-process `Budgets` is exact for one gateway because its event loop is the lock. Several replicas need
one lock: `RedisBudgets.reserve` runs one Lua script that, for every scope of the request, drops request
times older than a minute, checks requests per minute, tokens per UTC day and cost per UTC month against the
limits, and only if every scope has room records the request and adds the reservation to each counter. Redis
runs a script alone, so N replicas reserving at once can never hold more than a budget allows together.
`settle` replaces a reservation by the real use in one script too.

Keys (``tether:budget:`` + scope): ``:req`` (a sorted set of request times), ``:tok:YYYY-MM-DD`` and
``:cost:YYYY-MM`` (counters), each expiring after its window. On first use of a day or month a counter is
seeded from the ledger with ``SET NX``. The seeds are the ledger's sums, re-read every few seconds
(`reseed`, from the gateway's ledger loop), so a Redis that restarts empty, or loses the keys, starts again from
what the ledger holds: it forgets only the last minute's request count, the reservations in flight and the use
of the last few seconds (not yet in the ledger, or not yet re-read), never the day's.

Times are the gateway's clock (the same clock that names the day and month); replicas with clocks apart by
seconds disagree only about which minute a request falls in.

When Redis cannot be reached the stated policy applies (``budget_fallback``): ``refuse`` answers 503 naming the
cause; ``share`` enforces ``1 / gateway_replicas`` of each budget on this replica's own use since it started
(it keeps that count beside every Redis reservation), so the replicas together stay within the budget. Both are
logged and counted (`fallbacks`).

Why a sync client on the event loop: a reservation is one loopback round trip, and the gateway answers
nothing before it anyway; the socket timeout (0.5 s) bounds a stall. Measured here (bench/scale.py, two runs):
1,500 to 3,500 reserve+settle pairs per second from one thread (0.3 to 0.7 ms a pair) against 43,000 to 86,000
in process: the cost of sharing, paid per LLM request.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from tether.llm.ledger import BudgetExceeded, Budgets, Limits, Reservation, _day, _month, _next_day, _next_month
from tether.store.redis import connect

log = logging.getLogger("tether.llm.budgets")

PREFIX = "tether:budget:"

# KEYS: per scope, 3 keys (requests, tokens of the day, cost of the month).
# ARGV: now, tokens, cost, request id, scope count, then per scope: rpm, tpd, cpm (-1: none), seed tokens, seed cost.
RESERVE = """
local now, tokens, cost, rid, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
for i = 1, n do
  local rk, tk, ck = KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i]
  local b = 5 + 5*(i-1)
  local rpm, tpd, cpm = tonumber(ARGV[b+1]), tonumber(ARGV[b+2]), tonumber(ARGV[b+3])
  redis.call('SET', tk, ARGV[b+4], 'NX', 'EX', 172800)
  redis.call('SET', ck, ARGV[b+5], 'NX', 'EX', 3456000)
  redis.call('ZREMRANGEBYSCORE', rk, '-inf', now - 60)
  if rpm >= 0 then
    local count = redis.call('ZCARD', rk)
    if count + 1 > rpm then
      local first = redis.call('ZRANGE', rk, 0, 0, 'WITHSCORES')
      return {tostring(i), 'requests per minute', tostring(rpm), tostring(count), tostring(first[2] or now)}
    end
  end
  local used_t = tonumber(redis.call('GET', tk))
  if tpd >= 0 and used_t + tokens > tpd then
    return {tostring(i), 'tokens per day', tostring(tpd), tostring(used_t + tokens), ''}
  end
  local used_c = tonumber(redis.call('GET', ck))
  if cpm >= 0 and used_c + cost > cpm then
    return {tostring(i), 'cost per month', tostring(cpm), tostring(used_c + cost), ''}
  end
end
for i = 1, n do
  local rk, tk, ck = KEYS[3*i-2], KEYS[3*i-1], KEYS[3*i]
  redis.call('ZADD', rk, now, rid)
  redis.call('EXPIRE', rk, 120)
  redis.call('INCRBY', tk, tokens)
  redis.call('INCRBYFLOAT', ck, tostring(cost))
end
return {'0'}
"""

# KEYS: per scope, tokens key and cost key; ARGV: token delta, cost delta.
SETTLE = """
for i = 1, #KEYS, 2 do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCRBY', KEYS[i], ARGV[1]) end
  if redis.call('EXISTS', KEYS[i+1]) == 1 then redis.call('INCRBYFLOAT', KEYS[i+1], ARGV[2]) end
end
return 1
"""


class BudgetUnavailable(Exception):
    """Redis is unreachable and the policy is to refuse: the request is answered 503."""


class RedisBudgets(Budgets):
    """`Budgets` with the state in Redis; the same interface, so the gateway's stages do not change."""

    def __init__(
        self, url: str, *, fallback: str = "refuse", replicas: int = 1, client: Any = None, prefix: str = PREFIX
    ) -> None:
        super().__init__()
        self.prefix = prefix
        if fallback not in ("refuse", "share"):
            raise ValueError("fallback must be 'refuse' or 'share'")
        self.url, self.fallback, self.replicas = url, fallback, max(1, replicas)
        self.redis = client or connect(url)
        self._reserve = self.redis.register_script(RESERVE)
        self._settle = self.redis.register_script(SETTLE)
        #: This replica's own use since it started (what the ``share`` fallback enforces).
        self.own = Budgets()
        #: The ledger's sums at start, per scope: what a day's or month's counter starts from in Redis.
        self._seeds: dict[str, tuple[str, int, str, float]] = {}
        self.fallbacks = 0
        self.last_error: str | None = None

    def set_limits(self, limits: dict[str, Limits]) -> None:
        super().set_limits(limits)
        self.own.set_limits({s: _share(lim, self.replicas) for s, lim in limits.items()})

    def seed(self, scope: str, day: str, tokens: int, month: str, cost: float) -> None:
        _seed_into(self._seeds, scope, day, tokens, month, cost)

    def reseed(self, db: Any, now: datetime) -> None:
        """Read the seeds again from the ledger (off the event loop); swapped in whole, never half-read."""
        from tether.llm.ledger import seed_from_ledger

        fresh = _Seeds()
        seed_from_ledger(db, fresh, now)  # type: ignore[arg-type]  # it calls only .seed
        self._seeds = fresh.seeds

    def _keys(self, scope: str, day: str, month: str) -> list[str]:
        base = self.prefix + scope
        return [base + ":req", f"{base}:tok:{day}", f"{base}:cost:{month}"]

    def reserve(self, scopes: list[str], tokens: int, cost: float, now: datetime) -> Reservation:
        day, month = _day(now), _month(now)
        keys: list[str] = []
        args: list[Any] = [now.timestamp(), tokens, repr(float(cost)), uuid.uuid4().hex, len(scopes)]
        for scope in scopes:
            keys += self._keys(scope, day, month)
            lim = self.limits.get(scope, Limits())
            sday, stok, smonth, scost = self._seeds.get(scope, (day, 0, month, 0.0))
            args += [
                -1 if lim.requests_per_minute is None else lim.requests_per_minute,
                -1 if lim.tokens_per_day is None else lim.tokens_per_day,
                -1 if lim.cost_per_month is None else repr(float(lim.cost_per_month)),
                stok if sday == day else 0,
                repr(float(scost)) if smonth == month else "0",
            ]
        try:
            out = [x.decode() if isinstance(x, bytes) else str(x) for x in self._reserve(keys=keys, args=args)]
        except Exception as e:  # redis.exceptions.ConnectionError, TimeoutError, ...
            return self._degraded(e, scopes, tokens, cost, now)
        if out[0] != "0":
            scope = scopes[int(out[0]) - 1]
            budget, limit, used = out[1], float(out[2]), float(out[3])
            if budget == "requests per minute":
                resets = datetime.fromtimestamp(float(out[4]) + 60, UTC)
            else:
                resets = _next_day(now) if budget == "tokens per day" else _next_month(now)
            raise BudgetExceeded(scope, budget, limit if budget == "cost per month" else int(limit), used, resets)
        # Mirrored locally, never enforced while Redis answers: what `share` needs should Redis go away.
        self.own._record(scopes, tokens, cost, now)
        return Reservation(scopes, tokens, cost, day, month)

    def _degraded(self, e: Exception, scopes: list[str], tokens: int, cost: float, now: datetime) -> Reservation:
        self.fallbacks += 1
        self.last_error = f"{type(e).__name__}: {e}"
        if self.fallback == "refuse" or not any(s in self.limits for s in scopes):
            if not any(s in self.limits for s in scopes):
                # No budget applies to this request: nothing to overspend; it is only not counted in Redis.
                return self.own.reserve(scopes, tokens, cost, now)
            log.error("budgets unreachable (%s): refusing budgeted requests", self.last_error)
            raise BudgetUnavailable(
                f"the shared budget store (Redis) is unreachable ({self.last_error}); budgeted requests are "
                "refused until it answers (TETHER_BUDGET_FALLBACK=refuse)"
            ) from None
        log.warning("budgets unreachable (%s): enforcing 1/%d of each budget here", self.last_error, self.replicas)
        res = self.own.reserve(scopes, tokens, cost, now)
        res.local = True
        return res

    def settle(self, res: Reservation, tokens: int, cost: float) -> None:
        if res.settled:
            return
        self.own.settle(Reservation(res.scopes, res.tokens, res.cost, res.day, res.month), tokens, cost)
        res.settled = True
        if res.local:
            return  # reserved while Redis was away: only the local count held it
        keys = [k for s in res.scopes for k in self._keys(s, res.day, res.month)[1:]]
        try:
            self._settle(keys=keys, args=[tokens - res.tokens, repr(float(cost - res.cost))])
        except Exception as e:  # the reservation stays counted in full: over-counting never overspends
            self.fallbacks += 1
            self.last_error = f"{type(e).__name__}: {e}"
            log.warning("could not settle a reservation in Redis (%s); it stays counted in full", self.last_error)

    def usage(self, scope: str, now: datetime) -> dict[str, Any]:
        req, tok, cost = self._keys(scope, _day(now), _month(now))
        try:
            pipe = self.redis.pipeline()
            pipe.zcount(req, now.timestamp() - 60, "+inf")
            pipe.get(tok)
            pipe.get(cost)
            n, t, c = pipe.execute()
        except Exception as e:
            return {**self.own.usage(scope, now), "shared": False, "error": f"{type(e).__name__}: {e}"}
        return {
            "requests_last_minute": int(n),
            "tokens_today": int(t or 0),
            "cost_this_month": round(float(c or 0.0), 6),
            "limits": self.limits.get(scope, Limits()).to_json(),
            "shared": True,
        }


def _share(lim: Limits, n: int) -> Limits:
    return Limits(
        None if lim.requests_per_minute is None else lim.requests_per_minute // n,
        None if lim.tokens_per_day is None else lim.tokens_per_day // n,
        None if lim.cost_per_month is None else lim.cost_per_month / n,
    )


def _seed_into(
    seeds: dict[str, tuple[str, int, str, float]], scope: str, day: str, tokens: int, month: str, cost: float
) -> None:
    _, t0, _, c0 = seeds.get(scope, (day, 0, month, 0.0))
    seeds[scope] = (day, t0 + tokens, month, c0 + cost)


class _Seeds:
    """What `seed_from_ledger` fills: the ledger's sums per scope."""

    def __init__(self) -> None:
        self.seeds: dict[str, tuple[str, int, str, float]] = {}

    def seed(self, scope: str, day: str, tokens: int, month: str, cost: float) -> None:
        _seed_into(self.seeds, scope, day, tokens, month, cost)
