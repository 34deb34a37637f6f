"""Runs every code snippet the documentation pages include (docs/snippets/*.py),
each in a fresh interpreter in a scratch directory (they write model files),
so that no example on the site is one nobody ran.

    python docs/run_snippets.py [NAME ...]

A snippet whose optional library (torch, onnxruntime, keras, dask, ...) is not
installed is skipped with a note; a failure prints its output and exits 1.
"""

import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SNIPPETS = Path(__file__).resolve().parent / "snippets"
# The optional libraries a snippet needs beyond rnnext and NumPy.
NEEDS = {
    "interop_torch": ["torch"],
    "inputs": ["torch"],
    "interop_onnx": ["onnx", "onnxruntime"],
    "interop_keras": ["keras", "torch"],
    "dask_predict": ["dask", "distributed"],
    "sklearn_estimator": ["sklearn"],
    "threads": ["threadpoolctl"],
}
TIMEOUT = 120  # seconds; each takes about one


def main(names) -> int:
    paths = [SNIPPETS / f"{name}.py" for name in names] if names else sorted(SNIPPETS.glob("*.py"))
    # The rnnext this interpreter imports, also from the scratch directory (a relative
    # PYTHONPATH=python would not reach it from there).
    package = Path(importlib.util.find_spec("rnnext").origin).parent.parent
    given = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    path_entries = [str(package)] + [str(Path(p).resolve()) for p in given]
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONWARNINGS="error::RuntimeWarning",
               PYTHONPATH=os.pathsep.join(path_entries))
    failed = 0
    for path in paths:
        missing = [m for m in NEEDS.get(path.stem, []) if importlib.util.find_spec(m) is None]
        if missing:
            print(f"skip {path.name}: {', '.join(missing)} not installed")
            continue
        with tempfile.TemporaryDirectory() as scratch:
            start = time.perf_counter()
            run = subprocess.run([sys.executable, str(path)], cwd=scratch, env=env, capture_output=True,
                                 text=True, timeout=TIMEOUT)
            took = time.perf_counter() - start
        if run.returncode:
            failed += 1
            print(f"FAIL {path.name} ({took:.1f} s)\n{run.stdout}{run.stderr}")
        else:
            print(f"ok   {path.name} ({took:.1f} s)")
    print(f"{len(paths) - failed} of {len(paths)} snippets ran" + (f", {failed} failed" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
