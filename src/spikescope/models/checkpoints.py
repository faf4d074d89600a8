"""Load our checkpoints and the authors' released files into spikescope models, with a clear report.

A checkpoint file may hold a bare state dict or wrap it in ``model`` / ``state_dict`` / ``model_state`` keys;
``module.`` (DDP) and ``_orig_mod.`` (torch.compile) prefixes are stripped. A model whose module names differ from
the released code defines ``remap_checkpoint(state_dict) -> state_dict`` mapping the authors' key names onto its own;
it is applied only when the file's keys do not already match the model. :func:`convert_checkpoint` does that
once and writes a file in this model's own key names, with where it came from.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "CheckpointError", "CheckpointMismatchError", "LoadReport", "read_state_dict", "load_checkpoint",
    "save_checkpoint_atomic", "convert_checkpoint", "trained_model", "checkpoint_options",
]

_WRAPPER_KEYS = ("model", "state_dict", "model_state", "model_state_dict", "module")
_PREFIXES = ("module.", "_orig_mod.")


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read, or whose keys do not fit the model."""


@dataclass
class LoadReport:
    """What :func:`load_checkpoint` did: loaded keys and, by name, what did not fit."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # (key, file shape, model shape)
    #: (option, value recorded in a converted file, this model's value): tensors may fit while the computation differs
    options: list[tuple[str, object, object]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors"]
        for title, items in (("missing in the file", self.missing), ("unexpected in the file", self.unexpected)):
            if items:
                shown = ", ".join(items[:20]) + (f", ... ({len(items)} in all)" if len(items) > 20 else "")
                lines.append(f"{title} ({len(items)}): {shown}")
        for key, got, want in self.mismatched[:20]:
            lines.append(f"shape mismatch {key}: file {list(got)} vs model {list(want)}")
        for name, got, want in self.options:
            lines.append(f"option {name}: file {got!r} vs model {want!r}")
        return "\n".join(lines)


class CheckpointMismatchError(CheckpointError):
    """A readable checkpoint whose tensors do not fit the model; ``report`` lists every misfit."""

    def __init__(self, message: str, report: LoadReport) -> None:
        super().__init__(message)
        self.report = report


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint file (``weights_only=True``) and return its unwrapped, prefix-stripped state dict."""
    return _read(path)[0]


def _read(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict, the ``spikescope`` metadata of a converted file or ``{}``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and unpickler errors all mean "not a readable checkpoint"
        raise CheckpointError(
            f"cannot read {path} as a torch checkpoint ({type(err).__name__}: {err}); "
            "the file may be truncated or not a checkpoint"
        ) from err
    meta = obj.get("spikescope") if isinstance(obj, Mapping) else None
    meta = dict(meta) if isinstance(meta, Mapping) else {}
    for _ in range(3):
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors (top-level type {type(obj).__name__})")
    state = {}
    for key, value in obj.items():
        for prefix in _PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix) :]
        state[key] = value
    return state, meta


def _plain(value: object) -> object:
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _option_differences(recorded: Mapping | None, cfg: object) -> list[tuple[str, object, object]]:
    """Options recorded by :func:`convert_checkpoint` that differ from the model's config dataclass."""
    if not recorded or not dataclasses.is_dataclass(cfg):
        return []
    own = dataclasses.asdict(cfg)
    return [(k, v, own[k]) for k, v in recorded.items() if k in own and _plain(v) != _plain(own[k])]


def load_checkpoint(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> LoadReport:
    """Load ``path`` into ``model``; raise :class:`CheckpointError` listing every misfit unless ``strict=False``.

    With ``strict=False`` the tensors that fit are loaded and the rest is reported in the returned :class:`LoadReport`.
    """
    state, meta = _read(path)
    own = model.state_dict()
    remap = getattr(model, "remap_checkpoint", None)
    if remap is not None and not set(state) <= set(own):
        state = remap(state)
    report = LoadReport()
    fitting = {}
    for key, value in state.items():
        if key not in own:
            report.unexpected.append(key)
        elif tuple(value.shape) != tuple(own[key].shape):
            report.mismatched.append((key, tuple(value.shape), tuple(own[key].shape)))
        else:
            fitting[key] = value
    report.missing = [k for k in own if k not in state]
    report.loaded = list(fitting)
    if strict and not report.complete:
        raise CheckpointMismatchError(
            f"{path} does not fit {type(model).__name__}:\n{report}\n"
            "pass strict=False to load the matching tensors anyway",
            report,
        )
    report.options = _option_differences(meta.get("config"), getattr(model, "cfg", None))
    if report.options:
        diffs = ", ".join(f"{k}={got!r} (model: {want!r})" for k, got, want in report.options)
        warnings.warn(
            f"{path} was converted for {meta.get('model', 'a model')} with {diffs}; the tensors fit, but unless the "
            "difference is a training-only option (e.g. dropout) this model computes something else than the weights "
            "were trained for",
            stacklevel=2,
        )
    model.load_state_dict(fitting, strict=False)
    return report


def trained_model(path: str | os.PathLike) -> tuple[str, dict] | None:
    """``(model name, options)`` recorded in a checkpoint written by ``spikescope train`` (its resolved config);
    ``None`` for other files (released weights, converted files, unreadable files)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not readable here: load_checkpoint reports it
        return None
    model = obj.get("config", {}).get("model") if isinstance(obj, Mapping) else None
    if not isinstance(model, Mapping) or not model.get("name"):
        return None
    return str(model["name"]), dict(model.get("options") or {})


def checkpoint_options(name: str, overrides: Mapping, path: str | os.PathLike) -> dict:
    """The options to build ``name`` with so that ``path`` loads: a training checkpoint's recorded options, updated
    by ``overrides``; raises :class:`CheckpointError` naming the model it was trained as when that is not ``name``."""
    recorded = trained_model(path)
    if recorded is None:
        return dict(overrides)
    trained, options = recorded
    if trained != name:
        shown = ",".join(f"{k}={v}" for k, v in options.items())
        raise CheckpointError(f"{path} was trained as {trained}" + (f" ({shown})" if shown else "")
                              + f", not {name}; pass --model {trained} (its options are read from the file)")
    return {**options, **overrides}


def save_checkpoint_atomic(obj: object, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename: a killed write leaves the old file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def convert_checkpoint(
    name: str, src: str | os.PathLike, dst: str | os.PathLike, overrides: Mapping | None = None, strict: bool = True
) -> LoadReport:
    """Load ``src`` (ours or the authors' released file) into model ``name`` and save it under our key names.

    ``dst`` holds ``{"model": state_dict, "spikescope": {"model", "overrides", "config", "source", "source_sha256",
    "missing", "unexpected", "mismatched"}}``, written atomically; :func:`load_checkpoint` and ``create_model(...,
    pretrained=dst)`` read it without remapping, and warn when the model's config differs from the recorded one
    (same tensors, other computation: e.g. ``mixer_layout``). With ``strict=True`` (default) a file that does not fit the model
    raises :class:`CheckpointError` and nothing is written; with ``strict=False`` the misfits are recorded in the
    metadata, and the model's own initial values stand in for the missing tensors.
    """
    from .registry import create_model

    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise CheckpointError(f"convert would overwrite its source {src}; choose another output path")
    overrides = dict(overrides or {})
    model = create_model(name, **overrides)
    report = load_checkpoint(model, src, strict=strict)
    cfg = getattr(model, "cfg", None)
    meta = {
        "model": name, "overrides": overrides, "source": str(src), "source_sha256": _sha256(src),
        "config": dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else {},
        "missing": report.missing, "unexpected": report.unexpected,
        "mismatched": [[key, list(got), list(want)] for key, got, want in report.mismatched],
    }
    save_checkpoint_atomic({"model": model.state_dict(), "spikescope": meta}, dst)
    return report
