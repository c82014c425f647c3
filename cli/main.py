"""`edgefuse` command line. Thin: each subcommand parses arguments and calls one public function.

Heavy imports (torch) happen inside the handlers, so `edgefuse run` / `inspect` stay runtime-only."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _data_describe(args: argparse.Namespace) -> None:
    from edgefuse.models.avt_digits import AVTConfig, describe, load_splits

    print(describe(load_splits(AVTConfig(seed=args.seed))))


def _data_sample(args: argparse.Namespace) -> None:
    from edgefuse.models.avt_digits import AVTConfig, load_splits, write_samples

    split = load_splits(AVTConfig(seed=args.seed))[args.split]
    files = write_samples(split, args.out, args.count)
    print(f"wrote {len(files)} files ({args.count} samples of {args.split}) to {args.out}")


def _train_teacher(args: argparse.Namespace) -> None:
    from edgefuse.models.avt_digits import AVTConfig
    from edgefuse.models.train import TrainConfig, format_table, train_teacher

    epochs = {"epochs": args.epochs} if args.epochs else {}
    cfg = TrainConfig(threads=args.threads, seed=args.seed, data=AVTConfig(seed=args.seed), **epochs)
    metrics = train_teacher(args.out, cfg)
    print(format_table(metrics["accuracy"]))
    print(f"params {metrics['params'] / 1e6:.1f} M, trained in {metrics['train_seconds']:.0f} s -> {args.out}")


def _prune(args: argparse.Namespace) -> None:
    import copy
    import json

    from edgefuse.compress.bundle import avt_specs, example_inputs
    from edgefuse.compress.prune import prune, save_pruned
    from edgefuse.compress.recipe import load_recipe
    from edgefuse.models import load_checkpoint

    cfg, _, _ = load_recipe(args.recipe)
    if cfg.vocab_embedding and cfg.vocab_keep is None:
        cfg.vocab_embedding = None  # vocabulary pruning needs the data: `edgefuse distill` does it
    teacher = load_checkpoint(args.checkpoint)
    example = example_inputs(**avt_specs(), batch=1)
    model, report = prune(copy.deepcopy(teacher), example, cfg)
    summary = {"before": report.before, "after": report.after}
    out = save_pruned(model, args.out, meta={"recipe": args.recipe})
    (out / "prune_report.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


def _distill(args: argparse.Namespace) -> None:
    from edgefuse.compress.recipe import prune_and_distill

    r = prune_and_distill(args.teacher, args.recipe, args.out, baseline=not args.no_baseline)
    rows = [("teacher", r["teacher"]), ("student", r["student"])]
    if "baseline_no_teacher" in r:
        rows.append(("no-teacher", r["baseline_no_teacher"]))
    keys = ("all", "no_image", "no_audio", "no_text", "image_only", "audio_only", "text_only")
    print(f"{'model':11} " + " ".join(f"{k:>10}" for k in keys))
    for name, row in rows:
        print(f"{name:11} " + " ".join(f"{row['accuracy'][k]:>10.3f}" for k in keys))
    print(
        f"student/teacher: params {r['ratios']['params']:.3f}, MACs {r['ratios']['macs']:.3f}; seconds {r['seconds']}"
    )
    print(f"-> {args.out}/report.json, {args.out}/student/")


def _export(args: argparse.Namespace) -> None:
    from edgefuse.compress.bundle import write_avt_bundle
    from edgefuse.models import load_checkpoint

    model = load_checkpoint(args.checkpoint)
    out = write_avt_bundle(model, args.out, name=model.edgefuse_config["name"], fused=args.fused, as_zip=args.zip)
    print(f"wrote {out}")


def _run(args: argparse.Namespace) -> None:
    import json

    from edgefuse.runtime import SyncEngine

    with SyncEngine.load(args.bundle, backend=args.backend, threads=args.threads) as engine:
        result = engine.infer(image=args.image, audio=args.audio, text=args.text)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    top = sorted(result.probabilities.items(), key=lambda kv: -kv[1])[:3]
    print(f"label: {result.label}")
    print("top-3: " + ", ".join(f"{k} {v:.3f}" for k, v in top))
    print("contributions: " + ", ".join(f"{k} {v:.2f}" for k, v in result.contributions.items()))
    print("timings (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in result.timings_ms.items()))


def _inspect(args: argparse.Namespace) -> None:
    from edgefuse.runtime import Bundle

    bundle = Bundle.open(args.bundle)  # verifies every file's sha256 or raises naming the file
    m = bundle.manifest
    print(f"bundle {m.name!r} ({m.schema}) from {bundle.source}: {len(m.labels)} labels")
    for kind in ("image", "audio", "text"):
        spec = getattr(m, kind)
        if spec is not None:
            print(f"  {kind}: {spec}")
    print(f"  {'graph':16} {'role':8} {'format':7} {'precision':12} {'size':>10}")
    for g in m.graphs:
        print(f"  {g.name:16} {g.role:8} {g.format:7} {g.precision:12} {m.files[g.file]['size_bytes']:>10,}")
    total = sum(f["size_bytes"] for f in m.files.values())
    print(f"  {len(m.files)} files, {total:,} bytes, all sha256 verified")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgefuse", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="the embedded AVT-Digits task").add_subparsers(dest="action", required=True)
    d = data.add_parser("describe", help="split sizes, class balance, modality-missing rates")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_data_describe)
    s = data.add_parser("sample", help="write a few samples as PNG/WAV/TXT")
    s.add_argument("--out", required=True)
    s.add_argument("--split", choices=("train", "val", "test"), default="test")
    s.add_argument("--count", type=int, default=8)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_data_sample)

    t = sub.add_parser("train-teacher", help="train and evaluate the AVT-Digits teacher")
    t.add_argument("--out", required=True, help="folder for the checkpoint and metrics.json")
    t.add_argument("--epochs", type=int, default=None, help="default: TrainConfig's (5)")
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=_train_teacher)

    pr = sub.add_parser("prune", help="prune a checkpoint per a recipe's [prune] table (no distillation)")
    pr.add_argument("checkpoint")
    pr.add_argument("--recipe", default="recipes/avt-default.toml")
    pr.add_argument("--out", required=True, help="folder for the pruned model (safetensors + shapes JSON)")
    pr.set_defaults(func=_prune)

    d2 = sub.add_parser("distill", help="prune the teacher and distil a student (recipe's [prune] and [distill])")
    d2.add_argument("teacher", help="teacher checkpoint folder")
    d2.add_argument("--recipe", default="recipes/avt-default.toml")
    d2.add_argument("--out", required=True)
    d2.add_argument("--no-baseline", action="store_true", help="skip the no-teacher fine-tune used for comparison")
    d2.set_defaults(func=_distill)

    e = sub.add_parser("export", help="export a checkpoint as an fp32 ONNX bundle (encoders + fusion)")
    e.add_argument("checkpoint", help="folder written by train-teacher / save_checkpoint")
    e.add_argument("--out", required=True, help="bundle folder (or .zip with --zip)")
    e.add_argument("--fused", action="store_true", help="also write one fused graph")
    e.add_argument("--zip", action="store_true", help="write the bundle as one zip file")
    e.set_defaults(func=_export)

    r = sub.add_parser("run", help="classify one item with a bundle (runtime only, no torch)")
    r.add_argument("bundle")
    r.add_argument("--backend", choices=("onnx", "tflite"), default="onnx")
    r.add_argument("--image", help="image file (PNG/JPEG)")
    r.add_argument("--audio", help="WAV file")
    r.add_argument("--text", help="text hint")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--json", action="store_true", help="print the whole result as JSON")
    r.set_defaults(func=_run)

    i = sub.add_parser("inspect", help="summarise a bundle and verify every file's hash")
    i.add_argument("bundle")
    i.set_defaults(func=_inspect)
    return p


def main(argv: list[str] | None = None) -> int:
    from edgefuse.runtime.errors import EdgefuseError

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, EdgefuseError) as e:  # typed errors that name the input and the fix
        print(f"edgefuse: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
