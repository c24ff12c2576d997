"""The process faces: `tether serve` assembles the gateway, the instances and the rollout controller.

This is the composition root: it sits above `tether.serving` and `tether.rollout` so that neither imports the
other's decisions.
"""

from tether.api.server import Server
from tether.rollout.progress import status_of

__all__ = ["Server", "status_of"]
