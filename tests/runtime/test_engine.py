"""Engine guarantees on a real tiny bundle (real ORT and LiteRT sessions)."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import onnxruntime as ort
import pytest
from conftest import sample_inputs

from edgefuse.runtime import (
    BackendError,
    Bundle,
    DeadlineExceeded,
    Engine,
    EngineClosed,
    Overloaded,
    SyncEngine,
)


class Recorder:
    """Wraps a real backend: records each call's rows, thread and time span; optional delay (sleep drops the GIL,
    like a real kernel) and failure on a condition."""

    def __init__(self, inner, delay: float = 0.0, fail_if=None) -> None:
        self.inner, self.delay, self.fail_if = inner, delay, fail_if
        self.calls: list[tuple[int, float, float, int]] = []
        self.lock = threading.Lock()

    def run(self, feeds):
        t0 = time.perf_counter()
        if self.delay:
            time.sleep(self.delay)
        if self.fail_if is not None and self.fail_if(feeds):
            raise RuntimeError("injected failure")
        out = self.inner.run(feeds)
        with self.lock:
            self.calls.append((next(iter(feeds.values())).shape[0], t0, time.perf_counter(), threading.get_ident()))
        return out


def wrap(engine: Engine, key: str, **kw) -> Recorder:
    engine.sessions[key] = rec = Recorder(engine.sessions[key], **kw)
    return rec


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("backend", ["onnx", "tflite"])
def test_matches_direct_session_calls(bundle_dir, backend):
    async def main():
        engine = Engine.load(bundle_dir, backend=backend)
        x = sample_inputs()
        feeds = engine.prepare(**x)
        result = await engine.infer(**x)
        await engine.aclose()
        return feeds, result

    feeds, result = run(main())
    b = Bundle.open(bundle_dir)
    s = {
        n: ort.InferenceSession(b.read(f"{n}.onnx"))
        for n in ("image_encoder", "audio_encoder", "text_encoder", "fusion")
    }
    tok = {
        "image_token": s["image_encoder"].run(None, {"image": feeds["image"][None]})[0],
        "audio_token": s["audio_encoder"].run(None, {"audio": feeds["audio"][None]})[0],
        "text_token": s["text_encoder"].run(
            None, {"text_ids": feeds["text_ids"][None], "text_mask": feeds["text_mask"][None]}
        )[0],
    }
    logits, contrib = s["fusion"].run(None, {**tok, "modality_mask": np.ones((1, 3), np.float32)})
    e = np.exp(logits[0] - logits[0].max())
    np.testing.assert_allclose(list(result.probabilities.values()), e / e.sum(), atol=1e-5)
    np.testing.assert_allclose(list(result.contributions.values()), contrib[0], atol=1e-5)
    assert result.index == int(logits[0].argmax()) and result.label == str(result.index)
    assert {"preprocess", "queue", "image", "audio", "text", "fusion", "total"} <= set(result.timings_ms)


@pytest.mark.parametrize("keep", [("image",), ("audio",), ("text",), ("image", "text"), ("audio", "text")])
def test_missing_modalities_split_and_fused_graphs_agree(bundle_dir, keep):
    x = {k: v for k, v in sample_inputs().items() if k in keep}

    async def main():
        split = Engine.load(bundle_dir)
        fused = Engine.load(bundle_dir, precision=None)
        fused.graphs = {"fused": next(g for g in fused.manifest.graphs if g.role == "fused")}
        from edgefuse.runtime.backends import create_backend

        g = fused.graphs["fused"]
        fused.sessions = {"fused": create_backend("onnx", fused.bundle.read(g.file), outputs=list(g.outputs))}
        fused.fused = True
        a, b = await split.infer(**x), await fused.infer(**x)
        await split.aclose()
        await fused.aclose()
        return a, b

    a, b = run(main())
    np.testing.assert_allclose(list(a.probabilities.values()), list(b.probabilities.values()), atol=1e-5)
    for m, c in a.contributions.items():
        assert (c > 0) == (m in keep)
    assert abs(sum(a.contributions.values()) - 1) < 1e-5


@pytest.mark.parametrize("workers", [1, 3])
def test_encoders_of_one_request_run_concurrently(bundle_dir, workers):
    async def main():
        engine = Engine.load(bundle_dir, workers=workers)
        recs = [wrap(engine, m, delay=0.05) for m in ("image", "audio", "text")]
        await engine.infer(**sample_inputs())
        await engine.aclose()
        return recs

    spans = [r.calls[0] for r in run(main())]
    start, end = max(s[1] for s in spans), min(s[2] for s in spans)
    if workers == 3:
        assert end > start, "the three encoder runs did not overlap in time"
        assert len({s[3] for s in spans}) == 3  # three threads
    else:  # one worker: one thread, in turn
        assert len({s[3] for s in spans}) == 1 and end < start


def test_batch_cut_by_size(bundle_dir):
    async def main():
        engine = Engine.load(bundle_dir, workers=1, max_batch=4, max_wait_ms=0)
        rec = wrap(engine, "fusion", delay=0.02)
        results = await asyncio.gather(*(engine.infer(image=sample_inputs(i)["image"]) for i in range(13)))
        await engine.aclose()
        return rec, results

    rec, results = run(main())
    sizes = [c[0] for c in rec.calls]
    assert sum(sizes) == 13 and max(sizes) == 4 and len(results) == 13


def test_batch_cut_by_time(bundle_dir):
    async def main():
        engine = Engine.load(bundle_dir, workers=1, max_batch=64, max_wait_ms=80)
        rec = wrap(engine, "fusion")
        tasks = []
        for i in range(3):  # arrive 10 ms apart: within one 80 ms window
            tasks.append(asyncio.ensure_future(engine.infer(text=f"hint {i}")))
            await asyncio.sleep(0.01)
        await asyncio.gather(*tasks)
        late = await engine.infer(text="a later one")
        await engine.aclose()
        return rec, late

    rec, late = run(main())
    assert [c[0] for c in rec.calls] == [3, 1]
    assert late.timings_ms["queue"] >= 75  # a lone request waited out max_wait_ms


def test_backpressure_overloaded_at_once_and_everything_resolves(bundle_dir):
    async def main():
        engine = Engine.load(bundle_dir, workers=1, max_batch=1, max_queue=4)
        wrap(engine, "fusion", delay=0.02)
        t0 = time.perf_counter()
        outcomes = await asyncio.gather(*(engine.infer(text="x") for _ in range(30)), return_exceptions=True)
        await engine.aclose()
        return outcomes, time.perf_counter() - t0

    outcomes, _ = run(main())
    over = [o for o in outcomes if isinstance(o, Overloaded)]
    ok = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(over) + len(ok) == 30 and over and ok
    assert len(ok) <= 1 + 4 + 1  # running + queue capacity (+1 taken by the batcher)


def test_deadline_covers_queue_and_run_and_engine_keeps_serving(bundle_dir):
    async def main():
        engine = Engine.load(bundle_dir, workers=1, max_batch=1)
        rec = wrap(engine, "fusion", delay=0.15)
        with pytest.raises(DeadlineExceeded):
            await engine.infer(text="slow", deadline_ms=50)
        rec.delay = 0
        await asyncio.sleep(0.2)
        ok = await engine.infer(text="fast", deadline_ms=2000)
        await engine.aclose()
        return ok

    assert run(main()).label


def test_cancelled_request_leaves_its_batch(bundle_dir):
    async def main():
        engine = Engine.load(bundle_dir, workers=1, max_batch=8)
        rec = wrap(engine, "fusion", delay=0.1)
        first = asyncio.ensure_future(engine.infer(text="busy"))
        await asyncio.sleep(0.02)  # the worker is now busy with `first`
        queued = [asyncio.ensure_future(engine.infer(text=f"q{i}")) for i in range(3)]
        await asyncio.sleep(0.01)
        queued[1].cancel()
        await first
        results = await asyncio.gather(*queued, return_exceptions=True)
        await engine.aclose()
        return rec, results

    rec, results = run(main())
    assert isinstance(results[1], asyncio.CancelledError)
    assert [c[0] for c in rec.calls] == [1, 2]  # the cancelled one never ran


def test_failing_batch_fails_only_its_requests(bundle_dir):
    async def main():
        engine = Engine.load(bundle_dir, workers=1, max_batch=1)
        wrap(engine, "image", fail_if=lambda feeds: feeds["image"].mean() > 0.9)
        white = np.full((8, 8, 3), 255, np.uint8)
        outcomes = await asyncio.gather(
            engine.infer(text="fine"), engine.infer(image=white), engine.infer(text="also fine"), return_exceptions=True
        )
        after = await engine.infer(image=sample_inputs()["image"])
        await engine.aclose()
        return outcomes, after

    outcomes, after = run(main())
    assert isinstance(outcomes[1], BackendError) and "injected failure" in str(outcomes[1])
    assert not isinstance(outcomes[0], BaseException) and not isinstance(outcomes[2], BaseException)
    assert after.label


def _shut_down(bundle_dir, requests: int, max_batch: int, delay: float, timeout: float):
    """Queue `requests` behind a slow fusion graph, then aclose(timeout); -> (outcomes, engine, late infer error)."""

    async def main():
        engine = Engine.load(bundle_dir, workers=1, max_batch=max_batch)
        wrap(engine, "fusion", delay=delay)
        tasks = [asyncio.ensure_future(engine.infer(text=f"t{i}")) for i in range(requests)]
        await asyncio.sleep(0.01)
        await engine.aclose(timeout=timeout)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await engine.infer(text="late")
        except EngineClosed as e:
            return results, engine, e
        return results, engine, None

    return run(main())


def test_graceful_shutdown_drains_then_refuses(bundle_dir):
    results, engine, late = _shut_down(bundle_dir, requests=8, max_batch=2, delay=0.02, timeout=5)
    assert all(not isinstance(r, BaseException) for r in results)
    assert isinstance(late, EngineClosed)
    assert engine.sessions == {}


def test_shutdown_deadline_fails_what_is_left(bundle_dir):
    results, _, _ = _shut_down(bundle_dir, requests=10, max_batch=1, delay=0.1, timeout=0.15)
    done = [r for r in results if not isinstance(r, BaseException)]
    closed = [r for r in results if isinstance(r, EngineClosed)]
    assert done and closed and len(done) + len(closed) == 10


def test_item_cache_skips_encoders(bundle_dir):
    async def main():
        engine = Engine.load(bundle_dir, cache_size=16)
        rec = wrap(engine, "image")
        x = sample_inputs()
        a = await engine.infer(**x, item_id="item-1")
        b = await engine.infer(**x, item_id="item-1")
        c = await engine.infer(**x, item_id="item-2")
        await engine.aclose()
        return rec, a, b, c

    rec, a, b, c = run(main())
    assert len(rec.calls) == 2  # item-1 once, item-2 once
    assert a.probabilities == b.probabilities == c.probabilities


def test_sync_facade(bundle_dir):
    with SyncEngine.load(bundle_dir, backend="tflite") as engine:
        r = engine.infer(**sample_inputs())
        r2 = engine.infer(text="an even number")
    assert r.label in [str(i) for i in range(10)] and r2.contributions["text"] == pytest.approx(1.0)


def test_zip_bundle_loads(tmp_path):
    from conftest import make_bundle

    z = make_bundle(tmp_path / "b.zip", as_zip=True)
    engine = SyncEngine.load(z)
    try:
        assert engine.infer(text="an odd number").label
    finally:
        engine.close()


def test_inline_idle_gives_the_same_answer_and_keeps_deadlines(bundle_dir):
    async def main():
        threaded = Engine.load(bundle_dir)
        inline = Engine.load(bundle_dir, inline_idle=True)
        a, b = await threaded.infer(**sample_inputs()), await inline.infer(**sample_inputs())
        rec = wrap(inline, "fusion", delay=0.1)
        with pytest.raises(DeadlineExceeded):
            await inline.infer(text="slow", deadline_ms=20)
        await threaded.aclose()
        await inline.aclose()
        return a, b, rec

    a, b, rec = run(main())
    assert a.probabilities == b.probabilities and a.contributions == b.contributions
    assert b.timings_ms["queue"] < 1.0 and len(rec.calls) == 1
