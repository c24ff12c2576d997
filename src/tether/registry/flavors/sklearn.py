"""The ``sklearn`` flavor: scikit-learn estimators and pipelines.

How loading stays safe:

* ``.skops`` files load with `skops.io.load`, which refuses every type not in an explicit trust list. At
  registration tether records the non-default types the file needs (``trusted_types``, part of the version
  id, shown by ``tether show``), accepting without asking only types from scikit-learn, NumPy and SciPy
  (others must be named with ``--flavor-option trust=...``); at load it trusts exactly those.
* ``.pkl``/``.pickle``/``.joblib`` files are unpickled only after the weights manifest (and so this file's
  SHA-256) has been verified against the registered digest, and the signature when one was recorded. Pickle
  can run code: the guarantee is that it is the very file the registrant registered. Prefer skops for
  weights from parties you do not trust; use pickle when you need byte-reproducible weights (skops files
  embed object ids and timestamps, so retraining never reproduces their digest).

Output columns: ``prediction`` always; ``probability`` (positive class) for binary classifiers with
``predict_proba``, ``probability_<class>`` for multiclass.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tether.core.errors import InvalidInputError
from tether.registry.flavors.base import register_flavor, require, single_model_file

SUFFIXES = (".skops", ".pkl", ".pickle", ".joblib")
#: skops types from these packages are trusted at registration without asking; anything else must be named.
AUTO_TRUSTED_ROOTS = frozenset({"sklearn", "numpy", "scipy", "skops"})


#: Classifiers whose predict() is, in scikit-learn's own code, the class with the largest predict_proba (for
#: gradient boosting: the raw score's sign, the same decision). For these, one predict_proba pass gives both
#: outputs: bench/gate.py measured 5.6 s -> 2.8 s to score 2 x 1M rows with the fraud pipeline.
ARGMAX_PREDICT = frozenset(
    {
        "HistGradientBoostingClassifier",
        "GradientBoostingClassifier",
        "RandomForestClassifier",
        "ExtraTreesClassifier",
        "DecisionTreeClassifier",
    }
)


def _final_estimator(model: Any) -> Any:
    steps = getattr(model, "steps", None)
    return steps[-1][1] if steps else model


class SklearnPredictor:
    def __init__(self, model: Any, *, prediction_from_proba: bool = False) -> None:
        self.model = model
        self.prediction_from_proba = prediction_from_proba and hasattr(model, "predict_proba")

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        proba: np.ndarray | None
        if self.prediction_from_proba:
            proba = np.asarray(self.model.predict_proba(frame))
            out = {"prediction": np.asarray(self.model.classes_)[np.argmax(proba, axis=1)]}
        else:
            out = {"prediction": np.asarray(self.model.predict(frame))}
            proba = np.asarray(self.model.predict_proba(frame)) if hasattr(self.model, "predict_proba") else None
        if proba is not None:
            classes = list(getattr(self.model, "classes_", range(proba.shape[1])))
            if proba.shape[1] == 2:
                out["probability"] = proba[:, 1]
            else:
                for i, c in enumerate(classes):
                    out[f"probability_{c}"] = proba[:, i]
        return pd.DataFrame(out)


class SklearnFlavor:
    name = "sklearn"
    extra = "sklearn"

    def configure(self, weights: Path, code: Path | None, options: dict[str, Any]) -> dict[str, Any]:
        require("sklearn", "the sklearn flavor", "sklearn")
        file = single_model_file(weights, SUFFIXES, self.name)
        rel = file.name if weights.is_file() else file.relative_to(weights).as_posix()
        if file.suffix.lower() == ".skops":
            sio = require("skops.io", "loading .skops files", "sklearn")
            try:
                untrusted = sorted(sio.get_untrusted_types(file=file))
            except Exception as e:
                raise InvalidInputError(f"{file.name} is not a readable skops file: {e}") from None
            extra_trust = set(options.get("trust", []))
            refused = [t for t in untrusted if t.split(".")[0] not in AUTO_TRUSTED_ROOTS and t not in extra_trust]
            if refused:
                raise InvalidInputError(
                    f"{file.name} needs types outside scikit-learn, NumPy and SciPy: {', '.join(refused)}",
                    hint="if you trust them, pass them with --flavor-option trust=<type>,<type>",
                )
            config: dict[str, Any] = {"file": rel, "format": "skops", "trusted_types": untrusted}
        else:
            config = {"file": rel, "format": "pickle"}
        model = self._load_file(file, config)
        if not hasattr(model, "predict"):
            raise InvalidInputError(
                f"{file.name} holds a {type(model).__name__}, which has no predict()",
                hint="register a fitted scikit-learn estimator or pipeline",
            )
        config["estimator"] = f"{type(model).__module__}.{type(model).__qualname__}"
        config["prediction_from_proba"] = type(_final_estimator(model)).__name__ in ARGMAX_PREDICT and hasattr(
            model, "classes_"
        )
        return config

    def load(self, weights: Path, code: Path | None, config: dict[str, Any]) -> SklearnPredictor:
        require("sklearn", "the sklearn flavor", "sklearn")
        file = weights if weights.is_file() else weights / config["file"]
        return SklearnPredictor(
            self._load_file(file, config), prediction_from_proba=bool(config.get("prediction_from_proba"))
        )

    @staticmethod
    def _load_file(file: Path, config: dict[str, Any]) -> Any:
        try:
            if config["format"] == "skops":
                sio = require("skops.io", "loading .skops files", "sklearn")
                return sio.load(file, trusted=list(config.get("trusted_types", [])))
            if file.suffix.lower() == ".joblib":
                joblib = require("joblib", "loading .joblib files", "sklearn")
                return joblib.load(file)
            with open(file, "rb") as f:
                return pickle.load(f)
        except InvalidInputError:
            raise
        except Exception as e:
            raise InvalidInputError(
                f"cannot load {file.name} as a scikit-learn model: {type(e).__name__}: {e}",
                hint="check --flavor and that the file was written by skops, pickle or joblib",
            ) from None


register_flavor(SklearnFlavor())
