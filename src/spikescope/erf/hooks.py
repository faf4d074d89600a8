"""Pick the tensors an ERF is measured on, and capture them during one forward pass.

A *layer* is either a key of ``model.forward_features(x)`` (``"stage1"``) or the output of a named sub-module
(``"stage1.0"``, ``"convs.3"``); glob patterns (``"stage1.*"``) match both kinds. How a captured tensor becomes a
map ``[T, B, C, H, W]`` is the job of :mod:`spikescope.erf.layouts` and :mod:`spikescope.erf.layout_rules`.
"""
from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["LayerError", "LayerRef", "resolve_layers", "capture", "first_tensor", "run_model", "neuron_modules",
           "check_neuron"]


class LayerError(ValueError):
    """A requested layer does not exist or has no spatial map."""


@dataclass(frozen=True)
class LayerRef:
    """One resolved layer: ``kind`` is ``"feature"`` (a forward_features key) or ``"module"`` (a sub-module name)."""

    name: str
    kind: str


def _is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def _no_match(model: nn.Module, pattern: str, feature_keys: Sequence[str], modules: Sequence[str]) -> str:
    """A short message for a pattern that matches nothing: the closest names, or all of them when there are few."""
    names = list(feature_keys) + [m for m in modules if m not in feature_keys]
    if len(names) <= 20:
        return f"layer {pattern!r} matches nothing in {type(model).__name__}; its layers: {', '.join(names)}"
    stem = pattern.split("*")[0].split("?")[0].split("[")[0]
    close = difflib.get_close_matches(stem or pattern, names, n=5, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "no name is close"
    return (
        f"layer {pattern!r} matches nothing in {type(model).__name__} ({len(feature_keys)} forward_features keys, "
        f"{len(modules)} modules); {hint} Globs such as 'stage1.*' match several; model.named_modules() lists all"
    )


def resolve_layers(
    model: nn.Module, patterns: str | Sequence[str], feature_keys: Sequence[str]
) -> list[LayerRef]:
    """Map names/globs onto forward_features keys (preferred) and sub-module names, in the order given.

    Raises :class:`LayerError` with the closest names (all of them, when there are few) when a pattern matches
    nothing.
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
            raise LayerError(_no_match(model, pat, feature_keys, modules))
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


def first_tensor(y: object, name: str) -> torch.Tensor:
    """A captured output as a tensor (the first element of a tuple output) or :class:`LayerError`."""
    if isinstance(y, (tuple, list)) and y and isinstance(y[0], torch.Tensor):
        y = y[0]
    if not isinstance(y, torch.Tensor):
        raise LayerError(f"layer {name!r} returns {type(y).__name__}, not a tensor; pick a layer with a feature map")
    return y


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
