"""Imports every model file so that its builders register themselves (one line per family)."""
from . import toy  # noqa: F401
