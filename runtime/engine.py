"""The asynchronous engine: fused image/audio/text inference from a bundle.

    engine = Engine.load("bundle/", backend="onnx")
    result = await engine.infer(image="cat.png", audio="meow.wav", text="a small pet")
    result.label, result.probabilities, result.contributions, result.timings_ms

Requests are admitted into a bounded queue (full -> `Overloaded` at once), cut into micro-batches at `max_batch`
or `max_wait_ms`, and run by `workers` threads; within a batch the encoders of the present modalities run
concurrently (the backends release the GIL). Every accepted request resolves exactly once: a result,
`DeadlineExceeded`, `BackendError` (its batch failed), `EngineClosed`, or its own cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import preprocess
from .backends import BACKENDS, Backend, create_backend
from .errors import BackendError, BundleError, DeadlineExceeded, EngineClosed, InputError, Overloaded
from .manifest import ENCODER_INPUTS, Bundle, GraphSpec

__all__ = ["MODALITIES", "Engine", "Result", "SyncEngine"]

MODALITIES = ("image", "audio", "text")


@dataclass
class Result:
    label: str
    index: int
    logits: np.ndarray  # (classes,) as the graph returned them
    labels: list[str]
    contributions: dict[str, float]  # each modality's share of the fused decision (0 where absent)
    timings_ms: dict[str, float] = field(default_factory=dict)

    @functools.cached_property
    def probabilities(self) -> dict[str, float]:
        """Softmax of the logits per label; computed on first use, off the serving path."""
        z = self.logits.astype(np.float64)
        e = np.exp(z - z.max())
        return dict(zip(self.labels, (e / e.sum()).tolist(), strict=True))

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "index": self.index,
            "probabilities": self.probabilities,
            "contributions": self.contributions,
            "timings_ms": self.timings_ms,
        }


@dataclass
class _Request:
    feeds: dict[str, np.ndarray]  # per input name, one row (no batch axis)
    present: tuple[bool, bool, bool]
    future: asyncio.Future
    admitted: float
    cached: dict[str, np.ndarray]  # modality -> token from the item cache
    item_id: str | None
    timings: dict[str, float]


class Engine:
    """Load with `Engine.load(bundle, backend=...)`; use from one asyncio event loop."""

    def __init__(
        self,
        bundle: Bundle,
        backend: str = "onnx",
        *,
        threads: int = 1,
        workers: int = 2,
        max_batch: int = 8,
        max_wait_ms: float = 0.0,
        max_queue: int = 256,
        precision: str | None = None,
        cache_size: int = 0,
        inline_idle: bool = False,
    ) -> None:
        for name, value, ok in (
            ("threads", threads, threads >= 1),
            ("workers", workers, workers >= 1),
            ("max_batch", max_batch, max_batch >= 1),
            ("max_wait_ms", max_wait_ms, max_wait_ms >= 0),
            ("max_queue", max_queue, max_queue >= 1),
            ("cache_size", cache_size, cache_size >= 0),
        ):
            if not ok:
                raise InputError(
                    name, f"invalid value {value!r}", "use a positive number (max_wait_ms, cache_size may be 0)"
                )
        self.bundle, self.manifest = bundle, bundle.manifest
        self.backend_kind = backend
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000
        self.max_queue, self.workers = max_queue, workers
        # inline_idle: when nothing is queued or running, run the request in the calling (event-loop) thread.
        # Saves two thread wake-ups (~0.2 ms each on a VM) for SingleStream apps; blocks the loop meanwhile.
        self.inline_idle = inline_idle
        self.graphs = self._select(backend, precision)
        self.sessions: dict[str, Backend] = {
            key: create_backend(backend, bundle.read(g.file), threads=threads, name=g.name, outputs=list(g.outputs))
            for key, g in self.graphs.items()
        }
        self.fused = "fused" in self.graphs
        self._text = self._text_preprocessor()
        self._batch_pool = ThreadPoolExecutor(workers, thread_name_prefix="edgefuse-batch")
        # `workers` bounds the threads running graphs: batches in flight, plus helpers that run a batch's other
        # encoders beside it. With workers=1 everything runs in one thread, in turn.
        self._enc_pool = ThreadPoolExecutor(workers - 1, thread_name_prefix="edgefuse-enc") if workers > 1 else None
        self._cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._cache_size, self._cache_lock = cache_size, threading.Lock()
        self._queue: asyncio.Queue[_Request] | None = None
        self._slots: asyncio.Semaphore | None = None
        self._batcher: asyncio.Task | None = None
        self._inflight: set[asyncio.Task] = set()
        self._forming: list[_Request] = []  # taken from the queue, not yet handed to a worker
        self._closing = self._closed = False

    @classmethod
    def load(cls, bundle: str | Path | Bundle, backend: str = "onnx", **options) -> Engine:
        """Open and verify `bundle` (directory or .zip), create one session per graph."""
        if backend not in BACKENDS:  # before opening the bundle: a typo fails at once
            raise InputError("backend", f"unknown backend {backend!r}", f"choose one of {sorted(BACKENDS)}")
        return cls(bundle if isinstance(bundle, Bundle) else Bundle.open(bundle), backend, **options)

    # ---------------------------------------------------------------- setup
    def _select(self, backend: str, precision: str | None) -> dict[str, GraphSpec]:
        """Pick one graph per encoder modality + fusion (or one fused graph) in `backend`'s format."""
        chosen: dict[str, GraphSpec] = {}
        for g in self.manifest.graphs:
            if g.format != backend or (precision and g.precision != precision) or (not precision and not g.preferred):
                continue
            key = g.modality if g.role == "encoder" else g.role
            chosen.setdefault(key, g)
        if "fusion" in chosen and any(m in chosen for m in MODALITIES):
            chosen.pop("fused", None)
            return chosen
        if "fused" in chosen:
            return {"fused": chosen["fused"]}
        have = sorted({(g.format, g.precision) for g in self.manifest.graphs})
        raise BundleError(
            "manifest.json: graphs",
            f"no complete {backend}{'/' + precision if precision else ''} graph set",
            f"this bundle has {have}; pick one of those backend/precision pairs",
        )

    def _text_preprocessor(self) -> preprocess.TextPreprocessor | None:
        spec = self.manifest.text
        if spec is None:
            return None
        remap = None
        if spec.vocab_remap:
            import io

            remap = np.load(io.BytesIO(self.bundle.read(spec.vocab_remap)), allow_pickle=False)
        return preprocess.TextPreprocessor(spec, self.bundle.read(spec.tokenizer), remap)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities this bundle accepts."""
        if self.fused:
            return tuple(m for m in MODALITIES if getattr(self.manifest, m) is not None)
        return tuple(m for m in MODALITIES if m in self.graphs)

    # ---------------------------------------------------------------- requests
    def prepare(self, image=None, audio=None, text=None, sample_rate: int | None = None) -> dict[str, np.ndarray]:
        """Preprocess one request's inputs -> per-input arrays without a batch axis. Raises InputError."""
        given = {"image": image, "audio": audio, "text": text}
        for m, v in given.items():
            if v is not None and m not in self.modalities:
                raise InputError(m, "this bundle has no such modality", f"send only {', '.join(self.modalities)}")
        if all(v is None for v in given.values()):
            raise InputError("inputs", "no modality given", f"send at least one of {', '.join(self.modalities)}")
        feeds = {}
        if image is not None:
            feeds["image"] = preprocess.image(image, self.manifest.image)
        if audio is not None:
            feeds["audio"] = preprocess.audio(audio, self.manifest.audio, sample_rate)
        if text is not None:
            feeds["text_ids"], feeds["text_mask"] = self._text(text)
        return feeds

    async def infer(
        self,
        image=None,
        audio=None,
        text=None,
        *,
        sample_rate: int | None = None,
        deadline_ms: float | None = None,
        item_id: str | None = None,
        prepared: dict[str, np.ndarray] | None = None,
    ) -> Result:
        """Classify one item from any subset of its modalities. `deadline_ms` covers queueing and running;
        `item_id` lets the engine reuse cached encoder outputs for an item it has seen (needs `cache_size`);
        `prepared` passes what `prepare()` returned, for apps that preprocess off the serving path."""
        if self._closing:
            raise EngineClosed("the engine is shutting down; create a new Engine")
        t0 = time.perf_counter()
        feeds = prepared if prepared is not None else self.prepare(image, audio, text, sample_rate)
        present = ("image" in feeds, "audio" in feeds, "text_ids" in feeds)
        loop = asyncio.get_running_loop()
        self._start(loop)
        cached = self._cache_get(item_id, present)
        req = _Request(feeds, present, loop.create_future(), time.perf_counter(), cached, item_id, {})
        req.timings["preprocess"] = (req.admitted - t0) * 1e3
        if self.inline_idle and self._queue.empty() and not self._forming and not self._inflight:
            start = time.perf_counter()
            try:
                out = self._compute([req])
            except Exception as e:
                out = e
            self._resolve([req], out, start)
            if deadline_ms is not None and (time.perf_counter() - t0) * 1e3 > deadline_ms:
                raise DeadlineExceeded(f"no result within deadline_ms={deadline_ms}; raise it or lower the load")
            return req.future.result()
        try:
            self._queue.put_nowait(req)
        except asyncio.QueueFull:
            raise Overloaded(f"{self.max_queue} requests already queued; retry later or raise max_queue") from None
        if deadline_ms is None:
            return await req.future
        try:
            return await asyncio.wait_for(req.future, max(0.0, deadline_ms / 1e3 - (req.admitted - t0)))
        except TimeoutError:
            raise DeadlineExceeded(f"no result within deadline_ms={deadline_ms}; raise it or lower the load") from None

    # ---------------------------------------------------------------- batching
    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._batcher is None:
            self._queue = asyncio.Queue(self.max_queue)
            self._slots = asyncio.Semaphore(self.workers)
            self._batcher = loop.create_task(self._batch_loop())

    async def _batch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = self._forming = [await self._queue.get()]  # held here, aclose() can still fail them
            # Wait for a free worker first: requests arriving meanwhile join this batch, so batches grow with load.
            await self._slots.acquire()
            cut = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                if not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                    continue
                wait = cut - loop.time()
                if wait <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), wait))
                except TimeoutError:
                    break
            batch = [r for r in batch if not r.future.done()]  # cancelled or timed out: leave the batch
            self._forming = []
            if not batch:
                self._slots.release()
                continue
            task = loop.create_task(self._run_batch(batch))
            self._inflight.add(task)
            task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task) -> None:
        self._inflight.discard(task)
        self._slots.release()

    async def _run_batch(self, batch: list[_Request]) -> None:
        start = time.perf_counter()
        try:
            out = await asyncio.get_running_loop().run_in_executor(self._batch_pool, self._compute, batch)
        except Exception as e:
            out = e
        self._resolve(batch, out, start)

    def _resolve(self, batch: list[_Request], out: tuple | Exception, start: float) -> None:
        """Hand each request of a batch its result, or the batch's error."""
        if isinstance(out, Exception):  # a failing batch fails only its own requests
            e = out
            err = (
                e
                if isinstance(e, BackendError)
                else BackendError(f"batch of {len(batch)} failed: {type(e).__name__}: {e}")
            )
            for r in batch:
                if not r.future.done():
                    r.future.set_exception(err)
            return
        logits, contrib, timings = out
        labels = self.manifest.labels
        best = logits.argmax(axis=1).tolist()
        contrib = contrib.tolist()
        for i, r in enumerate(batch):
            if r.future.done():
                continue
            k = best[i]
            t = {
                **r.timings,
                "queue": (start - r.admitted) * 1e3,
                **timings,
                "total": (time.perf_counter() - r.admitted) * 1e3 + r.timings["preprocess"],
            }
            r.future.set_result(
                Result(
                    label=labels[k],
                    index=k,
                    logits=logits[i],
                    labels=labels,
                    contributions={
                        m: c if p else 0.0 for m, c, p in zip(MODALITIES, contrib[i], r.present, strict=True)
                    },
                    timings_ms=t,
                )
            )

    def _compute(self, batch: list[_Request]) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        """Runs in a worker thread: encoders (concurrently) then fusion, or the one fused graph."""
        mask = np.array([r.present for r in batch], np.float32)  # (B, 3)
        if self.fused:
            return self._compute_fused(batch, mask)
        timings: dict[str, float] = {}
        spec = self.graphs["fusion"].inputs
        jobs = {}
        for j, m in enumerate(MODALITIES):
            rows = [i for i, r in enumerate(batch) if r.present[j] and m not in r.cached]
            if rows and m in self.sessions:
                jobs[m] = rows

        def encode(m: str) -> np.ndarray:
            t = time.perf_counter()
            rows = jobs[m]  # one row (SingleStream) is a view, not a copy
            feeds = {
                n: batch[rows[0]].feeds[n][None] if len(rows) == 1 else np.stack([batch[i].feeds[n] for i in rows])
                for n in ENCODER_INPUTS[m]
            }
            out = next(iter(self.sessions[m].run(feeds).values()))
            timings[m] = (time.perf_counter() - t) * 1e3
            return out

        order = list(jobs)
        futures = {m: self._enc_pool.submit(encode, m) for m in order[1:]} if self._enc_pool else {}
        results = {order[0]: encode(order[0])} if order else {}  # the first runs here: one hop fewer
        results.update({m: futures[m].result() if m in futures else encode(m) for m in order[1:]})
        feeds = {"modality_mask": mask}
        for m in MODALITIES:
            if m in results and len(jobs[m]) == len(batch):  # every row computed: use the output as it is
                feeds[f"{m}_token"] = results[m]
                self._cache_put(batch, jobs[m], m, results[m])
                continue
            tok = np.zeros((len(batch), spec[f"{m}_token"].shape[-1]), np.float32)
            if m in results:
                tok[jobs[m]] = results[m]
                self._cache_put(batch, jobs[m], m, results[m])
            for i, r in enumerate(batch):
                if m in r.cached:
                    tok[i] = r.cached[m]
            feeds[f"{m}_token"] = tok
        t = time.perf_counter()
        out = self.sessions["fusion"].run(feeds)
        timings["fusion"] = (time.perf_counter() - t) * 1e3
        return out["logits"], out["contributions"], timings

    def _compute_fused(self, batch: list[_Request], mask: np.ndarray):
        g = self.graphs["fused"]
        feeds = {"modality_mask": mask}
        for name, ts in g.inputs.items():
            if name == "modality_mask":
                continue
            row_shape, dtype = tuple(ts.shape[1:]), np.dtype(ts.dtype)
            feeds[name] = np.stack([r.feeds.get(name, np.zeros(row_shape, dtype)) for r in batch]).astype(
                dtype, copy=False
            )
        t = time.perf_counter()
        out = self.sessions["fused"].run(feeds)
        return out["logits"], out["contributions"], {"fused": (time.perf_counter() - t) * 1e3}

    # ---------------------------------------------------------------- item cache
    def _cache_get(self, item_id: str | None, present: tuple[bool, ...]) -> dict[str, np.ndarray]:
        if not (item_id and self._cache_size) or self.fused:
            return {}
        with self._cache_lock:
            hits = {}
            for m, p in zip(MODALITIES, present, strict=True):
                tok = self._cache.get((item_id, m)) if p else None
                if tok is not None:
                    self._cache.move_to_end((item_id, m))
                    hits[m] = tok
            return hits

    def _cache_put(self, batch: list[_Request], rows: list[int], m: str, tokens: np.ndarray) -> None:
        if not self._cache_size:
            return
        with self._cache_lock:
            for i, tok in zip(rows, tokens, strict=True):
                if batch[i].item_id:
                    self._cache[(batch[i].item_id, m)] = tok.copy()
                    self._cache.move_to_end((batch[i].item_id, m))
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    # ---------------------------------------------------------------- shutdown
    async def aclose(self, timeout: float = 5.0) -> None:
        """Stop admitting, let queued and running requests finish within `timeout` s, fail the rest with
        EngineClosed, then release the sessions."""
        if self._closed:
            return
        self._closing = True
        if self._queue is not None:
            end = time.monotonic() + timeout
            while (not self._queue.empty() or self._forming or self._inflight) and time.monotonic() < end:
                await asyncio.sleep(0.002)
            self._batcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._batcher
            left = self._forming + [self._queue.get_nowait() for _ in range(self._queue.qsize())]
            for r in left:
                if not r.future.done():
                    r.future.set_exception(EngineClosed("shut down before this request ran"))
            if self._inflight:  # still running past the deadline: their threads finish, their callers are told
                await asyncio.wait(self._inflight, timeout=max(0.0, end - time.monotonic()))
        self.close()

    def close(self) -> None:
        """Release sessions and threads now (no drain). Prefer `await aclose()` inside an event loop."""
        self._closing = self._closed = True
        self._batch_pool.shutdown(wait=False, cancel_futures=True)
        if self._enc_pool:
            self._enc_pool.shutdown(wait=False, cancel_futures=True)
        self.sessions.clear()


class SyncEngine:
    """The engine for apps without an event loop: `SyncEngine.load(bundle).infer(image=...)` blocks."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="edgefuse-loop", daemon=True)
        self._thread.start()

    @classmethod
    def load(cls, bundle: str | Path | Bundle, backend: str = "onnx", **options) -> SyncEngine:
        return cls(Engine.load(bundle, backend, **options))

    def infer(self, image=None, audio=None, text=None, **kw) -> Result:
        return asyncio.run_coroutine_threadsafe(self.engine.infer(image, audio, text, **kw), self._loop).result()

    def close(self, timeout: float = 5.0) -> None:
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self.engine.aclose(timeout), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> SyncEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
