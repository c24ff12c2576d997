"""The ``python`` flavor: a loader function inside the registered code.

``--flavor-option entry_point=package.module:function`` names a function in the code archive; tether calls
it with the path of the verified weights and it returns an object with ``predict(frame)`` (or a plain
callable). The module is imported from the rebuilt code folder, at the sub-folder given at registration.
In-process loading shares ``sys.modules``; serving runs each version in its own process.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from tether.core.errors import InvalidInputError
from tether.registry.flavors.base import Predictor, register_flavor


class _CallablePredictor:
    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def predict(self, frame: pd.DataFrame) -> Any:
        return self.fn(frame)


class PythonFlavor:
    name = "python"
    extra = None

    def configure(self, weights: Path, code: Path | None, options: dict[str, Any]) -> dict[str, Any]:
        entry = options.get("entry_point")
        if not isinstance(entry, str) or entry.count(":") != 1:
            raise InvalidInputError(
                "the python flavor needs an entry point 'module:function'",
                hint="pass --flavor-option entry_point=mypkg.model:load",
            )
        config = {"entry_point": entry}
        self.load(weights, code, config)  # proves the entry point imports and returns a predictor
        return config

    def load(self, weights: Path, code: Path | None, config: dict[str, Any]) -> Predictor:
        if code is None:
            raise InvalidInputError("the python flavor needs the code folder to import its entry point")
        module_name, func_name = config["entry_point"].split(":")
        roots = [str(code)]
        added = [r for r in roots if r not in sys.path]
        sys.path[:0] = added
        try:
            # A fresh import each time: a different version may ship a module of the same name.
            for name in [m for m in sys.modules if m == module_name or m.startswith(module_name + ".")]:
                del sys.modules[name]
            try:
                module = importlib.import_module(module_name)
            except ImportError as e:
                raise InvalidInputError(
                    f"cannot import {module_name!r} from the code in {code}: {e}",
                    hint="check the entry point and that the module is committed",
                ) from None
        finally:
            for r in added:
                sys.path.remove(r)
        fn = getattr(module, func_name, None)
        if not callable(fn):
            raise InvalidInputError(f"{module_name} has no function {func_name!r}")
        obj = fn(weights)
        if hasattr(obj, "predict"):
            return obj  # type: ignore[no-any-return]
        if callable(obj):
            return _CallablePredictor(obj)
        raise InvalidInputError(
            f"{config['entry_point']} returned {type(obj).__name__}; expected an object with predict() or a callable"
        )


register_flavor(PythonFlavor())
