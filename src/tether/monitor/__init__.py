"""Drift watch: mergeable feature profiles and drift detectors (anomaly records and actions come next)."""

from tether.monitor.detectors import (
    Cusum,
    Finding,
    categorical_test,
    cusum_threshold,
    ks_sketch_test,
    mean_shift_test,
    missing_test,
    psi,
)
from tether.monitor.profile import CategoricalProfile, DatasetProfile, NumericProfile

__all__ = [
    "CategoricalProfile",
    "Cusum",
    "DatasetProfile",
    "Finding",
    "NumericProfile",
    "categorical_test",
    "cusum_threshold",
    "ks_sketch_test",
    "mean_shift_test",
    "missing_test",
    "psi",
]
