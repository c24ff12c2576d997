"""Model flavors: how a weights artifact becomes something that predicts. Built-ins: sklearn, onnx, python."""

from tether.registry.flavors import onnx as _onnx
from tether.registry.flavors import python as _python
from tether.registry.flavors import sklearn as _sklearn
from tether.registry.flavors.base import (
    Flavor,
    LoadedModel,
    Predictor,
    flavor_names,
    get_flavor,
    register_flavor,
)

del _onnx, _python, _sklearn

__all__ = ["Flavor", "LoadedModel", "Predictor", "flavor_names", "get_flavor", "register_flavor"]
