"""Plumbing shared by the LIF-based spiking transformers (Spikformer, SDT-v1, QKFormer): input checks, the
time-repeat of static images, the named-feature collection and the attention-branch block."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["to_sequence", "TokenBlock", "record", "flat_forward_features", "trunc_normal_linear_init"]


def to_sequence(x: torch.Tensor, timesteps: int, in_channels: int, who: str) -> torch.Tensor:
    """``[B,C,H,W]`` (a static image, repeated over ``timesteps``) or ``[T,B,C,H,W]`` -> ``[T,B,C,H,W]``."""
    if x.dim() not in (4, 5) or x.shape[-3] != in_channels:
        raise ValueError(
            f"{who}: expected an image [B, {in_channels}, H, W] (repeated over T={timesteps}) or a sequence "
            f"[T, B, {in_channels}, H, W], got shape {tuple(x.shape)}"
        )
    return x.unsqueeze(0).repeat(timesteps, 1, 1, 1, 1) if x.dim() == 4 else x


def record(feats: dict[str, torch.Tensor], prefix: str, taps: dict[str, torch.Tensor]) -> None:
    """Copy ``taps`` into ``feats`` as ``prefix.name`` (``prefix`` alone for the name ``""``)."""
    for name, value in taps.items():
        feats[f"{prefix}.{name}" if name else prefix] = value


def flat_forward_features(model: nn.Module, x: torch.Tensor, blocks: bool) -> dict[str, torch.Tensor]:
    """``forward_features`` of a non-hierarchical model (``patch_embed`` then the ``block`` list).

    Returns ``stage1`` (the last block's output, ``[T,B,C,H,W]``) and, with ``blocks``, ``patch_embed`` and every
    block's taps under ``block{i}``.
    """
    x = model.patch_embed(to_sequence(x, model.cfg.timesteps, model.cfg.in_channels, type(model).__name__))
    feats = {"patch_embed": x} if blocks else {}
    for i, blk in enumerate(model.block):
        taps = {} if blocks else None
        x = blk(x, taps)
        if blocks:
            record(feats, f"block{i}", taps)
    feats["stage1"] = x
    return feats


class TokenBlock(nn.Module):
    """``x + attn(x)``, then ``+ mlp(.)``: the residual block of all three families (``[T,B,C,H,W]`` in and out).

    ``attn_name`` is the attribute holding the attention (``"attn"``, or QKFormer's ``"tssa"``), so that the
    authors' state-dict keys load unchanged. With a ``taps`` dict, ``forward`` stores ``""`` (the block output),
    ``"attn"`` (the attention branch before the residual add) and ``"attn.proj_conv"`` (its projection conv output,
    what the ST-ERF code hooks).
    """

    def __init__(self, attn: nn.Module, mlp: nn.Module, attn_name: str = "attn") -> None:
        super().__init__()
        self.attn_name = attn_name
        self.add_module(attn_name, attn)
        self.mlp = mlp

    def forward(self, x: torch.Tensor, taps: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        sub: dict[str, torch.Tensor] | None = {} if taps is not None else None
        a = getattr(self, self.attn_name)(x, sub)
        x = x + a
        x = x + self.mlp(x)
        if taps is not None:
            taps.update({"": x, "attn": a, "attn.proj_conv": sub["proj_conv"]})
        return x


def trunc_normal_linear_init(module: nn.Module) -> None:
    """The authors' init of the classifier: truncated normal (std 0.02) weights, zero bias, for every Linear."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
