"""Readers on files written here in each real format: header, polarity, timestamps, empty and truncated files."""
import struct

import numpy as np
import pytest

from spikescope.data import EVENT_DTYPE, EventFileError, load_events, make_events
from spikescope.data.aedat2 import read_aedat2, write_aedat2
from spikescope.data.aedat31 import read_aedat31, read_gesture_labels, write_aedat31, write_gesture_labels
from spikescope.data.atis import read_atis, write_atis


def _random_events(n, size=128, t_max=1 << 20, seed=0):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, t_max, n))
    return make_events(t, rng.integers(0, size, n), rng.integers(0, size, n), rng.integers(0, 2, n))


def test_aedat31_hand_written_packet(tmp_path):
    """Bytes assembled by hand from the spec: x=(d>>17)&0x7FFF, y=(d>>2)&0x7FFF, p=(d>>1)&1, t|=overflow<<31."""
    header = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#!END-HEADER\r\n"
    evs = [(5, 7, 1, 100), (127, 0, 0, 200)]
    body = b"".join(struct.pack("<II", (x << 17) | (y << 2) | (p << 1) | 1, t) for x, y, p, t in evs)
    pkt = struct.pack("<HHIIIIII", 1, 1, 8, 4, 1, 2, 2, 2)  # overflow 1
    other = struct.pack("<HHIIIIII", 2, 1, 4, 0, 0, 3, 3, 3) + b"\0" * 12  # a non-polarity packet is skipped
    path = tmp_path / "a.aedat"
    path.write_bytes(header + other + pkt + body)
    ev = load_events(path)
    assert ev.dtype == EVENT_DTYPE
    assert ev["x"].tolist() == [5, 127] and ev["y"].tolist() == [7, 0] and ev["p"].tolist() == [1, 0]
    assert ev["t"].tolist() == [100 + (1 << 31), 200 + (1 << 31)]


def test_aedat31_roundtrip_empty_and_truncated(tmp_path):
    ev = _random_events(10_000)
    path = tmp_path / "user01_led.aedat"
    write_aedat31(path, ev, packet_size=3000)
    np.testing.assert_array_equal(read_aedat31(path), ev)
    write_aedat31(tmp_path / "empty.aedat", ev[:0])
    assert len(load_events(tmp_path / "empty.aedat")) == 0
    data = path.read_bytes()
    (tmp_path / "cut.aedat").write_bytes(data[:-5])
    with pytest.raises(EventFileError, match="truncated packet"):
        load_events(tmp_path / "cut.aedat")
    (tmp_path / "nohdr.aedat").write_bytes(b"#!AER-DAT3.1\r\n#no end")
    with pytest.raises(EventFileError, match="END-HEADER"):
        load_events(tmp_path / "nohdr.aedat")


def test_gesture_labels_csv(tmp_path):
    write_gesture_labels(tmp_path / "l.csv", [(1, 10, 20), (11, 30, 40)])
    assert read_gesture_labels(tmp_path / "l.csv").tolist() == [[1, 10, 20], [11, 30, 40]]


def test_aedat2_bits_and_orientation(tmp_path):
    """x_raw=(a&0xFE)>>1, y_raw=(a&0x7F00)>>8, pol=a&1 -> x=127-y_raw, y=127-x_raw, p=1-pol (big-endian)."""
    a = (10 << 8) | (20 << 1) | 1
    path = tmp_path / "c.aedat"
    path.write_bytes(b"#!AER-DAT2.0\r\n# comment\r\n" + struct.pack(">II", a, 12345))
    ev = load_events(path)
    assert (ev["x"][0], ev["y"][0], ev["p"][0], ev["t"][0]) == (117, 107, 0, 12345)
    rnd = _random_events(5000)
    write_aedat2(tmp_path / "r.aedat", rnd)
    np.testing.assert_array_equal(read_aedat2(tmp_path / "r.aedat"), rnd)
    (tmp_path / "e.aedat").write_bytes(b"#!AER-DAT2.0\r\n")
    assert len(load_events(tmp_path / "e.aedat")) == 0
    (tmp_path / "t.aedat").write_bytes((tmp_path / "r.aedat").read_bytes()[:-3])
    with pytest.raises(EventFileError, match="truncated"):
        load_events(tmp_path / "t.aedat")


def test_atis_bits(tmp_path):
    """x=b0, y=b1, p=b2>>7, t=((b2&0x7F)<<16)|(b3<<8)|b4."""
    path = tmp_path / "image_0001.bin"
    path.write_bytes(bytes([200, 170, 0x80 | 0x12, 0x34, 0x56]))
    ev = load_events(path)
    assert (ev["x"][0], ev["y"][0], ev["p"][0], ev["t"][0]) == (200, 170, 1, 0x123456)
    rnd = _random_events(5000, size=240, t_max=1 << 23)
    write_atis(tmp_path / "r.bin", rnd)
    np.testing.assert_array_equal(read_atis(tmp_path / "r.bin"), rnd)
    (tmp_path / "e.bin").write_bytes(b"")
    assert len(load_events(tmp_path / "e.bin")) == 0
    (tmp_path / "t.bin").write_bytes(bytes(12))
    with pytest.raises(EventFileError, match="truncated"):
        load_events(tmp_path / "t.bin")


def test_unknown_format(tmp_path):
    (tmp_path / "x.dat").write_bytes(b"hello")
    with pytest.raises(EventFileError, match="unknown event file format"):
        load_events(tmp_path / "x.dat")
