"""Imports every model file so that its builders register themselves (one line per family)."""
from . import (
    ms_resnet,  # noqa: F401
    toy,  # noqa: F401
    vgg,  # noqa: F401
)
