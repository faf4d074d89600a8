"""Event data never gives silent wrong results: unsupported AEDAT versions, unknown packet types, missing classes,
labels outside the class list."""
import warnings

import numpy as np
import pytest

from spikescope.data import CIFAR10DVS, DatasetNotFoundError, DVS128Gesture, SyntheticConfig, write_synthetic_dataset
from spikescope.data.aedat2 import read_aedat2, write_aedat2
from spikescope.data.aedat31 import read_aedat31, write_aedat31, write_gesture_labels
from spikescope.data.datasets import CIFAR10DVS_CLASSES
from spikescope.data.events import EventFileError, load_events, make_events


def _events(n, seed=0):
    rng = np.random.default_rng(seed)
    return make_events(np.sort(rng.integers(0, 10**6, n)), rng.integers(0, 128, n), rng.integers(0, 128, n),
                       rng.integers(0, 2, n))


def test_aedat4_refused_naming_the_version(tmp_path):
    path = tmp_path / "dvs.aedat4"
    path.write_bytes(b"#!AER-DAT4.0\r\n" + bytes(range(256)) * 40)
    with pytest.raises(EventFileError, match="AEDAT version 4.0"):
        load_events(path)
    with pytest.raises(EventFileError, match="AEDAT version 4.0"):
        read_aedat2(path)
    ok = tmp_path / "ok.aedat"
    write_aedat2(ok, _events(10))
    assert len(load_events(ok)) == 10


def test_aedat31_unknown_packet_type_warns_and_keeps_the_other_packets(tmp_path):
    ev = _events(7392)
    path = tmp_path / "user01_led.aedat"
    write_aedat31(path, ev, packet_size=4096)
    data = bytearray(path.read_bytes())
    first_packet = data.index(b"#!END-HEADER\r\n") + len(b"#!END-HEADER\r\n")
    data[first_packet : first_packet + 2] = (99).to_bytes(2, "little")
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="type 99 .4096 slots"):
        out = read_aedat31(path)
    np.testing.assert_array_equal(out, ev[4096:])


def test_known_non_polarity_packets_are_skipped_quietly(tmp_path):
    path = tmp_path / "a.aedat"
    write_aedat31(path, _events(100), packet_size=60)
    data = bytearray(path.read_bytes())
    start = data.index(b"#!END-HEADER\r\n") + len(b"#!END-HEADER\r\n")
    data[start : start + 2] = (0).to_bytes(2, "little")  # a "special" packet
    path.write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_aedat31(path)) == 40


def _cifar_root(tmp_path, drop=(), empty=()):
    """CIFAR10-DVS layout with the published class folders, 2 files each (``drop``: absent, ``empty``: no files)."""
    for label, name in enumerate(CIFAR10DVS_CLASSES):
        if name in drop:
            continue
        (tmp_path / name).mkdir()
        if name not in empty:
            for i in range(2):
                write_aedat2(tmp_path / name / f"{name}_{i}.aedat", _events(20, seed=label * 10 + i))
    return tmp_path


@pytest.mark.parametrize("kind", ["drop", "empty"])
def test_missing_or_empty_class_refused_or_warned_with_fixed_labels(tmp_path, kind):
    root = _cifar_root(tmp_path, **{kind: ("bird",)})
    with pytest.raises(DatasetNotFoundError, match=r"\['bird'\].*allow_missing_classes"):
        CIFAR10DVS(root, cache_dir=False)
    with pytest.warns(UserWarning, match="bird"):
        ds = CIFAR10DVS(root, cache_dir=False, allow_missing_classes=True, train_fraction=0.5)
    assert ds.classes == list(CIFAR10DVS_CLASSES) and len(ds.classes) == 10
    labels = {p.parent.name: label for p, _, label in ds.samples}
    assert labels["frog"] == CIFAR10DVS_CLASSES.index("frog") == 6 and "bird" not in labels


def test_gesture_label_outside_the_class_list_is_refused(tmp_path):
    write_synthetic_dataset(tmp_path, "dvs128", SyntheticConfig(num_classes=3, samples_per_class=4, size=16, steps=6))
    assert DVS128Gesture(tmp_path, sensor_size=(16, 16), cache_dir=False).classes[0] == "hand_clapping"
    trial = (tmp_path / "trials_to_train.txt").read_text().split()[0]
    write_gesture_labels(tmp_path / trial.replace(".aedat", "_labels.csv"), [(12, 0, 1000)])
    with pytest.raises(EventFileError, match="class 12 is outside 1..11"):
        DVS128Gesture(tmp_path, sensor_size=(16, 16), cache_dir=False)


def test_out_of_sensor_file_named_with_the_fix(tmp_path):
    root = _cifar_root(tmp_path)
    ds = CIFAR10DVS(root, cache_dir=False, sensor_size=(64, 64))
    with pytest.raises(EventFileError, match=r"\.aedat: events outside the 64x64 sensor.*data\.sensor_size"):
        ds[0]
