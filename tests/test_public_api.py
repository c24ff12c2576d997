"""Each package's __all__ lists exactly its public names (httpx's habit)."""

import importlib
import types

import pytest

PACKAGES = [
    "tether",
    "tether.core",
    "tether.store",
    "tether.registry",
    "tether.registry.flavors",
    "tether.gate",
    "tether.monitor",
    "tether.serving",
    "tether.rollout",
    "tether.api",
    "tether.cli",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_complete_and_exact(name):
    module = importlib.import_module(name)
    public = {k for k, v in vars(module).items() if not k.startswith("_") and not isinstance(v, types.ModuleType)}
    lazy = getattr(module, "_WHERE", None)  # names a package loads on first use (PEP 562), not at import
    if lazy is not None:
        public = (public - {"TYPE_CHECKING", "Any", "annotations", "importlib"}) | set(lazy)
    assert sorted(module.__all__) == sorted(public | {k for k in module.__all__ if k.startswith("__")})
    for k in module.__all__:
        assert hasattr(module, k), f"{name}.{k} is listed but missing"
