"""The image + audio + text fusion classifier that every registered model is."""

from __future__ import annotations

import torch
from torch import nn

from .encoders import AudioEncoder, ImageEncoder
from .errors import InputError
from .fusion import FUSIONS
from .text import TextEncoder

__all__ = ["INPUTS", "MODALITIES", "MultimodalClassifier", "check_inputs"]

MODALITIES = ("image", "audio", "text")
INPUTS = ("image", "audio", "text_ids", "text_mask", "modality_mask")
_RANK = {"image": 4, "audio": 2, "text_ids": 2, "text_mask": 2, "modality_mask": 2}
_HINT = {
    "image": "(B, 3, H, W) float pixels in [0, 1]",
    "audio": "(B, samples) float waveform at 16 kHz",
    "text_ids": "(B, T) int64 token ids",
    "text_mask": "(B, T) int64, 1 for real tokens",
    "modality_mask": "(B, 3) float, 1 where image/audio/text is present",
}


def check_inputs(inputs: dict[str, torch.Tensor]) -> int:
    """Validate named inputs; returns the batch size. Raises InputError naming the bad input and the fix."""
    unknown = set(inputs) - set(INPUTS)
    if unknown:
        name = sorted(unknown)[0]
        raise InputError(name, "is not an input of this model", f"use only {', '.join(INPUTS)}")
    if ("text_ids" in inputs) != ("text_mask" in inputs):
        raise InputError("text_mask", "text_ids and text_mask come together", "pass both or neither")
    batch = None
    for name, x in inputs.items():
        if not isinstance(x, torch.Tensor):
            raise InputError(name, f"expected a torch.Tensor, got {type(x).__name__}", f"pass {_HINT[name]}")
        if x.dim() != _RANK[name]:
            raise InputError(name, f"has shape {tuple(x.shape)}", f"expected {_HINT[name]}")
        if name in ("image", "audio", "modality_mask") and not x.is_floating_point():
            raise InputError(name, f"has dtype {x.dtype}", f"expected {_HINT[name]}")
        if name.startswith("text_") and x.is_floating_point():
            raise InputError(name, f"has dtype {x.dtype}", f"expected {_HINT[name]}")
        if batch is None:
            batch = x.shape[0]
        elif x.shape[0] != batch:
            raise InputError(name, f"has batch size {x.shape[0]}, others have {batch}", "give every input the same B")
    if "image" in inputs and inputs["image"].shape[1] != 3:
        raise InputError("image", f"has {inputs['image'].shape[1]} channels", "expected 3 (RGB), NCHW layout")
    if "modality_mask" in inputs and inputs["modality_mask"].shape[1] != 3:
        raise InputError(
            "modality_mask", f"has shape {tuple(inputs['modality_mask'].shape)}", f"expected {_HINT['modality_mask']}"
        )
    if batch is None:
        raise InputError("inputs", "no modality given", "pass at least one of image, audio, text_ids+text_mask")
    return batch


class MultimodalClassifier(nn.Module):
    """image/audio/text towers -> per-modality tokens (missing ones replaced by learned tokens) -> fusion -> head.

    forward(**inputs) takes any subset of INPUTS and returns a dict:
      logits (B, classes), fused (B, D), tokens (B, 3, D), contributions (B, 3).
    """

    def __init__(
        self,
        image: ImageEncoder,
        audio: AudioEncoder,
        text: TextEncoder,
        fusion: str = "attention",
        dim: int = 256,
        num_classes: int = 10,
        fusion_cfg: dict | None = None,
    ) -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise InputError("fusion", f"unknown kind {fusion!r}", f"choose from {sorted(FUSIONS)}")
        self.image, self.audio, self.text = image, audio, text
        self.proj = nn.ModuleDict({m: nn.Linear(getattr(self, m).out_dim, dim) for m in MODALITIES})
        self.missing = nn.Parameter(torch.randn(len(MODALITIES), dim) * 0.02)  # (3, D)
        self.fusion = FUSIONS[fusion](dim, **(fusion_cfg or {}))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def encode(self, modality: str, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """One modality's tower + projection -> (B, D). Exported as that modality's encoder graph."""
        if modality == "text":
            return self.proj["text"](self.text(inputs["text_ids"], inputs["text_mask"]))
        return self.proj[modality](getattr(self, modality)(inputs[modality]))

    def fuse(self, feats: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 3, D) encoder outputs (any value where absent) + (B, 3) mask -> outputs. Exported as the fusion graph."""
        keep = mask[..., None]  # (B, 3, 1)
        tok = keep * feats + (1 - keep) * self.missing  # absent modalities become learned "missing" tokens
        fused, contrib = self.fusion(tok)
        fused = self.norm(fused)
        return {"logits": self.head(fused), "fused": fused, "tokens": tok, "contributions": contrib}

    def forward(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        B = check_inputs(inputs)
        given = torch.tensor([m in inputs or (m == "text" and "text_ids" in inputs) for m in MODALITIES])
        mask = inputs.get("modality_mask", torch.ones(B, len(MODALITIES)))
        mask = mask * given.to(mask.dtype)  # a modality not passed at all is missing whatever the mask says
        zeros = self.missing.new_zeros(B, self.missing.shape[1])
        feats = torch.stack(
            [self.encode(m, inputs) if g else zeros for m, g in zip(MODALITIES, given.tolist(), strict=True)], 1
        )
        return self.fuse(feats, mask)
