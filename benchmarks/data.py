"""Throughput of the event readers and of frame integration on random streams (prints figures, optional JSON).

    PYTHONPATH=src python benchmarks/data.py --events 2000000 --json results/data_cpu.json
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from spikescope.data import integrate_frames, load_events, make_events
from spikescope.data.aedat2 import write_aedat2
from spikescope.data.aedat31 import write_aedat31
from spikescope.data.atis import write_atis


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--packet-size", type=int, default=4096, help="events per AEDAT 3.1 packet")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = args.events
    ev = make_events(np.sort(rng.integers(0, 1 << 23, n)), rng.integers(0, 128, n), rng.integers(0, 128, n),
                     rng.integers(0, 2, n))
    results = {"device": f"CPU ({platform.processor() or platform.machine()})", "events": n}
    with tempfile.TemporaryDirectory() as tmp:
        aedat31 = lambda p, e: write_aedat31(p, e, packet_size=args.packet_size)  # noqa: E731
        for name, writer, suffix in (("aedat31", aedat31, ".aedat"), ("aedat2", write_aedat2, ".aedat"),
                                     ("atis", write_atis, ".bin")):
            path = Path(tmp) / f"{name}{suffix}"
            writer(path, ev)
            sec = _best(lambda p=path: load_events(p), args.repeats)
            results[f"read_{name}_Mev_per_s"] = n / sec / 1e6
    for split_by in ("number", "time"):
        for T in (10, 16):
            sec = _best(lambda s=split_by, t=T: integrate_frames(ev, t, 128, 128, s), args.repeats)
            results[f"frames_{split_by}_T{T}_Mev_per_s"] = n / sec / 1e6
    for key, value in results.items():
        print(f"{key:32s} {value:.1f}" if isinstance(value, float) else f"{key:32s} {value}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
