"""The GPU suite's own code, run on the CPU in every test run.

`tests/test_gpu.py` is deselected by default (`-m 'not gpu'`) and runs only where a GPU is, so its code
can drift from the library unseen (it once called `BatchAugment` with an argument that had gone).
`GROUNDUP_GPU_SUITE_DEVICE=cpu` runs it on the CPU (the CUDA-only tests skip): a check of the tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent


def test_the_gpu_suite_runs_on_the_cpu():
    env = os.environ | {"GROUNDUP_GPU_SUITE_DEVICE": "cpu"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
                           str(TESTS / "test_gpu.py")],
                          env=env, cwd=TESTS.parent, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout.splitlines()[-1], done.stdout[-2000:]
