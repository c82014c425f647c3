"""Knowledge distillation: a (pruned) student learns from the teacher.

    student, logs = distill(student, teacher, splits, DistillConfig())

Loss = alpha * T^2 * KL(teacher || student at temperature T) + (1 - alpha) * CE(labels)
       + feature_weight * MSE(projected student tokens, teacher tokens)   (learned projections, training only).
Both models see the same modality-dropped inputs, so the student learns what the teacher does without a modality.
Cosine LR with warm-up, early stopping on validation accuracy (the best weights are kept), a checkpoint per epoch
and `resume=True` to continue after an interruption. Under `torchrun --nproc_per_node N` it trains with
DistributedDataParallel (gloo on CPU, nccl on CUDA): each rank takes its share of every batch.

`splits` needs "train" and "val" objects with `inputs(index, keep=None) -> dict of arrays`, `label` and `len()`
(edgefuse.models.Split has them).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from edgefuse.models.train import accuracy, drop_modalities, warmup_cosine
from edgefuse.models.train import to_torch as _tensors

__all__ = ["DistillConfig", "WithRemap", "distill", "remap_ids"]


@dataclass
class DistillConfig:
    epochs: int = 6
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.01
    temperature: float = 4.0
    alpha: float = 0.7  # share of the KL term; the rest is cross-entropy on labels
    feature_weight: float = 0.0  # hidden-token matching through learned projections (0 = off)
    modality_dropout: float = 0.3
    patience: int = 3  # epochs without a better validation accuracy before stopping
    seed: int = 0
    checkpoint: str | None = None  # folder for the per-epoch training state
    resume: bool = False

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "temperature": self.temperature > 0,
            "alpha": 0 <= self.alpha <= 1,
            "feature_weight": self.feature_weight >= 0,
            "modality_dropout": 0 <= self.modality_dropout < 1,
            "patience": self.patience >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(
                    f"{name}: invalid value {getattr(self, name)!r}; see DistillConfig for the valid range"
                )


def _dist() -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    if world > 1:
        return torch.distributed.get_rank(), world
    return 0, 1


def remap_ids(x: dict[str, torch.Tensor], remap: np.ndarray | None, unknown: int = 100) -> dict[str, torch.Tensor]:
    """Token ids through a vocabulary-pruning remap; dropped tokens become `unknown` ([UNK] in the kept rows)."""
    if remap is None or "text_ids" not in x:
        return x
    ids = torch.from_numpy(remap).long()[x["text_ids"]]
    return {**x, "text_ids": torch.where(ids < 0, torch.full_like(ids, max(int(remap[unknown]), 0)), ids)}


class WithRemap(nn.Module):
    """A vocabulary-pruned model that takes the original token ids (for evaluation on unchanged data)."""

    def __init__(self, model: nn.Module, remap: np.ndarray | None) -> None:
        super().__init__()
        self.model, self.remap = model, remap

    def forward(self, **x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model(**remap_ids(x, self.remap))


def distill(
    student: nn.Module,
    teacher: nn.Module | None,
    splits: dict,
    config: DistillConfig | None = None,
    vocab_remap: np.ndarray | None = None,
) -> tuple[nn.Module, list[dict]]:
    """Train `student` against `teacher` on `splits["train"]`; keeps the weights with the best val accuracy.
    `teacher=None` fine-tunes on the labels alone (the no-teacher baseline). `vocab_remap` (from vocabulary
    pruning) maps the data's token ids to the student's; the teacher keeps the original ids."""
    from tqdm.auto import tqdm

    cfg = config or DistillConfig()
    rank, world = _dist()
    torch.manual_seed(cfg.seed)
    if teacher is not None:
        teacher.eval()  # its forward runs under no_grad; its requires_grad flags stay the caller's
    train, val = splits["train"], splits["val"]
    proj = None
    if cfg.feature_weight and teacher is not None:
        with torch.no_grad():
            x = _tensors(train.inputs(np.arange(2)))
            ds, dt = student(**x)["tokens"].shape[-1], teacher(**x)["tokens"].shape[-1]
        proj = nn.Linear(ds, dt)  # training-only: maps student tokens into the teacher's space
    params = [*student.parameters(), *(proj.parameters() if proj else [])]
    model = student
    if world > 1:
        model = nn.parallel.DistributedDataParallel(student)
    opt = torch.optim.AdamW([p for p in params if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_epoch = math.ceil(len(train) / cfg.batch_size)
    steps = cfg.epochs * per_epoch
    sched = warmup_cosine(opt, steps)
    logs, best, best_state, start_epoch, stale = [], -1.0, None, 0, 0
    ck = Path(cfg.checkpoint) if cfg.checkpoint else None
    if ck and cfg.resume and (ck / "state.pt").exists():
        state = torch.load(ck / "state.pt", weights_only=True)  # tensors and numbers only, no code
        student.load_state_dict(state["student"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        if proj is not None:
            proj.load_state_dict(state["proj"])
        logs = json.loads((ck / "logs.json").read_text())
        best, start_epoch = max((r["val_accuracy"] for r in logs), default=-1.0), len(logs)
        best_state = {k: v.clone() for k, v in state["best"].items()} if "best" in state else None
    gen = torch.Generator().manual_seed(cfg.seed + start_epoch)
    T = cfg.temperature
    bar = tqdm(
        total=steps, initial=start_epoch * per_epoch, desc="distill", unit="step", disable=rank != 0, dynamic_ncols=True
    )
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(train))  # same on every rank
        total, seen = 0.0, 0
        t0 = time.perf_counter()
        for i in range(0, len(order), cfg.batch_size):
            idx = np.sort(order[i : i + cfg.batch_size])[rank::world]  # each rank its share of the batch
            x = _tensors(train.inputs(idx))
            x["modality_mask"] = drop_modalities(x["modality_mask"], cfg.modality_dropout, gen)
            y = torch.from_numpy(train.label[idx])
            s_out = model(**remap_ids(x, vocab_remap))
            loss = F.cross_entropy(s_out["logits"], y)
            if teacher is not None:
                with torch.no_grad():
                    t_out = teacher(**x)
                kd = F.kl_div(
                    F.log_softmax(s_out["logits"] / T, -1),
                    F.log_softmax(t_out["logits"] / T, -1),
                    log_target=True,
                    reduction="batchmean",
                )
                loss = cfg.alpha * T * T * kd + (1 - cfg.alpha) * loss
            if proj is not None:
                loss = loss + cfg.feature_weight * F.mse_loss(proj(s_out["tokens"]), t_out["tokens"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, seen = total + loss.item() * len(idx), seen + len(idx)
            bar.update()
            bar.set_postfix(epoch=epoch + 1, loss=f"{total / seen:.3f}")
        acc = accuracy(WithRemap(student, vocab_remap), val)
        logs.append(
            {"epoch": epoch + 1, "loss": total / seen, "val_accuracy": acc, "seconds": time.perf_counter() - t0}
        )
        bar.set_postfix(epoch=epoch + 1, loss=f"{total / seen:.3f}", val=f"{acc:.3f}")
        if acc > best:
            best, stale = acc, 0
            best_state = {k: v.detach().clone() for k, v in student.state_dict().items()}
        else:
            stale += 1
        if ck and rank == 0:
            ck.mkdir(parents=True, exist_ok=True)
            state = {
                "student": student.state_dict(),
                "opt": opt.state_dict(),
                "sched": sched.state_dict(),
                "best": best_state,
            }
            if proj is not None:
                state["proj"] = proj.state_dict()
            torch.save(state, ck / "state.pt")
            (ck / "logs.json").write_text(json.dumps(logs, indent=2))
        if stale >= cfg.patience:
            break
    bar.close()
    if best_state is not None:
        student.load_state_dict(best_state)
    return student.eval(), [{**r, "config": asdict(cfg)} if i == 0 else r for i, r in enumerate(logs)]
