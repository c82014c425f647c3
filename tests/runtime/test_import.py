import subprocess
import sys

FORBIDDEN = ("torch", "tensorflow", "transformers", "sentence_transformers")


def test_runtime_imports_without_torch():
    code = (
        "import sys, edgefuse.runtime\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
