"""Fusion over modality tokens. Each takes (B, M, D) tokens (a learned "missing" token stands in for an absent
modality) and returns the fused (B, D) vector and each modality's (B, M) contribution, summing to 1."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .transformer import Block

__all__ = ["FUSIONS", "AttentionFusion", "ConcatFusion", "GatedFusion"]


class ConcatFusion(nn.Module):
    def __init__(self, dim: int, modalities: int = 3, **_: object) -> None:
        super().__init__()
        self.fc = nn.Linear(modalities * dim, dim)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, M, D = tokens.shape
        fused = F.gelu(self.fc(tokens.reshape(B, M * D)), approximate="tanh")
        # Contribution: the size of each modality's share of the pre-activation.
        parts = torch.einsum("bmd,omd->bmo", tokens, self.fc.weight.reshape(-1, M, D))  # (B, M, D_out)
        share = parts.norm(dim=-1)
        return fused, share / share.sum(-1, keepdim=True).clamp(min=1e-6)


class GatedFusion(nn.Module):
    def __init__(self, dim: int, **_: object) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, 1)
        self.fc = nn.Linear(dim, dim)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.gate(tokens).squeeze(-1).softmax(-1)  # (B, M)
        fused = F.gelu(self.fc((w[..., None] * tokens).sum(1)), approximate="tanh")
        return fused, w


class AttentionFusion(nn.Module):
    """A [CLS] token attends over the modality tokens through `depth` transformer blocks."""

    def __init__(self, dim: int, modalities: int = 3, depth: int = 2, heads: int = 4, ffn: int | None = None) -> None:
        super().__init__()
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.kind = nn.Parameter(torch.randn(1, modalities, dim) * 0.02)  # which modality a token is
        self.blocks = nn.ModuleList(Block(dim, heads, ffn or 2 * dim, eps=1e-5) for _ in range(depth))

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B = tokens.shape[0]
        x = torch.cat([self.cls.expand(B, -1, -1), tokens + self.kind], dim=1)  # (B, 1+M, D)
        bias = torch.zeros(1, 1, 1, x.shape[1], dtype=x.dtype, device=x.device)
        for block in self.blocks:
            x, att = block(x, bias)
        w = att[:, :, 0, 1:].mean(1)  # last block, [CLS] -> modalities, mean over heads: (B, M)
        return x[:, 0], w / w.sum(-1, keepdim=True).clamp(min=1e-6)


FUSIONS = {"concat": ConcatFusion, "gated": GatedFusion, "attention": AttentionFusion}
