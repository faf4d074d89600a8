"""benchmarks/gpu.sh: the dry run writes one valid JSON per step; the step runner records failures and timeouts."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS = ["gpu_tests", "neurons", "triton_kernels", "erf_spatial", "train_sma_vgg8", "train_sdt_v3_s", "dense"]


def _gpu_step():
    spec = importlib.util.spec_from_file_location("gpu_step", ROOT / "benchmarks" / "gpu_step.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture()
def work(tmp_path):
    gs = _gpu_step()
    gs.main(["env", str(tmp_path / "work")])
    return gs, tmp_path / "out", tmp_path / "work"


def test_step_runner_records_failure_and_goes_on(work):
    gs, out, wk = work
    out.mkdir()
    rec = gs.run_step(out, wk, "bad", 30, time.time() + 30, wk / "none.json",
                      [sys.executable, "-c", "import sys; print('boom at step'); sys.exit(3)"])
    assert rec["status"] == "failed" and rec["rc"] == 3 and "boom at step" in rec["error"]
    assert json.loads((out / "bad.json").read_text())["status"] == "failed"
    (wk / "r.json").write_text('{"x": 1.5}')
    rec = gs.run_step(out, wk, "good", 30, time.time() + 30, wk / "r.json", [sys.executable, "-c", "pass"])
    assert rec["status"] == "ok" and rec["result"] == {"x": 1.5} and rec["order"] == 1
    table = gs.summary(out)
    assert "| bad | failed |" in table and "| good | ok |" in table and "x=1.5" in table


def test_step_runner_stops_at_the_deadline(work):
    gs, out, wk = work
    out.mkdir()
    t0 = time.time()
    rec = gs.run_step(out, wk, "slow", 60, time.time() + 1.5, wk / "none.json",
                      [sys.executable, "-c", "import time; time.sleep(60)"])
    assert rec["status"] == "timeout" and rec["budget_s"] <= 1.5 and time.time() - t0 < 30


def test_gpu_sh_refuses_a_used_out_dir_and_bad_options(tmp_path):
    (tmp_path / "old.json").write_text("{}")
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--dry-run", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "already holds results" in r.stderr
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--fast"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown option --fast" in r.stderr


def test_dry_run_writes_one_valid_json_per_step(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "GPU_WORK": str(tmp_path / "work"), "OMP_NUM_THREADS": "1"}
    env.pop("SJ_WHEELS", None)
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), "--dry-run", str(out)],
                       capture_output=True, text=True, env=env, timeout=400)
    assert r.returncode == 0, r.stderr[-2000:]
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted([f"{s}.json" for s in STEPS] + ["summary.md"])  # 8: the most a GPU machine hands back
    recs = {s: json.loads((out / f"{s}.json").read_text()) for s in STEPS}
    for name, rec in recs.items():
        assert rec["step"] == name
        assert {"device", "torch", "triton", "spikingjelly"} <= rec["env"].keys() and rec["env"]["device"] == "cpu"
        if name == "dense" and rec["status"] == "not available":
            continue
        assert rec["status"] == "ok", (name, rec.get("error"))
        assert rec["result"], name
    assert [recs[s]["order"] for s in STEPS] == list(range(len(STEPS)))
    tests = recs["gpu_tests"]["result"]
    assert tests["tests"] > 0 and tests["failures"] == tests["errors"] == 0
    rows = {(x["backend"], x["dtype"]): x for x in recs["neurons"]["result"]["results"]}
    for dtype in ("fp32", "bf16"):  # Triton ran (under its interpreter) and gave a time
        assert rows[("triton", dtype)]["ms"]["median"] > 0 and "error" not in rows[("triton", dtype)]
        assert ("spikingjelly", dtype) in rows  # attempted: a figure or the import error, recorded
    triton_rows = recs["triton_kernels"]["result"]["results"]  # autotuned choices, BN + integer spike fused or not
    assert {r["case"] for r in triton_rows} >= {"LIF fwd+bwd", "PLIF fwd+bwd", "BN + IntegerSpike inference"}
    assert all(r["kernels"] for r in triton_rows)
    vgg = recs["train_sma_vgg8"]["result"]["results"]
    assert sorted((x["overrides"]["azo"], x["neuron_backend"]) for x in vgg) == [
        (False, "auto"), (False, "torch"), (True, "auto"), (True, "torch")]
    sdt = recs["train_sdt_v3_s"]["result"]["results"]
    assert sorted((x["overrides"]["mixer"], x["neuron_backend"]) for x in sdt) == sorted(
        (m, b) for m in ("conv", "mlpixer", "srb") for b in ("auto", "torch"))
    for x in vgg + sdt:
        assert "error" not in x and x["samples_per_s"] > 0 and x["neurons"] > 0
    (erf,) = recs["erf_spatial"]["result"]["runs"]
    assert erf["batched_s"] > 0 and erf["max_rel_diff_of_mean_maps"] < 1e-3
    table = (out / "summary.md").read_text()
    assert all(f"| {s} |" in table for s in STEPS) and table in r.stdout
