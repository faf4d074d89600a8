"""Pick the tensors an ERF is measured on, and capture them during one forward pass.

A *layer* is either a key of ``model.forward_features(x)`` (``"stage1"``) or the output of a named sub-module
(``"stage1.0"``, ``"convs.3"``); glob patterns (``"stage1.*"``) match both kinds. Captured tensors are returned
time-first ``[T, B, C, H, W]``: 4-D module outputs ``[T*B, C, H, W]`` (time folded into the batch) and
``[B, C, H, W]`` (one timestep) are unfolded, anything else has no spatial map and is refused with a clear error.
"""
from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["LayerError", "LayerRef", "resolve_layers", "capture", "as_sequence", "run_model", "PROBE_BATCH", "neuron_modules", "check_neuron"]

PROBE_BATCH = 3  # an odd probe batch keeps [T*B, ...] and [B, ...] apart from token layouts such as [T, B, C, N]


class LayerError(ValueError):
    """A requested layer does not exist or has no spatial map."""


@dataclass(frozen=True)
class LayerRef:
    """One resolved layer: ``kind`` is ``"feature"`` (a forward_features key) or ``"module"`` (a sub-module name)."""

    name: str
    kind: str


def _is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def _listing(names: Sequence[str], limit: int = 60) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def resolve_layers(
    model: nn.Module, patterns: str | Sequence[str], feature_keys: Sequence[str]
) -> list[LayerRef]:
    """Map names/globs onto forward_features keys (preferred) and sub-module names, in the order given.

    Raises :class:`LayerError` naming the available layers when a pattern matches nothing.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    if not patterns:
        raise LayerError("no layer requested; pass layer names, globs such as 'stage1.*', or forward_features keys")
    modules = [n for n, _ in model.named_modules() if n]
    found: list[LayerRef] = []
    for pat in patterns:
        if _is_glob(pat):
            # A glob that names forward_features keys means those maps; module names are its fallback.
            hits = [LayerRef(k, "feature") for k in feature_keys if fnmatch.fnmatchcase(k, pat)]
            if not hits:
                hits = [LayerRef(m, "module") for m in modules if fnmatch.fnmatchcase(m, pat)]
        elif pat in feature_keys:
            hits = [LayerRef(pat, "feature")]
        elif pat in modules:
            hits = [LayerRef(pat, "module")]
        else:
            hits = []
        if not hits:
            raise LayerError(
                f"layer {pat!r} matches nothing in {type(model).__name__}. "
                f"forward_features keys: [{_listing(list(feature_keys))}]; "
                f"module names: [{_listing(modules)}]"
            )
        found += [h for h in hits if h not in found]
    return found


def run_model(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """One forward: ``forward_features`` when the model has it (a dict of named maps), else ``model(x)``.

    Models whose ``forward_features`` takes ``blocks`` are asked for every block's output too (``stage3.block0``).
    """
    if hasattr(model, "forward_features"):
        takes_blocks = "blocks" in inspect.signature(model.forward_features).parameters
        feats = model.forward_features(x, blocks=True) if takes_blocks else model.forward_features(x)
        if isinstance(feats, dict):
            return feats
        return {"features": feats}
    return {"output": model(x)}


@contextmanager
def capture(
    model: nn.Module, refs: Sequence[LayerRef], replace: Callable[[nn.Module, tuple, torch.Tensor], torch.Tensor]
    | None = None
) -> Iterator[dict[str, torch.Tensor]]:
    """Forward hooks on the ``module`` refs; the yielded dict fills with their outputs on every forward.

    ``replace(module, inputs, output)``, if given, returns the tensor to record *and* pass on (used to read the
    membrane potential of a neuron; see :func:`spikescope.erf.temporal.temporal_erf`).
    """
    store: dict[str, torch.Tensor] = {}
    handles = []
    named = dict(model.named_modules())
    for ref in refs:
        if ref.kind != "module":
            continue

        def hook(module, inputs, output, _name=ref.name):
            if replace is not None:
                recorded, passed = replace(module, inputs, output)
                store[_name] = recorded
                return passed
            store[_name] = output
            return None

        handles.append(named[ref.name].register_forward_hook(hook))
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


def as_sequence(y: object, name: str, T: int, B: int) -> torch.Tensor:
    """Bring a captured layer output to ``[T_out, B, C, H, W]`` or raise :class:`LayerError`.

    ``T`` is the model's number of timesteps, ``B`` the batch of the forward that produced ``y``.
    """
    if isinstance(y, (tuple, list)) and y and isinstance(y[0], torch.Tensor):
        y = y[0]
    if not isinstance(y, torch.Tensor):
        raise LayerError(f"layer {name!r} returns {type(y).__name__}, not a tensor; pick a layer with a feature map")
    shape = tuple(y.shape)
    if y.dim() == 5 and shape[1] == B:
        return y
    if y.dim() == 4 and shape[0] == T * B:
        return y.unflatten(0, (T, B))
    if y.dim() == 4 and shape[0] == B:
        return y.unsqueeze(0)
    raise LayerError(
        f"layer {name!r} has no spatial map: its output has shape {shape} at batch {B}, T={T}; expected "
        "[T, B, C, H, W] (or [T*B, C, H, W] / [B, C, H, W]). Token layouts such as [T, B, C, N] and vectors are not "
        "maps: choose a block or stage output instead"
    )


def neuron_modules(model: nn.Module) -> list[str]:
    """Names of the sub-modules whose forward takes ``return_state`` (the ones ``output='membrane'`` can read)."""
    return [n for n, m in model.named_modules() if n and "return_state" in inspect.signature(m.forward).parameters]


def check_neuron(model: nn.Module, name: str) -> None:
    """Raise unless ``name`` is a sub-module whose forward takes ``return_state`` (our LIF, PLIF, IntegerSpike)."""
    neurons = neuron_modules(model)
    if name not in neurons:
        kind = type(dict(model.named_modules())[name]).__name__ if name in dict(model.named_modules()) else "no module"
        raise LayerError(
            f"output='membrane' needs a neuron module whose forward takes return_state=True; {name!r} is {kind}. "
            f"Neuron modules: {neurons}; or use output='spikes'"
        )
