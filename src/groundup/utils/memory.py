"""`keep_freed_memory`: stop the C allocator from handing freed tensor memory back to the OS after every batch.

On Linux with glibc, a freed block larger than the "mmap threshold" (a few MB at most) goes back to
the operating system at once, and the next batch's tensors of the same size come back as fresh
pages: each 4 KB page faults and is zeroed. A CPU training step frees and re-allocates its
activations and gradients every batch, so this costs about 100,000 page faults per 20-batch epoch
of simple_cnn at bs 128, 64 px, and about a fifth of the epoch's time on the 2-core machine
`benchmarks/bench_learner.py` runs on. Raising the thresholds keeps the freed blocks in the process
for the next batch; the price is that the process keeps its peak memory until it exits.

groundup's command line does this for its own process; a library should not change a process-wide
setting on import, so in your own script call it once, before training.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
_MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB come from the heap and stay there when freed
_TRIM_THRESHOLD = (1 << 31) - 1  # never give the top of the heap back


@functools.cache
def keep_freed_memory() -> bool:
    """Keep freed memory in the process for reuse (glibc only); return whether the setting took.

    Safe to call more than once; a no-op returning False where the C library is not glibc
    (macOS, Windows, musl), whose allocators behave differently.

    Example:
        >>> from groundup.utils.memory import keep_freed_memory
        >>> keep_freed_memory()          # once, at the start of a training script
        True
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only: the thresholds are glibc's
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
