"""The serving processes' event loop: uvloop by default, asyncio's on request, a clear error otherwise."""

from __future__ import annotations

import pytest

from tether.core import Settings
from tether.core import loop as event_loop


async def _which() -> str:
    return event_loop.name()


def test_uvloop_is_the_default_and_asyncio_can_be_chosen() -> None:
    pytest.importorskip("uvloop", reason="uvloop is a dependency on Linux and macOS only")
    assert Settings().event_loop == "uvloop"
    assert event_loop.run(_which()) == "uvloop"
    assert event_loop.run(_which(), "asyncio") == "asyncio"


def test_an_unknown_loop_is_refused_in_settings_and_in_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_EVENT_LOOP", "trio")
    with pytest.raises(ValueError, match="event_loop"):
        Settings()
    coro = _which()
    with pytest.raises(ValueError, match="unknown event loop 'trio'"):
        event_loop.run(coro, "trio")
    coro.close()
