"""The ``onnx`` flavor: any ONNX model, run with onnxruntime on the CPU.

Inputs are fed either as one 2-D tensor of all input columns (the usual skl2onnx export) or, when the
graph has one input per column, column by column. Outputs become DataFrame columns: 1-D tensors by name,
``[N, k]`` tensors as ``<name>_<i>``, a binary ``probabilities`` tensor also as ``probability``, and
skl2onnx's sequence-of-maps probabilities as ``probability_<class>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tether.core.errors import InvalidInputError
from tether.registry.flavors.base import register_flavor, require, single_model_file

_NP_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(string)": np.object_,
    "tensor(bool)": np.bool_,
}


class OnnxPredictor:
    def __init__(self, session: Any) -> None:
        self.session = session
        self.inputs = session.get_inputs()
        self.output_names = [o.name for o in session.get_outputs()]

    def _feeds(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        if len(self.inputs) == 1:
            spec = self.inputs[0]
            dtype = _NP_TYPES.get(spec.type, np.float32)
            return {spec.name: frame.to_numpy().astype(dtype)}
        feeds = {}
        for spec in self.inputs:
            if spec.name not in frame.columns:
                raise InvalidInputError(f"the ONNX graph expects an input {spec.name!r} that the data lacks")
            dtype = _NP_TYPES.get(spec.type, np.float32)
            col = frame[spec.name].to_numpy()
            feeds[spec.name] = (col.astype(str) if dtype is np.object_ else col.astype(dtype)).reshape(-1, 1)
        return feeds

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        results = self.session.run(None, self._feeds(frame))
        out: dict[str, Any] = {}
        for name, value in zip(self.output_names, results, strict=True):
            if isinstance(value, list) and value and isinstance(value[0], dict):
                for key in value[0]:
                    out[f"probability_{key}"] = np.array([row[key] for row in value])
                continue
            arr = np.asarray(value)
            if arr.ndim == 1 or (arr.ndim == 2 and arr.shape[1] == 1):
                out["prediction" if name in ("label", "output_label", "variable") else name] = arr.reshape(-1)
            elif arr.ndim == 2:
                if "prob" in name and arr.shape[1] == 2:
                    out["probability"] = arr[:, 1]
                else:
                    for i in range(arr.shape[1]):
                        out[f"{name}_{i}"] = arr[:, i]
        return pd.DataFrame(out)


class OnnxFlavor:
    name = "onnx"
    extra = "onnx"

    def configure(self, weights: Path, code: Path | None, options: dict[str, Any]) -> dict[str, Any]:
        file = single_model_file(weights, (".onnx",), self.name)
        session = self._session(file)
        return {
            "file": file.name if weights.is_file() else file.relative_to(weights).as_posix(),
            "inputs": [{"name": i.name, "type": i.type} for i in session.get_inputs()],
            "outputs": [o.name for o in session.get_outputs()],
        }

    def load(self, weights: Path, code: Path | None, config: dict[str, Any]) -> OnnxPredictor:
        file = weights if weights.is_file() else weights / config["file"]
        return OnnxPredictor(self._session(file))

    @staticmethod
    def _session(file: Path) -> Any:
        ort = require("onnxruntime", "the onnx flavor", "onnx")
        try:
            return ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
        except Exception as e:
            raise InvalidInputError(
                f"onnxruntime cannot load {file.name}: {str(e).splitlines()[0]}",
                hint="check --flavor and that the file is a valid ONNX model",
            ) from None


register_flavor(OnnxFlavor())
