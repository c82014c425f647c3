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

    cfg = TrainConfig(epochs=args.epochs, threads=args.threads, seed=args.seed, data=AVTConfig(seed=args.seed))
    metrics = train_teacher(args.out, cfg)
    print(format_table(metrics["accuracy"]))
    print(f"params {metrics['params'] / 1e6:.1f} M, trained in {metrics['train_seconds']:.0f} s -> {args.out}")


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
    t.add_argument("--epochs", type=int, default=5)
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=_train_teacher)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except ValueError as e:  # our typed errors are ValueErrors that name the input and the fix
        print(f"edgefuse: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
