"""A fraud model that answers like another version but more slowly (``python`` flavor entry point).

The demo uses it to show a latency regression that offline evaluation cannot see: its predictions are the
wrapped pipeline's exactly, so it passes the gate, and the rollout's p99 guardrail rolls it back.

Weights: a folder with ``model.pkl`` (a pickled scikit-learn pipeline) and ``delay.json`` (``{"seconds": 0.05}``).
"""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path

import pandas as pd


class Delayed:
    def __init__(self, model, seconds: float) -> None:
        self.model = model
        self.seconds = seconds

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        time.sleep(self.seconds)
        proba = self.model.predict_proba(frame)[:, 1]
        return pd.DataFrame({"prediction": (proba >= 0.5).astype(int), "probability": proba})


def load(path: Path) -> Delayed:
    path = Path(path)
    with open(path / "model.pkl", "rb") as f:
        model = pickle.load(f)
    return Delayed(model, json.loads((path / "delay.json").read_text())["seconds"])
