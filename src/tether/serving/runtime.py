"""Instance runtimes: where a version's predictions are computed.

`LocalRuntime` runs each version in its own child process (`tether.serving.worker`) on a free port of
127.0.0.1, waits for it to be healthy, restarts it with exponential backoff when it dies, and reports each
crash through a callback (the rollout controller treats a crashed canary as harm). `UrlRuntime` points a
version at an external endpoint speaking tether's predict protocol or the KServe V2 inference protocol.
Both implement the same small interface, as does `tether.serving.ray_runtime.RayRuntime` (Ray Serve).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tether.core.errors import ExternalCommandError, NotFoundError
from tether.core.settings import Settings


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


class Runtime(Protocol):
    async def ensure(self, version_id: str) -> Instance: ...

    def instance(self, version_id: str) -> Instance | None: ...

    async def stop(self, version_id: str) -> None: ...

    async def close(self) -> None: ...


CrashCallback = Callable[[str], None]


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

    def instance(self, version_id: str) -> Instance | None:
        inst = self._instances.get(version_id)
        if inst is None or inst.process is None or inst.process.returncode is not None:
            return None
        return inst

    async def ensure(self, version_id: str) -> Instance:
        """The running instance of a version, starting it (once, however many callers wait) if needed."""
        if self._closed:
            raise ExternalCommandError(f"the runtime is shut down: version {version_id[:12]}… is not started")
        self._wanted.add(version_id)
        if (inst := self.instance(version_id)) is not None:
            return inst
        self._reap(version_id)
        task = self._starting.get(version_id)
        if task is None:
            task = asyncio.create_task(self._spawn(version_id))
            self._starting[version_id] = task
            task.add_done_callback(functools.partial(_forget, self._starting, version_id))
        return await asyncio.shield(task)

    async def _spawn(self, version_id: str, restarts: int = 0) -> Instance:
        # Every setting of this process (blob store credentials included), not only the store's paths: an
        # instance on an S3 blob store must read its weights with the same options as the gateway.
        given = self.settings.to_env()
        env = {
            **{k: v for k, v in os.environ.items() if k not in given},
            **{k: v for k, v in given.items() if v is not None},
            # The instance stops by itself if this process dies without stopping it (SIGKILL, a crash).
            "TETHER_PARENT_PID": str(os.getpid()),
            # Each instance is its own process; a thread pool per process sized to the host's cores makes n
            # instances oversubscribe the CPU n-fold (OpenMP threads spin while they wait: scikit-learn's
            # gradient boosting served 8 requests/s on two loaded cores that way, against ~50 single-threaded).
            **{
                var: str(self.settings.worker_threads)
                for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
            },
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            self.module_for(version_id),
            "--version",
            version_id,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            port = await asyncio.wait_for(self._ready(proc), timeout=self.startup_timeout)
        except (TimeoutError, ExternalCommandError):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            err = (await proc.stderr.read()).decode(errors="replace").strip() if proc.stderr else ""
            raise ExternalCommandError(
                f"the instance for version {version_id[:12]}… did not start: {err[-500:]}"
            ) from None
        except asyncio.CancelledError:
            # Shut down while the instance was still starting: never leave the child process behind.
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        inst = Instance(version_id, f"http://127.0.0.1:{port}", pid=proc.pid, restarts=restarts, process=proc)
        self._instances[version_id] = inst
        if self._supervisor is None or self._supervisor.done():
            self._supervisor = asyncio.create_task(self._supervise())
        return inst

    @staticmethod
    async def _ready(proc: asyncio.subprocess.Process) -> int:
        assert proc.stdout is not None
        while True:
            line = await proc.stdout.readline()
            if not line:
                raise ExternalCommandError("the instance exited before it was ready")
            text = line.decode().strip()
            if text.startswith("TETHER_WORKER_READY "):
                return int(text.split()[1])

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
                    return await self._spawn(vid, restarts)

                task = self._starting[vid] = asyncio.create_task(restart())
                task.add_done_callback(functools.partial(_forget, self._starting, vid))

    async def stop(self, version_id: str) -> None:
        self._wanted.discard(version_id)
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
        for vid in list(self._instances):
            await self.stop(vid)
        starting = list(self._starting.values())
        for task in starting:
            task.cancel()
        if starting:  # their children are killed as the cancellation unwinds
            await asyncio.gather(*starting, return_exceptions=True)
        for vid in list(self._instances):  # started in the meantime
            await self.stop(vid)
        if self._supervisor is not None:
            self._supervisor.cancel()

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

    async def ensure(self, version_id: str) -> Instance:
        inst = self._instances.get(version_id)
        if inst is None:
            raise NotFoundError(f"no endpoint configured for version {version_id[:12]}…")
        return inst

    async def stop(self, version_id: str) -> None:
        return None

    async def close(self) -> None:
        return None


class CompositeRuntime:
    """A version with a configured endpoint is served there; with a Ray runtime, every version ``on_ray``
    accepts runs on Ray Serve; every other version by a local process."""

    def __init__(
        self,
        local: LocalRuntime,
        remote: UrlRuntime,
        ray: Any = None,
        on_ray: Callable[[str], bool] | None = None,
    ) -> None:
        self.local = local
        self.remote = remote
        self.ray = ray
        self.on_ray = on_ray or (lambda _vid: True)

    def _pick(self, version_id: str) -> Runtime:
        if self.remote.has(version_id):
            return self.remote
        if self.ray is not None and self.on_ray(version_id):
            return self.ray  # type: ignore[no-any-return]
        return self.local

    def instance(self, version_id: str) -> Instance | None:
        return self._pick(version_id).instance(version_id)

    async def ensure(self, version_id: str) -> Instance:
        return await self._pick(version_id).ensure(version_id)

    async def stop(self, version_id: str) -> None:
        await self._pick(version_id).stop(version_id)

    async def close(self) -> None:
        await self.local.close()
        if self.ray is not None:
            await self.ray.close()

    def running(self) -> list[Instance]:
        return self.local.running() + (self.ray.running() if self.ray is not None else [])
