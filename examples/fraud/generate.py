"""Seeded synthetic card transactions for the fraud example.

Columns: amount, merchant_category, country, hour, device_age_days, customer_age, gender (a protected
attribute, kept for fairness checks) and the label is_fraud (about 2% positives). Fraud is more likely for
large amounts, night hours, new devices, some merchant categories and some countries.

    python generate.py --rows 50000 --seed 7 --out data/transactions.parquet
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

COUNTRIES = ["US", "GB", "DE", "FR", "BR", "IN", "NG", "MX"]
COUNTRY_P = [0.34, 0.14, 0.12, 0.1, 0.1, 0.1, 0.05, 0.05]
COUNTRY_RISK = {"US": 0.0, "GB": -0.1, "DE": -0.3, "FR": -0.2, "BR": 0.5, "IN": 0.3, "NG": 0.9, "MX": 0.4}
CATEGORIES = ["grocery", "electronics", "travel", "fashion", "gaming", "fuel", "restaurants", "digital_goods"]
CATEGORY_P = [0.25, 0.1, 0.08, 0.12, 0.07, 0.15, 0.15, 0.08]
CATEGORY_RISK = {
    "grocery": -0.8,
    "electronics": 0.9,
    "travel": 0.5,
    "fashion": 0.1,
    "gaming": 0.8,
    "fuel": -0.5,
    "restaurants": -0.6,
    "digital_goods": 1.1,
}
FRAUD_RATE = 0.02


def generate(rows: int, seed: int, fraud_rate: float = FRAUD_RATE) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    country = rng.choice(COUNTRIES, size=rows, p=COUNTRY_P)
    category = rng.choice(CATEGORIES, size=rows, p=CATEGORY_P)
    hour_weights = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 4, 4, 4, 5, 5, 4, 4, 4, 5, 5, 5, 4, 3, 2, 1.5])
    hour = rng.choice(24, size=rows, p=hour_weights / hour_weights.sum())
    amount = np.round(rng.lognormal(mean=3.6, sigma=1.0, size=rows), 2)
    device_age_days = np.floor(rng.exponential(scale=300, size=rows)).astype(np.int64)
    customer_age = np.clip(np.round(rng.normal(42, 14, size=rows)), 18, 90).astype(np.int64)
    gender = rng.choice(["F", "M"], size=rows)

    score = (
        1.3 * np.log(amount / 40)
        + 1.8 * ((hour <= 4) | (hour >= 23))
        + 2.2 * (device_age_days < 7)
        + np.vectorize(CATEGORY_RISK.get)(category)
        + np.vectorize(COUNTRY_RISK.get)(country)
        - 0.015 * (customer_age - 42)
    )
    # Choose the intercept by bisection so the expected fraud rate is exactly `fraud_rate`.
    lo, hi = -20.0, 5.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if (1 / (1 + np.exp(-(score + mid)))).mean() > fraud_rate:
            hi = mid
        else:
            lo = mid
    p = 1 / (1 + np.exp(-(score + lo)))
    is_fraud = (rng.random(rows) < p).astype(np.int64)
    return pd.DataFrame(
        {
            "amount": amount,
            "merchant_category": category,
            "country": country,
            "hour": hour.astype(np.int64),
            "device_age_days": device_age_days,
            "customer_age": customer_age,
            "gender": gender,
            "is_fraud": is_fraud,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--fraud-rate", type=float, default=FRAUD_RATE)
    parser.add_argument("--out", type=Path, default=Path("data/transactions.parquet"))
    args = parser.parse_args()
    frame = generate(args.rows, args.seed, args.fraud_rate)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(args.out, index=False, compression="zstd")
    print(f"wrote {len(frame)} transactions ({frame.is_fraud.mean():.2%} fraud) to {args.out}")


if __name__ == "__main__":
    main()
