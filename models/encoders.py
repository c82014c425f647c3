"""Image and audio towers. Each maps its input to a (B, out_dim) feature vector."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

__all__ = ["AudioEncoder", "ImageEncoder", "LogMel"]


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _ConvStack(nn.Module):
    """A stride-2 stem, then one stage per width (conv x `depth`, each stage after the first halves H and W),
    global max pool."""

    def __init__(self, cin: int, widths: tuple[int, ...], depth: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv(cin, widths[0], stride=2)]
        c = widths[0]
        for i, w in enumerate(widths):
            for j in range(depth):
                layers.append(_conv(c, w, stride=2 if (i > 0 and j == 0) else 1))
                c = w
        self.body = nn.Sequential(*layers)
        self.out_dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Global max pool: a digit (or a word) fills a small part of the map; averaging dilutes it into the
        # clutter, and the tower then learns several times slower.
        return self.body(x).amax(dim=(2, 3))  # (B, C)


class ImageEncoder(nn.Module):
    """(B, 3, H, W) float in [0, 1] -> (B, C). Normalisation lives in the graph, so callers feed plain pixels."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 256), depth: int = 1) -> None:
        super().__init__()
        self.net = _ConvStack(3, tuple(widths), depth)
        self.out_dim = self.net.out_dim

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net((image - 0.5) * 4.0)


def _mel_filterbank(n_fft: int, n_mels: int, sample_rate: int) -> np.ndarray:
    """(n_mels, n_fft//2+1) triangular filters on the HTK mel scale."""
    mel = lambda f: 2595 * np.log10(1 + f / 700)
    hz = lambda m: 700 * (10 ** (m / 2595) - 1)
    edges = hz(np.linspace(mel(20.0), mel(sample_rate / 2), n_mels + 2))
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    return np.maximum(0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid))).astype(np.float32)


class LogMel(nn.Module):
    """(B, S) waveform -> (B, 1, n_mels, frames) log-mel, as fixed convolutions so that ONNX and TFLite export it.

    It must stay fp32 (quantising it costs 40-70 % relative error): compress excludes modules of this type.
    The mel projection is written `power @ fb.T` (constant on the right): AEQ fails on a constant left operand.
    """

    def __init__(self, sample_rate: int = 16_000, n_fft: int = 400, hop: int = 160, n_mels: int = 64) -> None:
        super().__init__()
        n = torch.arange(n_fft, dtype=torch.float64)
        k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
        window = 0.5 - 0.5 * torch.cos(2 * math.pi * n / n_fft)  # Hann
        phase = 2 * math.pi * k * n / n_fft
        basis = torch.cat([torch.cos(phase) * window, -torch.sin(phase) * window])[:, None, :]  # (2F, 1, n_fft)
        self.register_buffer("basis", basis.float(), persistent=False)
        self.register_buffer(
            "fb_t", torch.from_numpy(_mel_filterbank(n_fft, n_mels, sample_rate).T.copy()), persistent=False
        )
        self.hop, self.n_bins = hop, n_fft // 2 + 1

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        spec = nn.functional.conv1d(audio[:, None, :], self.basis, stride=self.hop)  # (B, 2F, frames)
        re, im = spec[:, : self.n_bins], spec[:, self.n_bins :]
        power = (re * re + im * im).transpose(1, 2)  # (B, frames, F)
        mel = power @ self.fb_t  # (B, frames, n_mels)
        return torch.log(mel + 1e-6).transpose(1, 2)[:, None]  # (B, 1, n_mels, frames)


class AudioEncoder(nn.Module):
    """(B, S) waveform -> log-mel -> CNN -> (B, C)."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 256), depth: int = 1, n_mels: int = 64) -> None:
        super().__init__()
        self.frontend = LogMel(n_mels=n_mels)
        self.norm = nn.BatchNorm2d(1)  # learned level/scale of the log-mel, quantises better than a raw log
        self.net = _ConvStack(1, tuple(widths), depth)
        self.out_dim = self.net.out_dim

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.net(self.norm(self.frontend(audio)))
