"""Input samples for ERF measurements: seeded Gaussian noise, an image folder, or any tensor / dataset.

Every source yields samples by index, so sample ``k`` is the same whatever the batch size (batched and
per-sample computations see identical inputs). A static sample is ``[C, H, W]``; a sequence sample ``[T, C, H, W]``.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["SampleSource", "NoiseSource", "TensorSource", "DatasetSource", "ImageFolderSource", "make_source"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm"}


class SampleSource:
    """Indexable samples; ``batch(indices)`` stacks them to ``[B, C, H, W]`` or ``[T, B, C, H, W]``."""

    description = ""

    def __len__(self) -> int:
        raise NotImplementedError

    def sample(self, k: int) -> torch.Tensor:
        raise NotImplementedError

    def batch(self, indices: Sequence[int]) -> torch.Tensor:
        xs = [self.sample(k) for k in indices]
        return torch.stack(xs, dim=1 if xs[0].dim() == 4 else 0)


class NoiseSource(SampleSource):
    """N(0, 1) noise of shape ``size`` = (C, H, W); ``timesteps`` > 0 draws i.i.d. noise per timestep.

    Sample ``k`` comes from its own generator seeded with ``seed * 1_000_003 + k``.
    """

    def __init__(self, n: int, size: Sequence[int], seed: int = 0, timesteps: int = 0) -> None:
        if len(size) != 3:
            raise ValueError(f"noise input: size must be (C, H, W), got {tuple(size)}")
        self.n, self.size, self.seed, self.timesteps = n, tuple(int(s) for s in size), seed, timesteps
        iid = f", i.i.d. over T={timesteps}" if timesteps else ", static (repeated over T)"
        self.description = f"N(0,1) noise {self.size}{iid}, seed {seed}"

    def __len__(self) -> int:
        return self.n

    def sample(self, k: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + k)
        shape = ((self.timesteps,) if self.timesteps else ()) + self.size
        return torch.randn(shape, generator=g)


class TensorSource(SampleSource):
    """Samples from a tensor ``[N, C, H, W]`` (static) or ``[T, N, C, H, W]`` (sequences)."""

    def __init__(self, x: torch.Tensor) -> None:
        if x.dim() not in (4, 5):
            raise ValueError(
                f"input tensor must be [N, C, H, W] (static images) or [T, N, C, H, W] (sequences), got shape "
                f"{tuple(x.shape)}; add the sample axis with x.unsqueeze(0) for one image"
            )
        if not x.is_floating_point():
            raise TypeError(f"input tensor must be floating point, got {x.dtype}; cast it with .float()")
        self.x = x.detach()
        self.description = f"tensor {tuple(x.shape)}"

    def __len__(self) -> int:
        return self.x.shape[1] if self.x.dim() == 5 else self.x.shape[0]

    def sample(self, k: int) -> torch.Tensor:
        return self.x[:, k] if self.x.dim() == 5 else self.x[k]


class DatasetSource(SampleSource):
    """Samples from a map-style dataset whose items are a tensor or ``(tensor, label, ...)``."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset
        self.description = f"dataset {type(dataset).__name__} ({len(dataset)} items)"

    def __len__(self) -> int:
        return len(self.dataset)

    def sample(self, k: int) -> torch.Tensor:
        item = self.dataset[k]
        x = item[0] if isinstance(item, (tuple, list)) else item
        if not isinstance(x, torch.Tensor) or x.dim() not in (3, 4):
            raise ValueError(
                f"dataset item {k} must be a tensor [C, H, W] or [T, C, H, W] (or a tuple starting with one), got "
                f"{type(x).__name__} {tuple(getattr(x, 'shape', ()))}"
            )
        return x.float()


class ImageFolderSource(SampleSource):
    """Images under ``root`` (recursive, sorted), resized (short side) and centre-cropped to (H, W), ImageNet-normalised."""

    def __init__(self, root: str | Path, size: Sequence[int]) -> None:
        root = Path(root)
        self.files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {root}")
        self.size = (int(size[-2]), int(size[-1]))
        self.description = f"image folder {root} ({len(self.files)} images, {self.size[0]}x{self.size[1]})"

    def __len__(self) -> int:
        return len(self.files)

    def sample(self, k: int) -> torch.Tensor:
        from PIL import Image
        from torchvision.transforms import functional as F

        img = Image.open(self.files[k]).convert("RGB")
        img = F.center_crop(F.resize(img, min(self.size)), list(self.size))
        return F.normalize(F.to_tensor(img), IMAGENET_MEAN, IMAGENET_STD)


def make_source(
    inputs, n_samples: int | None, input_size: Sequence[int] | None, seed: int
) -> SampleSource:
    """Build a source from ``"noise"``, ``"noise-iid:T"``, a folder path, a tensor or a dataset.

    ``n_samples`` is required for noise and caps the others; ``input_size`` (C, H, W) is needed for noise and folders.
    """
    if n_samples is not None and n_samples < 1:
        raise ValueError(f"n_samples must be >= 1 (an ERF is a mean over samples), got N = {n_samples}")
    if isinstance(inputs, str) and inputs.startswith("noise"):
        if n_samples is None:
            raise ValueError("noise inputs need n_samples (how many noise images to draw)")
        if input_size is None:
            raise ValueError("noise inputs need input_size=(C, H, W)")
        timesteps = 0
        if inputs.startswith("noise-iid"):
            _, _, t = inputs.partition(":")
            if not t.isdigit():
                raise ValueError(f"write i.i.d. noise as 'noise-iid:T' (e.g. 'noise-iid:8'), got {inputs!r}")
            timesteps = int(t)
        elif inputs != "noise":
            raise ValueError(f"unknown noise spec {inputs!r}; use 'noise' or 'noise-iid:T'")
        source: SampleSource = NoiseSource(n_samples, input_size, seed, timesteps)
    elif isinstance(inputs, (str, Path)):
        if not Path(inputs).is_dir():
            raise FileNotFoundError(f"inputs {str(inputs)!r} is neither 'noise' nor an existing image folder")
        if input_size is None:
            raise ValueError("image-folder inputs need input_size=(C, H, W) to resize to")
        source = ImageFolderSource(inputs, input_size)
    elif isinstance(inputs, torch.Tensor):
        source = TensorSource(inputs)
    elif hasattr(inputs, "__getitem__") and hasattr(inputs, "__len__"):
        source = DatasetSource(inputs)
    else:
        raise TypeError(
            f"inputs must be 'noise', an image folder, a tensor [N,C,H,W]/[T,N,C,H,W] or a dataset, got "
            f"{type(inputs).__name__}"
        )
    if n_samples is not None:
        if n_samples > len(source):
            raise ValueError(f"n_samples={n_samples} but the inputs hold only {len(source)} samples")
        source = _Truncated(source, n_samples)
    if len(source) == 0:
        raise ValueError("no input samples (N = 0); an ERF is a mean over at least one sample")
    return source


class _Truncated(SampleSource):
    def __init__(self, base: SampleSource, n: int) -> None:
        self.base, self.n = base, n
        self.description = base.description if n == len(base) else f"{base.description}, first {n}"

    def __len__(self) -> int:
        return self.n

    def sample(self, k: int) -> torch.Tensor:
        return self.base.sample(k)
