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
    bench.main(["--shape", "3,2,64", "--dtype", "fp32,bf16", "--backends", "torch,fused", "--device", "cpu",
                "--reps", "1", "--warmup", "0", "--json", str(out)])
    data = json.loads(out.read_text())
    assert {"device", "processor", "torch", "triton", "threads"} <= set(data["env"])
    rows = {(r["backend"], r["dtype"]): r for r in data["results"]}
    assert set(rows) == {("torch", "fp32"), ("fused", "fp32"), ("torch", "bf16"), ("fused", "bf16")}
    for dtype in ("fp32", "bf16"):
        assert rows[("fused", dtype)]["saved_mib"] < rows[("torch", dtype)]["saved_mib"]
        assert rows[("fused", dtype)]["ms_median"] > 0
    assert rows[("fused", "fp32")]["saved_mib"] * 2**20 == 3 * 2 * 64 * 4  # H in float32, nothing else
