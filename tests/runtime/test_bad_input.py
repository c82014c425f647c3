"""The bad-input catalogue: every case gets a typed error naming the input, and the engine keeps serving."""

from __future__ import annotations

import asyncio
import io
import json
import wave
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import sample_inputs

from edgefuse.runtime import Bundle, BundleError, Engine, InputError


def _wav(seconds: float, rate: int = 8000, width: int = 2) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(b"\x00" * int(seconds * rate) * width)
    return buf.getvalue()


def _png(side: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (side, side)).save(buf, format="PNG")
    return buf.getvalue()


def _big_file(tmp: Path) -> Path:
    p = tmp / "huge.png"
    with open(p, "wb") as f:
        f.truncate(100 * 2**20)  # 100 MB
    return p


# (id, kwargs builder taking tmp_path, expected error name)
CASES = [
    ("image-wrong-rank", lambda t: {"image": np.zeros((2, 3, 32, 32), np.uint8)}, "image"),
    ("image-5-channels", lambda t: {"image": np.zeros((32, 32, 5), np.uint8)}, "image"),
    ("image-nan", lambda t: {"image": np.full((32, 32, 3), np.nan, np.float32)}, "image"),
    ("image-inf", lambda t: {"image": np.full((32, 32, 3), np.inf, np.float32)}, "image"),
    ("image-float-out-of-range", lambda t: {"image": np.full((32, 32, 3), 200.0, np.float32)}, "image"),
    ("image-empty-array", lambda t: {"image": np.zeros((0, 32, 3), np.uint8)}, "image"),
    ("image-bool-dtype", lambda t: {"image": np.zeros((32, 32, 3), np.int64)}, "image"),
    ("image-string-dtype", lambda t: {"image": np.array([["a"]])}, "image"),
    ("image-0-byte-file", lambda t: {"image": (t / "empty.png").write_bytes(b"") or t / "empty.png"}, "image"),
    ("image-truncated-png", lambda t: {"image": _png(16)[:40]}, "image"),
    ("image-not-an-image", lambda t: {"image": b"this is plainly text, not a picture"}, "image"),
    ("image-missing-file", lambda t: {"image": t / "nope.png"}, "image"),
    ("image-100MB-file", lambda t: {"image": _big_file(t)}, "image"),
    ("image-too-many-pixels", lambda t: {"image": _png(9000)}, "image"),
    ("image-wrong-type", lambda t: {"image": [[1, 2], [3, 4]]}, "image"),
    ("audio-empty", lambda t: {"audio": np.zeros(0, np.float32)}, "audio"),
    ("audio-nan", lambda t: {"audio": np.full(100, np.nan, np.float32)}, "audio"),
    ("audio-3d", lambda t: {"audio": np.zeros((2, 2, 2), np.float32)}, "audio"),
    ("audio-10-minutes", lambda t: {"audio": np.zeros(8000 * 600, np.float32)}, "audio"),
    ("audio-10-minute-wav", lambda t: {"audio": _wav(600)}, "audio"),
    ("audio-clipping-floats", lambda t: {"audio": np.full(100, 30.0, np.float32)}, "audio"),
    ("audio-not-a-wav", lambda t: {"audio": b"RIFF....not really"}, "audio"),
    ("audio-24-bit-wav", lambda t: {"audio": _wav(0.1, width=3)}, "audio"),
    ("audio-bad-sample-rate", lambda t: {"audio": np.zeros(100, np.float32), "sample_rate": -5}, "sample_rate"),
    ("text-empty", lambda t: {"text": ""}, "text"),
    ("text-whitespace", lambda t: {"text": "   \n"}, "text"),
    ("text-non-utf8", lambda t: {"text": b"\xff\xfe\xfa bad bytes"}, "text"),
    ("text-100k-tokens", lambda t: {"text": "digit " * 100_000}, "text"),
    ("text-wrong-type", lambda t: {"text": 42}, "text"),
    ("nothing-given", lambda t: {}, "inputs"),
]


@pytest.mark.parametrize(("builder", "name"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_named_and_engine_keeps_serving(bundle_dir, tmp_path, builder, name):
    kwargs = builder(tmp_path)

    async def main():
        engine = Engine.load(bundle_dir)
        with pytest.raises(InputError) as e:
            await engine.infer(**kwargs)
        ok = await engine.infer(**sample_inputs())
        await engine.aclose()
        return e.value, ok

    err, ok = asyncio.run(main())
    assert err.name == name
    assert err.fix and name in str(err)
    assert ok.label


def test_unknown_backend_is_named(bundle_dir):
    with pytest.raises(InputError) as e:
        Engine.load(bundle_dir, backend="coreml")
    assert e.value.name == "backend"


def test_bad_engine_option_is_named(bundle_dir):
    with pytest.raises(InputError) as e:
        Engine.load(bundle_dir, max_batch=0)
    assert e.value.name == "max_batch"


def test_missing_precision_says_what_exists(bundle_dir):
    with pytest.raises(BundleError, match="fp32"):
        Engine.load(bundle_dir, precision="int8")


def test_tampered_graph_is_named(bundle_copy):
    g = bundle_copy / "text_encoder.onnx"
    data = bytearray(g.read_bytes())
    data[len(data) // 2] ^= 0xFF
    g.write_bytes(bytes(data))
    with pytest.raises(BundleError) as e:
        Engine.load(bundle_copy)
    assert e.value.name == "text_encoder.onnx" and "sha256" in str(e.value)


def test_missing_graph_file_is_named(bundle_copy):
    (bundle_copy / "fusion.onnx").unlink()
    with pytest.raises(BundleError) as e:
        Bundle.open(bundle_copy)
    assert e.value.name == "fusion.onnx"


def test_missing_bundle_and_manifest(tmp_path, bundle_copy):
    with pytest.raises(BundleError):
        Bundle.open(tmp_path / "nowhere")
    (bundle_copy / "manifest.json").unlink()
    with pytest.raises(BundleError, match=r"manifest\.json"):
        Bundle.open(bundle_copy)


def test_malformed_manifest_names_the_field(bundle_copy):
    m = json.loads((bundle_copy / "manifest.json").read_text())
    m["graphs"][0]["format"] = "coreml"
    (bundle_copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError) as e:
        Bundle.open(bundle_copy)
    assert e.value.name == "manifest.json: graphs[0].format"
    (bundle_copy / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        Bundle.open(bundle_copy)


def test_zip_path_traversal_is_refused(tmp_path, bundle_dir):
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("manifest.json", (bundle_dir / "manifest.json").read_bytes())
        f.writestr("../../etc/evil", b"x")
    with pytest.raises(BundleError, match="outside the bundle"):
        Bundle.open(z)


def test_manifest_round_trip(bundle_dir):
    from edgefuse.runtime import Manifest

    d = json.loads((bundle_dir / "manifest.json").read_text())
    assert Manifest.from_dict(d).to_dict() == d
