"""Shared plumbing of the spatial and temporal engines: eval mode, the input leaf, probing the layers.

The input leaf is always time-first ``[T, B, C, H, W]``: a static image is repeated over T *before* it becomes a
leaf, so autograd gives one gradient per input timestep. ``feed="sequence"`` passes the leaf to the model as it is;
``feed="frame"`` (for a model that only takes ``[B, C, H, W]`` and repeats it inside) passes ``leaf[0]`` of a
one-step leaf, so per-input-timestep maps collapse into one. ``feed="auto"`` tries "sequence" on a probe batch first.
"""
from __future__ import annotations

import fnmatch
import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from .hooks import LayerError, LayerRef, capture, first_tensor, resolve_layers, run_model
from .inputs import SampleSource
from .layout_rules import infer_layout
from .layouts import Layout, LayoutError, parse_layout

__all__ = [
    "erf_mode", "infer_timesteps", "Probe", "probe_layers", "placement", "make_leaf", "forward_layers", "parse_t_out",
    "NonFiniteGradientError", "check_finite_gradient", "layouts_for",
]


class NonFiniteGradientError(ValueError):
    """An input gradient overflowed (inf/NaN): averaging it into a map would make the whole map meaningless."""


def check_finite_gradient(g: torch.Tensor, layer: str) -> None:
    """Raise :class:`NonFiniteGradientError` naming ``layer`` if the input gradient ``g [T, B, ...]`` is not finite."""
    finite = torch.isfinite(g).flatten(2).all(2).all(0)  # [B]
    if not bool(finite.all()):
        raise NonFiniteGradientError(
            f"layer {layer!r}: the input gradient of {int((~finite).sum())} of {finite.numel()} sample(s) is not "
            "finite (overflow in the backward pass). With random weights, calibrate BN on noise (the default; "
            "leave out --no-calibrate) or load trained weights; a smaller input size or model.double() also helps."
        )


@contextmanager
def erf_mode(model: nn.Module, param_grads: bool = False) -> Iterator[None]:
    """Eval mode (BN running statistics, no dropout) and, unless ``param_grads``, no parameter gradients."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    if not param_grads:
        for p, _ in flags:
            p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def infer_timesteps(model: nn.Module, explicit: int | None, sample: torch.Tensor) -> int:
    """T of the leaf: ``explicit``, else a sequence sample's T, else ``model.timesteps``/``model.cfg.timesteps``, else 1."""
    if sample.dim() == 4:
        if explicit is not None and explicit != sample.shape[0]:
            raise ValueError(f"timesteps={explicit} but the input sequences have T={sample.shape[0]}")
        return int(sample.shape[0])
    if explicit is not None:
        if explicit < 1:
            raise ValueError(f"timesteps must be >= 1, got {explicit}")
        return int(explicit)
    for owner in (model, getattr(model, "cfg", None)):
        for attr in ("timesteps", "T"):
            value = getattr(owner, attr, None)
            if isinstance(value, int) and value >= 1:
                return value
    return 1


def placement(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and dtype of the model's first floating-point parameter or buffer (CPU float32 if it has none)."""
    for t in itertools.chain(model.parameters(), model.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.float32


def make_leaf(x: torch.Tensor, T: int, model: nn.Module) -> torch.Tensor:
    """``[B, C, H, W]`` (repeated over T) or ``[T, B, C, H, W]`` -> a detached ``[T, B, C, H, W]`` leaf needing grad,
    on the model's device and in its dtype."""
    if x.dim() == 4:
        x = x.unsqueeze(0).repeat(T, 1, 1, 1, 1)
    elif x.dim() != 5:
        raise ValueError(f"expected input batches [B, C, H, W] or [T, B, C, H, W], got shape {tuple(x.shape)}")
    device, dtype = placement(model)
    return x.detach().to(device=device, dtype=dtype).clone().requires_grad_(True)


def layouts_for(layout, refs: Sequence[LayerRef]) -> dict[str, Layout]:
    """The user's ``layout`` per layer: ``None``, one spec for every layer, or ``{layer name or glob: spec}``."""
    if layout is None:
        return {}
    if isinstance(layout, (str, Layout)):
        return {r.name: parse_layout(layout) for r in refs}
    out: dict[str, Layout] = {}
    for pattern, spec in dict(layout).items():
        hits = [r.name for r in refs if fnmatch.fnmatchcase(r.name, pattern)]
        if not hits:
            raise LayoutError(f"layout given for {pattern!r}, which is none of the layers {[r.name for r in refs]}")
        out.update({h: parse_layout(spec) for h in hits})
    return out


def forward_layers(
    model: nn.Module, leaf: torch.Tensor, refs: Sequence[LayerRef], feed: str, T: int, replace=None,
    layouts: dict[str, Layout] | None = None,
) -> dict[str, torch.Tensor]:
    """One forward of ``leaf``; returns every ref's output as a map ``[T_out, B, C, H, W]``.

    ``layouts`` (a probe's) fixes each layer's layout; layers without one have it inferred
    (:func:`~spikescope.erf.layout_rules.infer_layout`).
    """
    maps, _ = _forward(model, leaf, refs, feed, T, replace, layouts or {}, {})
    return maps


def _forward(model, leaf, refs, feed, T, replace, known: dict[str, Layout], given: dict[str, Layout]):
    """:func:`forward_layers` that also returns the ``(layout, source)`` used for each layer."""
    B, hw = leaf.shape[1], tuple(leaf.shape[-2:])
    with capture(model, refs, replace) as store:
        feats = run_model(model, leaf if feed == "sequence" else leaf[0])
    named = dict(model.named_modules())
    out, used = {}, {}
    for ref in refs:
        src = feats if ref.kind == "feature" else store
        if ref.name not in src:
            raise LayerError(f"layer {ref.name!r} did not run during the forward pass (is it after forward_features?)")
        y = first_tensor(src[ref.name], ref.name)
        if ref.name in known:
            lay, how = known[ref.name], "probe"
        else:
            lay, how = infer_layout(model, ref.name, ref.kind, named.get(ref.name) if ref.kind == "module" else None,
                                    y, T, B, hw, given.get(ref.name))
        out[ref.name] = lay.to_map(y, T, B, ref.name)
        used[ref.name] = (lay, how)
    return out, used


@dataclass
class Probe:
    """What a probe forward learned: the layers, the feed, each layer's layout (and where it came from) and map
    shape ``(T_out, C, H, W)``."""

    refs: list[LayerRef]
    feed: str
    leaf_T: int
    shapes: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    layouts: dict[str, Layout] = field(default_factory=dict)
    layout_sources: dict[str, str] = field(default_factory=dict)


def probe_layers(
    model: nn.Module, source: SampleSource, layers, T: int, feed: str = "auto", replace=None, layout=None
) -> Probe:
    """Resolve ``layers`` (``None``: every forward_features key), fix their layouts and check their maps on a probe
    batch. The probe batch (3, or 5 when T = 3) differs from T, so a time axis cannot pass for the batch axis."""
    if feed not in ("auto", "sequence", "frame"):
        raise ValueError(f"feed must be 'auto', 'sequence' or 'frame', got {feed!r}")
    idx = [k % len(source) for k in range(5 if T == 3 else 3)]
    x = source.batch(idx)
    if x.dim() == 5 and feed == "frame":
        raise ValueError("feed='frame' takes static images; these inputs are sequences [T, C, H, W]")
    if feed == "auto":
        modes = ["sequence", "frame"] if x.dim() == 4 else ["sequence"]
    else:
        modes = [feed]
    feats, errors = None, []
    for mode in modes:
        leaf_T = T if mode == "sequence" else 1
        try:
            with torch.no_grad():
                leaf = make_leaf(x, leaf_T, model)
                feats = run_model(model, leaf if mode == "sequence" else leaf[0])
            break
        except (RuntimeError, ValueError, TypeError) as e:
            errors.append(f"feed={mode!r}: {e}")
    if feats is None:
        raise ValueError(
            f"{type(model).__name__} rejected the input batch of shape {tuple(x.shape)} (T={T}): "
            + " | ".join(errors)
            + ". Check input_size (C, H, W) and timesteps."
        )
    refs = resolve_layers(model, list(feats) if layers is None else layers, list(feats))
    probe = Probe(refs, mode, leaf_T)
    with torch.no_grad():
        ys, used = _forward(model, make_leaf(x, leaf_T, model), refs, mode, T, replace, {}, layouts_for(layout, refs))
    for name, y in ys.items():
        probe.shapes[name] = (y.shape[0], y.shape[2], y.shape[3], y.shape[4])
        probe.layouts[name], probe.layout_sources[name] = used[name]
    return probe


def parse_t_out(t_out, T_out: int, layer: str) -> list[int]:
    """``"all"``, an int or a list of ints -> sorted output-timestep indices (negative counts from the end)."""
    if t_out == "all":
        return list(range(T_out))
    items = [t_out] if isinstance(t_out, int) else list(t_out)
    out = []
    for t in items:
        if not isinstance(t, int) or not -T_out <= t < T_out:
            raise ValueError(f"t_out={t_out!r} is out of range for layer {layer!r} with T_out={T_out} timesteps")
        out.append(t % T_out)
    if not out:
        raise ValueError("t_out is empty; use 'all', an int or a non-empty list")
    return sorted(set(out))


def centre_of(shape: tuple[int, int, int, int], offset: Sequence[int], layer: str) -> tuple[int, int]:
    """Exact centre ``(H//2 + dy, W//2 + dx)`` of a layer's map, checked against its bounds."""
    _, _, H, W = shape
    cy, cx = H // 2 + int(offset[0]), W // 2 + int(offset[1])
    if not (0 <= cy < H and 0 <= cx < W):
        raise ValueError(f"offset {tuple(offset)} puts the centre at ({cy}, {cx}), outside layer {layer!r}'s {H}x{W} map;"
                         " use a smaller offset (--offset DY DX) or a larger input (--size)")
    return cy, cx
