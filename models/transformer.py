"""Transformer pieces shared by the text tower and the attention fusion, written to stay prunable and exportable:
separate q/k/v Linears (head pruning), tanh-GELU (converts everywhere) and additive -1e4 masks (quantise cleanly)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["Attention", "Block", "mask_bias"]

NEG = -1e4  # additive mask value; -inf breaks int8 calibration and some converters


def mask_bias(mask: torch.Tensor) -> torch.Tensor:
    """(B, T) 1=keep/0=pad -> (B, 1, 1, T) additive bias for attention scores."""
    return (1.0 - mask.to(torch.float32))[:, None, None, :] * NEG


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads  # pruning removes whole heads and updates this
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, _ = x.shape
        h = self.num_heads
        q = self.q(x).reshape(B, T, h, -1).transpose(1, 2)  # (B, h, T, d)
        k = self.k(x).reshape(B, T, h, -1).transpose(1, 2)
        v = self.v(x).reshape(B, T, h, -1).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5) + bias  # (B, h, T, T)
        att = att.softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, -1)  # (B, T, h*d)
        return self.out(y), att


class Block(nn.Module):
    """Post-LayerNorm encoder block (BERT layout, so MiniLM weights load as they are)."""

    def __init__(self, dim: int, num_heads: int, ffn: int, eps: float = 1e-12) -> None:
        super().__init__()
        self.attn = Attention(dim, num_heads)
        self.ln1 = nn.LayerNorm(dim, eps=eps)
        self.fc1, self.fc2 = nn.Linear(dim, ffn), nn.Linear(ffn, dim)
        self.ln2 = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, att = self.attn(x, bias)
        x = self.ln1(x + a)
        x = self.ln2(x + self.fc2(F.gelu(self.fc1(x), approximate="tanh")))
        return x, att
