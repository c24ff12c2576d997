"""Drift watch: mergeable feature profiles (more to come: detectors, anomalies, actions)."""

from tether.monitor.profile import CategoricalProfile, DatasetProfile, NumericProfile

__all__ = ["CategoricalProfile", "DatasetProfile", "NumericProfile"]
