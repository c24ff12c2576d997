"""Train the fraud model: one-hot categories + gradient-boosted trees, evaluated on a seeded hold-out.

    python train.py --data data/transactions.parquet --weights model/model.pkl --metrics metrics.json

The weights are written with pickle (protocol 5), which is byte-for-byte reproducible for a seeded fit on
the same library versions, so `tether reproduce --retrain` can confirm the exact weights digest. tether loads
the pickle only after verifying that digest (see tether.registry.flavors.sklearn).
"""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

CATEGORICAL = ["merchant_category", "country"]
NUMERIC = ["amount", "hour", "device_age_days", "customer_age"]
FEATURES = NUMERIC + CATEGORICAL
LABEL = "is_fraud"


def build(seed: int, max_iter: int, learning_rate: float) -> Pipeline:
    encode = ColumnTransformer(
        [("categories", OneHotEncoder(handle_unknown="ignore", sparse_output=False), CATEGORICAL)],
        remainder="passthrough",
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")
    # A larger amount never makes a transaction look less suspicious: the gate's directional edge case checks it.
    trees = HistGradientBoostingClassifier(
        max_iter=max_iter,
        learning_rate=learning_rate,
        random_state=seed,
        early_stopping=False,
        monotonic_cst={"amount": 1},
    )
    return Pipeline([("encode", encode), ("trees", trees)])


def evaluate(model: Pipeline, x: pd.DataFrame, y: pd.Series, threshold: float) -> dict[str, float]:
    score = model.predict_proba(x)[:, 1]
    flagged = score >= threshold
    negatives = max(int((y == 0).sum()), 1)
    positives = max(int((y == 1).sum()), 1)
    return {
        "auc": round(float(roc_auc_score(y, score)), 6),
        "average_precision": round(float(average_precision_score(y, score)), 6),
        "false_positive_rate": round(float((flagged & (y == 0)).sum() / negatives), 6),
        "recall": round(float((flagged & (y == 1)).sum() / positives), 6),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--metrics", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-iter", type=int, default=150)
    parser.add_argument("--learning-rate", type=float, default=0.08)
    parser.add_argument("--threshold", type=float, default=0.1)
    parser.add_argument(
        "--label-noise",
        metavar="COUNTRY:RATE",
        help="simulate a labelling bug: mark RATE of one country's legitimate training rows as fraud",
    )
    args = parser.parse_args()

    frame = pd.read_parquet(args.data)
    x_train, x_test, y_train, y_test = train_test_split(
        frame[FEATURES], frame[LABEL], test_size=0.25, random_state=args.seed, stratify=frame[LABEL]
    )
    if args.label_noise:
        country, rate = args.label_noise.split(":")
        legit = np.flatnonzero((x_train["country"] == country).to_numpy() & (y_train == 0).to_numpy())
        flip = np.random.default_rng(args.seed).choice(legit, size=int(len(legit) * float(rate)), replace=False)
        y_train = y_train.copy()
        y_train.iloc[flip] = 1
    model = build(args.seed, args.max_iter, args.learning_rate).fit(x_train, y_train)
    metrics = evaluate(model, x_test, y_test, args.threshold)

    args.weights.parent.mkdir(parents=True, exist_ok=True)
    with open(args.weights, "wb") as f:
        pickle.dump(model, f, protocol=5)
    args.metrics.parent.mkdir(parents=True, exist_ok=True)
    args.metrics.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    print(f"trained on {len(x_train)} rows; hold-out {json.dumps(metrics)}")


if __name__ == "__main__":
    main()
