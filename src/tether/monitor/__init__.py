"""Drift watch: mergeable feature profiles, drift detectors, baselines, the live profiler and the watch."""

from tether.monitor.detectors import (
    Cusum,
    Finding,
    SliceCusum,
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
    "SliceCusum",
    "categorical_test",
    "cusum_threshold",
    "ks_sketch_test",
    "mean_shift_test",
    "missing_test",
    "psi",
]
