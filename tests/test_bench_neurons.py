"""Smoke test of benchmarks/neurons.py: it runs on a tiny shape and writes the documented JSON fields."""
import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "neurons.py"


def test_neuron_benchmark_writes_figures(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_neurons", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "n.json"
    bench.main(["--shape", "3,2,64", "--dtype", "fp32,bf16", "--backends", "torch,fused,cpu", "--device", "cpu",
                "--reps", "2", "--warmup", "0", "--baseline", "torch", "--t-scan", "1,4", "--t-scan-shape", "2,8",
                "--json", str(out)])
    data = json.loads(out.read_text())
    assert {"device", "processor", "torch", "triton", "threads", "load_average_before"} <= set(data["env"])
    rows = {(r["backend"], r["dtype"]): r for r in data["results"]}
    backends = ("copy floor", "torch", "fused", "cpu")
    assert set(rows) == {(b, d) for b in backends for d in ("fp32", "bf16")}
    for dtype in ("fp32", "bf16"):
        assert rows[("copy floor", dtype)]["ms"]["median"] > 0
        for b in ("fused", "cpu"):
            assert rows[(b, dtype)]["saved_mib"] < rows[("torch", dtype)]["saved_mib"]
            assert rows[(b, dtype)]["fraction_of_floor"]["median"] > 0
            assert len(rows[(b, dtype)]["ms_all"]) == 2
        assert rows[("torch", dtype)]["speedup_vs_torch"]["median"] == 1.0
    for b in ("fused", "cpu"):
        assert rows[(b, "fp32")]["saved_mib"] * 2**20 == 3 * 2 * 64 * 4  # H in float32, nothing else
    scan = {(r["backend"], r["dtype"]): r for r in data["t_scan"]}
    assert set(scan[("cpu", "fp32")]["ms_per_step"]) == {"1", "4"}
