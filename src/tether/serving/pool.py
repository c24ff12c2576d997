"""The pool: a few multi-model worker processes serving every pooled version (the champions, by default).

``TETHER_POOL_WORKERS`` processes (one per core by default) run `tether.serving.pool_worker`, each with an equal
share of ``TETHER_POOL_MEMORY`` as its byte budget. A version lives on the slot that rendezvous hashing picks
among the slots that are up (`tether.serving.placement`), so every process agrees without a table, and a slot
that dies moves only its own versions, each to its next-ranked slot.

What the pool does for the serving process (the same `Runtime` interface as one process per version):

- `ensure` pins a version on its slot and loads it there (one load however many callers wait); `instance` names
  the slot's route for it, loaded or not (a request for a version that was evicted loads it again: a cold load,
  reported apart from service time); `ready` says whether it is loaded, which is what a change of routing waits
  for before it moves traffic.
- A slot that dies is restarted with backoff; meanwhile its pinned versions load on their next-ranked slots, and
  once it is back they load there again before it takes them back. Requests that were in flight on it are the
  infrastructure's failures, never a version's (`on_slot_down`).
- Every few seconds the pool reads each slot's figures (`/stats`): what is resident, the bytes each version was
  measured at, the resident set. A slot whose resident set stays well above its budget (fragmentation, a leak in a
  model's native code) is recycled: a fresh process loads its pinned versions, takes over, and the old one stops
  once its requests are answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tether.core.errors import ExternalCommandError
from tether.core.settings import Settings
from tether.serving import placement
from tether.serving.runtime import Instance, drain, spawn_worker

log = logging.getLogger("tether.pool")

#: A slot is recycled when its resident set exceeds its start-up size plus this many times its model budget.
RECYCLE_FACTOR = 2.0
STATS_SECONDS = 2.0


@dataclass
class Slot:
    index: int
    state: str = "down"  # down | starting | up
    process: asyncio.subprocess.Process | None = field(default=None, repr=False)
    url: str = ""
    pid: int | None = None
    restarts: int = 0
    failures: int = 0
    retry_at: float = 0.0
    #: Versions the pool knows to be resident there (refreshed from the slot's /stats).
    loaded: set[str] = field(default_factory=set)
    stats: dict[str, Any] = field(default_factory=dict)
    recycling: bool = False
    last_error: str = ""


class PoolRuntime:
    def __init__(
        self,
        settings: Settings,
        *,
        workers: int,
        budget_bytes: int,
        idle_seconds: float = 600.0,
        on_slot_down: Callable[[int], None] | None = None,
        startup_timeout: float = 60.0,
        max_backoff: float = 30.0,
        load_concurrency: int = 4,
        recycle_factor: float = RECYCLE_FACTOR,
    ) -> None:
        if workers < 1:
            raise ValueError("a pool needs at least one worker")
        self.settings = settings
        self.slots = [Slot(i) for i in range(workers)]
        self.budget_bytes = budget_bytes
        self.slot_budget = max(1, budget_bytes // workers)
        self.idle_seconds = idle_seconds
        self.on_slot_down = on_slot_down
        self.startup_timeout = startup_timeout
        self.max_backoff = max_backoff
        self.recycle_factor = recycle_factor
        self._wanted: set[str] = set()
        #: Per version whose last load failed: why, how many times in a row, and when it may be tried again (0.5 s,
        #: doubling to ``max_backoff``; cleared by a load that succeeds).
        self._errors: dict[str, tuple[str, int, float]] = {}
        self._loads: dict[tuple[str, int, str], asyncio.Task[None]] = {}
        self._limit = asyncio.Semaphore(load_concurrency)
        self._session: aiohttp.ClientSession | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._starting: dict[int, asyncio.Task[None]] = {}
        self._settled: asyncio.Event | None = None
        self._closed = False
        self._tasks: set[asyncio.Future[Any]] = set()
        self._pumps: dict[int, list[asyncio.Task[None]]] = {}
        self.slot_deaths = 0
        self.recycles = 0

    # -- placement ------------------------------------------------------------------------------------------
    def up(self) -> list[int]:
        return [s.index for s in self.slots if s.state == "up"]

    def slot_for(self, version_id: str) -> Slot | None:
        i = placement.place(version_id, self.up())
        return None if i is None else self.slots[i]

    def instance(self, version_id: str) -> Instance | None:
        slot = self.slot_for(version_id)
        if slot is None:
            return None
        return Instance(version_id, f"{slot.url}/v/{version_id}", pid=slot.pid, pooled=True, slot=slot.index)

    def ready(self, version_id: str) -> bool:
        slot = self.slot_for(version_id)
        return slot is not None and version_id in slot.loaded

    def running(self) -> list[Instance]:
        return [i for v in sorted(self._wanted) if (i := self.instance(v)) is not None]

    def failure(self, version_id: str) -> str | None:
        """Why the version cannot be served now: its last load failed, or no worker is up after they all tried."""
        if version_id in self._errors:
            return self._errors[version_id][0]
        if not self.up() and self._settled is not None and self._settled.is_set():
            errors = "; ".join(f"worker {s.index}: {s.last_error}" for s in self.slots if s.last_error)
            return f"no pool worker is up ({errors or 'restarting'})"
        return None

    @property
    def wanted(self) -> frozenset[str]:
        return frozenset(self._wanted)

    # -- the runtime interface ----------------------------------------------------------------------------------
    async def ensure(self, version_id: str) -> Instance:
        """Pin the version on its slot and load it there; the instance once it can serve."""
        if self._closed:
            raise ExternalCommandError(f"the pool is shut down: version {version_id[:12]}… is not started")
        self._wanted.add(version_id)
        await self._wait_settled()
        slot = self.slot_for(version_id)
        if slot is None:
            errors = "; ".join(f"worker {s.index}: {s.last_error}" for s in self.slots if s.last_error)
            raise ExternalCommandError(f"no pool worker is up to serve {version_id[:12]}… ({errors or 'starting'})")
        failed = self._errors.get(version_id)
        if failed is not None and time.monotonic() < failed[2]:
            raise ExternalCommandError(
                f"{failed[0]} (attempt {failed[1]}; the next in {failed[2] - time.monotonic():.1f} s)"
            )
        await self._load(version_id, slot)
        inst = self.instance(version_id)
        if inst is None:
            raise ExternalCommandError(f"the pool worker of {version_id[:12]}… went down while it loaded")
        return inst

    async def stop(self, version_id: str) -> None:
        """No routing table names the version any more: unpin it (it stays resident until the worker needs the
        room or it has been idle ``idle_seconds``, so a quick move back costs no load)."""
        self._wanted.discard(version_id)
        self._errors.pop(version_id, None)
        for slot in self.slots:
            if slot.state == "up" and version_id in slot.loaded:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    await self._post(slot, f"/v/{version_id}/unpin")

    async def close(self) -> None:
        self._closed = True
        if self._supervisor is not None:
            self._supervisor.cancel()
        pending = [*self._loads.values(), *self._starting.values(), *self._tasks]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.gather(*(self._terminate(s.process) for s in self.slots if s.process is not None))
        for s in self.slots:
            s.state, s.process = "down", None
        if self._session is not None:
            await self._session.close()

    async def failed(self, inst: Instance) -> Instance | None:
        """A request to ``inst`` could not reach its worker: if the worker is dead, mark its slot down now
        (rather than at the supervisor's next look) and return where the version lives instead, if anywhere."""
        slot = self.slots[inst.slot] if inst.slot is not None and inst.slot < len(self.slots) else None
        if slot is None or slot.pid != inst.pid:
            return self.instance(inst.version_id)
        if slot.process is not None and _dead(slot.process):
            self._down(slot, "the worker process died")
        return self.instance(inst.version_id) if slot.state != "up" else None

    # -- loading ------------------------------------------------------------------------------------------------
    async def _load(self, version_id: str, slot: Slot, *, pin: bool = True) -> None:
        key = (version_id, slot.index, slot.url)
        task = self._loads.get(key)
        if task is None:
            task = self._loads[key] = asyncio.ensure_future(self._do_load(version_id, slot, pin))
            task.add_done_callback(lambda _t: self._loads.pop(key, None))
        await asyncio.shield(task)

    async def _do_load(self, version_id: str, slot: Slot, pin: bool) -> None:
        async with self._limit:
            url = slot.url
            try:
                async with self.session.post(
                    f"{url}/v/{version_id}/load", params={"pin": "1" if pin else "0"}, timeout=_timeout(120)
                ) as r:
                    body = await r.json(content_type=None)
                    if r.status != 200:
                        why = str(body.get("error", body))
                        n = self._errors.get(version_id, ("", 0, 0.0))[1] + 1
                        retry = time.monotonic() + min(self.max_backoff, 0.5 * 2 ** (n - 1))
                        self._errors[version_id] = (why, n, retry)
                        raise ExternalCommandError(f"pool worker {slot.index}: {why}")
            except (aiohttp.ClientError, TimeoutError) as e:
                raise ExternalCommandError(
                    f"pool worker {slot.index} did not answer while loading {version_id[:12]}…: {type(e).__name__}"
                ) from None
            self._errors.pop(version_id, None)
            if slot.url == url:
                slot.loaded.add(version_id)

    # -- slots ----------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start every worker (not waiting); `ensure` waits until each has come up or failed once."""
        if self._settled is not None:
            return
        self._settled = asyncio.Event()
        for slot in self.slots:
            self._start_slot(slot)
        self._supervisor = asyncio.create_task(self._supervise())

    async def _wait_settled(self) -> None:
        self.start()
        assert self._settled is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), timeout=self.startup_timeout)

    def _start_slot(self, slot: Slot, *, delay: float = 0.0) -> None:
        if self._closed or slot.index in self._starting:
            return
        slot.state = "starting"
        task = self._starting[slot.index] = asyncio.create_task(self._bring_up(slot, delay))
        task.add_done_callback(lambda _t: self._starting.pop(slot.index, None))

    async def _bring_up(self, slot: Slot, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        try:
            proc, url = await self._spawn(slot.index)
        except ExternalCommandError as e:
            slot.failures += 1
            slot.last_error = e.message
            slot.state = "down"
            slot.retry_at = time.monotonic() + min(self.max_backoff, 0.5 * 2**slot.failures)
            log.error("pool worker %d did not start: %s", slot.index, e.message)
            self._check_settled()
            return
        if self.up():
            # Coming back beside others: load the pinned versions that are about to move here, first.
            await self._preload(slot, url)
        slot.process, slot.url, slot.pid = proc, url, proc.pid
        slot.loaded, slot.state, slot.failures, slot.last_error = set(slot.loaded), "up", 0, ""
        self._check_settled()
        await self._release_elsewhere(slot)

    def _check_settled(self) -> None:
        if self._settled is not None and all(s.state != "starting" for s in self.slots):
            self._settled.set()

    async def _preload(self, slot: Slot, url: str) -> None:
        """Load on a slot about to come up (at ``url``) the pinned versions it will take over."""
        after = sorted({*self.up(), slot.index})
        mine = [v for v in self._wanted if placement.place(v, after) == slot.index]
        staging = Slot(slot.index, state="up", url=url)

        async def one(vid: str) -> None:
            with contextlib.suppress(ExternalCommandError):
                await self._do_load(vid, staging, True)

        await asyncio.gather(*(one(v) for v in mine))
        slot.loaded = staging.loaded

    async def _release_elsewhere(self, slot: Slot) -> None:
        """Versions that now live on ``slot`` are unpinned where they stood in meanwhile."""
        for other in self.slots:
            if other is slot or other.state != "up":
                continue
            moved = [v for v in other.loaded if v in self._wanted and self.slot_for(v) is slot]
            for vid in moved:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    await self._post(other, f"/v/{vid}/unpin")

    async def _spawn(self, index: int) -> tuple[asyncio.subprocess.Process, str]:
        # One native thread per model: two workers on two cores with a thread pool each would oversubscribe.
        args = ["tether.serving.pool_worker", "--slot", str(index), "--budget", str(self.slot_budget)]
        proc, port = await spawn_worker(
            self.settings,
            [*args, "--idle-seconds", str(self.idle_seconds)],
            threads=1,
            startup_timeout=self.startup_timeout,
            what=f"pool worker {index}",
        )
        self._pumps[index] = drain(proc, f"pool worker {index}")
        return proc, f"http://127.0.0.1:{port}"

    def _down(self, slot: Slot, why: str) -> None:
        if slot.state != "up":
            return
        slot.state, slot.loaded, slot.last_error = "down", set(), why
        slot.restarts += 1
        self.slot_deaths += 1
        slot.failures += 1
        slot.retry_at = time.monotonic() + min(self.max_backoff, 0.25 * 2**slot.failures)
        log.error(
            "pool worker %d (pid %s) is down: %s; its versions move to the other workers", slot.index, slot.pid, why
        )
        if self.on_slot_down is not None:
            self.on_slot_down(slot.index)
        # Pinned versions that lived there load on their next-ranked slots now, not on their next request.
        for vid in list(self._wanted):
            target = self.slot_for(vid)
            if target is not None and vid not in target.loaded:
                self._background(self._quiet_load(vid, target))

    def _background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _quiet_load(self, vid: str, slot: Slot) -> None:
        with contextlib.suppress(ExternalCommandError, asyncio.CancelledError):
            await self._load(vid, slot)

    async def _supervise(self) -> None:
        last_stats = 0.0
        while not self._closed:
            await asyncio.sleep(0.2)
            now = time.monotonic()
            for slot in self.slots:
                if slot.state == "up" and slot.process is not None and slot.process.returncode is not None:
                    self._down(slot, f"the worker process exited with status {slot.process.returncode}")
                if slot.state == "down" and now >= slot.retry_at and slot.index not in self._starting:
                    self._start_slot(slot)
            if now - last_stats >= STATS_SECONDS:
                last_stats = now
                await asyncio.gather(*(self._read_stats(s) for s in self.slots if s.state == "up"))

    async def _read_stats(self, slot: Slot) -> None:
        try:
            async with self.session.get(f"{slot.url}/stats", timeout=_timeout(5)) as r:
                stats = await r.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return
        slot.stats = stats
        resident = set(stats.get("resident", {}))
        loading = set(stats.get("loading", []))
        slot.loaded = (slot.loaded & loading) | resident
        grown = int(stats.get("rss_bytes", 0)) - int(stats.get("baseline_rss_bytes", 0))
        if not slot.recycling and grown > self.recycle_factor * self.slot_budget + 64 * 2**20:
            slot.recycling = True
            self._background(self._recycle(slot, grown))

    async def _recycle(self, slot: Slot, grown: int) -> None:
        """Replace a slot's process by a fresh one that loads the same pinned versions first (no gap)."""
        log.warning(
            "pool worker %d grew %d MiB over its %d MiB budget: recycling it",
            slot.index,
            grown >> 20,
            self.slot_budget >> 20,
        )
        try:
            proc, url = await self._spawn(slot.index)
            mine = [v for v in self._wanted if self.slot_for(v) is slot]
            staging = Slot(slot.index, state="up", url=url)
            await asyncio.gather(*(self._quiet_staged(v, staging) for v in mine))
            old = slot.process
            slot.process, slot.url, slot.pid, slot.loaded = proc, url, proc.pid, staging.loaded
            self.recycles += 1
            await self._terminate(old)
        except ExternalCommandError as e:
            log.error("pool worker %d could not be recycled: %s", slot.index, e.message)
        finally:
            slot.recycling = False

    async def _quiet_staged(self, vid: str, staging: Slot) -> None:
        with contextlib.suppress(ExternalCommandError):
            await self._do_load(vid, staging, True)

    @staticmethod
    async def _terminate(proc: asyncio.subprocess.Process | None) -> None:
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout=10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    # -- talking to slots -----------------------------------------------------------------------------------------
    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64))
        return self._session

    async def _post(self, slot: Slot, path: str) -> None:
        async with self.session.post(f"{slot.url}{path}", timeout=_timeout(5)) as r:
            await r.read()

    def health(self) -> dict[str, Any]:
        """What /healthz says of the pool."""
        return {
            "workers": [
                {
                    "slot": s.index,
                    "state": s.state,
                    "pid": s.pid,
                    "restarts": s.restarts,
                    "resident": len(s.loaded),
                    "used_bytes": s.stats.get("used_bytes"),
                    "rss_bytes": s.stats.get("rss_bytes"),
                    **({"last_error": s.last_error} if s.last_error else {}),
                }
                for s in self.slots
            ],
            "budget_bytes": self.budget_bytes,
            "pinned": len(self._wanted),
            "deaths": self.slot_deaths,
            "recycles": self.recycles,
        }

    def prometheus(self) -> list[str]:
        lines = ["# TYPE tether_pool_worker_up gauge"]
        lines += [f'tether_pool_worker_up{{slot="{s.index}"}} {int(s.state == "up")}' for s in self.slots]
        lines.append("# TYPE tether_pool_resident_models gauge")
        lines += [f'tether_pool_resident_models{{slot="{s.index}"}} {len(s.loaded)}' for s in self.slots]
        lines.append("# TYPE tether_pool_model_bytes gauge")
        lines += [f'tether_pool_model_bytes{{slot="{s.index}"}} {s.stats.get("used_bytes", 0)}' for s in self.slots]
        lines.append("# TYPE tether_pool_evictions_total counter")
        lines += [f'tether_pool_evictions_total{{slot="{s.index}"}} {s.stats.get("evictions", 0)}' for s in self.slots]
        lines += [
            "# TYPE tether_pool_worker_deaths_total counter",
            f"tether_pool_worker_deaths_total {self.slot_deaths}",
            "# TYPE tether_pool_recycles_total counter",
            f"tether_pool_recycles_total {self.recycles}",
        ]
        return lines


def _timeout(seconds: float) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=seconds)


def _dead(proc: asyncio.subprocess.Process) -> bool:
    """Whether a child has exited, before asyncio's child watcher has noticed (a zombie counts as dead)."""
    if proc.returncode is not None:
        return True
    try:
        with open(f"/proc/{proc.pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True
