"""Synthetic data written in the real formats, loaded back through the dataset classes; splits; missing data."""
import numpy as np
import pytest

from spikescope.data import (
    CIFAR10DVS,
    DatasetNotFoundError,
    DVS128Gesture,
    NCaltech101,
    SyntheticConfig,
    write_synthetic_dataset,
)
from spikescope.data.datasets import split_per_class

CFG = SyntheticConfig(num_classes=3, samples_per_class=8, size=16, steps=12)
NAMES = ["class0", "class1", "class2"]


def test_gesture_layout(tmp_path):
    write_synthetic_dataset(tmp_path, "dvs128", CFG)
    tr = DVS128Gesture(tmp_path, train=True, num_frames=4, sensor_size=(16, 16), classes=["0", "1", "2"])
    te = DVS128Gesture(tmp_path, train=False, num_frames=4, sensor_size=(16, 16), classes=["0", "1", "2"])
    assert len(tr) + len(te) == 24 and len(te) == 6 and tr.classes == ["0", "1", "2"]
    x, label = tr[0]
    assert x.shape == (4, 2, 16, 16) and x.sum() > 0 and 0 <= label < 3
    assert sorted(set(tr.targets)) == [0, 1, 2]
    ev = tr.events(0)
    start, end = tr.samples[0][1]
    assert ev["t"].min() >= start and ev["t"].max() < end
    assert (tmp_path / "frames_cache").is_dir()


@pytest.mark.parametrize("layout,cls", [("cifar10dvs", CIFAR10DVS), ("ncaltech101", NCaltech101)])
def test_folder_layouts_and_split(tmp_path, layout, cls):
    write_synthetic_dataset(tmp_path, layout, CFG)
    kw = dict(num_frames=3, cache_dir=False, sensor_size=(128, 128) if layout == "cifar10dvs" else (16, 16),
              classes=NAMES)
    tr, te = cls(tmp_path, train=True, **kw), cls(tmp_path, train=False, **kw)
    assert len(tr) == 3 * 7 and len(te) == 3
    assert not {p for p, _, _ in tr.samples} & {p for p, _, _ in te.samples}
    assert tr[0][0].shape[:2] == (3, 2)
    again = cls(tmp_path, train=True, **kw)
    assert [s[0] for s in again.samples] == [s[0] for s in tr.samples]


def test_split_is_sorted_then_seeded():
    files = {0: [f"f{i}" for i in range(10)], 1: [f"g{i}" for i in range(5)]}
    shuffled = {0: list(reversed(files[0])), 1: files[1][::-1]}
    assert split_per_class(files, 3404) == split_per_class(shuffled, 3404)
    tr, te = split_per_class(files, 3404)
    assert len(tr) == 9 + 4 and len(te) == 1 + 1
    assert split_per_class(files, 1)[0] != tr


def test_missing_dataset_message(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="DvsGesture.tar.gz"):
        DVS128Gesture(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="figshare"):
        CIFAR10DVS(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="Caltech101.zip"):
        NCaltech101(tmp_path)


def test_archive_md5_checked(tmp_path):
    (tmp_path / "Caltech101.zip").write_bytes(b"not the real archive")
    with pytest.raises(ValueError, match="md5"):
        NCaltech101(tmp_path)


def test_synthetic_classes_are_separable_by_motion():
    """The mean event position moves along the class direction (class 0: +x)."""
    from spikescope.data.synthetic import render_sample, simulate_events

    rng = np.random.default_rng(0)
    cfg = SyntheticConfig(num_classes=4, size=32)
    ev = simulate_events(render_sample(cfg, 0, rng), cfg, rng)
    early, late = ev[: len(ev) // 4], ev[-len(ev) // 4 :]
    assert late["x"].mean() - early["x"].mean() > 4


def test_static_transforms_and_missing_folders(tmp_path):
    from PIL import Image

    from spikescope.data.static import ImageRecipe, build_static_dataset, build_transform

    img = Image.fromarray((np.random.default_rng(0).random((300, 260, 3)) * 255).astype("uint8"))
    sdt = ImageRecipe(auto_augment="rand-m9-mstd0.5-inc1", re_prob=0.25, interpolation="bicubic", crop_pct=224 / 232)
    assert build_transform(sdt, True, "imagenet")(img).shape == (3, 224, 224)
    assert build_transform(ImageRecipe(auto_augment="original"), False, "imagenet")(img).shape == (3, 224, 224)
    assert build_transform(ImageRecipe(img_size=32), True, "cifar10")(img.resize((32, 32))).shape == (3, 32, 32)
    with pytest.raises(DatasetNotFoundError, match="cifar-10-batches-py"):
        build_static_dataset("cifar10", tmp_path, True)
    with pytest.raises(DatasetNotFoundError, match="train/<wnid>"):
        build_static_dataset("imagenet", tmp_path, True)


def _md5(path):
    import hashlib
    return hashlib.md5(path.read_bytes()).hexdigest()


def _zip_folder(folder, archive):
    import zipfile
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(folder.rglob("*")):
            zf.write(f, f.relative_to(folder.parent))


def _ncaltech_zip(tmp_path, monkeypatch):
    src = write_synthetic_dataset(tmp_path / "src", "ncaltech101", CFG)
    root = tmp_path / "root"
    root.mkdir()
    _zip_folder(src / "Caltech101", root / "Caltech101.zip")
    monkeypatch.setattr(NCaltech101, "ARCHIVES", {"Caltech101.zip": _md5(root / "Caltech101.zip")})
    return root


KW = dict(num_frames=3, cache_dir=False, sensor_size=(16, 16), classes=NAMES)


def test_archive_is_extracted_once_and_completely(tmp_path, monkeypatch):
    root = _ncaltech_zip(tmp_path, monkeypatch)
    tr, te = NCaltech101(root, train=True, **KW), NCaltech101(root, train=False, **KW)
    assert len(tr) + len(te) == 24 and (root / ".Caltech101.zip.extracted").is_file()
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]
    stamp = (root / "Caltech101").stat().st_mtime_ns
    NCaltech101(root, train=True, **KW)
    assert (root / "Caltech101").stat().st_mtime_ns == stamp  # not extracted again


def test_partial_folder_from_an_interrupted_extraction_is_replaced(tmp_path, monkeypatch):
    """A class folder left by a killed extraction (no marker) must not become a 1-sample dataset."""
    root = _ncaltech_zip(tmp_path, monkeypatch)
    partial = root / "Caltech101" / "class0"
    partial.mkdir(parents=True)
    one = sorted((tmp_path / "src/Caltech101/class0").glob("*.bin"))[0]
    (partial / one.name).write_bytes(one.read_bytes())
    tr, te = NCaltech101(root, train=True, **KW), NCaltech101(root, train=False, **KW)
    assert len(tr) + len(te) == 24 and tr.classes == ["class0", "class1", "class2"]


def test_failed_extraction_leaves_nothing_behind(tmp_path, monkeypatch):
    import zipfile

    root = _ncaltech_zip(tmp_path, monkeypatch)
    real, calls = zipfile.ZipFile.extract, []

    def dies_midway(self, member, path=None, pwd=None):
        calls.append(member)
        if len(calls) > 5:
            raise OSError("disk full")
        return real(self, member, path, pwd)

    monkeypatch.setattr(zipfile.ZipFile, "extract", dies_midway)
    with pytest.raises(OSError, match="disk full"):
        NCaltech101(root, **KW)
    assert sorted(p.name for p in root.iterdir()) == ["Caltech101.zip"]
    monkeypatch.setattr(zipfile.ZipFile, "extract", real)
    assert len(NCaltech101(root, train=False, **KW)) == 3


def test_gesture_tarball_is_extracted(tmp_path, monkeypatch):
    import tarfile

    from spikescope.data import datasets

    src = write_synthetic_dataset(tmp_path / "src" / "DvsGesture", "dvs128", CFG)
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(root / "DvsGesture.tar.gz", "w:gz") as tf:
        tf.add(src, arcname="DvsGesture")
    monkeypatch.setitem(datasets.GESTURE_MD5, "DvsGesture.tar.gz", _md5(root / "DvsGesture.tar.gz"))
    tr = DVS128Gesture(root, train=True, num_frames=4, sensor_size=(16, 16), cache_dir=False)
    assert len(tr) == 18 and (root / "DvsGesture" / "trials_to_train.txt").is_file()
