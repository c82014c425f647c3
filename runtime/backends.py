"""Backends: run one graph from bytes. ONNX Runtime and LiteRT behind one small interface.

Both release the GIL while a graph runs, so one request's encoders can run concurrently on threads.
"""

from __future__ import annotations

import threading
from typing import Protocol

import numpy as np

from .errors import BackendError

__all__ = ["BACKENDS", "Backend", "LiteRTBackend", "OnnxBackend", "create_backend"]


class Backend(Protocol):
    """Runs one graph: `run({input_name: array}) -> {output_name: array}`; safe to call from many threads."""

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class OnnxBackend:
    def __init__(self, model: bytes, threads: int = 1, name: str = "graph", outputs: list[str] | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT raises its own exception types for invalid graphs
            raise BackendError(f"{name}: ONNX Runtime cannot load this graph ({e})") from e
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.name = name

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.outputs, self.session.run(self.outputs, feeds), strict=True))  # thread-safe in ORT


def _litert_interpreter():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as e:
            raise BackendError("backend 'tflite' needs `pip install edgefuse[litert]` (ai-edge-litert)") from e
    return Interpreter


class LiteRTBackend:
    """One interpreter per calling thread (an interpreter is not thread-safe). Graphs with a fixed batch of 1
    (what litert-torch writes) run row by row; int8 inputs/outputs are (de)quantised with the graph's own params."""

    def __init__(
        self,
        model: bytes,
        threads: int = 1,
        name: str = "graph",
        outputs: list[str] | None = None,
        signature: str = "serving_default",
    ) -> None:
        self._model, self._threads, self.name, self.signature = model, threads, name, signature
        self._names = outputs  # converters name outputs output_0, output_1, ...: map them, in order, to these
        self._local = threading.local()
        self._runner()  # fail now, not on the first request

    def _runner(self):
        runner = getattr(self._local, "runner", None)
        if runner is None:
            try:
                interp = _litert_interpreter()(model_content=self._model, num_threads=self._threads)
                runner = interp.get_signature_runner(self.signature)
            except BackendError:
                raise
            except Exception as e:
                raise BackendError(f"{self.name}: LiteRT cannot load this graph ({e})") from e
            self._local.interp, self._local.runner = interp, runner
            self._inputs, self._outputs = runner.get_input_details(), runner.get_output_details()
        return runner

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        runner = self._runner()
        batch = next(iter(feeds.values())).shape[0]
        fixed = all(d["shape"][0] == 1 for d in self._inputs.values())
        rows = [{k: v[i : i + 1] for k, v in feeds.items()} for i in range(batch)] if fixed and batch != 1 else [feeds]
        outs = [self._run_one(runner, r) for r in rows]
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}

    def _run_one(self, runner, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = {}
        for name, x in feeds.items():
            d = self._inputs[name]
            scale, zero = d["quantization"]
            if np.issubdtype(d["dtype"], np.integer) and scale and x.dtype.kind == "f":
                info = np.iinfo(d["dtype"])
                x = np.clip(np.round(x / scale + zero), info.min, info.max)
            args[name] = x.astype(d["dtype"], copy=False)
        out = runner(**args)
        result = {}
        for i, name in enumerate(sorted(out, key=_output_order)):
            y = out[name]
            scale, zero = self._outputs[name]["quantization"]
            key = self._names[i] if self._names and len(self._names) == len(out) else name
            result[key] = ((y.astype(np.float32) - zero) * scale) if scale and y.dtype.kind in "iu" else y
        return result


def _output_order(name: str) -> tuple[int, str]:
    tail = name.rsplit("_", 1)[-1]
    return (int(tail) if tail.isdigit() else 0, name)


BACKENDS = {"onnx": OnnxBackend, "tflite": LiteRTBackend}


def create_backend(
    kind: str, model: bytes, threads: int = 1, name: str = "graph", outputs: list[str] | None = None
) -> Backend:
    if kind not in BACKENDS:
        from .errors import InputError

        raise InputError("backend", f"unknown backend {kind!r}", f"choose one of {sorted(BACKENDS)}")
    return BACKENDS[kind](model, threads=threads, name=name, outputs=outputs)
