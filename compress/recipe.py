"""The prune -> distil stage of a recipe (TOML of the stage configs), with the no-teacher baseline beside it."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import tomllib

from .distill import DistillConfig, WithRemap, distill
from .prune import PruneConfig, prune, save_pruned

__all__ = ["load_recipe", "prune_and_distill"]


def load_recipe(path: str | Path) -> tuple[PruneConfig, DistillConfig]:
    data = tomllib.loads(Path(path).read_text())
    unknown = set(data) - {"prune", "distill"}
    if unknown:
        raise ValueError(f"{sorted(unknown)[0]}: not a recipe section; use [prune] and [distill]")
    try:
        return PruneConfig.from_dict(data.get("prune", {})), DistillConfig(**data.get("distill", {}))
    except TypeError as e:  # an unknown key in [distill] or a plan
        raise ValueError(f"recipe {path}: {e}") from e


def prune_and_distill(teacher_dir: str | Path, recipe: str | Path, out: str | Path, baseline: bool = True) -> dict:
    """AVT-Digits default: load the teacher, prune a copy, distil it (and fine-tune the same pruned copy without
    the teacher, for comparison), evaluate all on the test split, write `out/student/` and `out/report.json`."""
    from edgefuse.compress.bundle import example_inputs
    from edgefuse.models import AVTConfig, load_checkpoint, load_splits
    from edgefuse.models.train import evaluate
    from edgefuse.runtime import AudioSpec, ImageSpec, TextSpec

    out = Path(out)
    prune_cfg, distill_cfg = load_recipe(recipe)
    teacher = load_checkpoint(teacher_dir)
    splits = load_splits(AVTConfig())
    example = example_inputs(ImageSpec(64, 64), AudioSpec(16000, 16000), TextSpec("tokenizer.json", 16), batch=1)
    if prune_cfg.vocab_embedding and prune_cfg.vocab_keep is None:
        used = np.unique(np.concatenate([s.text_ids.ravel() for s in splits.values()]))
        prune_cfg.vocab_keep = sorted({*used.tolist(), 0, 100, 101, 102})  # + [PAD] [UNK] [CLS] [SEP]
    seconds = {}
    t = time.perf_counter()
    student, report = prune(copy.deepcopy(teacher), example, prune_cfg)
    seconds["prune"] = time.perf_counter() - t
    pruned = copy.deepcopy(student)
    t = time.perf_counter()
    student, logs = distill(student, teacher, splits, distill_cfg, report.vocab_remap)
    seconds["distill"] = time.perf_counter() - t
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
