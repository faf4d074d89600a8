"""Framing equals an independent, loop-based implementation of SpikingJelly's fixed-frames-number rule."""
import numpy as np
import pytest
import torch

from spikescope.data import FlipTranslate, FrameCache, integrate_frames, make_events


def _reference(t, x, y, p, T, H, W, split_by):
    """SpikingJelly's rule written out with Python loops over frames and events."""
    N = len(t)
    lo, hi = [0] * T, [0] * T
    if split_by == "number":
        di = N // T
        for j in range(T):
            lo[j], hi[j] = j * di, j * di + di
    else:
        dt = (int(t[-1]) - int(t[0])) // T
        for j in range(T):
            t_l = int(t[0]) + dt * j
            inside = [i for i in range(N) if t_l <= t[i] < t_l + dt]
            first = [i for i in range(N) if t[i] >= t_l]
            lo[j] = inside[0] if inside else (first[0] if first else N)
            hi[j] = inside[-1] + 1 if inside else lo[j]
    hi[-1] = N
    out = np.zeros((T, 2, H, W), np.float32)
    for j in range(T):
        for i in range(lo[j], hi[j]):
            out[j, 0 if p[i] == 0 else 1, y[i], x[i]] += 1
    return out


@pytest.mark.parametrize("split_by", ["number", "time"])
@pytest.mark.parametrize("n,T", [(1000, 10), (997, 16), (50, 7), (5, 8), (1, 3)])
def test_matches_reference(split_by, n, T):
    rng = np.random.default_rng(n * T)
    t = np.sort(rng.integers(0, 100_000, n))
    x, y, p = rng.integers(0, 12, n), rng.integers(0, 9, n), rng.integers(0, 2, n)
    got = integrate_frames(make_events(t, x, y, p), T, 9, 12, split_by)
    assert got.dtype == np.float32 and got.shape == (T, 2, 9, 12)
    np.testing.assert_array_equal(got, _reference(t, x, y, p, T, 9, 12, split_by))
    assert got.sum() == n


def test_time_split_with_repeated_timestamps():
    t = np.array([0, 0, 0, 5, 5, 9, 9, 9, 9, 20])
    ev = make_events(t, np.arange(10) % 4, np.zeros(10, int), np.arange(10) % 2)
    np.testing.assert_array_equal(integrate_frames(ev, 4, 1, 4, "time"), _reference(t, ev["x"], ev["y"], ev["p"], 4, 1, 4, "time"))


def test_empty_stream_resize_and_bounds():
    empty = make_events(*(np.zeros(0, int) for _ in range(4)))
    assert integrate_frames(empty, 4, 8, 8).sum() == 0
    assert integrate_frames(empty, 4, 8, 8, "time").shape == (4, 2, 8, 8)
    ev = make_events(np.arange(4), np.array([0, 1, 6, 7]), np.array([0, 0, 7, 7]), np.array([1, 1, 0, 0]))
    small = integrate_frames(ev, 1, 8, 8, resize=(2, 2))
    assert small[0, 1, 0, 0] == 2 and small[0, 0, 1, 1] == 2 and small.sum() == 4
    with pytest.raises(ValueError, match="outside the 4x4 sensor"):
        integrate_frames(ev, 2, 4, 4)


def test_cache_hit_key_and_corruption(tmp_path):
    cache = FrameCache(tmp_path)
    calls = []

    def build():
        calls.append(1)
        return np.arange(24, dtype=np.float32).reshape(2, 3, 4)

    key = {"num_frames": 2, "split_by": "number"}
    a = cache.get(key, build)
    b = cache.get(key, build)
    np.testing.assert_array_equal(a, b)
    assert len(calls) == 1
    cache.get({**key, "split_by": "time"}, build)  # another framing parameter is another entry
    assert len(calls) == 2
    path = cache.path_for(key)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip a byte inside the compressed payload
    path.write_bytes(bytes(data))
    np.testing.assert_array_equal(cache.get(key, build), a)
    path.write_bytes(path.read_bytes()[:40])  # a partial file
    np.testing.assert_array_equal(cache.get(key, build), a)
    assert len(calls) == 4 and cache.rebuilt == 2
    assert not list(tmp_path.rglob("*.tmp"))


def test_flip_translate_shares_transform_over_time():
    x = torch.rand(5, 2, 16, 16)
    x[:] = x[0]
    y = FlipTranslate(flip_p=0.5, max_shift=3)(x)
    assert all(torch.equal(y[0], y[t]) for t in range(5))
