"""One contract over every built-in flavor: register, load through verification, predict like the native model."""

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import git
from tether.core import InvalidInputError
from tether.registry import flavor_names, get_flavor, register_flavor

NUMERIC = ["amount", "hour", "device_age_days", "customer_age"]


@dataclass
class Case:
    flavor: str
    weights: Path
    data: Path
    options: dict
    expected: np.ndarray  # what the native model says on the first rows
    column: str


def _numeric_data(project, tmp_path):
    frame = pd.read_parquet(project.data)[[*NUMERIC, "is_fraud"]]
    path = tmp_path / "numeric.parquet"
    frame.to_parquet(path, index=False)
    return frame, path


def _sklearn_skops(project, tmp_path):
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    frame, path = _numeric_data(project, tmp_path)
    model = LogisticRegression(max_iter=500).fit(frame[NUMERIC], frame.is_fraud)
    weights = tmp_path / "model.skops"
    sio.dump(model, weights)
    return Case("sklearn", weights, path, {}, model.predict_proba(frame[NUMERIC].head(50))[:, 1], "probability")


def _sklearn_pickle(project, tmp_path):
    from sklearn.linear_model import Ridge

    frame, path = _numeric_data(project, tmp_path)
    model = Ridge().fit(frame[NUMERIC], frame.amount * 2)
    weights = tmp_path / "weights" / "ridge.pkl"
    weights.parent.mkdir()
    weights.write_bytes(pickle.dumps(model))
    return Case("sklearn", weights.parent, path, {}, model.predict(frame[NUMERIC].head(50)), "prediction")


def _onnx(project, tmp_path):
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    frame, path = _numeric_data(project, tmp_path)
    x = frame[NUMERIC].astype(np.float32)
    model = LogisticRegression(max_iter=500).fit(x, frame.is_fraud)
    onx = to_onnx(model, x.to_numpy()[:1], options={id(model): {"zipmap": False}})
    weights = tmp_path / "model.onnx"
    weights.write_bytes(onx.SerializeToString())
    return Case("onnx", weights, path, {}, model.predict_proba(x.head(50))[:, 1], "probability")


def _python(project, tmp_path):
    (project.root / "scorer.py").write_text(
        "import json, pathlib\n"
        "class Scorer:\n"
        "    def __init__(self, w): self.w = w\n"
        "    def predict(self, frame):\n"
        "        return {'score': frame['amount'] * self.w['scale'] + self.w['bias']}\n"
        "def load(path):\n"
        "    return Scorer(json.loads(pathlib.Path(path).read_text()))\n"
    )
    git(project.root, "add", "scorer.py")
    git(project.root, "commit", "-qm", "scorer")
    weights = tmp_path / "scorer.json"
    weights.write_text('{"scale": 0.5, "bias": 1.0}')
    frame, path = _numeric_data(project, tmp_path)
    return Case("python", weights, path, {"entry_point": "scorer:load"}, frame.amount.head(50) * 0.5 + 1.0, "score")


CASES = {"sklearn-skops": _sklearn_skops, "sklearn-pickle": _sklearn_pickle, "onnx": _onnx, "python": _python}


@pytest.mark.parametrize("case_name", CASES)
def test_flavor_contract(registry, project, tmp_path, case_name):
    case = CASES[case_name](project, tmp_path)
    v = registry.register(
        "m",
        code=project.root,
        data=case.data,
        weights=case.weights,
        flavor=case.flavor,
        target="is_fraud",
        flavor_options=case.options,
    )
    again = registry.register(
        "m",
        code=project.root,
        data=case.data,
        weights=case.weights,
        flavor=case.flavor,
        target="is_fraud",
        flavor_options=case.options,
    )
    assert again.id == v.id  # deterministic configure()
    assert case.column in [f["name"] for f in v.output_schema["fields"]]
    model = registry.load("m/1")
    out = model.predict(pd.read_parquet(case.data).head(50))
    np.testing.assert_allclose(out[case.column].to_numpy(), np.asarray(case.expected), rtol=1e-4)
    model.close()


def test_skops_records_exactly_the_types_it_trusts(registry, project, tmp_path):
    case = _sklearn_skops(project, tmp_path)
    v = registry.register(
        "m", code=project.root, data=case.data, weights=case.weights, flavor="sklearn", target="is_fraud"
    )
    assert v.flavor_config["format"] == "skops"
    assert isinstance(v.flavor_config["trusted_types"], list)


def test_skops_refuses_types_outside_the_scientific_stack(project, tmp_path):
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    weights = tmp_path / "model.skops"
    sio.dump(FunctionTransformer(func=Path), weights)
    with pytest.raises(InvalidInputError, match="needs types outside scikit-learn"):
        get_flavor("sklearn").configure(weights, None, {})


def test_python_flavor_needs_an_entry_point(registry, project, tmp_path):
    case = _python(project, tmp_path)
    with pytest.raises(InvalidInputError, match="entry point 'module:function'"):
        registry.register(
            "m", code=project.root, data=case.data, weights=case.weights, flavor="python", target="is_fraud"
        )
    with pytest.raises(InvalidInputError, match="cannot import 'nosuch'"):
        registry.register(
            "m",
            code=project.root,
            data=case.data,
            weights=case.weights,
            flavor="python",
            target="is_fraud",
            flavor_options={"entry_point": "nosuch:load"},
        )


def test_wrong_file_for_a_flavor(registry, project, tmp_path):
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"not onnx at all")
    with pytest.raises(InvalidInputError, match="onnxruntime cannot load model.onnx"):
        get_flavor("onnx").configure(bogus, None, {})
    garbage = tmp_path / "model.pkl"
    garbage.write_bytes(b"\x80\x05garbage")
    with pytest.raises(InvalidInputError, match="cannot load model.pkl as a scikit-learn model"):
        get_flavor("sklearn").configure(garbage, None, {})


def test_third_party_flavors_use_the_same_registry():
    class Echo:
        name = "echo-test"
        extra = None

        def configure(self, weights, code, options):
            return {}

        def load(self, weights, code, config):
            return lambda frame: frame

    register_flavor(Echo())
    assert "echo-test" in flavor_names() and get_flavor("echo-test").name == "echo-test"


def test_one_proba_pass_gives_the_same_predictions_as_predict(registry, project):
    v = project.register(registry)
    assert v.flavor_config["prediction_from_proba"] is True  # a HistGradientBoosting pipeline
    frame = pd.read_parquet(project.data)
    native = pickle.loads(project.weights.read_bytes())
    model = registry.load(v.ref)
    np.testing.assert_array_equal(model.predict(frame)["prediction"].to_numpy(), native.predict(frame))
    np.testing.assert_allclose(model.predict(frame)["probability"].to_numpy(), native.predict_proba(frame)[:, 1])
    model.close()
