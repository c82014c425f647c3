"""The prune -> distil stage of a recipe (TOML of the stage configs), with the no-teacher baseline beside it."""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import tomllib
from torch import nn

from .distill import DistillConfig, WithRemap, distill, remap_ids
from .prune import PruneConfig, PruneReport, prune, save_pruned, step_config

__all__ = ["load_recipe", "prune_and_distill", "prune_distill_steps"]


def load_recipe(path: str | Path) -> tuple[PruneConfig, DistillConfig, int]:
    """-> (prune config, distill config, steps). `steps` > 1 alternates pruning a share and distilling."""
    data = tomllib.loads(Path(path).read_text())
    unknown = set(data) - {"prune", "distill", "steps"}
    if unknown:
        raise ValueError(f"{sorted(unknown)[0]}: not a recipe setting; use steps, [prune] and [distill]")
    steps = data.get("steps", 1)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: must be an integer >= 1, got {steps!r}")
    try:
        return PruneConfig.from_dict(data.get("prune", {})), DistillConfig(**data.get("distill", {})), steps
    except TypeError as e:  # an unknown key in [distill] or a plan
        raise ValueError(f"recipe {path}: {e}") from e


def prune_distill_steps(
    teacher: nn.Module, splits: dict, example: dict, prune_cfg: PruneConfig, distill_cfg: DistillConfig, steps: int = 1
) -> tuple[nn.Module, PruneReport, list[dict], dict[str, float]]:
    """Prune a copy of `teacher` and distil it; with `steps` > 1, each step prunes an equal share of what is left
    (ratios compound to the plan's) and distils for its share of the epochs. The teacher is left untouched."""
    seconds = {"prune": 0.0, "distill": 0.0}
    student, logs, remap, before = copy.deepcopy(teacher), [], None, None
    per_step = dataclasses.replace(distill_cfg, epochs=max(1, -(-distill_cfg.epochs // steps)))
    for step in range(steps):
        t = time.perf_counter()
        cfg = prune_cfg if steps == 1 else step_config(prune_cfg, steps, step)
        student, report = prune(student, remap_ids(example, remap), cfg)
        remap = report.vocab_remap if remap is None else remap
        before = before or report.before
        seconds["prune"] += time.perf_counter() - t
        t = time.perf_counter()
        student, step_logs = distill(student, teacher, splits, per_step, remap)
        logs += step_logs
        seconds["distill"] += time.perf_counter() - t
    report.before, report.vocab_remap = before, remap
    return student, report, logs, seconds


def prune_and_distill(teacher_dir: str | Path, recipe: str | Path, out: str | Path, baseline: bool = True) -> dict:
    """AVT-Digits default: load the teacher, prune a copy, distil it (and fine-tune the same pruned copy without
    the teacher, for comparison), evaluate all on the test split, write `out/student/` and `out/report.json`."""
    from edgefuse.compress.bundle import avt_specs, example_inputs
    from edgefuse.models import AVTConfig, load_checkpoint, load_splits
    from edgefuse.models.train import evaluate

    out = Path(out)
    prune_cfg, distill_cfg, steps = load_recipe(recipe)
    teacher = load_checkpoint(teacher_dir)
    splits = load_splits(AVTConfig())
    example = example_inputs(**avt_specs(), batch=1)
    if prune_cfg.vocab_embedding and prune_cfg.vocab_keep is None:
        used = np.unique(np.concatenate([s.text_ids.ravel() for s in splits.values()]))
        prune_cfg.vocab_keep = sorted({*used.tolist(), 0, 100, 101, 102})  # + [PAD] [UNK] [CLS] [SEP]
    student, report, logs, seconds = prune_distill_steps(teacher, splits, example, prune_cfg, distill_cfg, steps)
    result = {
        "teacher": {**report.before["total"], "accuracy": evaluate(teacher, splits["test"])},
        "student": {
            **report.after["total"],
            "accuracy": evaluate(WithRemap(student, report.vocab_remap), splits["test"]),
        },
        "distill_epochs": logs,
    }
    if baseline:
        t = time.perf_counter()
        pruned, _ = prune(copy.deepcopy(teacher), example, prune_cfg)  # the student's final shape, in one shot
        base, _ = distill(pruned, None, splits, distill_cfg, report.vocab_remap)
        seconds["baseline"] = time.perf_counter() - t
        result["baseline_no_teacher"] = {"accuracy": evaluate(WithRemap(base, report.vocab_remap), splits["test"])}
    for who in ("teacher", "student"):
        acc = result[who]["accuracy"]
        result[who]["accuracy_missing"] = {m: acc[f"no_{m}"] for m in ("image", "audio", "text")}
    result["ratios"] = {k: result["student"][k] / result["teacher"][k] for k in ("params", "macs")}
    result["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    result["per_module_params"] = {"before": report.before, "after": report.after}
    save_pruned(student, out / "student", meta={"recipe": str(recipe)})
    if report.vocab_remap is not None:
        np.save(out / "student" / "vocab_remap.npy", report.vocab_remap)
    (out / "report.json").write_text(json.dumps(result, indent=2))
    return result
