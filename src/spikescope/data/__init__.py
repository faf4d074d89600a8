"""Event-file readers, frame integration and caching, event/static datasets and synthetic event data."""
from .augment import FlipTranslate
from .cache import FrameCache
from .datasets import (
    CIFAR10DVS,
    CIFAR10DVS_CLASSES,
    GESTURE_CLASSES,
    DatasetNotFoundError,
    DVS128Gesture,
    EventFrameDataset,
    NCaltech101,
)
from .events import EVENT_DTYPE, EventFileError, load_events, make_events
from .frames import frame_bounds, integrate_frames
from .synthetic import SyntheticConfig, write_synthetic_dataset

__all__ = [
    "EVENT_DTYPE",
    "CIFAR10DVS",
    "CIFAR10DVS_CLASSES",
    "GESTURE_CLASSES",
    "DVS128Gesture",
    "DatasetNotFoundError",
    "EventFileError",
    "EventFrameDataset",
    "FlipTranslate",
    "FrameCache",
    "NCaltech101",
    "SyntheticConfig",
    "frame_bounds",
    "integrate_frames",
    "load_events",
    "make_events",
    "write_synthetic_dataset",
]
