"""Imports every model file so that its builders register themselves (one line per family)."""
from . import qkformer, sdt_v1, spikformer, toy  # noqa: F401
