"""The base install is the runtime alone: a fresh venv with `pip install edgefuse` has no torch."""

import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_base_install_has_no_torch(tmp_path):
    venv.create(tmp_path / "v", with_pip=True)
    py = tmp_path / "v" / ("Scripts" if sys.platform == "win32" else "bin") / "python"
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-c", str(ROOT / "constraints.txt")]
    subprocess.run([*pip, str(ROOT)], check=True, cwd=tmp_path)
    code = (
        "import importlib.util as u, sys, edgefuse.runtime\n"
        "missing = [m for m in ('torch', 'tensorflow', 'transformers') if u.find_spec(m)]\n"
        "assert not missing, missing\n"
        "import numpy, onnxruntime, tokenizers\n"
    )
    subprocess.run([str(py), "-c", code], check=True, cwd=tmp_path)
