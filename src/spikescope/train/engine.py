"""The training loop: AMP, readouts, grad clipping, EMA, per-epoch atomic checkpoints, exact resume, DDP.

``fit(cfg)`` trains a recipe and returns a :class:`FitResult`. The run directory ``<out_dir>/<run_name>/`` holds
``config.yaml`` (the resolved config), ``log.csv``, TensorBoard events (if installed), ``last.pt`` (everything needed
to continue: model, optimizer, scheduler, scaler, EMA, every rank's RNG states, history; written atomically after
every epoch) and ``best.pt`` (model weights of the best test epoch). ``fit(cfg, resume=True)`` continues from
``last.pt``; with the same config the result equals an uninterrupted run bit for bit on the CPU.
Launch on several GPUs or nodes with ``torchrun --nproc_per_node N -m spikescope.cli train ...``.
"""
from __future__ import annotations

import errno
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as torch_dist
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..models import CheckpointError, save_checkpoint_atomic
from .config import Config, ConfigError, check_paths, config_to_dict, resume_changes
from .data import move
from .distributed import DistInfo, all_reduce_sum, cleanup_distributed, setup_distributed
from .guards import NonFiniteError, check_weights_finite, raise_non_finite_step, step_is_finite
from .logs import TensorBoard, write_csv
from .losses import as_time_first, readout_loss
from .optim import build_optimizer, build_scheduler
from .state import (
    check_run_dir,
    clear_run_files,
    rank_seed,
    remove_stale_tmp,
    rng_state,
    seed_everything,
    set_rng_state,
)
from .tasks import get_task

__all__ = ["FitResult", "fit", "evaluate", "train_iterations", "to_model_layout", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "spikescope-train-1"
_AMP = {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class FitResult:
    run_dir: Path
    history: list[dict] = field(default_factory=list)
    best_acc1: float = 0.0  # the best value of the task's primary metric (top-1 % for classification)
    model: nn.Module | None = None  # the trained model (unwrapped from DDP)
    primary: str = "test_acc1"  # the history key best_acc1 refers to

    @property
    def last_acc1(self) -> float:
        rows = [r for r in self.history if "test_acc1" in r]
        return rows[-1]["test_acc1"] if rows else float("nan")


def to_model_layout(x: torch.Tensor) -> torch.Tensor:
    """Loader batches of event frames ``[B, T, 2, H, W]`` to the models' ``[T, B, 2, H, W]``; images unchanged."""
    return x.transpose(0, 1).contiguous() if x.dim() == 5 else x


def _autocast(device: torch.device, amp: str):
    dtype = _AMP[amp]
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def evaluate(model: nn.Module, loader, cfg: Config, dist: DistInfo, num_classes: int | None = None) -> dict:
    """Loss, top-1/top-5 accuracy (%) and per-class accuracy over the whole test set (summed over ranks)."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=dist.device)
    counts = torch.zeros(3, dtype=torch.float64, device=dist.device)  # n, top1, top5
    per_class = None
    with torch.no_grad():
        for batch in tqdm(loader, desc="eval", leave=False, disable=not (cfg.train.progress and dist.is_main)):
            x, y = move(batch, dist.device)
            with _autocast(dist.device, cfg.train.amp):
                out = model(to_model_layout(x))
            out = as_time_first(out).float()
            loss_sum += readout_loss(out, y, cfg.train.readout, cfg.train.label_smoothing, cfg.train.tet_lambda).double() * len(y)
            logits = out.mean(0)
            k = logits.shape[-1]
            top = logits.topk(min(5, k), dim=-1).indices
            hit1 = top[:, 0] == y
            counts += torch.stack([torch.tensor(float(len(y)), device=dist.device), hit1.sum().double(),
                                   (top == y[:, None]).any(-1).sum().double()])
            if per_class is None:
                per_class = torch.zeros(2, num_classes or k, dtype=torch.float64, device=dist.device)
            per_class[0].index_add_(0, y, torch.ones_like(y, dtype=torch.float64))
            per_class[1].index_add_(0, y, hit1.double())
    if per_class is None:
        per_class = torch.zeros(2, num_classes or 1, dtype=torch.float64, device=dist.device)
    all_reduce_sum(counts, dist)
    all_reduce_sum(loss_sum, dist)
    all_reduce_sum(per_class, dist)
    n = max(counts[0].item(), 1.0)
    acc = (100 * per_class[1] / per_class[0].clamp(min=1)).tolist()
    return {"loss": loss_sum.item() / n, "acc1": 100 * counts[1].item() / n, "acc5": 100 * counts[2].item() / n,
            "per_class_acc": acc, "samples": int(counts[0].item())}


def _train_epoch(model, loader, optimizer, scaler, ema, cfg: Config, dist: DistInfo, epoch: int) -> dict:
    """One epoch. A non-finite loss or gradient stops the run (:class:`NonFiniteError`) before the step; under the
    fp16 ``GradScaler`` such steps are skipped by the scaler and counted in ``skipped_steps``."""
    model.train()
    stats = torch.zeros(3, dtype=torch.float64, device=dist.device)  # n, loss sum, correct
    skipped = 0
    bar = tqdm(loader, desc=f"epoch {epoch}", leave=False, disable=not (cfg.train.progress and dist.is_main))
    for step, batch in enumerate(bar):
        x, y = move(batch, dist.device)
        with _autocast(dist.device, cfg.train.amp):
            out = model(to_model_layout(x))
        loss = readout_loss(out, y, cfg.train.readout, cfg.train.label_smoothing, cfg.train.tet_lambda)
        if not _update(loss, model, optimizer, scaler, ema, cfg, dist, epoch, step):
            skipped += 1
            continue
        with torch.no_grad():
            correct = (as_time_first(out).float().mean(0).argmax(-1) == y).sum()
        stats += torch.stack([torch.tensor(float(len(y)), device=dist.device), loss.detach().double() * len(y),
                              correct.double()])
        bar.set_postfix(loss=f"{loss.item():.4f}")
    all_reduce_sum(stats, dist)
    n = max(stats[0].item(), 1.0)
    return {"train_loss": stats[1].item() / n, "train_acc1": 100 * stats[2].item() / n,
            **_skipped(scaler, skipped, len(loader), epoch)}


def _update(loss, model, optimizer, scaler, ema, cfg: Config, dist: DistInfo, epoch: int, step: int) -> bool:
    """Backward, clip and optimiser step of one update (and the EMA); ``False`` where the fp16 ``GradScaler``
    skipped it for inf/NaN gradients. Without a scaler a non-finite loss or gradient raises
    :class:`NonFiniteError` before the weights change."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if cfg.optim.clip_grad:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_grad)
    if not scaler.is_enabled() and not step_is_finite(loss, model, dist):
        raise_non_finite_step(loss, epoch, step)
    scale = scaler.get_scale() if scaler.is_enabled() else None
    scaler.step(optimizer)
    scaler.update()
    if scale is not None and scaler.get_scale() < scale:  # the scaler found inf/NaN gradients: step skipped
        return False
    if ema is not None:
        ema.update(_unwrap(model))
    return True


def _skipped(scaler, skipped: int, steps: int, epoch: int) -> dict:
    """``{"skipped_steps": n}`` under the fp16 scaler (else ``{}``); every step of the epoch skipped stops the run."""
    if not scaler.is_enabled():
        return {}
    if skipped == steps:
        raise NonFiniteError(f"epoch {epoch}: the fp16 GradScaler skipped all {skipped} steps (non-finite gradients "
                             "at every scale); lower optim.lr or use train.amp=bf16")
    return {"skipped_steps": skipped}


def set_epoch(loader, epoch: int) -> None:
    """Seed ``loader``'s order for ``epoch``: its batch sampler when that takes an epoch (grouped batches), else its
    sampler (a ``DistributedSampler``), so that a resumed run sees the same batches."""
    target = loader.batch_sampler if hasattr(loader.batch_sampler, "set_epoch") else loader.sampler
    target.set_epoch(epoch)


def train_iterations(losses_fn, model, loader, optimizer, scaler, ema, scheduler, cfg: Config, dist: DistInfo,
                     epoch: int) -> dict:
    """One epoch of ``cfg.train.iters_per_epoch`` updates (``None``: one pass over ``loader``; the loader is cycled,
    each pass seeded by ``(epoch, pass)``) for tasks that give ``losses_fn(model, batch, device) -> {name: loss}``.

    The loss is the sum of the terms; the lr schedule is stepped per update (``scheduler.step_update(i)`` with the
    run's update count ``i``); non-finite updates stop or are skipped as in classification (:func:`_update`).
    Returns ``lr`` (of the epoch's first update), ``train_loss`` and ``train_<name>``: means over the epoch (all
    ranks), and ``skipped_steps`` under the fp16 scaler."""
    model.train()
    n_iter = cfg.train.iters_per_epoch or len(loader)
    sums: dict[str, torch.Tensor] = {}
    bar = tqdm(total=n_iter, desc=f"epoch {epoch}", leave=False, disable=not (cfg.train.progress and dist.is_main))
    done, passes, first_lr, skipped = 0, 0, None, 0
    while done < n_iter:
        if passes:
            set_epoch(loader, epoch * 1000 + passes)
        for batch in loader:
            if done == n_iter:
                break
            if scheduler is not None:
                scheduler.step_update(epoch * n_iter + done)
            first_lr = optimizer.param_groups[0]["lr"] if first_lr is None else first_lr
            with _autocast(dist.device, cfg.train.amp):
                terms = losses_fn(model, batch, dist.device)
            loss = sum(terms.values())
            skipped += not _update(loss, model, optimizer, scaler, ema, cfg, dist, epoch, done)
            for name, value in {"loss": loss, **terms}.items():
                sums[name] = sums.get(name, 0.0) + value.detach().double()
            done += 1
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.4f}")
        passes += 1
    bar.close()
    names = sorted(sums)
    stats = torch.stack([sums[k].to(dist.device) for k in names])
    all_reduce_sum(stats, dist)
    return {"lr": first_lr, **{f"train_{k}": v / (n_iter * dist.world_size) for k, v in zip(names, stats.tolist())},
            **_skipped(scaler, skipped, n_iter, epoch)}


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def _gather_rng(dist: DistInfo) -> list:
    state = rng_state()
    if not dist.enabled:
        return [state]
    states = [None] * dist.world_size
    torch_dist.all_gather_object(states, state)
    return states


def fit(cfg: Config, resume: bool = False, stop_after: int | None = None,
        model_fn: Callable[[], nn.Module] | None = None, datasets=None, overwrite: bool = False,
        accept_changes: bool = False) -> FitResult:
    """Train ``cfg``. ``resume``: continue from ``<run_dir>/last.pt`` (a recipe changed since then is refused, or
    with ``accept_changes`` listed and used). ``stop_after``: end this call after that many epochs (the run can be
    resumed). ``overwrite``: replace the run already in ``run_dir`` (refused by default). ``model_fn`` /
    ``datasets=(train, test)`` replace the registry model and the config's datasets (tests, notebooks)."""
    check_paths(cfg)
    check_run_dir(cfg.run_dir, resume, overwrite)  # every rank, before the process group lets rank 0 write
    dist = setup_distributed(cfg.train.device)
    try:
        return _fit(cfg, dist, resume, stop_after, model_fn, datasets, overwrite, accept_changes)
    finally:
        cleanup_distributed(dist)


def _read_last(last_path: Path, cfg: Config, accept_changes: bool, dist: DistInfo) -> dict:
    """``last.pt`` for ``--resume``: readable, and written with this recipe (or ``accept_changes``)."""
    if not last_path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint {last_path} to continue from")
    try:
        ckpt = torch.load(last_path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, empty or not a checkpoint
        raise CheckpointError(f"--resume: cannot read {last_path} ({type(err).__name__}); the file is truncated or "
                              "not a checkpoint: start a new run with --overwrite") from None
    refused, changed = resume_changes(ckpt.get("config") or {}, config_to_dict(cfg))
    if refused:
        raise ConfigError(f"--resume: {last_path} was trained with another model or optimiser ({'; '.join(refused)})"
                          "; its tensors cannot continue under the new recipe: start a new run with --overwrite or "
                          "--set train.run_name=NAME")
    if changed and not accept_changes:
        raise ConfigError(f"--resume: the recipe changed since {last_path} was written ({'; '.join(changed)}); "
                          "pass --accept-changes (fit(..., accept_changes=True)) to continue with the new values")
    if changed and dist.is_main:
        print(f"resuming with a changed recipe: {'; '.join(changed)}", flush=True)
    return ckpt


def _fit(cfg, dist: DistInfo, resume, stop_after, model_fn, datasets, overwrite, accept_changes) -> FitResult:
    run_dir = cfg.run_dir
    last_path = run_dir / "last.pt"
    ckpt = _read_last(last_path, cfg, accept_changes, dist) if resume else None
    seed_everything(cfg.train.seed)
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    task = get_task(cfg.task)
    task.check(cfg)
    train_set, test_set = datasets if datasets is not None else task.build_datasets(cfg)
    model = model_fn() if model_fn is not None else task.build_model(cfg)
    model = model.to(dist.device)
    if dist.enabled and cfg.train.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    global_batch = cfg.data.batch_size * dist.world_size
    params = task.param_groups(model, cfg) if hasattr(task, "param_groups") else model  # e.g. head lr x2
    optimizer = build_optimizer(params, cfg.optim, global_batch)
    train_loader, test_loader = task.build_loaders(train_set, test_set, cfg, dist)
    scheduler = build_scheduler(optimizer, cfg.schedule, cfg.train.epochs,
                                cfg.train.iters_per_epoch or len(train_loader))
    scaler = torch.amp.GradScaler(dist.device.type, enabled=cfg.train.amp == "fp16")
    ema = None
    if cfg.train.ema:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=cfg.train.ema_decay)
    if dist.rank:  # ranks draw their own dropout / masks; rank 0 keeps the single-process stream
        seed_everything(rank_seed(cfg.train.seed, dist.rank))

    start_epoch, history, best = 0, [], -1.0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt.get("scheduler") is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        if ema is not None and ckpt.get("ema") is not None:
            ema.load_state_dict(ckpt["ema"])
        start_epoch, history, best = ckpt["epoch"] + 1, ckpt["history"], ckpt["best_acc1"]
        states = ckpt["rng"]
        set_rng_state(states[dist.rank] if len(states) == dist.world_size else states[0])
    if dist.enabled:
        model = DistributedDataParallel(model, device_ids=[dist.device] if dist.device.type == "cuda" else None)

    tb = None
    if dist.is_main:
        if overwrite and not resume:
            clear_run_files(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_tmp(run_dir)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
        _write(run_dir / "log.csv", lambda p: write_csv(p, history))  # redoes a write cut off after last.pt
        tb = TensorBoard(run_dir / "tb")
    end = cfg.train.epochs if stop_after is None else min(cfg.train.epochs, start_epoch + stop_after)
    try:
        for epoch in range(start_epoch, end):
            t0 = time.perf_counter()
            if scheduler is not None:
                scheduler.step(epoch)
            set_epoch(train_loader, epoch)
            row = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"]}
            if hasattr(task, "train_epoch"):
                row.update(task.train_epoch(model, train_loader, optimizer, scaler, ema, scheduler, cfg, dist, epoch))
            else:
                row.update(train_iterations(task.losses, model, train_loader, optimizer, scaler, ema, scheduler, cfg,
                                            dist, epoch))
            if (epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == cfg.train.epochs:
                row.update(task.evaluate(model, test_loader, cfg, dist))
                if ema is not None:
                    row[f"ema_{task.primary}"] = task.evaluate(ema.module, test_loader, cfg, dist)[task.primary]
            row["epoch_time_s"] = time.perf_counter() - t0
            check_weights_finite(_unwrap(model), epoch)
            history.append(row)
            improved = row.get(task.primary, -1.0) > best and math.isfinite(row.get("test_loss", 0.0))
            if improved:
                best = row[task.primary]
            rng = _gather_rng(dist)
            if dist.is_main:
                _save(run_dir, cfg, model, optimizer, scheduler, scaler, ema, epoch, best, history, rng, improved)
                _write(run_dir / "log.csv", lambda p: write_csv(p, history))
                tb.log(row, epoch)
                print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                      flush=True)
            if dist.enabled:
                torch_dist.barrier()
    finally:
        if tb is not None:
            tb.close()
    return FitResult(run_dir, history, max(best, 0.0), _unwrap(model), task.primary)


def _save(run_dir, cfg, model, optimizer, scheduler, scaler, ema, epoch, best, history, rng, improved) -> None:
    """``best.pt`` (if improved) before ``last.pt``: a crash between the two resumes from the previous epoch, which
    redoes this one bit-exactly and writes both again; ``log.csv`` follows and is rewritten on resume. A full disk
    ends the run with one line, the previous files intact."""
    weights = _unwrap(model).state_dict()
    state = {
        "format": CHECKPOINT_FORMAT,
        "model": weights,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict(),
        "ema": ema.state_dict() if ema is not None else None,
        "epoch": epoch,
        "best_acc1": best,
        "history": history,
        "rng": rng,
        "config": config_to_dict(cfg),
    }
    if improved:
        best_state = {"format": CHECKPOINT_FORMAT, "model": weights, "epoch": epoch, "config": config_to_dict(cfg)}
        _write(run_dir / "best.pt", lambda p: save_checkpoint_atomic(best_state, p))
    _write(run_dir / "last.pt", lambda p: save_checkpoint_atomic(state, p))


def _write(path: Path, write: Callable[[Path], None]) -> None:
    """``write(path)``; a full disk (ENOSPC, EDQUOT) becomes one line saying the previous file is intact."""
    try:
        write(path)
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise OSError(err.errno, f"no space left on the device writing {path}; the previous {path.name} is intact: "
                      "free space, then continue with --resume") from None
