"""What every command module shares: the store root chosen on the command line, and small formatters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tether.cli.output import RichProgress
from tether.core import Settings
from tether.registry import Registry


class State:
    home: Path | None = None


def settings() -> Settings:
    return Settings(home=State.home) if State.home is not None else Settings()


def registry() -> Registry:
    return Registry.open(settings(), progress=RichProgress())


def _short(value: Any) -> str:
    return "-" if value is None else f"{value:.3g}"


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
