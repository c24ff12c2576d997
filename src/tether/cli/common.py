"""What every command module shares: the store root chosen on the command line, and small formatters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from rich.table import Table

from tether.cli.output import RichProgress, console
from tether.core import Settings, short
from tether.core.errors import InvalidInputError
from tether.registry import ModelVersion, Registry


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


def _kv(values: list[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        if "=" not in item:
            raise InvalidInputError(f"{what} {item!r} is not KEY=VALUE", hint=f"write e.g. --{what} max_iter=150")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _load_mapping(path: Path | None, what: str) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        value = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InvalidInputError(f"{what} file not found: {path}") from None
    except yaml.YAMLError as e:
        raise InvalidInputError(f"{what} file {path} is not valid JSON or YAML: {e}") from None
    if not isinstance(value, dict):
        raise InvalidInputError(f"{what} file {path} must hold a mapping, not {type(value).__name__}")
    return value


def _print_triad(mv: ModelVersion) -> None:
    t = Table(show_header=True, box=None, pad_edge=False)
    t.add_column("leg")
    t.add_column("digest")
    t.add_column("what")
    dirty = f" + diff {short(mv.code.diff_blob)}" if mv.code.diff_blob else ""
    t.add_row(
        "code",
        short(mv.code.digest),
        f"commit {mv.code.commit_sha[:12]}{dirty} /{mv.code.subdir}, "
        f"python {mv.code.environment.get('python')}, {len(mv.code.environment.get('packages', []))} packages",
    )
    t.add_row(
        "data",
        short(mv.data.digest),
        f"{mv.data.format}, {mv.data.row_count:,} rows, {len(mv.data.schema)} columns, {_size(mv.data.size_bytes)}",
    )
    signed = ", signed" if mv.weights.signature else ""
    t.add_row(
        "weights",
        short(mv.weights.digest),
        f"{mv.weights.file_count} file(s), {_size(mv.weights.size_bytes)}{signed}",
    )
    console.print(t)


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
