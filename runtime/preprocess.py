"""Turn what an app has (files, bytes, arrays, strings) into the arrays a bundle's graphs take. numpy only
(+ Pillow to decode images, `tokenizers` for text). Every rejection is an InputError naming the input and the fix."""

from __future__ import annotations

import io
import json
import wave
from pathlib import Path

import numpy as np

from .errors import InputError
from .manifest import AudioSpec, ImageSpec, TextSpec

__all__ = [
    "MAX_AUDIO_SECONDS",
    "MAX_FILE_BYTES",
    "MAX_IMAGE_SIDE",
    "MAX_TEXT_CHARS",
    "TextPreprocessor",
    "audio",
    "image",
]

MAX_FILE_BYTES = 32 * 2**20  # a phone photo is a few MB; beyond this something is wrong
MAX_IMAGE_SIDE = 8192
MAX_AUDIO_SECONDS = 60.0
MAX_TEXT_CHARS = 10_000


def _read(x: str | Path | bytes, name: str) -> bytes:
    if isinstance(x, bytes | bytearray | memoryview):
        data = bytes(x)
    else:
        p = Path(x)
        if not p.is_file():
            raise InputError(name, f"file {str(p)!r} does not exist", "pass an existing file, bytes or an array")
        if p.stat().st_size > MAX_FILE_BYTES:
            raise InputError(
                name, f"file is {p.stat().st_size / 2**20:.0f} MB", f"keep it under {MAX_FILE_BYTES // 2**20} MB"
            )
        data = p.read_bytes()
    if not data:
        raise InputError(name, "is empty (0 bytes)", "pass a complete file")
    if len(data) > MAX_FILE_BYTES:
        raise InputError(name, f"is {len(data) / 2**20:.0f} MB", f"keep it under {MAX_FILE_BYTES // 2**20} MB")
    return data


def _finite(x: np.ndarray, name: str) -> np.ndarray:
    if x.size == 0:
        raise InputError(name, "is empty", "pass at least one value")
    if x.dtype.kind not in "biuf":
        raise InputError(name, f"has dtype {x.dtype}", "pass numbers (uint8, int16 or float)")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise InputError(name, "contains NaN or inf", "clean the array before inference")
    return x


def _resize(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of (H, W, C) float32 (align-corners=False), numpy only."""
    H, W = x.shape[:2]
    if (h, w) == (H, W):
        return x
    ys = np.clip((np.arange(h) + 0.5) * H / h - 0.5, 0, H - 1)
    xs = np.clip((np.arange(w) + 0.5) * W / w - 0.5, 0, W - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, H - 1), np.minimum(x0 + 1, W - 1)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = x[y0][:, x0] * (1 - fx) + x[y0][:, x1] * fx
    bottom = x[y1][:, x0] * (1 - fx) + x[y1][:, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def image(x: object, spec: ImageSpec, name: str = "image") -> np.ndarray:
    """File path, encoded bytes, or an (H, W), (H, W, C) array (uint8 0-255, or float 0-1) -> (C, H, W) or
    (H, W, C) float32 per the spec's layout, resized and normalised."""
    if isinstance(x, str | Path | bytes | bytearray | memoryview):
        from PIL import Image, UnidentifiedImageError

        data = _read(x, name)
        try:
            with Image.open(io.BytesIO(data)) as im:
                if max(im.size) > MAX_IMAGE_SIDE:
                    raise InputError(
                        name, f"is {im.size[0]}x{im.size[1]} px", f"downscale it below {MAX_IMAGE_SIDE} px a side"
                    )
                arr = np.asarray(im.convert("RGB"))
        except InputError:
            raise
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError) as e:
            raise InputError(
                name, f"is not a readable image ({type(e).__name__}: {e})", "pass a PNG/JPEG file or an array"
            ) from e
    elif isinstance(x, np.ndarray):
        arr = _finite(x, name)
    else:
        raise InputError(name, f"unsupported type {type(x).__name__}", "pass a file path, bytes or a numpy array")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise InputError(
            name, f"has shape {arr.shape}", "pass (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), channels last"
        )
    if max(arr.shape[:2]) > MAX_IMAGE_SIDE:
        raise InputError(name, f"is {arr.shape[1]}x{arr.shape[0]} px", f"downscale it below {MAX_IMAGE_SIDE} px a side")
    if arr.dtype == np.uint8:
        px = arr.astype(np.float32) * spec.scale
    elif arr.dtype.kind == "f":
        if arr.min() < 0 or arr.max() > 1:
            raise InputError(
                name, f"float pixels span [{arr.min():.3g}, {arr.max():.3g}]", "pass floats in [0, 1] or uint8 0-255"
            )
        px = arr.astype(np.float32) * (spec.scale * 255)
    else:
        raise InputError(name, f"has dtype {arr.dtype}", "pass uint8 (0-255) or float (0-1) pixels")
    px = px[..., :3] if px.shape[-1] == 4 else np.repeat(px, 3, axis=-1) if px.shape[-1] == 1 else px
    px = _resize(px, spec.height, spec.width)
    px = (px - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(px.transpose(2, 0, 1) if spec.layout == "NCHW" else px)


def _wav(data: bytes, name: str) -> tuple[np.ndarray, int]:
    try:
        with wave.open(io.BytesIO(data)) as w:
            rate, width, channels, n = w.getframerate(), w.getsampwidth(), w.getnchannels(), w.getnframes()
            if n / max(rate, 1) > MAX_AUDIO_SECONDS:
                raise InputError(name, f"is {n / rate:.0f} s long", f"trim it to at most {MAX_AUDIO_SECONDS:.0f} s")
            raw = w.readframes(n)
    except InputError:
        raise
    except (wave.Error, EOFError, ValueError) as e:
        raise InputError(name, f"is not a readable PCM WAV file ({e})", "pass a 8/16/32-bit PCM WAV or an array") from e
    dtype = {1: np.uint8, 2: np.int16, 4: np.int32}.get(width)
    if dtype is None:
        raise InputError(name, f"has {8 * width}-bit samples", "convert it to 16-bit PCM")
    x = np.frombuffer(raw[: len(raw) // (width * channels) * width * channels], dtype=dtype)
    x = x.astype(np.float32)
    x = (x - 128) / 128 if dtype == np.uint8 else x / np.iinfo(dtype).max
    return x.reshape(-1, channels).mean(axis=1), rate


def audio(x: object, spec: AudioSpec, sample_rate: int | None = None, name: str = "audio") -> np.ndarray:
    """WAV path/bytes, or a 1-D (or (S, channels)) array at `sample_rate` (default: the bundle's) -> (samples,)
    float32 mono at the bundle's rate, trimmed or zero-padded to its length."""
    if isinstance(x, str | Path | bytes | bytearray | memoryview):
        wav, rate = _wav(_read(x, name), name)
    elif isinstance(x, np.ndarray):
        wav, rate = _finite(x, name), sample_rate or spec.sample_rate
        if wav.ndim == 2:
            wav = wav.mean(axis=1)
        if wav.ndim != 1:
            raise InputError(name, f"has shape {x.shape}", "pass a 1-D waveform (or (samples, channels))")
        if wav.dtype.kind in "iu":
            wav = wav.astype(np.float32) / np.iinfo(wav.dtype).max
    else:
        raise InputError(name, f"unsupported type {type(x).__name__}", "pass a WAV path, bytes or a numpy array")
    if rate <= 0:
        raise InputError("sample_rate", f"is {rate}", "pass the waveform's rate in Hz")
    if len(wav) == 0:
        raise InputError(name, "has no samples", "pass at least a few milliseconds of audio")
    if len(wav) / rate > MAX_AUDIO_SECONDS:
        raise InputError(name, f"is {len(wav) / rate:.0f} s long", f"trim it to at most {MAX_AUDIO_SECONDS:.0f} s")
    wav = wav.astype(np.float32)
    if np.abs(wav).max() > 1.0 + 1e-6:
        raise InputError(name, f"peaks at {np.abs(wav).max():.3g}", "pass float samples in [-1, 1] (or int16 PCM)")
    if rate != spec.sample_rate:  # linear interpolation: enough for speech-band models, keeps numpy the only need
        t = np.arange(round(len(wav) * spec.sample_rate / rate)) * (rate / spec.sample_rate)
        wav = np.interp(t, np.arange(len(wav)), wav).astype(np.float32)
    out = np.zeros(spec.samples, np.float32)
    out[: min(len(wav), spec.samples)] = wav[: spec.samples]
    return out


class TextPreprocessor:
    """`tokenizers` from the bundle's tokenizer.json (+ the pruned-vocabulary remap) -> (ids, mask) int64."""

    def __init__(self, spec: TextSpec, tokenizer_json: bytes, remap: np.ndarray | None = None) -> None:
        from tokenizers import Tokenizer

        self.spec = spec
        self._tok = Tokenizer.from_str(tokenizer_json.decode("utf-8"))
        # tokenizer.json may carry its own padding (MiniLM's pads to 128): set both explicitly.
        pad_id = json.loads(tokenizer_json).get("padding", {}) or {}
        self._tok.enable_padding(length=spec.max_tokens, pad_id=pad_id.get("pad_id", 0))
        self._tok.enable_truncation(max_length=spec.max_tokens)
        self._remap = remap

    def __call__(self, text: object, name: str = "text") -> tuple[np.ndarray, np.ndarray]:
        if isinstance(text, bytes | bytearray):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError as e:
                raise InputError(
                    name, f"is not valid UTF-8 ({e.reason} at byte {e.start})", "decode it to str first"
                ) from e
        if not isinstance(text, str):
            raise InputError(name, f"unsupported type {type(text).__name__}", "pass a str (or UTF-8 bytes)")
        if not text.strip():
            raise InputError(name, "is empty", "pass None to leave the text out")
        if len(text) > MAX_TEXT_CHARS:
            raise InputError(
                name,
                f"is {len(text)} characters",
                f"send at most {MAX_TEXT_CHARS}; only {self.spec.max_tokens} tokens are used",
            )
        enc = self._tok.encode(text)
        ids = np.asarray(enc.ids, np.int64)
        if self._remap is not None:
            ids = self._remap[ids].astype(np.int64)
            ids[ids < 0] = self.spec.unknown_id
        return ids, np.asarray(enc.attention_mask, np.int64)
