"""Model instances on Ray Serve: each routed version is a Serve application on a Ray cluster.

With ``TETHER_RAY_ADDRESS`` set (``host:port`` of a running cluster's head, or ``auto``), `RayRuntime` takes the
place of the local runtime for every predictive version (embedded LLM engines stay local processes): `ensure`
deploys the application ``tether-<version>`` (one `VersionReplica` deployment) with the deploy config of the
version's model from ``TETHER_RAY_DEPLOY`` (replicas, autoscaling bounds, CPUs and memory per replica) and
serves it at ``http://<ray_http_host>:<ray_http_port>/tether/<version>``; `stop` deletes it. Each replica
verifies the version's digests before it serves (`tether.serving.ray_replica`). The gateway reconciles the
applications with the routing tables as it does local processes.

A replica that dies is restarted by Serve, and reported through ``on_crash`` like a crashed local instance
(the rollout controller rolls a canary back on it): a replica seen running that is gone while the deployment's
target number of replicas did not go down is a death, not a scale-down. An application that Serve reports
unhealthy or failed to deploy is reported once the same way. A cluster that cannot be reached is an error
naming the address, and the version is not served.

The Ray calls block (deploying waits until the application is healthy), so they run in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tether.core.errors import ExternalCommandError, InvalidInputError, MissingExtraError
from tether.core.settings import Settings
from tether.serving.runtime import Instance

log = logging.getLogger("tether.ray")


class RayDeploy(BaseModel):
    """How a model's versions run on Ray Serve (``TETHER_RAY_DEPLOY``: ``{"default": {...}, "MODEL": {...}}``)."""

    model_config = ConfigDict(extra="forbid")
    replicas: int = Field(default=1, ge=1)
    #: With both set, Serve autoscales between them (``replicas`` is the starting count).
    min_replicas: int | None = Field(default=None, ge=0)
    max_replicas: int | None = Field(default=None, ge=1)
    num_cpus: float = Field(default=0.5, gt=0)
    memory_mb: int | None = Field(default=None, gt=0)

    def options(self) -> dict[str, Any]:
        actor: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.memory_mb is not None:
            actor["memory"] = self.memory_mb * 1024 * 1024
        out: dict[str, Any] = {"ray_actor_options": actor}
        if self.min_replicas is not None and self.max_replicas is not None:
            if self.min_replicas > self.max_replicas:
                raise InvalidInputError("ray deploy config: min_replicas is above max_replicas")
            out["autoscaling_config"] = {
                "min_replicas": self.min_replicas,
                "max_replicas": self.max_replicas,
                "initial_replicas": min(max(self.replicas, self.min_replicas), self.max_replicas),
            }
        else:
            out["num_replicas"] = self.replicas
        return out


def deploy_config(settings: Settings, model: str) -> RayDeploy:
    raw = settings.ray_deploy
    try:
        return RayDeploy.model_validate({**raw.get("default", {}), **raw.get(model, {})})
    except ValueError as e:
        raise InvalidInputError(f"TETHER_RAY_DEPLOY for {model!r} is not valid: {e}") from None


def _answers(url: str) -> bool:
    """Whether ``url`` answers 200 (one short GET: the route is served through the proxy)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310  (an http URL tether built)
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def app_name(version_id: str) -> str:
    return f"tether-{version_id[:16]}"


class RayRuntime:
    def __init__(
        self,
        settings: Settings,
        *,
        on_crash: Callable[[str], None] | None = None,
        model_of: Callable[[str], str] | None = None,
        startup_timeout: float = 180.0,
    ) -> None:
        self.settings = settings
        self.startup_timeout = startup_timeout
        self.address = settings.ray_address or "auto"
        self.on_crash = on_crash
        self.model_of = model_of or (lambda _vid: "default")
        self._instances: dict[str, Instance] = {}
        self._starting: dict[str, asyncio.Future[Instance]] = {}
        self._reported: set[str] = set()
        #: Per version: the replica ids last seen running, and the deployment's target number of replicas then.
        self._replicas: dict[str, tuple[set[str], int]] = {}
        self.replica_deaths = 0
        self._connected = False
        self._owns_connection = False
        self._lock = threading.Lock()
        self._watch: asyncio.Task[None] | None = None

    # -- the cluster -------------------------------------------------------------------------------------------
    def _connect(self) -> Any:
        try:
            import ray
            from ray import serve
        except ImportError:
            raise MissingExtraError("the ray runtime (TETHER_RAY_ADDRESS)", "ray[serve]", "ray") from None
        with self._lock:
            if not self._connected:
                # A process already connected (the cluster's own driver, in tests) keeps its connection at close.
                self._owns_connection = not ray.is_initialized()
                if not self._owns_connection and self.address != "auto":
                    current = ray.get_runtime_context().gcs_address
                    if current != self.address:
                        raise ExternalCommandError(
                            f"cannot reach the Ray cluster at {self.address}: this process is connected to the "
                            f"cluster at {current}",
                            hint="one process talks to one Ray cluster: check TETHER_RAY_ADDRESS",
                        )
                try:
                    ray.init(address=self.address, namespace="tether", log_to_driver=False, ignore_reinit_error=True)
                except (ConnectionError, RuntimeError, ValueError) as e:
                    raise ExternalCommandError(
                        f"cannot reach the Ray cluster at {self.address}: {e}",
                        hint="start it (ray start --head) or unset TETHER_RAY_ADDRESS",
                    ) from None
                serve.start(http_options={"host": self.settings.ray_http_host, "port": self.settings.ray_http_port})
                self._connected = True
        return serve

    def _deploy(self, version_id: str) -> Instance:
        serve = self._connect()
        from tether.serving.ray_replica import VersionReplica

        config = deploy_config(self.settings, self.model_of(version_id))
        env = {k: v for k, v in self.settings.to_env().items() if v is not None}
        name = app_name(version_id)
        app = VersionReplica.options(  # type: ignore[attr-defined]
            name="replica", max_constructor_retry_count=3, **config.options()
        ).bind(version_id, env)
        # serve.run waits for the application, however long a failing constructor keeps being retried: deploy
        # without waiting (Serve's own `_run`, which serve.run wraps) and wait here, bounded, on its status.
        from ray.serve.api import _run

        _run(app, _blocking=False, name=name, route_prefix=f"/tether/{version_id[:16]}")
        deadline = time.monotonic() + self.startup_timeout
        while True:
            status = serve.status().applications.get(name)
            state = str(getattr(status, "status", "NOT_STARTED")).rsplit(".", 1)[-1]
            if state == "RUNNING":
                break
            if state in ("DEPLOY_FAILED", "UNHEALTHY") or time.monotonic() > deadline:
                why = getattr(status, "message", "") or f"still {state} after {self.startup_timeout:.0f} s"
                with contextlib.suppress(Exception):
                    serve.delete(name)
                raise ExternalCommandError(
                    f"the Ray deployment of {version_id[:12]}… did not start: {str(why).strip()[-800:]}"
                )
            time.sleep(0.25)
        url = f"http://{self.settings.ray_http_host}:{self.settings.ray_http_port}/tether/{version_id[:16]}"
        # RUNNING is the replicas' state, not the HTTP proxy's: on a loaded host the proxy can still be starting
        # (or learning the new route) and refuse the connection. Ready means answering through it.
        while not _answers(f"{url}/health"):
            if time.monotonic() > deadline:
                with contextlib.suppress(Exception):
                    serve.delete(name)
                raise ExternalCommandError(
                    f"the Ray deployment of {version_id[:12]}… is running but Serve's HTTP proxy at "
                    f"{self.settings.ray_http_host}:{self.settings.ray_http_port} did not answer for it within "
                    f"{self.startup_timeout:.0f} s"
                )
            time.sleep(0.25)
        return Instance(version_id, url, protocol="tether")

    # -- the runtime interface ---------------------------------------------------------------------------------
    def instance(self, version_id: str) -> Instance | None:
        return self._instances.get(version_id)

    def ready(self, version_id: str) -> bool:
        return version_id in self._instances

    async def ensure(self, version_id: str) -> Instance:
        if (inst := self._instances.get(version_id)) is not None:
            return inst
        task = self._starting.get(version_id)
        if task is None:
            task = self._starting[version_id] = asyncio.ensure_future(asyncio.to_thread(self._deploy, version_id))
        try:
            inst = await asyncio.shield(task)
        finally:
            if task.done():
                self._starting.pop(version_id, None)
        self._instances[version_id] = inst
        self._reported.discard(version_id)
        if self._watch is None or self._watch.done():
            self._watch = asyncio.create_task(self._supervise())
        return inst

    async def stop(self, version_id: str) -> None:
        self._replicas.pop(version_id, None)
        if self._instances.pop(version_id, None) is None:
            return
        serve = self._connect()
        await asyncio.to_thread(serve.delete, app_name(version_id))

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        for vid in list(self._instances):
            try:
                await self.stop(vid)
            except Exception:
                log.warning("could not delete the Ray application of %s", vid[:12], exc_info=True)
        if self._connected and self._owns_connection:
            import ray

            await asyncio.to_thread(ray.shutdown)
        self._connected = False

    def running(self) -> list[Instance]:
        return list(self._instances.values())

    # -- crashes ---------------------------------------------------------------------------------------------------
    def unhealthy(self) -> list[str]:
        """Versions whose application Serve reports neither running nor starting."""
        serve = self._connect()
        apps = serve.status().applications
        out = []
        for vid in list(self._instances):
            status = apps.get(app_name(vid))
            state = str(getattr(status, "status", "MISSING")).rsplit(".", 1)[-1]
            if state not in ("RUNNING", "DEPLOYING"):
                out.append(vid)
        return out

    def died(self) -> list[str]:
        """Versions one of whose replicas died since the last look (one entry per death)."""
        from ray.serve.context import _get_global_client  # the client Serve's own CLI reads details with

        self._connect()
        client = _get_global_client()
        if client is None:  # Serve not started on this cluster yet: no replica to have died
            return []
        apps = client.get_serve_details().get("applications") or {}
        out = []
        for vid in list(self._instances):
            deployments = (apps.get(app_name(vid)) or {}).get("deployments") or {}
            running: set[str] = set()
            present: set[str] = set()
            target = 0
            for dep in deployments.values():
                target += int(dep.get("target_num_replicas") or 0)
                for r in dep.get("replicas") or ():
                    rid = str(r.get("replica_id"))
                    present.add(rid)
                    if str(r.get("state")).rsplit(".", 1)[-1] == "RUNNING":
                        running.add(rid)
            before, before_target = self._replicas.get(vid, (set(), 0))
            if target >= before_target:  # a scale-down removes replicas on purpose
                for rid in before - present:
                    log.error("a Ray replica of %s died (%s); Serve replaces it", vid[:12], rid)
                    self.replica_deaths += 1
                    out.append(vid)
            self._replicas[vid] = ((before & present) | running, target)
        return out

    async def _supervise(self) -> None:
        while self._instances:
            await asyncio.sleep(1.0)
            try:
                bad = await asyncio.to_thread(self.unhealthy)
                deaths = await asyncio.to_thread(self.died)
            except Exception:
                log.warning("could not read the Ray Serve status", exc_info=True)
                continue
            for vid in deaths:
                if self.on_crash is not None:
                    self.on_crash(vid)
            for vid in bad:
                if vid not in self._reported:
                    self._reported.add(vid)
                    log.error("the Ray application of %s is unhealthy", vid[:12])
                    if self.on_crash is not None:
                        self.on_crash(vid)
