"""tether: lifecycle governance for machine-learning and LLM systems.

The public Python API lives in the layer packages (`tether.core`, `tether.store`, `tether.registry`);
the most used names are re-exported here.
"""

from tether.core import Settings, TetherError
from tether.registry import Registry

__version__ = "0.1.0"

__all__ = ["Registry", "Settings", "TetherError", "__version__"]
