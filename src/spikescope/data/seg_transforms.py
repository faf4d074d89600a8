"""Segmentation transforms of the ADE20K Semantic FPN recipe, on uint8 ``[H, W, 3]`` RGB images and ``[H, W]``
label maps, with an explicit ``numpy.random.Generator`` (mmseg 1.x ``RandomResize``, ``RandomCrop``,
``RandomFlip``, ``PhotoMetricDistortion``).

Sizes follow mmcv's keep-ratio rescale: ``f = min(long_max / long, short_max / short)``, new size
``floor(w * f + 0.5) x floor(h * f + 0.5)``; images bilinear, labels nearest (torch ``interpolate``; OpenCV is not
needed). Hue and saturation use OpenCV's 8-bit HSV (H in 0..179): ``cv2.cvtColor`` when OpenCV imports, else a
numpy implementation of OpenCV's documented formulas in floating point (OpenCV itself uses fixed-point tables, so
single values may differ by a level; not compared here, OpenCV is not a dependency).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "rescale_size",
    "resize_pair",
    "random_resize_scale",
    "crop_box",
    "cat_max_ratio_crop",
    "photometric_distortion",
    "rgb_to_hsv_u8",
    "hsv_to_rgb_u8",
    "SegTrainPipeline",
]


def rescale_size(w: int, h: int, scale: tuple[int, int]) -> tuple[int, int]:
    """Keep-ratio size ``(w', h')`` fitting ``scale`` = (long, short) maxima, rounded half up."""
    f = min(max(scale) / max(w, h), min(scale) / min(w, h))
    return int(w * f + 0.5), int(h * f + 0.5)


def resize_image(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear (``align_corners=False``, no antialias) uint8 ``[H, W, 3]`` -> ``[h, w, 3]``; ``size = (w, h)``."""
    if (img.shape[1], img.shape[0]) == tuple(size):
        return img
    x = torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None]
    y = F.interpolate(x, size=(size[1], size[0]), mode="bilinear", align_corners=False)
    return y[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def resize_label(label: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour ``[H, W]`` -> ``[h, w]``; ``size = (w, h)``."""
    if (label.shape[1], label.shape[0]) == tuple(size):
        return label
    x = torch.from_numpy(label.astype(np.float32))[None, None]
    return F.interpolate(x, size=(size[1], size[0]), mode="nearest")[0, 0].numpy().astype(label.dtype)


def resize_pair(img: np.ndarray, label: np.ndarray, scale: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Keep-ratio resize of an image and its label map to fit ``scale`` = (long, short)."""
    size = rescale_size(img.shape[1], img.shape[0], scale)
    return resize_image(img, size), resize_label(label, size)


def random_resize_scale(rng: np.random.Generator, scale: tuple[int, int],
                        ratio_range: tuple[float, float]) -> tuple[int, int]:
    """``r ~ U(ratio_range)`` -> ``(int(scale[0] * r), int(scale[1] * r))``."""
    r = rng.uniform(*ratio_range)
    return int(scale[0] * r), int(scale[1] * r)


def crop_box(h: int, w: int, crop: tuple[int, int], rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A uniform ``(y0, y1, x0, x1)`` crop of at most ``crop = (ch, cw)``; a smaller side is kept whole."""
    oy = int(rng.integers(0, max(h - crop[0], 0) + 1))
    ox = int(rng.integers(0, max(w - crop[1], 0) + 1))
    return oy, min(oy + crop[0], h), ox, min(ox + crop[1], w)


def cat_max_ratio_crop(label: np.ndarray, crop: tuple[int, int], rng: np.random.Generator,
                       cat_max_ratio: float = 0.75, ignore_index: int = 255,
                       tries: int = 10) -> tuple[int, int, int, int]:
    """Draw crops until one holds more than one non-ignored class with the largest under ``cat_max_ratio`` of them.

    After ``tries`` rejected checks the next draw is returned unchecked; ``cat_max_ratio >= 1`` accepts the first.
    """
    box = crop_box(*label.shape, crop, rng)
    if cat_max_ratio >= 1.0:
        return box
    for _ in range(tries):
        y0, y1, x0, x1 = box
        values, counts = np.unique(label[y0:y1, x0:x1], return_counts=True)
        counts = counts[values != ignore_index]
        if len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio:
            return box
        box = crop_box(*label.shape, crop, rng)
    return box


def _convert(x: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    return np.clip(x.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def photometric_distortion(img: np.ndarray, rng: np.random.Generator, brightness: float = 32,
                           contrast: tuple[float, float] = (0.5, 1.5), saturation: tuple[float, float] = (0.5, 1.5),
                           hue: int = 18) -> np.ndarray:
    """mmseg's distortion of a uint8 RGB image; each step with p = 0.5, clipped and truncated to uint8 after each.

    Brightness ``+U(-32, 32)``; contrast ``x U(0.5, 1.5)`` first or last (a coin); saturation ``x U(0.5, 1.5)`` and
    hue ``+ randint(-18, 18)`` (upper bound exclusive, as numpy's) mod 180 in 8-bit HSV.
    """
    img = _convert(img, beta=rng.uniform(-brightness, brightness)) if rng.integers(2) else img
    contrast_last = bool(rng.integers(2))

    def _contrast(x: np.ndarray) -> np.ndarray:
        return _convert(x, alpha=rng.uniform(*contrast)) if rng.integers(2) else x

    if not contrast_last:
        img = _contrast(img)
    if rng.integers(2):
        hsv = rgb_to_hsv_u8(img)
        hsv[..., 1] = _convert(hsv[..., 1], alpha=rng.uniform(*saturation))
        img = hsv_to_rgb_u8(hsv)
    if rng.integers(2):
        hsv = rgb_to_hsv_u8(img)
        hsv[..., 0] = (hsv[..., 0].astype(np.int64) + int(rng.integers(-hue, hue))) % 180
        img = hsv_to_rgb_u8(hsv)
    if contrast_last:
        img = _contrast(img)
    return img


def _cv2():
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def rgb_to_hsv_u8(img: np.ndarray) -> np.ndarray:
    """uint8 RGB -> OpenCV 8-bit HSV (H = degrees / 2 in 0..179, S and V in 0..255)."""
    cv2 = _cv2()
    if cv2 is not None:
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2HSV)
    rgb = img.astype(np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = rgb.max(-1)
    diff = v - rgb.min(-1)
    safe = np.where(diff > 0, diff, 1.0)
    h = np.where(v == r, (g - b) / safe, np.where(v == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe)) * 30.0
    h = np.where(diff > 0, np.floor(h + 0.5), 0.0) % 180
    s = np.where(v > 0, np.floor(255.0 * diff / np.where(v > 0, v, 1.0) + 0.5), 0.0)
    return np.stack([h, s, v], -1).astype(np.uint8)


def hsv_to_rgb_u8(hsv: np.ndarray) -> np.ndarray:
    """OpenCV 8-bit HSV -> uint8 RGB (the inverse of :func:`rgb_to_hsv_u8`, rounded)."""
    cv2 = _cv2()
    if cv2 is not None:
        return cv2.cvtColor(np.ascontiguousarray(hsv), cv2.COLOR_HSV2RGB)
    h = hsv[..., 0].astype(np.float64) / 30.0  # sextant units, 0..6
    s = hsv[..., 1].astype(np.float64) / 255.0
    v = hsv[..., 2].astype(np.float64)
    i = np.floor(h).astype(np.int64) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = np.stack([np.stack(c, -1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    rgb = np.take_along_axis(table, i[None, ..., None].repeat(3, -1), 0)[0]
    return np.clip(np.floor(rgb + 0.5), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class SegTrainPipeline:
    """Random resize -> crop (``cat_max_ratio`` retry) -> flip -> photometric distortion, on uint8 arrays.

    Defaults are the ADE20K 512x512 recipe. Returns the augmented ``(image, label)``; normalising and padding to
    ``crop`` are the dataset's job.
    """

    scale: tuple[int, int] = (2048, 512)
    ratio_range: tuple[float, float] = (0.5, 2.0)
    crop: tuple[int, int] = (512, 512)
    cat_max_ratio: float = 0.75
    flip: float = 0.5
    photometric: bool = True
    ignore_index: int = 255

    def __call__(self, img: np.ndarray, label: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        img, label = resize_pair(img, label, random_resize_scale(rng, self.scale, self.ratio_range))
        y0, y1, x0, x1 = cat_max_ratio_crop(label, self.crop, rng, self.cat_max_ratio, self.ignore_index)
        img, label = img[y0:y1, x0:x1], label[y0:y1, x0:x1]
        if rng.random() < self.flip:
            img, label = img[:, ::-1], label[:, ::-1]
        if self.photometric:
            img = photometric_distortion(img, rng)
        return np.ascontiguousarray(img), np.ascontiguousarray(label)
