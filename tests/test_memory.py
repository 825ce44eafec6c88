import platform
import subprocess
import sys

import pytest

from groundup.utils.memory import keep_freed_memory

# Counting page faults is not deterministic on a machine whose kernel reclaims idle pages on its
# own, so this reads the allocator's own books: how much freed memory the process keeps for reuse.
SCRIPT = """
import ctypes, sys, torch
if sys.argv[1] == "keep":
    from groundup.utils.memory import keep_freed_memory
    assert keep_freed_memory()
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
torch.empty(64 << 20, dtype=torch.uint8).fill_(1)  # a batch's worth of activations, freed at once
print(libc.mallinfo2().fordblks >> 20)  # MiB freed but kept in the process for the next batch
"""


def kept_mib(mode: str) -> int:
    r = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True,
                       timeout=120, env={"OMP_NUM_THREADS": "1", "PATH": ""})
    return int(r.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc" or platform.libc_ver()[1] < "2.33",
                    reason="the thresholds are glibc's (mallinfo2 from 2.33)")
def test_freed_tensor_memory_is_kept_for_reuse_instead_of_handed_back_to_the_os():
    assert keep_freed_memory() is True and keep_freed_memory() is True  # idempotent
    assert kept_mib("keep") >= 64 and kept_mib("system") < 64
