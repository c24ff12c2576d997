"""The triad registry: every model version locked to its code, data and weights."""

from tether.registry.aliases import AliasEvent
from tether.registry.code import CodeRef
from tether.registry.data import DataSnapshot
from tether.registry.environment import environment_lock
from tether.registry.flavors import Flavor, LoadedModel, Predictor, flavor_names, get_flavor, register_flavor
from tether.registry.registry import Registry
from tether.registry.reproduce import ReproduceReport
from tether.registry.version import ModelVersion
from tether.registry.weights import WeightsArtifact

__all__ = [
    "AliasEvent",
    "CodeRef",
    "DataSnapshot",
    "Flavor",
    "LoadedModel",
    "ModelVersion",
    "Predictor",
    "Registry",
    "ReproduceReport",
    "WeightsArtifact",
    "environment_lock",
    "flavor_names",
    "get_flavor",
    "register_flavor",
]
