"""Instance runtimes: where a version's predictions are computed.

`LocalRuntime` runs each version in its own child process (`tether.serving.worker`) on a free port of
127.0.0.1, waits for it to be healthy, restarts it with exponential backoff when it dies, and reports each
crash through a callback (the rollout controller treats a crashed canary as harm). It starts at most
``max_starting`` processes at a time, and a version whose instance would not start waits, doubling, before
the next attempt. `UrlRuntime` points a version at an external endpoint speaking tether's predict protocol or
the KServe V2 inference protocol. `tether.serving.pool.PoolRuntime` serves many versions from a few processes,
and `tether.serving.ray_runtime.RayRuntime` on Ray Serve; all implement the same small interface.
`CompositeRuntime` picks one per version: an endpoint if one is configured, else the pool, unless the version
must run alone (a canary, a shadow, a version flagged so), in which case an isolated instance of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tether.core.errors import ExternalCommandError, NotFoundError
from tether.core.settings import Settings

#: Native thread pools a model instance is held to (``Settings.worker_threads``; one in a pooled worker).
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


@dataclass
class Instance:
    version_id: str
    url: str
    protocol: str = "tether"  # tether | kserve-v2
    model_name: str = ""
    pid: int | None = None
    restarts: int = 0
    crash_reported: bool = False
    process: asyncio.subprocess.Process | None = field(default=None, repr=False)
    #: Served by a pooled worker beside other versions: a worker that cannot be reached is the infrastructure's
    #: failure, not this version's (see `tether.serving.pool`).
    pooled: bool = False
    slot: int | None = None


class Runtime(Protocol):
    async def ensure(self, version_id: str) -> Instance: ...

    def instance(self, version_id: str) -> Instance | None: ...

    def ready(self, version_id: str) -> bool: ...

    def running(self) -> list[Instance]: ...

    async def stop(self, version_id: str) -> None: ...

    async def close(self) -> None: ...


CrashCallback = Callable[[str], None]


async def read_ready(proc: asyncio.subprocess.Process) -> int:
    """The port a worker printed in its ``TETHER_WORKER_READY <port>`` line."""
    assert proc.stdout is not None
    while True:
        line = await proc.stdout.readline()
        if not line:
            raise ExternalCommandError("the instance exited before it was ready")
        text = line.decode().strip()
        if text.startswith("TETHER_WORKER_READY "):
            return int(text.split()[1])


async def spawn_worker(
    settings: Settings, args: list[str], *, threads: int, startup_timeout: float, what: str
) -> tuple[asyncio.subprocess.Process, int]:
    """Start ``python -m ARGS...`` with this process's settings and wait for its ``TETHER_WORKER_READY`` line;
    the process and its port. A worker that does not get ready in time is killed, and the error says why."""
    # Every setting of this process (blob store credentials included), not only the store's paths: an instance on
    # an S3 blob store must read its weights with the same options as the gateway.
    given = settings.to_env()
    env = {
        **{k: v for k, v in os.environ.items() if k not in given},
        **{k: v for k, v in given.items() if v is not None},
        # The worker stops by itself if this process dies without stopping it (SIGKILL, a crash).
        "TETHER_PARENT_PID": str(os.getpid()),
        # A thread pool per process sized to the host's cores makes n workers oversubscribe the CPU n-fold (OpenMP
        # threads spin while they wait: scikit-learn's gradient boosting served 8 requests/s on two loaded cores
        # that way, against ~50 single-threaded).
        **dict.fromkeys(THREAD_VARS, str(threads)),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    try:
        port = await asyncio.wait_for(read_ready(proc), timeout=startup_timeout)
    except (TimeoutError, ExternalCommandError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        err = (await proc.stderr.read()).decode(errors="replace").strip() if proc.stderr else ""
        raise ExternalCommandError(f"{what} did not start: {err[-500:]}") from None
    except asyncio.CancelledError:
        # Shut down while the worker was still starting: never leave the child process behind.
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    return proc, port


def drain(proc: asyncio.subprocess.Process, name: str) -> list[asyncio.Task[None]]:
    """Keep reading a ready worker's output, so that a full pipe never blocks it; its lines go to the log."""
    import logging

    log = logging.getLogger("tether.instance")

    async def pump(stream: asyncio.StreamReader | None, level: int) -> None:
        if stream is None:
            return
        with contextlib.suppress(Exception):
            while line := await stream.readline():
                log.log(level, "%s: %s", name, line.decode(errors="replace").rstrip())

    return [
        asyncio.create_task(pump(proc.stdout, logging.DEBUG)),
        asyncio.create_task(pump(proc.stderr, logging.WARNING)),
    ]


class LocalRuntime:
    """One child process per version, supervised."""

    def __init__(
        self,
        settings: Settings,
        *,
        on_crash: CrashCallback | None = None,
        startup_timeout: float = 120.0,
        max_backoff: float = 30.0,
        module_for: Callable[[str], str] | None = None,
        max_starting: int | None = None,
    ) -> None:
        self.settings = settings
        # Which module serves a version (``python -m MODULE --version ID``): the serving layer's own worker by
        # default; the composition root sends LLM versions to the embedded engine's worker.
        self.module_for = module_for or (lambda _vid: "tether.serving.worker")
        self.on_crash = on_crash
        self.startup_timeout = startup_timeout
        self.max_backoff = max_backoff
        self._instances: dict[str, Instance] = {}
        self._starting: dict[str, asyncio.Task[Instance]] = {}
        self._wanted: set[str] = set()
        self._supervisor: asyncio.Task[None] | None = None
        self._closed = False
        #: At most this many instances start at once (a thousand at once starved the serving process's loop).
        self._start_slots = asyncio.Semaphore(max_starting or max(1, os.cpu_count() or 1))
        #: Per version that would not start: (failures in a row, monotonic time of the next attempt, the error).
        self._failed: dict[str, tuple[int, float, str]] = {}
        self._pumps: dict[str, list[asyncio.Task[None]]] = {}

    def instance(self, version_id: str) -> Instance | None:
        inst = self._instances.get(version_id)
        if inst is None or inst.process is None or inst.process.returncode is not None:
            return None
        return inst

    def ready(self, version_id: str) -> bool:
        return self.instance(version_id) is not None

    def failure(self, version_id: str) -> str | None:
        """Why the version's instance last failed to start, while it waits to try again (None otherwise)."""
        failed = self._failed.get(version_id)
        return failed[2] if failed is not None else None

    async def ensure(self, version_id: str) -> Instance:
        """The running instance of a version, starting it (once, however many callers wait) if needed; a version
        whose last start failed is refused until its backoff has passed (0.5 s, doubling to ``max_backoff``)."""
        if self._closed:
            raise ExternalCommandError(f"the runtime is shut down: version {version_id[:12]}… is not started")
        self._wanted.add(version_id)
        if (inst := self.instance(version_id)) is not None:
            return inst
        failed = self._failed.get(version_id)
        if failed is not None and time.monotonic() < failed[1] and version_id not in self._starting:
            raise ExternalCommandError(
                f"{failed[2]} (attempt {failed[0]}; the next in {failed[1] - time.monotonic():.1f} s)"
            )
        self._reap(version_id)
        task = self._starting.get(version_id)
        if task is None:
            task = asyncio.create_task(self._spawn_limited(version_id))
            self._starting[version_id] = task
            task.add_done_callback(functools.partial(_forget, self._starting, version_id))
        return await asyncio.shield(task)

    async def _spawn_limited(self, version_id: str, restarts: int = 0) -> Instance:
        async with self._start_slots:
            try:
                inst = await self._spawn(version_id, restarts)
            except ExternalCommandError as e:
                n = self._failed.get(version_id, (0, 0.0, ""))[0] + 1
                delay = min(self.max_backoff, 0.5 * 2 ** (n - 1))
                self._failed[version_id] = (n, time.monotonic() + delay, e.message)
                raise
        self._failed.pop(version_id, None)
        return inst

    async def _spawn(self, version_id: str, restarts: int = 0) -> Instance:
        proc, port = await spawn_worker(
            self.settings,
            [self.module_for(version_id), "--version", version_id],
            threads=self.settings.worker_threads,
            startup_timeout=self.startup_timeout,
            what=f"the instance for version {version_id[:12]}…",
        )
        inst = Instance(version_id, f"http://127.0.0.1:{port}", pid=proc.pid, restarts=restarts, process=proc)
        self._instances[version_id] = inst
        self._pumps[version_id] = drain(proc, f"instance {version_id[:12]}")
        if self._supervisor is None or self._supervisor.done():
            self._supervisor = asyncio.create_task(self._supervise())
        return inst

    def _reap(self, version_id: str) -> bool:
        """Report a wanted instance that died (once), whoever notices first: the supervisor or a caller."""
        inst = self._instances.get(version_id)
        if inst is None or inst.process is None or inst.process.returncode is None or inst.crash_reported:
            return False
        inst.crash_reported = True
        if version_id in self._wanted and self.on_crash is not None:
            self.on_crash(version_id)
        return True

    async def _supervise(self) -> None:
        backoff: dict[str, float] = {}
        while self._wanted:
            await asyncio.sleep(0.2)
            for vid in list(self._wanted):
                if not self._reap(vid) or vid in self._starting:
                    continue
                restarts = self._instances[vid].restarts + 1
                delay = min(self.max_backoff, backoff.get(vid, 0.5) * 2)
                backoff[vid] = delay

                async def restart(vid: str = vid, delay: float = delay, restarts: int = restarts) -> Instance:
                    await asyncio.sleep(delay)
                    return await self._spawn_limited(vid, restarts)

                task = self._starting[vid] = asyncio.create_task(restart())
                task.add_done_callback(functools.partial(_forget, self._starting, vid))

    async def stop(self, version_id: str) -> None:
        self._wanted.discard(version_id)
        self._failed.pop(version_id, None)
        inst = self._instances.pop(version_id, None)
        if inst is None or inst.process is None or inst.process.returncode is not None:
            return
        inst.process.terminate()
        try:
            await asyncio.wait_for(inst.process.wait(), timeout=10)
        except TimeoutError:
            inst.process.kill()
            await inst.process.wait()

    async def close(self) -> None:
        self._closed = True  # a start requested from now on (a late refresh, say) is refused, not leaked
        await asyncio.gather(*(self.stop(vid) for vid in list(self._instances)))  # in parallel: 10 s each at worst
        starting = list(self._starting.values())
        for task in starting:
            task.cancel()
        if starting:  # their children are killed as the cancellation unwinds
            await asyncio.gather(*starting, return_exceptions=True)
        await asyncio.gather(*(self.stop(vid) for vid in list(self._instances)))  # started in the meantime
        if self._supervisor is not None:
            self._supervisor.cancel()
        for pumps in self._pumps.values():
            for pump in pumps:
                pump.cancel()

    def running(self) -> list[Instance]:
        return [i for v in self._instances if (i := self.instance(v)) is not None]


def _forget(mapping: dict[str, Any], key: str, _task: object) -> None:
    mapping.pop(key, None)


PROTOCOLS = ("tether", "kserve-v2")


class UrlRuntime:
    """Versions served elsewhere (KServe, vLLM, Triton, another tether worker), named by URL."""

    def __init__(self, endpoints: dict[str, tuple[str, str, str]] | None = None) -> None:
        self._instances: dict[str, Instance] = {}
        self.update(endpoints or {})

    def update(self, endpoints: dict[str, tuple[str, str, str]]) -> None:
        """Replace the endpoints: version id -> (url, protocol, model name at the endpoint)."""
        self._instances = {
            vid: Instance(vid, url.rstrip("/"), protocol, name) for vid, (url, protocol, name) in endpoints.items()
        }

    def has(self, version_id: str) -> bool:
        return version_id in self._instances

    def instance(self, version_id: str) -> Instance | None:
        return self._instances.get(version_id)

    def ready(self, version_id: str) -> bool:
        return version_id in self._instances

    async def ensure(self, version_id: str) -> Instance:
        inst = self._instances.get(version_id)
        if inst is None:
            raise NotFoundError(f"no endpoint configured for version {version_id[:12]}…")
        return inst

    async def stop(self, version_id: str) -> None:
        return None

    async def close(self) -> None:
        return None

    def running(self) -> list[Instance]:
        return []


class CompositeRuntime:
    """Which runtime serves each version:

    - a version with a configured endpoint is served there (`UrlRuntime`);
    - a version that must run alone (``isolated``: a canary, a shadow, a version flagged so, an embedded LLM engine)
      gets an instance of its own: a Ray Serve application when Ray is configured and ``on_ray`` accepts it, else
      a local process;
    - every other version lives in the pool when there is one (`tether.serving.pool.PoolRuntime`), else alone.

    A version that changes side (a canary promoted to champion moves into the pool; a champion that becomes a
    shadow moves out) keeps answering from where it was until its new home is ready; `settle` then stops the old
    copy."""

    def __init__(
        self,
        local: LocalRuntime,
        remote: UrlRuntime,
        ray: Any = None,
        on_ray: Callable[[str], bool] | None = None,
        *,
        pool: Any = None,
        isolated: Callable[[str], bool] | None = None,
    ) -> None:
        self.local = local
        self.remote = remote
        self.ray = ray
        self.on_ray = on_ray or (lambda _vid: True)
        self.pool = pool
        self.isolated = isolated or (lambda _vid: False)

    def _alone(self, version_id: str) -> Runtime:
        if self.ray is not None and self.on_ray(version_id):
            return self.ray  # type: ignore[no-any-return]
        return self.local

    def _pick(self, version_id: str) -> Runtime:
        if self.remote.has(version_id):
            return self.remote
        if self.pool is not None and not self.isolated(version_id):
            return self.pool  # type: ignore[no-any-return]
        return self._alone(version_id)

    def _holders(self) -> list[Runtime]:
        return [r for r in (self.pool, self.local, self.ray) if r is not None]

    def instance(self, version_id: str) -> Instance | None:
        target = self._pick(version_id)
        inst = target.instance(version_id)
        if target is self.remote or target.ready(version_id):
            return inst
        for other in self._holders():  # moving between runtimes: the old home answers until the new one is ready
            if other is not target and other.ready(version_id):
                return other.instance(version_id)
        return inst

    def ready(self, version_id: str) -> bool:
        """Whether the version answers from a loaded instance somewhere (what a change of routing waits for)."""
        target = self._pick(version_id)
        if target is self.remote:
            return True
        return any(r.ready(version_id) for r in self._holders())

    def failure(self, version_id: str) -> str | None:
        """Why the version has no instance, when its start failed (None while starting or when it has one)."""
        target = self._pick(version_id)
        fn = getattr(target, "failure", None)
        return fn(version_id) if fn is not None else None

    async def failed(self, inst: Instance) -> Instance | None:
        """A request could not reach ``inst``: where to try again, if the version has another home now."""
        if inst.pooled and self.pool is not None:
            return await self.pool.failed(inst)  # type: ignore[no-any-return]
        return None

    async def ensure(self, version_id: str) -> Instance:
        return await self._pick(version_id).ensure(version_id)

    async def stop(self, version_id: str) -> None:
        if self.remote.has(version_id):
            return
        await asyncio.gather(*(r.stop(version_id) for r in self._holders()))

    async def settle(self) -> list[str]:
        """Stop the old copies of versions that have moved and whose new home is ready; returns what it did."""
        done: list[str] = []
        for runtime in self._holders():
            held = runtime.wanted if runtime is self.pool else {i.version_id for i in runtime.running()}
            for vid in list(held):
                target = self._pick(vid)
                if target is not runtime and target is not self.remote and target.ready(vid):
                    await runtime.stop(vid)
                    done.append(vid)
        return done

    async def close(self) -> None:
        await asyncio.gather(*(r.close() for r in self._holders()))

    def running(self) -> list[Instance]:
        return [i for r in self._holders() for i in r.running()]
