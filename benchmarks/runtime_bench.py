"""Runtime measurements: engine overhead against direct session calls, worker scaling, and an overload soak.

    python -m edgefuse.benchmarks.runtime_bench BUNDLE [--backend onnx] [--only overhead,scaling,soak] [--json F]

Numbers are measured, never asserted: the tests check the harness, this prints what the machine did.
Runs with the runtime alone (numpy + onnxruntime / ai-edge-litert)."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import numpy as np

from edgefuse.runtime import Bundle, DeadlineExceeded, Engine, Overloaded
from edgefuse.runtime.backends import create_backend
from edgefuse.runtime.manifest import ENCODER_INPUTS

__all__ = ["measure_overhead", "measure_scaling", "percentile_ms", "rss_mb", "soak"]


def percentile_ms(samples_s: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples_s) * 1e3, q))


def rss_mb() -> float:
    """Current resident set size (Linux /proc; falls back to peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            import os

            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sample_request(bundle: Bundle, seed: int = 0) -> dict:
    """Inputs already at the bundle's specs (so preprocessing is as cheap as it gets)."""
    rng = np.random.default_rng(seed)
    m = bundle.manifest
    req = {}
    if m.image:
        req["image"] = rng.integers(0, 256, (m.image.height, m.image.width, 3), dtype=np.uint8)
    if m.audio:
        req["audio"] = (rng.standard_normal(m.audio.samples) * 0.1).astype(np.float32)
    if m.text:
        req["text"] = "an odd number"
    return req


def measure_overhead(
    bundle: Bundle, backend: str = "onnx", n: int = 2000, warmup: int = 200, threads: int = 1, inline_idle: bool = True
) -> dict:
    """SingleStream, batch 1: `engine.infer` vs the same graphs called directly, in turn, on the same inputs.
    `inline_idle=False` measures the threaded path (two thread wake-ups per request)."""
    engine = Engine(bundle, backend, threads=threads, workers=1, max_batch=1, inline_idle=inline_idle)
    req = sample_request(bundle)
    feeds = engine.prepare(**req)
    sessions = {
        k: create_backend(backend, bundle.read(g.file), threads, g.name, list(g.outputs))
        for k, g in engine.graphs.items()
    }
    mask = np.ones((1, 3), np.float32)

    def direct() -> None:
        if "fused" in sessions:
            sessions["fused"].run({**{k: v[None] for k, v in feeds.items()}, "modality_mask": mask})
            return
        toks = {
            f"{m}_token": sessions[m].run({n: feeds[n][None] for n in ENCODER_INPUTS[m]})["token"]
            for m in ENCODER_INPUTS
        }
        sessions["fusion"].run({**toks, "modality_mask": mask})

    async def through_engine() -> tuple[list[float], list[float]]:
        eng, dir_ = [], []
        for i in range(warmup + n):  # interleaved, so drift in machine load hits both alike
            t = time.perf_counter()
            await engine.infer(prepared=feeds)  # the same preprocessed inputs as the direct calls
            t1 = time.perf_counter()
            direct()
            t2 = time.perf_counter()
            if i >= warmup:
                eng.append(t1 - t)
                dir_.append(t2 - t1)
        await engine.aclose()
        return eng, dir_

    eng, dir_ = asyncio.run(through_engine())
    e50, d50 = percentile_ms(eng, 50), percentile_ms(dir_, 50)
    return {
        "backend": backend,
        "inline_idle": inline_idle,
        "n": n,
        "engine_p50_ms": round(e50, 4),
        "direct_p50_ms": round(d50, 4),
        "overhead_ms": round(e50 - d50, 4),
        "overhead_pct": round(100 * (e50 - d50) / d50, 2),
        "within_target": bool(e50 - d50 <= max(0.05 * d50, 0.05)),
    }


def measure_scaling(
    bundle: Bundle, backend: str = "onnx", clients: int = 16, seconds: float = 5.0, workers=(1, 2)
) -> dict:
    """Closed loop: `clients` concurrent callers for `seconds`; throughput per worker count (1 thread/session)."""
    out = {}
    for w in workers:
        engine = Engine(bundle, backend, threads=1, workers=w, max_batch=1)
        req = sample_request(bundle)

        async def run(engine=engine, req=req) -> int:
            done = 0
            end = time.perf_counter() + seconds

            async def client() -> None:
                nonlocal done
                while time.perf_counter() < end:
                    await engine.infer(**req)
                    done += 1

            for _ in range(20):  # warm-up
                await engine.infer(**req)
            t = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(clients)))
            elapsed = time.perf_counter() - t
            await engine.aclose()
            return done / elapsed

        out[f"workers_{w}_rps"] = round(asyncio.run(run()), 1)
    if len(workers) == 2:
        out["speedup"] = round(out[f"workers_{workers[1]}_rps"] / out[f"workers_{workers[0]}_rps"], 3)
    return out


def soak(
    bundle: Bundle, backend: str = "onnx", total: int = 20_000, overload: float = 4.0, deadline_ms: float = 200.0
) -> dict:
    """Open loop at `overload` x measured capacity: every request must resolve exactly once; RSS must stay flat."""
    engine = Engine(bundle, backend, threads=1, workers=2, max_batch=8, max_queue=64)
    req = sample_request(bundle)

    async def run() -> dict:
        t = time.perf_counter()
        for _ in range(200):
            await engine.infer(**req)
        capacity = 200 / (time.perf_counter() - t)
        rate = capacity * overload
        counts = {"ok": 0, "overloaded": 0, "deadline": 0, "other": 0}
        resolved = 0

        async def one() -> None:
            nonlocal resolved
            try:
                await engine.infer(**req, deadline_ms=deadline_ms)
                counts["ok"] += 1
            except Overloaded:
                counts["overloaded"] += 1
            except DeadlineExceeded:
                counts["deadline"] += 1
            except Exception:
                counts["other"] += 1
            resolved += 1

        rss0 = rss_mb()
        tasks = set()
        start = time.perf_counter()
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.ensure_future(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            if i == total // 10:
                rss0 = rss_mb()  # after warm-up allocations
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
        rss1 = rss_mb()
        await engine.aclose()
        return {
            "requests": total,
            "offered_rps": round(rate, 1),
            "capacity_rps": round(capacity, 1),
            **counts,
            "resolved": resolved,
            "exactly_once": resolved == total and sum(counts.values()) == total,
            "seconds": round(time.perf_counter() - start, 1),
            "rss_start_mb": round(rss0, 1),
            "rss_end_mb": round(rss1, 1),
            "rss_growth_pct": round(100 * (rss1 - rss0) / rss0, 2),
        }

    return asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle")
    p.add_argument("--backend", default="onnx", choices=("onnx", "tflite"))
    p.add_argument("--only", default="overhead,overhead_threaded,scaling,soak")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    bundle = Bundle.open(args.bundle)
    results = {}
    runs = {
        "overhead": lambda: measure_overhead(bundle, args.backend),
        "overhead_threaded": lambda: measure_overhead(bundle, args.backend, inline_idle=False),
        "scaling": lambda: measure_scaling(bundle, args.backend),
        "soak": lambda: soak(bundle, args.backend),
    }
    for what in args.only.split(","):
        results[what] = runs[what]()
        print(what, json.dumps(results[what]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
