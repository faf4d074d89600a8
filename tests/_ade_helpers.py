"""A synthetic ADE20K-format set written by the tests: class bands of distinct colours on noise, a 0 border."""
from __future__ import annotations

from pathlib import Path

import numpy as np

COLOURS = {1: (200, 40, 40), 2: (40, 200, 40), 3: (40, 40, 200)}


def write_ade20k(root: Path, n_train: int = 4, n_val: int = 2, size: tuple[int, int] = (64, 80),
                 seed: int = 0, same: bool = False) -> Path:
    """``root/ADEChallengeData2016/{images,annotations}/{training,validation}``; labels 0 (border band), 1, 2, 3.

    ``same=True`` makes the validation images copies of the first training ones (overfitting tests).
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = size
    base = root / "ADEChallengeData2016"
    made = []
    for split, n in (("training", n_train), ("validation", n_val)):
        (base / "images" / split).mkdir(parents=True, exist_ok=True)
        (base / "annotations" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            if same and split == "validation":
                img, label = made[i]
            else:
                a, b = sorted(rng.choice(np.arange(w // 5, 4 * w // 5), 2, replace=False))
                label = np.ones((h, w), np.uint8)
                label[:, a:] = 2
                label[h // 2:, b:] = 3
                label[:3], label[-3:], label[:, :3], label[:, -3:] = 0, 0, 0, 0
                img = rng.integers(0, 60, (h, w, 3)).astype(np.int64)
                for k, c in COLOURS.items():
                    img[label == k] += np.array(c) - 30
                img = np.clip(img, 0, 255).astype(np.uint8)
                made.append((img, label))
            stem = f"ADE_{'train' if split == 'training' else 'val'}_{i + 1:08d}"
            Image.fromarray(img).save(base / "images" / split / f"{stem}.jpg", quality=95)
            Image.fromarray(label).save(base / "annotations" / split / f"{stem}.png")
    return root
