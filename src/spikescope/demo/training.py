"""The training part of ``spikescope demo``: a small SMA-VGG trained on synthetic events on the CPU (~1 min).

Synthetic moving-shape events (4 motion classes, written as DVS128 Gesture AEDAT 3.1 files and read back through
the real reader and framing) -> ``[8, B, 2, 32, 32]`` frames -> ``sma_vgg8_dvs128`` with small widths. The recipe
is :data:`DEMO_RECIPE` (also ``configs/demo.yaml``).
"""
from __future__ import annotations

import copy
import time
from pathlib import Path

from ..train import fit, load_config

__all__ = ["DEMO_RECIPE", "train_demo"]

DEMO_RECIPE = {
    "model": {
        "name": "sma_vgg8_dvs128",
        "options": {"timesteps": 8, "num_classes": 4, "widths": [16, 32, 32, 64, 64], "hidden": [128, 64]},
    },
    "data": {
        "name": "synthetic",
        "root": "data/synthetic_demo",
        "num_frames": 8,
        "batch_size": 8,
        "synthetic": {"num_classes": 4, "samples_per_class": 48, "size": 32, "seed": 0},
    },
    "optim": {"name": "adamw", "lr": 0.008, "weight_decay": 0.01},
    "schedule": {"name": "cosine", "min_lr": 0.0001},
    "train": {"epochs": 10, "seed": 0, "readout": "mse_onehot", "out_dir": "runs/train"},
}


def _plot(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] + 1 for r in history]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(epochs, [r["train_loss"] for r in history], "o-", label="train loss")
    ax.plot(epochs, [r["test_loss"] for r in history], "s--", label="test loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (MSE to one-hot)")
    ax2 = ax.twinx()
    ax2.plot(epochs, [r["test_acc1"] for r in history], "g^:", label="test top-1")
    ax2.set_ylabel("test top-1 (%)")
    ax2.set_ylim(0, 100)
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [ln.get_label() for ln in lines], loc="center right", fontsize=8)
    ax.set_title("SMA-VGG on synthetic events")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def train_demo(out_dir: str | Path, quick: bool = False, progress: bool = False) -> dict:
    """Train the demo recipe as the run ``out_dir`` (checkpoints ``out_dir/best.pt``, ``last.pt``; data in
    ``out_dir/../data``).

    ``quick`` (the test suite) uses fewer samples and epochs. Returns ``test_acc1`` (last epoch, %), ``best_acc1``,
    ``chance`` (%), ``loss_curve`` (train loss per epoch), ``test_loss_curve``, ``seconds``, ``plot`` (PNG path),
    ``run_dir``, ``model`` (the trained ``nn.Module``, in eval mode, for the ERF part of the demo) and ``config``.
    """
    out_dir = Path(out_dir)
    recipe = copy.deepcopy(DEMO_RECIPE)
    recipe["data"]["root"] = str(out_dir.parent / "data")
    recipe["train"].update(out_dir=str(out_dir.parent), run_name=out_dir.name, progress=progress)
    if quick:
        recipe["data"]["synthetic"]["samples_per_class"] = 16
        recipe["train"]["epochs"] = 3
    cfg = load_config(values=recipe)
    t0 = time.perf_counter()
    result = fit(cfg, overwrite=True)  # the demo owns this run folder
    seconds = time.perf_counter() - t0
    plot = out_dir / "loss_curve.png"
    _plot(result.history, plot)
    return {
        "test_acc1": result.last_acc1,
        "best_acc1": result.best_acc1,
        "chance": 100.0 / cfg.data.synthetic.num_classes,
        "loss_curve": [r["train_loss"] for r in result.history],
        "test_loss_curve": [r["test_loss"] for r in result.history],
        "seconds": seconds,
        "plot": str(plot),
        "run_dir": str(result.run_dir),
        "model": result.model.eval(),
        "config": cfg,
    }
