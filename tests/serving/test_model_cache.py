"""A pooled worker's models: loaded once however many ask, evicted least-recently-used under a byte budget,
pinned versions last, the version just loaded never to make room for itself."""

import asyncio

import pandas as pd
import pytest

from tether.core.errors import IntegrityError
from tether.registry.flavors import LoadedModel
from tether.serving.memory import Growth
from tether.serving.model_cache import ModelCache

SCHEMA = {"fields": [{"name": "x", "type": "float", "required": True}]}


class Echo:
    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"prediction": frame["x"] * 2})


class Loader:
    """Loads a stand-in model of ``size`` bytes on disk; counts loads; can be told to fail or to wait."""

    def __init__(self, size: int = 1000) -> None:
        self.size = size
        self.loads: list[str] = []
        self.fail: set[str] = set()
        self.gate: asyncio.Event | None = None

    def __call__(self, vid: str) -> tuple[LoadedModel, int]:
        self.loads.append(vid)
        if vid in self.fail:
            raise IntegrityError(f"weights digest mismatch for version {vid}", expected="9c1e", actual="77ab")
        return LoadedModel(vid, Echo(), SCHEMA), self.size


class NoGrowth(Growth):
    """The models here are charged their size on disk (the floor): the process's growth is noise in a test."""

    def __exit__(self, *exc):
        self.bytes = 0


def _cache(loader, budget, **kw):
    clock = [0.0]
    cache = ModelCache(loader, budget, now=lambda: clock[0], measure=NoGrowth, **kw)
    return cache, clock


def test_concurrent_requests_for_one_version_load_it_once():
    loader = Loader()

    async def body():
        cache, _ = _cache(loader, 10_000)
        got = await asyncio.gather(*(cache.get("a") for _ in range(20)))
        assert len({id(r) for r, _ in got}) == 1
        assert (await cache.get("a"))[1] == 0.0  # resident now: no load waited for
        out = await got[0][0].batcher.predict([{"x": 1.5}])
        return out

    status, body, _ = asyncio.run(body())
    assert loader.loads == ["a"] and status == 200 and b"3.0" in body


def test_over_budget_the_least_recently_used_unpinned_version_goes_first():
    loader = Loader(size=1000)

    async def body():
        cache, clock = _cache(loader, 3500)
        cache.pin("a")
        for vid in ("a", "b", "c"):
            clock[0] += 1
            await cache.get(vid)
        clock[0] += 1
        await cache.get("b")  # b is used again: c is now the least recently used unpinned one
        await cache.get("d")  # over budget: c goes (a is pinned, b was used after c)
        return cache

    cache = asyncio.run(body())
    assert set(cache.stats()["resident"]) == {"a", "b", "d"}
    assert cache.evictions == 1 and cache.pressure_evictions == 0


def test_pinned_versions_are_evicted_only_when_they_alone_do_not_fit_and_never_the_one_just_loaded():
    loader = Loader(size=1000)

    async def body():
        cache, clock = _cache(loader, 1500)
        for vid in ("a", "b", "c"):
            cache.pin(vid)
            clock[0] += 1
            await cache.get(vid)
        return cache

    cache = asyncio.run(body())
    assert list(cache.stats()["resident"]) == ["c"]  # the newest stays; the others went, oldest first
    assert cache.pressure_evictions == 2


def test_an_evicted_version_loads_again_on_its_next_request():
    loader = Loader(size=1000)

    async def body():
        cache, _ = _cache(loader, 1000)
        await cache.get("a")
        await cache.get("b")
        _, waited = await cache.get("a")
        return waited

    assert asyncio.run(body()) >= 0 and loader.loads == ["a", "b", "a"]


def test_a_failed_load_fails_every_waiter_and_is_tried_again_next_time():
    loader = Loader()
    loader.fail.add("bad")

    async def body():
        cache, _ = _cache(loader, 10_000)
        got = await asyncio.gather(*(cache.get("bad") for _ in range(5)), return_exceptions=True)
        assert all(isinstance(g, IntegrityError) for g in got), got
        assert cache.load_failures == 1
        loader.fail.clear()
        await cache.get("bad")

    asyncio.run(body())
    assert loader.loads == ["bad", "bad"]


def test_idle_unpinned_versions_are_swept_and_pinned_ones_stay():
    loader = Loader()

    async def body():
        cache, clock = _cache(loader, 10_000, idle_seconds=60)
        cache.pin("kept")
        await cache.get("kept")
        await cache.get("idle")
        clock[0] += 61
        return cache, await cache.sweep()

    cache, swept = asyncio.run(body())
    assert swept == ["idle"] and set(cache.stats()["resident"]) == {"kept"}


@pytest.mark.parametrize("budget", [0, 1])
def test_a_budget_smaller_than_any_model_still_serves_one_at_a_time(budget):
    loader = Loader()

    async def body():
        cache, _ = _cache(loader, budget)
        for vid in ("a", "b", "a"):
            res, _ = await cache.get(vid)
            assert (await res.batcher.predict([{"x": 1.0}]))[0] == 200
        return cache

    assert len(asyncio.run(body()).stats()["resident"]) == 1
