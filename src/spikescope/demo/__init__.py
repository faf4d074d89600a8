"""``spikescope demo``: a CPU-only tour on built-in inputs (no download) that writes a report.

:mod:`.report` measures the ERFs and writes ``report.md``; :mod:`.training` trains the small SMA-VGG of
``configs/demo.yaml`` on synthetic events for it.
"""
from .report import run_demo
from .training import DEMO_RECIPE, train_demo

__all__ = ["run_demo", "DEMO_RECIPE", "train_demo"]
