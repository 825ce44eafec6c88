import platform
import subprocess
import sys

import pytest

from groundup.memory import keep_freed_memory

SCRIPT = """
import resource, sys, torch
if sys.argv[1] == "keep":
    from groundup.memory import keep_freed_memory
    assert keep_freed_memory()
x = torch.randn(64, 16, 64, 64)
conv = torch.nn.Conv2d(16, 16, 3, padding=1)
def step():
    conv(x).relu().sum().backward()   # a training step's worth of big temporary tensors
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    r = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True,
                       timeout=120, env={"OMP_NUM_THREADS": "1", "PATH": ""})
    return int(r.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the thresholds are glibc's")
def test_freed_tensor_memory_is_reused_instead_of_faulted_back_in():
    assert keep_freed_memory() is True and keep_freed_memory() is True  # idempotent
    kept, system = page_faults("keep"), page_faults("system")
    assert kept < system / 2, (kept, system)
