"""Step runner of ``benchmarks/gpu.sh``: run one benchmark under a time budget, write its JSON, print the summary.

    python benchmarks/gpu_step.py env WORK_DIR                      # once: device, torch, triton, ... -> env.json
    python benchmarks/gpu_step.py run OUT_DIR WORK_DIR NAME BUDGET_S DEADLINE RESULT -- CMD ...
    python benchmarks/gpu_step.py skip OUT_DIR WORK_DIR NAME "reason"
    python benchmarks/gpu_step.py summary OUT_DIR                   # table of every step -> stdout and summary.md

OUT_DIR receives only ``NAME.json`` per step and ``summary.md`` (few files: the GPU machine returns at most 8);
logs, the benchmarks' own result files and ``env.json`` stay in WORK_DIR.
``run`` starts CMD in its own process group with a timeout of ``min(BUDGET_S, DEADLINE - now)`` (DEADLINE: a Unix
time, the script's overall end), keeps its output in ``WORK_DIR/NAME.log``, and always writes ``NAME.json``: the step's status
(``ok``, ``failed``, ``timeout``), exit code, wall time, command, the environment of ``env.json`` and the figures the
benchmark wrote to RESULT (a JSON file, or a pytest ``--junitxml`` file). A failing step is recorded, never raised:
the exit code of ``run`` is 0 so the script goes on.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from importlib import metadata
from pathlib import Path

LOG_TAIL = 4000  # characters of a failed step's output kept in its JSON


def write_json(path: Path, obj: dict) -> None:
    """Atomic write (temporary file, then rename)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    tmp.replace(path)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict:
    """GPU (from ``nvidia-smi``), torch, triton and SpikingJelly versions, CPU: read without importing torch.

    Each benchmark also records what torch itself reports (device name, threads) in its own figures.
    """
    gpu = None
    if shutil.which("nvidia-smi"):
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                           capture_output=True, text=True)
        gpu = q.stdout.strip().splitlines()[0] if q.returncode == 0 and q.stdout.strip() else None
    return {
        "device": gpu.split(",")[0].strip() if gpu else "cpu",
        "nvidia_smi": gpu,
        "torch": _version("torch"),
        "triton": _version("triton"),
        "spikingjelly": _version("spikingjelly"),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "triton_interpret": os.environ.get("TRITON_INTERPRET") == "1",
    }


def read_result(path: Path) -> dict | None:
    """The figures a benchmark wrote: its JSON, or the counts and failures of a pytest junit XML."""
    if not path.exists():
        return None
    if path.suffix == ".xml":
        root = ET.parse(path).getroot()
        suite = root if root.tag == "testsuite" else root.find("testsuite")
        counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
        counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
        counts["not_passed"] = [
            f"{case.get('classname')}::{case.get('name')}: {child.tag}"
            for case in suite.iter("testcase") for child in case if child.tag in ("failure", "error")
        ]
        return counts
    return json.loads(path.read_text())


def _order(out: Path) -> int:
    """Position of the next step: the number of step JSONs already written."""
    return len(list(out.glob("*.json")))


def run_step(out: Path, work: Path, name: str, budget: float, deadline: float, result: Path, cmd: list[str]) -> dict:
    order = _order(out)
    timeout = max(1.0, min(budget, deadline - time.time()))
    log = work / f"{name}.log"
    t0 = time.time()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
            status = "ok" if rc == 0 else "failed"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole group: a benchmark's workers too
            rc = proc.wait()
            status = "timeout"
    wall = time.time() - t0
    try:
        figures = read_result(result)
    except (ValueError, ET.ParseError, AttributeError) as e:
        figures, status = None, "failed"
        rc = f"unreadable result {result}: {e}"
    if status == "ok" and figures is None:
        status = "failed"
    if name == "gpu_tests" and figures and (figures["failures"] or figures["errors"]):
        status = "failed"
    rec = {"step": name, "order": order, "status": status, "rc": rc, "wall_s": round(wall, 2), "budget_s": round(timeout, 1),
           "command": cmd, "env": json.loads((work / "env.json").read_text()), "result": figures}
    if status != "ok":
        rec["error"] = log.read_text(errors="replace")[-LOG_TAIL:]
    write_json(out / f"{name}.json", rec)
    print(f"[{name}] {status} in {wall:.1f} s (budget {timeout:.0f} s)", flush=True)
    return rec


def headline(rec: dict) -> list[str]:
    """The figures of one step as short strings, for the summary table."""
    r = rec.get("result")
    if not r:
        msg = (rec.get("reason") or rec.get("error") or "").strip()
        return [msg.splitlines()[-1][:100] if msg else "no result"]
    if "tests" in r:
        return [f"{r['passed']} passed, {r['failures'] + r['errors']} failed, {r['skipped']} skipped"]
    if "passes" in r:  # benchmarks/neurons.py
        out = []
        for row in r["results"]:
            if "error" in row:
                out.append(f"{row['backend']} {row['dtype']}: {row['error'][:60]}")
                continue
            s = f"{row['backend']} {row['dtype']}: {row['ms_median']:.3f} ms"
            if "gb_s" in row:
                s += f", {row['gb_s']:.0f} GB/s, {100 * row['fraction_of_floor']:.0f}% of floor"
            if row.get("peak_mib") is not None:
                s += f", peak {row['peak_mib']:.0f} MiB"
            out.append(s)
        return out
    if "runs" in r:  # benchmarks/erf.py
        return [f"{x['model']}: batched {x['batched_s']} s, authors' loop {x['authors_loop_s']} s "
                f"({x['speedup_vs_authors_loop']}x), input-only loop {x['loop_input_grad_only_s']} s"
                for x in r["runs"]]
    if "results" in r and "meta" in r:  # benchmarks/models.py
        out = []
        for x in r["results"]:
            ov = ",".join(f"{k}={v}" for k, v in x["overrides"].items() if k in ("mixer", "azo"))
            tag = f"{x['model']}[{ov}] neurons={x['neuron_backend']} {x['amp']}"
            out.append(f"{tag}: {x['error'][:60]}" if "error" in x else
                       f"{tag}: {x['samples_per_s']} samples/s, peak {x['peak_mib']} MiB")
        return out
    return [", ".join(f"{k}={v}" for k, v in r.items() if isinstance(v, int | float | str))[:200] or "see JSON"]


def summary(out: Path) -> str:
    recs = sorted((json.loads(p.read_text()) for p in out.glob("*.json")), key=lambda r: r.get("order", 99))
    if not recs:
        raise SystemExit(f"gpu_step.py summary: no step JSON in {out}")
    env = recs[0]["env"]
    lines = [f"device {env['device']}, torch {env['torch']}, triton {env['triton']}, "
             f"spikingjelly {env['spikingjelly']}", "",
             "| step | status | wall s | figures |", "|---|---|---|---|"]
    for rec in recs:
        figs = headline(rec)
        lines.append(f"| {rec['step']} | {rec['status']} | {rec.get('wall_s', '')} | {figs[0]} |")
        lines += [f"| | | | {f} |" for f in figs[1:]]
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    return text


def main(argv: list[str]) -> int:
    verb, out = argv[0], Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    if verb == "env":
        write_json(out / "env.json", environment())
    elif verb == "run":
        work, name, budget, deadline, result = Path(argv[2]), argv[3], float(argv[4]), float(argv[5]), Path(argv[6])
        cmd = argv[argv.index("--") + 1:]
        run_step(out, work, name, budget, deadline, result, cmd)
    elif verb == "skip":
        work, name, reason = Path(argv[2]), argv[3], argv[4]
        rec = {"step": name, "order": _order(out), "status": "not available", "reason": reason,
               "env": json.loads((work / "env.json").read_text()), "result": None}
        write_json(out / f"{name}.json", rec)
        print(f"[{name}] not available: {reason}", flush=True)
    elif verb == "summary":
        print(summary(out), end="")
    else:
        print(f"gpu_step.py: unknown verb {verb!r}; choose env, run, skip or summary", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
