"""Imports every model file so that its builders register themselves (one line per family)."""
from . import meta_spikeformer  # noqa: F401, I001
from . import ms_resnet  # noqa: F401
from . import sdt_v3  # noqa: F401
from . import toy  # noqa: F401
from . import vgg  # noqa: F401
