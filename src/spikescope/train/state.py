"""Run state: random-number-generator capture and restore (a resumed run continues bit-exactly), per-rank seeds,
and the run directory's guards (no silent overwrite, stale temporary files removed)."""
from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

__all__ = ["rng_state", "set_rng_state", "seed_everything", "rank_seed", "RunExistsError", "check_run_dir",
           "clear_run_files", "remove_stale_tmp"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s training randomness (dropout, masks, augmentation): ``seed + rank``, as timm does,
    so ranks draw different masks while rank 0 (and a single process) keeps ``seed``."""
    return seed + rank


def rng_state() -> dict:
    """Python, numpy, torch CPU and (when present) CUDA generator states (loadable with ``weights_only=True``)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached)
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RunExistsError(FileExistsError):
    """The run directory already holds a run (or other files) and neither resume nor overwrite was asked for."""


RUN_FILES = ("last.pt", "best.pt", "log.csv", "config.yaml", "tb")


def check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to start a new run in a folder that already holds one, or anything else, unless ``overwrite``."""
    if resume or overwrite or not run_dir.is_dir():
        return
    entries = sorted(p.name for p in run_dir.iterdir() if not _is_stale_tmp(p))
    if not entries:
        return
    if (run_dir / "last.pt").is_file():
        what = "a run (last.pt)"
    else:
        what = "files of something else (" + ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "") + ")"
    raise RunExistsError(
        f"{run_dir} already holds {what}; pass --resume to continue it, --overwrite to replace it, or pick a new "
        "folder with --set train.run_name=NAME"
    )


def clear_run_files(run_dir: Path) -> None:
    """Remove what an earlier run wrote (``--overwrite``); other files in the folder are left alone."""
    for name in RUN_FILES:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_stale_tmp(path: Path) -> bool:
    match = re.fullmatch(r"\..+\.tmp(\d*)", path.name)
    if match is None:
        return False
    return not match.group(1) or int(match.group(1)) == os.getpid() or not _pid_alive(int(match.group(1)))


def remove_stale_tmp(run_dir: Path) -> list[Path]:
    """Delete the temporary files (``.last.pt.tmp<pid>``, ``.log.csv.tmp``) of writes killed half-way."""
    if not run_dir.is_dir():
        return []
    stale = [p for p in run_dir.iterdir() if p.is_file() and _is_stale_tmp(p)]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
