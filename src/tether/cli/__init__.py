"""The ``tether`` command line: a thin face over the domain packages."""

from tether.cli.app import app, main

__all__ = ["app", "main"]
