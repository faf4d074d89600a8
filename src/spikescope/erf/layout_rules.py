"""Which :class:`~spikescope.erf.layouts.Layout` a captured output has: given, declared, or deduced; never guessed.

Sources, first match wins (the source is recorded in the result's ``meta["layouts"]``):

1. ``given``: the user's layout for the layer (``--layout``, ``layout=``).
2. ``model``: the model declares it. Our registered models pass ``[T, B, C, H, W]`` between modules (5-D outputs are
   ``TBCHW``, 4-D ones ``[T*B or B, C, H, W]``); ``forward_features`` maps are ``TBCHW``.
3. ``module``: the module type fixes the channel axis: Conv2d / BatchNorm2d / pooling / GroupNorm / LayerNorm2d ->
   channels first; Linear / LayerNorm on 4-D -> channels last; Conv1d / BatchNorm1d on 3-D -> ``BCN`` tokens.
4. ``timm``: the family's known layout: ViT tokens ``[B, N, C]`` after ``num_prefix_tokens`` on the patch grid;
   Swin: channels last, ``blocks.i.attn`` window-partitioned (window, shift and grid read from the block); PVT-v2
   and MetaFormer: channels-first stages, ``[B, N, C]`` tokens inside the blocks on the stage's grid.
5. ``shape``: of the channels-first and channels-last readings of a 4-D / 5-D output, exactly one has an H x W that
   a stride of the input gives (``H_in // s`` or ``ceil(H_in / s)``, the same s for both sides).

Anything else raises :class:`~spikescope.erf.layouts.LayoutError` naming ``--layout``.
"""
from __future__ import annotations

import math
import re

import torch
from torch import nn

from .layouts import Layout, LayoutError

__all__ = ["infer_layout"]

_CHANNELS_FIRST = (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
                   nn.AdaptiveMaxPool2d, nn.GroupNorm, nn.InstanceNorm2d, nn.Dropout2d, nn.Upsample)


def _is_ours(model: nn.Module) -> bool:
    return type(model).__module__.startswith("spikescope.models")


def _is_timm(model: nn.Module) -> bool:
    return type(model).__module__.startswith("timm.")


def _batch_first(y: torch.Tensor, T: int, B: int) -> bool:
    return y.shape[0] in (B, T * B)


def _module_rule(module: nn.Module | None, y: torch.Tensor, T: int, B: int) -> Layout | None:
    if module is None or not _batch_first(y, T, B):
        return None
    from timm.layers import LayerNorm2d  # a LayerNorm over the channels of NCHW, so before nn.LayerNorm

    if y.dim() == 4 and isinstance(module, (LayerNorm2d, *_CHANNELS_FIRST)):
        return Layout("BCHW")
    if y.dim() == 4 and isinstance(module, (nn.Linear, nn.LayerNorm)):
        return Layout("BHWC")
    if y.dim() == 3 and isinstance(module, (nn.Conv1d, nn.BatchNorm1d)):
        return Layout("BCN")
    return None


def _grid_chain(hw: tuple[int, int], first: int, stages: int) -> tuple[int, int]:
    """Grid after a stride-``first`` stem and ``stages`` stride-2 downsamplings (ceil division, as padded convs)."""
    h, w = -(-hw[0] // first), -(-hw[1] // first)
    for _ in range(stages):
        h, w = -(-h // 2), -(-w // 2)
    return h, w


def _timm_rule(model: nn.Module, name: str, y: torch.Tensor, T: int, B: int, hw: tuple[int, int]) -> Layout | None:
    cls = type(model).__name__
    batch_first = _batch_first(y, T, B)
    if hasattr(model, "patch_embed") and hasattr(model, "num_prefix_tokens") and hasattr(model, "blocks"):  # ViT
        if y.dim() == 3 and batch_first:
            pe = model.patch_embed
            grid = tuple(pe.dynamic_feat_size(hw)) if hasattr(pe, "dynamic_feat_size") else tuple(pe.grid_size)
            return Layout("BNC", grid, int(model.num_prefix_tokens))
        return None
    if cls.startswith("SwinTransformer"):
        m = re.match(r"layers\.(\d+)\.blocks\.(\d+)(\.attn(\.|$))?", name)
        if m and m[3]:
            block = model.layers[int(m[1])].blocks[int(m[2])]
            side, shift = block.window_size, block.shift_size
            if side[0] == side[1] and shift[0] == shift[1]:
                return Layout("windows", tuple(block.input_resolution), 0, int(side[0]), int(shift[0]))
            return None
        if m and y.dim() == 3 and batch_first:
            return Layout("BNC", tuple(model.layers[int(m[1])].blocks[int(m[2])].input_resolution))
        if y.dim() == 4 and batch_first and getattr(model, "output_fmt", "NCHW") == "NHWC":
            return Layout("BHWC")
        return None
    m = re.match(r"stages\.(\d+)(\.|$)", name)
    if cls == "PyramidVisionTransformerV2" and m:
        if y.dim() == 3 and batch_first and ".blocks." in name:
            return Layout("BNC", _grid_chain(hw, 4, int(m[1])))
        if y.dim() == 4 and batch_first:
            return Layout("BHWC" if name.endswith(".downsample") else "BCHW")
        return None
    if cls == "MetaFormer" and m:
        stage = model.stages[int(m[1])]
        if y.dim() == 4 and batch_first and stage.use_nchw:
            return Layout("BCHW")
        if y.dim() == 3 and batch_first and not stage.use_nchw and ".blocks." in name:
            return Layout("BNC", _grid_chain(hw, 4, int(m[1])))
    return None


def _fits_stride(h: int, w: int, hw: tuple[int, int]) -> bool:
    H, W = hw
    for s in range(1, max(H, W) + 1):
        if h in (H // s, -(-H // s)) and w in (W // s, -(-W // s)):
            return True
    return False


def _shape_rule(y: torch.Tensor, T: int, B: int, hw: tuple[int, int]) -> tuple[list[Layout], list[Layout]]:
    """(the readings of ``y`` whose grid fits the input, all readings its rank and batch axes allow)."""
    shape = tuple(y.shape)
    if y.dim() == 5 and shape[1] == B:
        options = [(Layout("TBCHW"), shape[3:]), (Layout("TBHWC"), shape[2:4])]
    elif y.dim() == 4 and _batch_first(y, T, B):
        options = [(Layout("BCHW"), shape[2:]), (Layout("BHWC"), shape[1:3])]
    else:
        return [], []
    return [lay for lay, (h, w) in options if _fits_stride(h, w, hw)], [lay for lay, _ in options]


def infer_layout(
    model: nn.Module, name: str, kind: str, module: nn.Module | None, y: torch.Tensor, T: int, B: int,
    input_hw: tuple[int, int], given: Layout | None = None,
) -> tuple[Layout, str]:
    """``(layout, source)`` of layer ``name``'s output ``y`` (batch ``B``, ``T`` timesteps, input ``H x W``).

    ``kind`` is ``"feature"`` (a forward_features key) or ``"module"``. Raises :class:`LayoutError` when no source
    is certain.
    """
    shape = tuple(y.shape)
    if given is not None:
        n_tok = shape[-1] if given.kind in ("BCN", "TBCN") else shape[-2] if y.dim() >= 2 else 0
        return given.with_grid(n_tok, input_hw, name), "given"
    if _is_ours(model):
        if y.dim() == 5 and shape[1] == B:
            return Layout("TBCHW"), "model"
        if y.dim() == 4 and _batch_first(y, T, B) and kind == "module":
            return Layout("BCHW"), "model"
    found = _module_rule(module, y, T, B)
    if found is not None:
        if found.kind == "BCN":
            found = found.with_grid(shape[-1], input_hw, name)
        return found, "module"
    if _is_timm(model):
        found = _timm_rule(model, name, y, T, B, input_hw)
        if found is not None:
            return found, "timm"
    fitting, readings = _shape_rule(y, T, B, input_hw)
    if len(fitting) == 1:
        return fitting[0], "shape"
    if y.dim() == 3 and not _batch_first(y, T, B) and math.isqrt(shape[1]) ** 2 == shape[1]:
        hint = "window-partitioned tokens: windows:HxW/SIDE[/SHIFT]"
    elif y.dim() == 3 or (y.dim() == 4 and shape[0] == T and shape[1] == B and T != B):
        hint = "tokens: BNC / BCN, or TBNC / TBCN with a time axis (add ':HxW+P' for the grid and class tokens)"
    else:
        hint = " or ".join(str(r) for r in readings) if readings else "none fits: pick a block or stage output"
    raise LayoutError(
        f"layer {name!r}: no spatial map can be read with certainty from its output of shape {shape} (batch {B}, "
        f"T={T}, input {input_hw[0]}x{input_hw[1]}); say its layout with --layout {name}=LAYOUT (layout= in Python), "
        f"LAYOUT being {hint}"
    )
