"""What a model flavor is, and the registry every flavor (built-in or third-party) is added to.

A flavor knows how to check a weights artifact at registration (`configure`, whose result is part of the
version id) and how to load it into something that predicts (`load`). tether calls `load` only on files
whose digests were verified against the registered manifest, which is what makes loading pickles
acceptable for the ``sklearn`` flavor (see `tether.registry.flavors.sklearn`).

Third parties add flavors with `register_flavor`, or with an entry point in the ``tether.flavors`` group
pointing at a `Flavor` instance; the built-ins use the same function.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from tether.core.errors import InvalidInputError, MissingExtraError


@runtime_checkable
class Predictor(Protocol):
    def predict(self, frame: pd.DataFrame) -> Any: ...


class Flavor(Protocol):
    @property
    def name(self) -> str:
        """The name users pass as ``--flavor``."""
        ...

    def configure(self, weights: Path, code: Path | None, options: dict[str, Any]) -> dict[str, Any]:
        """Validate the weights (and code) at registration; return the flavor config stored with the version."""
        ...

    def load(self, weights: Path, code: Path | None, config: dict[str, Any]) -> Predictor:
        """Load verified weights into an object with ``predict(frame)``."""
        ...


_FLAVORS: dict[str, Flavor] = {}
_ENTRY_POINTS_LOADED = False


def register_flavor(flavor: Flavor) -> Flavor:
    """Add a flavor under ``flavor.name`` (replacing one of the same name)."""
    _FLAVORS[flavor.name] = flavor
    return flavor


def get_flavor(name: str) -> Flavor:
    global _ENTRY_POINTS_LOADED
    if name not in _FLAVORS and not _ENTRY_POINTS_LOADED:
        for ep in metadata.entry_points(group="tether.flavors"):
            register_flavor(ep.load())
        _ENTRY_POINTS_LOADED = True
    try:
        return _FLAVORS[name]
    except KeyError:
        raise InvalidInputError(f"unknown flavor {name!r}", hint=f"use one of: {', '.join(sorted(_FLAVORS))}") from None


def flavor_names() -> list[str]:
    return sorted(_FLAVORS)


def require(module: str, feature: str, extra: str) -> Any:
    """Import an optional dependency or raise `MissingExtraError` naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(feature, module.split(".")[0], extra) from None


def single_model_file(weights: Path, suffixes: tuple[str, ...], flavor: str) -> Path:
    """The one model file in a weights artifact (the file itself, or the only matching file in a folder)."""
    if weights.is_file():
        if weights.suffix.lower() not in suffixes:
            raise InvalidInputError(
                f"{weights.name} is not a {flavor} model file (expected {', '.join(suffixes)})",
                hint="check --flavor, or rename the file with the right extension",
            )
        return weights
    found = sorted(p for p in weights.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    if len(found) != 1:
        raise InvalidInputError(
            f"expected exactly one {'/'.join(suffixes)} file in {weights} for flavor {flavor}, found {len(found)}",
            hint="point --weights at the model file itself",
        )
    return found[0]


def to_frame(result: Any, n_rows: int) -> pd.DataFrame:
    """Normalise what a predictor returned into a DataFrame with one row per input row."""
    if isinstance(result, pd.DataFrame):
        frame = result.reset_index(drop=True)
    elif isinstance(result, pd.Series):
        frame = result.reset_index(drop=True).to_frame(name=str(result.name or "prediction"))
    elif isinstance(result, dict):
        frame = pd.DataFrame(
            {k: np.asarray(v).reshape(n_rows, -1)[:, 0] if np.ndim(v) > 1 else v for k, v in result.items()}
        )
    else:
        arr = np.asarray(result)
        if arr.ndim == 1:
            frame = pd.DataFrame({"prediction": arr})
        elif arr.ndim == 2:
            frame = pd.DataFrame(arr, columns=[f"output_{i}" for i in range(arr.shape[1])])
        else:
            raise InvalidInputError(f"a predictor returned an array of shape {arr.shape}; expected 1 or 2 dimensions")
    if len(frame) != n_rows:
        raise InvalidInputError(f"a predictor returned {len(frame)} rows for {n_rows} inputs")
    return frame


class LoadedModel:
    """A verified model version ready to predict: ``predict(frame) -> DataFrame`` in the output schema."""

    def __init__(
        self,
        version_id: str,
        predictor: Predictor,
        input_schema: dict[str, Any],
        *,
        on_close: Callable[[], None] | None = None,
        weights_bytes: int = 0,
    ) -> None:
        self.version_id = version_id
        #: The size of the verified weights on disk (a pooled worker never accounts the model at less).
        self.weights_bytes = weights_bytes
        self.native = predictor
        self.input_columns = [f["name"] for f in input_schema["fields"]]
        self._on_close = on_close

    def predict(self, frame: pd.DataFrame | list[dict[str, Any]]) -> pd.DataFrame:
        if not isinstance(frame, pd.DataFrame):
            frame = pd.DataFrame.from_records(frame)
        missing = [c for c in self.input_columns if c not in frame.columns]
        if missing:
            raise InvalidInputError(
                f"input lacks column(s) {missing} that version {self.version_id[:12]}… needs",
                hint=f"provide all of {self.input_columns}",
            )
        x = frame[self.input_columns]
        return to_frame(self.native.predict(x), len(x))

    def close(self) -> None:
        if self._on_close is not None:
            self._on_close()
            self._on_close = None
