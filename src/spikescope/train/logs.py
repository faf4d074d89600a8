"""Run-directory logs written by rank 0: ``log.csv`` (rewritten from the run's history each epoch, so a resumed
run never duplicates rows) and TensorBoard scalars when ``tensorboard`` is importable."""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

__all__ = ["write_csv", "TensorBoard"]


def write_csv(path: Path, history: list[dict]) -> None:
    """Atomically write ``history`` (one dict per epoch) as CSV."""
    if not history:
        return
    fields = list(dict.fromkeys(k for row in history for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(history)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(buf.getvalue())
    os.replace(tmp, path)


class TensorBoard:
    """``SummaryWriter`` scalars, or nothing when tensorboard is not installed."""

    def __init__(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except (ImportError, RuntimeError, AttributeError):
            self.writer = None
        else:
            self.writer = SummaryWriter(str(log_dir))

    def log(self, row: dict, step: int) -> None:
        if self.writer is None:
            return
        for key, value in row.items():
            if isinstance(value, int | float) and key != "epoch":
                self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
