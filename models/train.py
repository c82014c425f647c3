"""Training and evaluation of AVT-Digits models: the teacher recipe, modality dropout, the evaluation table."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .avt_digits import MODALITIES, AVTConfig, Split, load_splits
from .checkpoint import save_checkpoint
from .errors import InputError
from .registry import create_model

__all__ = [
    "CONDITIONS",
    "TrainConfig",
    "accuracy",
    "drop_modalities",
    "evaluate",
    "format_table",
    "to_torch",
    "train_teacher",
    "warmup_cosine",
]

# Evaluation conditions: name -> modalities kept.
CONDITIONS: dict[str, tuple[str, ...]] = {
    "all": MODALITIES,
    "image_only": ("image",),
    "audio_only": ("audio",),
    "text_only": ("text",),
    "no_image": ("audio", "text"),
    "no_audio": ("image", "text"),
    "no_text": ("image", "audio"),
}


@dataclass
class TrainConfig:
    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3  # towers, fusion and head
    text_lr: float = 1e-4  # the pretrained text layers that are fine-tuned
    text_trainable_layers: int = 2  # top MiniLM blocks fine-tuned; the rest (and the embeddings) stay frozen
    weight_decay: float = 0.01
    modality_dropout: float = 0.3  # chance of hiding each present modality of a training sample
    label_smoothing: float = 0.1
    aux_weight: float = 1.0  # per-modality linear probes on the tokens, so every tower learns on its own
    # Epochs that train only the probes' loss: each tower learns alone first. Trained jointly from the start, the
    # quick audio tower explains the labels and the slower image tower never takes off ("modality competition").
    unimodal_epochs: int = 2
    seed: int = 0
    threads: int | None = None  # torch intra-op threads; None = all cores
    data: AVTConfig = field(default_factory=AVTConfig)

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "text_lr": self.text_lr >= 0,
            "modality_dropout": 0 <= self.modality_dropout < 1,
            "label_smoothing": 0 <= self.label_smoothing < 1,
            "aux_weight": self.aux_weight >= 0,
            "unimodal_epochs": 0 <= self.unimodal_epochs < self.epochs
            and (self.aux_weight > 0 or not self.unimodal_epochs),
        }
        for name, ok in checks.items():
            if not ok:
                raise InputError(
                    name, f"invalid value {getattr(self, name)!r}", "see TrainConfig's comments for ranges"
                )


def to_torch(inputs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()}


def drop_modalities(mask: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Hide each present modality with chance `p`, never all of a sample's modalities."""
    drop = torch.rand(mask.shape, generator=generator) < p
    kept = mask * (~drop)
    # A sample that would lose everything keeps one of its present modalities, picked at random.
    pick = (torch.rand(mask.shape, generator=generator) * mask).argmax(1)
    one = torch.nn.functional.one_hot(pick, mask.shape[1]).to(mask.dtype)
    empty = (kept.sum(1) == 0)[:, None]
    return torch.where(empty, one, kept)


def _batches(n: int, size: int, rng: np.random.Generator | None = None):
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for i in range(0, n, size):
        yield np.sort(order[i : i + size])


@torch.inference_mode()
def predict(model: nn.Module, split: Split, keep: tuple[str, ...] | None = None, batch_size: int = 256) -> np.ndarray:
    """Logits (N, classes) over `split`; `keep` as in Split.inputs (None = each sample's own modalities)."""
    model.eval()
    out = []
    for idx in _batches(len(split), batch_size):
        x = split.inputs(idx, keep)
        if keep is not None:  # don't run towers whose output the mask throws away
            x = {k: v for k, v in x.items() if k.split("_")[0] in keep or k == "modality_mask"}
        out.append(model(**to_torch(x))["logits"].float().numpy())
    return np.concatenate(out)


def accuracy(model: nn.Module, split: Split, keep: tuple[str, ...] | None = MODALITIES) -> float:
    """Top-1 accuracy over `split` with the modalities in `keep` (None = each sample's own)."""
    return float((predict(model, split, keep).argmax(1) == split.label).mean())


def evaluate(model: nn.Module, split: Split, conditions: dict[str, tuple[str, ...]] | None = None) -> dict[str, float]:
    """Top-1 accuracy per condition (default: CONDITIONS, plus `natural` = each sample's own modalities)."""
    conditions = CONDITIONS if conditions is None else conditions
    acc = {name: accuracy(model, split, keep) for name, keep in conditions.items()}
    acc["natural"] = accuracy(model, split, None)
    return acc


def format_table(acc: dict[str, float]) -> str:
    width = max(len(k) for k in acc)
    return "\n".join([f"{'condition':{width}}  accuracy", *(f"{k:{width}}  {v:8.4f}" for k, v in acc.items())])


def _param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    text = getattr(model, "text", None)
    blocks = getattr(text, "blocks", [])
    trainable_text = {id(p) for b in list(blocks)[len(blocks) - cfg.text_trainable_layers :] for p in b.parameters()}
    text_ids = {id(p) for p in text.parameters()} if text is not None else set()
    head, txt = [], []
    for p in model.parameters():
        if id(p) in text_ids:
            p.requires_grad_(id(p) in trainable_text)
            if p.requires_grad:
                txt.append(p)
        else:
            head.append(p)
    return [{"params": head, "lr": cfg.lr}, {"params": txt, "lr": cfg.text_lr}]


def warmup_cosine(opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over the first 5 % of `steps`, then cosine decay to 0."""
    warm = max(1, steps // 20)
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))
    )


def fit(model: nn.Module, splits: dict[str, Split], cfg: TrainConfig, desc: str = "train") -> list[dict]:
    """Supervised training with modality dropout and a warm-up + cosine schedule. Returns per-epoch logs."""
    from tqdm.auto import tqdm

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train = splits["train"]
    groups = _param_groups(model, cfg)
    # Probes live only during training: without them the slowest tower (image) stalls while the others
    # already explain the labels, and fusion never learns to use it.
    dim, classes = model.head.in_features, model.head.out_features
    probes = nn.Linear(dim, classes * len(MODALITIES))
    groups[0]["params"] = [*groups[0]["params"], *probes.parameters()]
    opt = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * math.ceil(len(train) / cfg.batch_size)
    sched = warmup_cosine(opt, steps)
    logs = []
    bar = tqdm(total=steps, desc=desc, unit="step", dynamic_ncols=True)
    for epoch in range(cfg.epochs):
        model.train()
        total, seen = 0.0, 0
        hits, counts = torch.zeros(len(MODALITIES)), torch.zeros(len(MODALITIES))
        for idx in _batches(len(train), cfg.batch_size, rng):
            x = to_torch(train.inputs(idx))
            x["modality_mask"] = drop_modalities(x["modality_mask"], cfg.modality_dropout, gen)
            y = torch.from_numpy(train.label[idx])
            out = model(**x)
            joint = epoch >= cfg.unimodal_epochs
            loss = F.cross_entropy(out["logits"], y, label_smoothing=cfg.label_smoothing) if joint else 0.0
            if cfg.aux_weight:
                aux, h, c = _probe(probes, out["tokens"], x["modality_mask"], y)
                loss = loss + cfg.aux_weight * aux
                hits, counts = hits + h, counts + c
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, seen = total + loss.item() * len(idx), seen + len(idx)
            bar.update()
            probe = "/".join(f"{a:.2f}" for a in (hits / counts.clamp(min=1)).tolist())
            bar.set_postfix(epoch=epoch + 1, loss=f"{total / seen:.3f}", probe_iat=probe)
        val = accuracy(model, splits["val"])
        probe_acc = dict(zip(MODALITIES, (hits / counts.clamp(min=1)).tolist(), strict=True))
        logs.append(
            {"epoch": epoch + 1, "loss": total / seen, "val_accuracy_all": val, "train_probe_accuracy": probe_acc}
        )
        bar.set_postfix(epoch=epoch + 1, loss=f"{total / seen:.3f}", probe_iat=probe, val=f"{val:.3f}")
    bar.close()
    return logs


def _probe(probes: nn.Linear, tokens: torch.Tensor, mask: torch.Tensor, y: torch.Tensor):
    """Each present modality's token classified on its own -> (summed cross-entropy per sample, hits (M,), counts (M,))."""
    B, M, D = tokens.shape
    w = probes.weight.reshape(M, -1, D)  # (M, C, D)
    logits = torch.einsum("bmd,mcd->bmc", tokens, w) + probes.bias.reshape(M, -1)
    ce = F.cross_entropy(logits.reshape(B * M, -1), y.repeat_interleave(M), reduction="none").reshape(B, M)
    hits = ((logits.argmax(-1) == y[:, None]) * mask).sum(0).detach()
    # Summed over modalities, not averaged: each tower gets a full-strength signal of its own.
    return (ce * mask).sum() / B, hits, mask.sum(0)


def train_teacher(out: str | Path, cfg: TrainConfig | None = None, model_name: str = "avt-teacher") -> dict:
    """Train the teacher on AVT-Digits, evaluate it on the test split, save `out/` (checkpoint + metrics.json)."""
    cfg = cfg or TrainConfig()
    out = Path(out)
    splits = load_splits(cfg.data)
    torch.manual_seed(cfg.seed)  # the initialisation is part of the recipe
    model = create_model(model_name)
    t0 = time.perf_counter()
    logs = fit(model, splits, cfg, desc=f"train {model_name}")
    seconds = time.perf_counter() - t0
    acc = evaluate(model, splits["test"])
    metrics = {
        "model": model_name,
        "accuracy": acc,
        "params": sum(p.numel() for p in model.parameters()),
        "train_seconds": round(seconds, 1),
        "epochs": logs,
        "config": json.loads(json.dumps(asdict(cfg))),
    }
    save_checkpoint(model, out, meta={"accuracy": acc})
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
