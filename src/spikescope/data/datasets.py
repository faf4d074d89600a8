"""DVS128 Gesture, CIFAR10-DVS and N-Caltech101 from files the user downloads, as ``[T, 2, H, W]`` frame datasets.

Nothing is downloaded: a missing dataset raises :class:`DatasetNotFoundError` saying where to get the files and
where to put them. An archive left in ``root`` is checked against its published md5 and extracted. Frames are
integrated with :func:`~spikescope.data.frames.integrate_frames` and cached on first use
(:class:`~spikescope.data.cache.FrameCache`, under ``root/frames_cache`` unless ``cache_dir`` says otherwise).
Splits (sma.md §7): DVS128 Gesture uses the official trial lists; CIFAR10-DVS and N-Caltech101 take, per class,
the sorted file names shuffled by ``random.Random(seed)`` (classes in sorted order, one generator) and put the first
``int(0.9·n)`` in train.
"""
from __future__ import annotations

import functools
import hashlib
import os
import random
import shutil
import tarfile
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .aedat31 import read_gesture_labels
from .cache import FrameCache, source_identity
from .events import EventFileError, load_events
from .frames import SplitBy, integrate_frames

__all__ = [
    "DatasetNotFoundError",
    "EventFrameDataset",
    "DVS128Gesture",
    "GESTURE_CLASSES",
    "CIFAR10DVS_CLASSES",
    "CIFAR10DVS",
    "NCaltech101",
    "split_per_class",
    "check_md5",
]

GESTURE_MD5 = {"DvsGesture.tar.gz": "8a5c71fb11e24e5ca5b11866ca6c00a1"}
NCALTECH_MD5 = {"Caltech101.zip": "66201824eabb0239c7ab992480b50ba3"}
CIFAR10DVS_MD5 = {
    "airplane.zip": "0afd5c4bf9ae06af762a77b180354fdd",
    "automobile.zip": "8438dfeba3bc970c94962d995b1b9bdd",
    "bird.zip": "a9c207c91c55b9dc2002dc21c684d785",
    "cat.zip": "52c63c677c2b15fa5146a8daf4d56687",
    "deer.zip": "b6bf21f6c04d21ba4e23fc3e36c8a4a3",
    "dog.zip": "f379ebdf6703d16e0a690782e62639c3",
    "frog.zip": "cad6ed91214b1c7388a5f6ee56d08803",
    "horse.zip": "e7cbbf77bec584ffbf913f00e682782a",
    "ship.zip": "41c7bd7d6b251be82557c6cce9a7d5c9",
    "truck.zip": "89f3922fd147d9aeff89e76a2b0b70a7",
}


#: DVS128 Gesture's published classes; label ``i`` is row class ``i + 1`` of the ``*_labels.csv`` files
GESTURE_CLASSES = (
    "hand_clapping", "right_hand_wave", "left_hand_wave", "right_arm_clockwise", "right_arm_counter_clockwise",
    "left_arm_clockwise", "left_arm_counter_clockwise", "arm_roll", "air_drums", "air_guitar", "other_gestures",
)
#: CIFAR10-DVS's published classes (CIFAR-10's order); label = index, whatever folders are present
CIFAR10DVS_CLASSES = tuple(name.removesuffix(".zip") for name in CIFAR10DVS_MD5)


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are not where they should be; the message says how to get them."""


def check_md5(path: Path, expected: str) -> None:
    """Raise ``ValueError`` if the md5 of ``path`` is not ``expected`` (a corrupt or partial download)."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise ValueError(
            f"{path}: md5 {digest.hexdigest()} differs from the published {expected}; the download is corrupt or "
            "incomplete, download it again"
        )


def _extracted_marker(archive: Path) -> Path:
    return archive.with_name(f".{archive.name}.extracted")


def _extract(archive: Path, dest: Path, md5: str) -> None:
    """md5-check ``archive`` and extract it into ``dest``, all or nothing (no-op once done).

    Members go to a temporary folder in ``dest`` first; only a complete extraction moves its top-level entries into
    ``dest`` (replacing entries of the same name, e.g. those of an earlier interrupted run) and writes the marker
    ``.<archive name>.extracted``. An interrupted extraction therefore never leaves a partial class folder that a
    later run would silently train on: the next run extracts again.
    """
    marker = _extracted_marker(archive)
    if marker.is_file():
        return
    check_md5(archive, md5)
    tmp = Path(tempfile.mkdtemp(prefix=f".{archive.name}.", suffix=".tmp", dir=dest))
    try:
        if archive.suffix == ".zip":
            with zipfile.ZipFile(archive) as zf:
                for member in tqdm(zf.infolist(), desc=f"extracting {archive.name}", unit="file", leave=False):
                    zf.extract(member, tmp)
        else:
            with tarfile.open(archive) as tf:
                for member in tqdm(tf, desc=f"extracting {archive.name}", unit="file", leave=False):
                    tf.extract(member, tmp, filter="data")
        for entry in tmp.iterdir():
            target = dest / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(entry, target)
        marker.touch()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def split_per_class(files: dict[int, list[Path]], seed: int, train_fraction: float = 0.9):
    """``(train, test)`` lists of ``(path, label)``: per class (sorted labels), sorted names shuffled by one seeded
    ``random.Random``, the first ``int(train_fraction·n)`` in train."""
    rng = random.Random(seed)
    train, test = [], []
    for label in sorted(files):
        names = sorted(files[label])
        rng.shuffle(names)
        cut = int(train_fraction * len(names))
        train += [(p, label) for p in names[:cut]]
        test += [(p, label) for p in names[cut:]]
    return train, test


@functools.lru_cache(maxsize=2)
def _cached_events(path: str, size: int, mtime_ns: int) -> np.ndarray:
    return load_events(path)


class EventFrameDataset(Dataset):
    """Samples ``(source file, (t_start, t_end) or None, label)`` served as ``(float32 [T, 2, H, W], label)``."""

    def __init__(
        self,
        samples: list[tuple[Path, tuple[int, int] | None, int]],
        classes: list[str],
        sensor_size: tuple[int, int],
        num_frames: int,
        split_by: SplitBy = "number",
        resize: tuple[int, int] | None = None,
        cache_dir: str | os.PathLike | None = None,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.samples = samples
        self.classes = classes
        self.sensor_size = tuple(sensor_size)
        self.num_frames = num_frames
        self.split_by = split_by
        self.resize = tuple(resize) if resize is not None else None
        self.cache = FrameCache(cache_dir) if cache_dir is not None else None
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def targets(self) -> list[int]:
        return [label for _, _, label in self.samples]

    def events(self, index: int) -> np.ndarray:
        """The raw events of sample ``index`` (its time segment for DVS128 Gesture)."""
        path, segment, _ = self.samples[index]
        ident = source_identity(path)
        ev = _cached_events(str(path), ident["size"], ident["mtime_ns"])
        if segment is not None:
            ev = ev[(ev["t"] >= segment[0]) & (ev["t"] < segment[1])]
        return ev

    def frames(self, index: int) -> np.ndarray:
        """Frames ``float32 [T, 2, H, W]`` of sample ``index`` (from the cache when present)."""
        h, w = self.sensor_size

        def build() -> np.ndarray:
            events = self.events(index)
            try:
                return integrate_frames(events, self.num_frames, h, w, self.split_by, self.resize)
            except ValueError as err:
                raise EventFileError(f"{self.samples[index][0]}: {err} (set data.sensor_size: [H, W], or "
                                     "sensor_size=(H, W), to the sensor this file was recorded with)") from None

        if self.cache is None:
            return build()
        path, segment, _ = self.samples[index]
        key = {
            "source": source_identity(path),
            "segment": segment,
            "num_frames": self.num_frames,
            "split_by": self.split_by,
            "sensor_size": self.sensor_size,
            "resize": self.resize,
        }
        return self.cache.get(key, build)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(self.frames(index))
        if self.transform is not None:
            x = self.transform(x)
        return x, self.samples[index][2]


def _cache_dir(root: Path, cache_dir) -> Path | None:
    if cache_dir is False:
        return None
    return Path(cache_dir) if cache_dir not in (None, True) else root / "frames_cache"


class DVS128Gesture(EventFrameDataset):
    """IBM DVS128 Gesture (11 classes, 128x128): one sample per row of each trial's ``*_labels.csv``.

    ``root`` holds the extracted ``DvsGesture`` folder (or is it): the ``userXX_<lighting>.aedat`` files, their
    ``*_labels.csv`` and ``trials_to_train.txt`` / ``trials_to_test.txt``.
    """

    HELP = (
        "download DvsGesture.tar.gz (md5 8a5c71fb11e24e5ca5b11866ca6c00a1) from "
        "https://research.ibm.com/interactive/dvsgesture/ (IBM Box link, free registration) and either extract it "
        "into {root} (giving {root}/DvsGesture/trials_to_train.txt) or put the archive itself in {root}"
    )

    def __init__(self, root, train: bool = True, num_frames: int = 16, split_by: SplitBy = "number",
                 resize=None, cache_dir=None, transform=None, sensor_size=(128, 128),
                 classes: tuple[str, ...] | list[str] = GESTURE_CLASSES) -> None:
        root = Path(root)
        folder = self._locate(root)
        trials = (folder / ("trials_to_train.txt" if train else "trials_to_test.txt")).read_text().split()
        samples = []
        for name in trials:
            aedat = folder / name
            labels = folder / name.replace(".aedat", "_labels.csv")
            if not aedat.is_file() or not labels.is_file():
                raise DatasetNotFoundError(f"{aedat} or {labels} is missing; the extraction is incomplete")
            for cls, start, end in read_gesture_labels(labels):
                if not 1 <= cls <= len(classes):
                    raise EventFileError(f"{labels}: class {cls} is outside 1..{len(classes)} (the dataset's "
                                         f"{len(classes)} classes); fix the row or pass classes= with every class")
                samples.append((aedat, (int(start), int(end)), int(cls) - 1))
        super().__init__(samples, list(classes), sensor_size, num_frames, split_by, resize,
                         _cache_dir(root, cache_dir), transform)

    def _locate(self, root: Path) -> Path:
        archive = root / "DvsGesture.tar.gz"
        if archive.is_file():
            _extract(archive, root, GESTURE_MD5[archive.name])
        for folder in (root, root / "DvsGesture"):
            if (folder / "trials_to_train.txt").is_file():
                return folder
        if archive.is_file():
            raise DatasetNotFoundError(f"extracted {archive} but found no trials_to_train.txt under {root}")
        raise DatasetNotFoundError(f"DVS128 Gesture not found under {root}: " + self.HELP.format(root=root))


class _FolderPerClass(EventFrameDataset):
    """Datasets stored as one folder per class with one event file per sample."""

    SUFFIX = ""
    HELP = ""
    ARCHIVES: dict[str, str] = {}
    CLASSES: tuple[str, ...] = ()  # the published class list (label = index); (): the sorted class folders
    # (``classes=[...]`` replaces the list, e.g. for synthetic data; ``allow_missing_classes`` turns the refusal of a
    # missing or empty class into a warning)
    NUM_CLASSES = 0  # the published number of classes, checked when there is no list

    def __init__(self, root, train, num_frames, split_by, resize, cache_dir, transform, sensor_size,
                 split_seed, train_fraction, allow_missing_classes: bool = False, classes=None) -> None:
        root = Path(root)
        base = self._locate(root)
        classes, files = self._class_files(base, tuple(classes or self.CLASSES), allow_missing_classes)
        tr, te = split_per_class(files, split_seed, train_fraction)
        samples = [(p, None, label) for p, label in (tr if train else te)]
        super().__init__(samples, classes, sensor_size, num_frames, split_by, resize,
                         _cache_dir(root, cache_dir), transform)

    def _base(self, root: Path) -> Path:
        return root

    def _class_files(self, base: Path, published: tuple[str, ...],
                     allow_missing: bool) -> tuple[list[str], dict[int, list[Path]]]:
        """``(class names, {label: files})``: labels fixed by the published list (or by every class folder, empty
        ones included); a missing or empty class raises, or with ``allow_missing_classes`` warns."""
        folders = sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
        classes = list(published) or folders
        found = {c: sorted((base / c).glob(f"*{self.SUFFIX}")) for c in classes if (base / c).is_dir()}
        absent = [c for c in classes if not found.get(c)]
        problems = []
        if absent:
            problems.append(f"class folder(s) missing or without {self.SUFFIX} files: {absent}")
        if not published and self.NUM_CLASSES and len(folders) != self.NUM_CLASSES:
            problems.append(f"{len(folders)} class folders where {type(self).__name__} has {self.NUM_CLASSES}")
        if problems:
            msg = f"{base}: " + "; ".join(problems)
            if not allow_missing:
                raise DatasetNotFoundError(
                    f"{msg}; extract every class (docs/data.md), or pass allow_missing_classes=True to train on the "
                    "others (their labels stay the published ones)"
                )
            warnings.warn(f"{msg}: training on the others, labels unchanged", stacklevel=3)
        return classes, {i: found[c] for i, c in enumerate(classes) if found.get(c)}

    def _locate(self, root: Path) -> Path:
        """The folder of class folders; archives found in ``root`` are extracted first (once, all or nothing)."""
        archives = [root / name for name in self.ARCHIVES if (root / name).is_file()]
        for archive in archives:
            _extract(archive, root, self.ARCHIVES[archive.name])
        base = self._base(root)
        if base.is_dir() and any(base.glob(f"*/*{self.SUFFIX}")):
            return base
        if archives:
            raise DatasetNotFoundError(f"extracted the archives in {root} but found no */*{self.SUFFIX} files")
        raise DatasetNotFoundError(f"{type(self).__name__} not found under {root}: " + self.HELP.format(root=root))


class CIFAR10DVS(_FolderPerClass):
    """CIFAR10-DVS (10 classes, 1000 AEDAT files each, 128x128); 90/10 split per class with seed 3404."""

    SUFFIX = ".aedat"
    ARCHIVES = CIFAR10DVS_MD5
    CLASSES = CIFAR10DVS_CLASSES
    HELP = (
        "download the ten class archives airplane.zip ... truck.zip from https://figshare.com/articles/dataset/"
        "CIFAR10-DVS_New/4724671 and put them (md5-checked and extracted on first use) or their extracted class "
        "folders (airplane/*.aedat, ...) in {root}"
    )

    def __init__(self, root, train: bool = True, num_frames: int = 10, split_by: SplitBy = "number", resize=None,
                 cache_dir=None, transform=None, sensor_size=(128, 128), split_seed: int = 3404,
                 train_fraction: float = 0.9, allow_missing_classes: bool = False, classes=None) -> None:
        super().__init__(root, train, num_frames, split_by, resize, cache_dir, transform, sensor_size, split_seed,
                         train_fraction, allow_missing_classes, classes)


class NCaltech101(_FolderPerClass):
    """N-Caltech101 (101 class folders of ATIS ``.bin`` files, 180x240); 90/10 split per class with seed 3402."""

    SUFFIX = ".bin"
    ARCHIVES = NCALTECH_MD5
    NUM_CLASSES = 101
    HELP = (
        "download Caltech101.zip (md5 66201824eabb0239c7ab992480b50ba3) from "
        "https://www.garrickorchard.com/datasets/n-caltech101 and put the zip (extracted on first use) or its "
        "extracted Caltech101/ folder in {root}"
    )

    def __init__(self, root, train: bool = True, num_frames: int = 14, split_by: SplitBy = "number", resize=None,
                 cache_dir=None, transform=None, sensor_size=(180, 240), split_seed: int = 3402,
                 train_fraction: float = 0.9, allow_missing_classes: bool = False, classes=None) -> None:
        super().__init__(root, train, num_frames, split_by, resize, cache_dir, transform, sensor_size, split_seed,
                         train_fraction, allow_missing_classes, classes)

    def _base(self, root: Path) -> Path:
        return root / "Caltech101" if (root / "Caltech101").is_dir() else root
