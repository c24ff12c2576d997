"""A fleet of tiny scikit-learn models, as a platform team with one model per team would register them.

Every model is a logistic regression over four features, trained on its own resample of one small dataset (so
each version has weights of its own), registered from one committed git project. `bench/fleet.py` and the pool's
tests build their fleets with it.
"""

from __future__ import annotations

import pickle
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tests.conftest import GIT_ENV
from tether.registry import Registry
from tether.registry.version import ModelVersion

FEATURES = ("amount", "age", "hour", "score")

TRAIN = '''"""Train a tiny model: python train.py SEED DATA WEIGHTS"""
import pickle, sys
import numpy as np, pandas as pd
from sklearn.linear_model import LogisticRegression

seed, data, weights = int(sys.argv[1]), sys.argv[2], sys.argv[3]
frame = pd.read_parquet(data)
rows = np.random.default_rng(seed).choice(len(frame), size=len(frame))
x, y = frame.drop(columns=["label"]).iloc[rows], frame["label"].iloc[rows]
model = LogisticRegression(C=1.0 + seed % 7, max_iter=200).fit(x, y)
with open(weights, "wb") as f:
    pickle.dump(model, f)
'''


def dataset(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "amount": rng.gamma(2.0, 40.0, rows),
            "age": rng.integers(18, 90, rows).astype(float),
            "hour": rng.integers(0, 24, rows).astype(float),
            "score": rng.normal(0, 1, rows),
        }
    )
    logit = 0.01 * frame["amount"] - 0.02 * frame["age"] + frame["score"]
    frame["label"] = (logit + rng.normal(0, 1, rows) > 0).astype(int)
    return frame


def records(n: int = 50, seed: int = 1) -> list[dict[str, Any]]:
    """Inputs the fleet's models accept."""
    return dataset(n, seed).drop(columns=["label"]).to_dict("records")  # type: ignore[no-any-return]


def make_repo(root: Path) -> Path:
    """A committed git project holding the training script and the shared dataset."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.py").write_text(TRAIN)
    (root / ".gitignore").write_text("weights/\n")
    dataset().to_parquet(root / "data.parquet", index=False)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "the fleet"]):
        subprocess.run(["git", *args], cwd=root, env={**GIT_ENV, "PATH": "/usr/bin:/bin"}, check=True)
    return root


_BASE: dict[Path, Any] = {}


def train(root: Path, seed: int) -> Path:
    """Weights for one version: the project's base model with its coefficients nudged by the seed (a thousand
    fits of a real model would make the fleet's set-up the benchmark)."""
    import copy

    from sklearn.linear_model import LogisticRegression

    base = _BASE.get(root)
    if base is None:
        frame = pd.read_parquet(root / "data.parquet")
        base = _BASE[root] = LogisticRegression(max_iter=200).fit(frame.drop(columns=["label"]), frame["label"])
    model = copy.deepcopy(base)
    model.coef_ = base.coef_ * (1 + 0.1 * np.random.default_rng(seed).normal(size=base.coef_.shape))
    out = root / "weights" / f"{seed}.pkl"
    out.parent.mkdir(exist_ok=True)
    out.write_bytes(pickle.dumps(model))
    return out


def register(reg: Registry, root: Path, name: str, seed: int) -> ModelVersion:
    return reg.register(
        name,
        code=root,
        data=root / "data.parquet",
        weights=train(root, seed),
        flavor="sklearn",
        target="label",
        train_command="{python} train.py " + str(seed) + " {data} {weights}",
    )


def register_fleet(
    reg: Registry, root: Path, models: int, versions: int = 1, *, prefix: str = "team"
) -> Iterator[ModelVersion]:
    """``models`` models of ``versions`` versions each (named ``team-0000`` ...), yielded as registered."""
    for v in range(versions):
        for m in range(models):
            yield register(reg, root, f"{prefix}-{m:04d}", m * 1000 + v)
