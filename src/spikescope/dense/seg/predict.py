"""Whole-image inference and pictures: a colour-coded label map and an overlay with a legend per image.

Inference as in the ADE20K test pipeline: resize to fit ``test_scale`` keeping the ratio (no padding), logits
resized bilinearly to that size and then to the original one, argmax. Colours: a fixed palette of
:func:`palette` (class k gets the bit-interleaved colour of k + 1); ignored pixels are black.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ...data.ade20k import normalize_image
from ...data.seg_transforms import rescale_size, resize_image

__all__ = ["palette", "colorize", "logits_at", "segment_image", "overlay_with_legend", "predict_images"]


def palette(n: int) -> np.ndarray:
    """``[n, 3]`` uint8 colours: the bits of k + 1 spread over the high bits of R, G and B."""
    out = np.zeros((n, 3), np.uint8)
    for k in range(n):
        c, rgb = k + 1, [0, 0, 0]
        for j in range(8):
            for ch in range(3):
                rgb[ch] |= ((c >> ch) & 1) << (7 - j)
            c >>= 3
        out[k] = rgb
    return out


def colorize(label: np.ndarray, num_classes: int) -> np.ndarray:
    """Class indices ``[H, W]`` -> uint8 ``[H, W, 3]``; values outside ``0..num_classes-1`` (ignored) -> black."""
    colours = np.concatenate([palette(num_classes), np.zeros((1, 3), np.uint8)])
    idx = np.where((label >= 0) & (label < num_classes), label, num_classes)
    return colours[idx]


def logits_at(model: nn.Module, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Logits of a normalised ``[B, 3, h, w]`` batch, resized bilinearly to ``h x w`` and then to ``size``."""
    logits = model(x)
    logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
    if tuple(size) != tuple(x.shape[-2:]):
        logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
    return logits


@torch.no_grad()
def segment_image(model: nn.Module, img: np.ndarray, test_scale: tuple[int, int] = (2048, 512),
                  device: torch.device | str = "cpu") -> np.ndarray:
    """uint8 RGB ``[H, W, 3]`` -> predicted class indices ``[H, W]`` (whole-image inference)."""
    size = rescale_size(img.shape[1], img.shape[0], test_scale)
    x = normalize_image(resize_image(img, size))[None].to(device)
    return logits_at(model, x, img.shape[:2]).argmax(1)[0].cpu().numpy()


def overlay_with_legend(img: np.ndarray, label: np.ndarray, names: Sequence[str], alpha: float = 0.5):
    """The image blended with its colour map, a legend of the classes present on the right (a PIL image)."""
    from PIL import Image, ImageDraw

    colours = colorize(label, len(names))
    blend = (img.astype(np.float32) * (1 - alpha) + colours.astype(np.float32) * alpha).round().astype(np.uint8)
    present = [int(c) for c in np.unique(label) if 0 <= c < len(names)]
    row, pad = 14, 4
    width = 18 + 7 * max((len(names[c]) for c in present), default=0) + 2 * pad
    canvas = Image.new("RGB", (img.shape[1] + width, max(img.shape[0], row * len(present) + 2 * pad)), "white")
    canvas.paste(Image.fromarray(blend), (0, 0))
    draw = ImageDraw.Draw(canvas)
    pal = palette(len(names))
    for i, c in enumerate(present):
        x0, y0 = img.shape[1] + pad, pad + i * row
        draw.rectangle([x0, y0, x0 + 10, y0 + 10], fill=tuple(int(v) for v in pal[c]), outline="black")
        draw.text((x0 + 14, y0 - 1), names[c], fill="black")
    return canvas


def predict_images(model: nn.Module, paths: Sequence[str | Path], out_dir: str | Path, names: Sequence[str],
                   test_scale: tuple[int, int] = (2048, 512), device: torch.device | str = "cpu",
                   progress: bool = True) -> list[Path]:
    """Write ``<stem>_labels.png`` (colour map) and ``<stem>_overlay.png`` (with legend) per image; return them."""
    from PIL import Image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    written = []
    for path in tqdm(list(paths), desc="predict", disable=not progress):
        path = Path(path)
        with Image.open(path) as im:
            img = np.array(im.convert("RGB"))
        label = segment_image(model, img, test_scale, device)
        for suffix, picture in (("labels", Image.fromarray(colorize(label, len(names)))),
                                ("overlay", overlay_with_legend(img, label, names))):
            target = out_dir / f"{path.stem}_{suffix}.png"
            picture.save(target)
            written.append(target)
    return written
