"""Several processes, one training run: joining torchrun's process group, and small collective helpers.

groundup does not launch processes itself. `torchrun` (PyTorch's launcher) starts one process per
GPU (or per CPU slot), on one machine or several, and tells each one who it is through environment
variables: `WORLD_SIZE` (how many processes), `RANK` (this one's number, 0..WORLD_SIZE-1),
`LOCAL_RANK` (its number on this machine: which GPU it drives) and `MASTER_ADDR`/`MASTER_PORT`
(where rank 0 listens). `init_from_env` reads them and joins the group; everything else here is a
thin, documented layer over `torch.distributed`.

    rank 0 ─┐                                   ┌─ every rank gets the sum
    rank 1 ─┼── all_reduce_sum([t]) ──(gloo/NCCL)──┤
    rank 2 ─┘                                   └─ (one collective for the whole list)

Without torchrun (a plain `python train.py`) every helper answers for a single process: rank 0 of a
world of 1, the main process. The training-side logic lives in `groundup.callbacks.distributed`.
"""

from __future__ import annotations

import atexit
import datetime
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress

import torch
import torch.distributed as dist
from torch import Tensor

from groundup.utils.errors import GroundupError

__all__ = [
    "PeerFailureError",
    "all_reduce_sum",
    "backend_for",
    "broadcast_",
    "buckets",
    "cleanup",
    "comm_device",
    "finish",
    "get_local_rank",
    "get_rank",
    "get_world_size",
    "init_from_env",
    "is_distributed",
    "is_main_process",
    "launched_by_torchrun",
    "local_world_size",
    "peer_failure",
    "peer_failure_hint",
    "peer_stopped",
    "rank_device",
    "unwrap_model",
]  # fmt: skip

DEFAULT_TIMEOUT = 1800.0  # seconds a collective waits for the other ranks (torch's own default for gloo)
_TORCHRUN_VARS = ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


# -- who am I? ------------------------------------------------------------------------------------------
def is_distributed() -> bool:
    """True when this process is one of several in an initialized process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """This process's rank: from the process group, else from torchrun's `RANK` variable, else 0."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def get_world_size() -> int:
    """How many processes train together: from the process group, else `WORLD_SIZE`, else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def get_local_rank() -> int:
    """This process's number on its machine (torchrun's `LOCAL_RANK`; 0 without torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """True on rank 0 (and in a single process): the one process that prints and writes files.

    Callbacks that print, draw progress bars, write plots or save checkpoints check this first, so a
    run on 8 GPUs prints one table and writes one checkpoint, not eight.
    """
    return get_rank() == 0


def launched_by_torchrun() -> bool:
    """True when torchrun (or another launcher setting `WORLD_SIZE` > 1) started this process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def local_world_size() -> int:
    """How many processes torchrun started on this machine (`LOCAL_WORLD_SIZE`; 1 without torchrun)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def rank_device(name: str, local_rank: int | None, n_local: int, n_gpus: int,
                flag: str = "--device") -> torch.device:
    """The device one process trains on: a pure function of the device asked for and what it can see.

    Each process torchrun starts owns its own GPU, `cuda:LOCAL_RANK`, unless told otherwise:

        name            not under torchrun    under torchrun (LOCAL_RANK=r, n_local processes here)
        auto            cuda, else cpu        cuda:r, else cpu
        cuda            cuda                  cuda:r (an error when r >= n_gpus: more processes than GPUs)
        cuda:N          cuda:N                cuda:N when it is this process's alone: one process per
                                              machine, or one visible GPU per process (CUDA_VISIBLE_DEVICES
                                              set per process); with several processes and several
                                              visible GPUs, an error (they would all share cuda:N)
        cpu, mps        themselves            themselves

    Args:
        name: a device name, spelled right (`groundup.utils.devices.check_device_name`).
        local_rank: this process's `LOCAL_RANK`, or None when torchrun did not start it.
        n_local: processes torchrun started on this machine (`LOCAL_WORLD_SIZE`).
        n_gpus: CUDA GPUs this process sees (0 without CUDA).
        flag: how the message names the value.

    Raises:
        ValueError: one line, when the processes on this machine outnumber its GPUs or would share one.
    """
    if name in ("cpu", "mps") or (name == "auto" and n_gpus == 0):
        return torch.device("cpu" if name == "auto" else name)
    if local_rank is None:
        return torch.device("cuda" if name == "auto" else name)
    if name in ("auto", "cuda"):
        if local_rank >= n_gpus:
            raise ValueError(
                f"{flag} {name}: torchrun started this process as LOCAL_RANK={local_rank}, but it sees only "
                f"{n_gpus} GPU{'s' if n_gpus != 1 else ''}, and each process needs its own; start at most "
                f"{n_gpus} per machine (torchrun --nproc_per_node={n_gpus}), or train on the CPU with --device cpu "
                f"(where CUDA_VISIBLE_DEVICES shows each process only its own GPU: --device cuda:0)")
        return torch.device("cuda", local_rank)
    device = torch.device(name)
    if n_local > 1 and n_gpus > 1:
        raise ValueError(f"{flag} {name}: all {n_local} processes torchrun started on this machine would train "
                         f"on that one GPU; use --device cuda (process r trains on cuda:r) and choose the GPUs "
                         f"with CUDA_VISIBLE_DEVICES")
    return device


def backend_for(device: str | torch.device) -> str:
    """The process-group backend for a model on `device`: NCCL for a CUDA device, gloo for anything else.

    The training device decides, not the machine: `--device cpu` on a GPU machine trains with gloo.
    """
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


# -- joining and leaving the group ---------------------------------------------------------------------
def init_from_env(backend: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                  device: str | torch.device = "cpu") -> bool:
    """Join the process group that torchrun set up; return True if this process is now one of several.

    Does nothing (and returns False) in a process that torchrun did not start with `WORLD_SIZE` > 1,
    so the same script runs alone. Calling it again is harmless.

    Args:
        backend: "nccl" or "gloo"; default `backend_for(device)`: NCCL for a CUDA device (which is
            then made the current device), gloo otherwise.
        timeout: seconds any collective waits for the other ranks before it fails with an error,
            so a rank whose peers died never hangs for ever. torchrun normally ends the whole group
            sooner: when one rank exits with an error it stops the others.
        device: where this process trains (`groundup.utils.devices.resolve_device`); it picks the
            backend, and NCCL's GPU.

    Example:
        >>> init_from_env()       # in a script started by: torchrun --nproc_per_node=2 train.py
        True
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    if not launched_by_torchrun():
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1, but this PyTorch build has no torch.distributed; "
                           "install a build with distributed support")
    missing = [v for v in _TORCHRUN_VARS if v not in os.environ]
    if missing:
        raise RuntimeError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {', '.join(missing)} not set; start the "
                           f"script with torchrun (torchrun --nproc_per_node=N script.py), which sets them all")
    device = torch.device(device)
    if backend is None:
        backend = backend_for(device)
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise ValueError("backend='nccl' needs CUDA GPUs, and none is available; use backend='gloo' on CPU")
        if device.type != "cuda":
            raise ValueError(f"backend='nccl' needs this process's model on its GPU, but it trains on {device}; "
                             f"use backend='gloo', or train on cuda (--device cuda)")
        if device.index is not None:
            torch.cuda.set_device(device)  # NCCL and comm_device() use the current device
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
    atexit.register(_cleanup_at_exit)
    return dist.get_world_size() > 1


def cleanup() -> None:
    """Leave the process group (harmless when there is none).

    `init_from_env` arranges for this to run when the script ends, so a script need not call it.
    It matters: a process that exits with a gloo group still open can abort ("terminate called
    without an active exception") and so fail a run that went well.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def finish() -> None:
    """End this process's part of a distributed run: wait until every rank gets here, then leave the group.

    `groundup train` calls it on rank 0 once the run folder is written, and on the other ranks as soon
    as training is over; so they wait for rank 0, and all ranks leave the group together. Without it a
    rank that left early could end (rarely, under load: "terminate called without an active exception"
    as its gloo group was torn down) while rank 0 was still writing, and torchrun, seeing a process fail,
    stopped rank 0 midway. A failure on rank 0 meanwhile ends the waiting ranks through torchrun.
    In a single process it only leaves the group, if there is one.
    """
    if is_distributed():
        with peer_failure_hint("the barrier at the end of the run"):
            dist.barrier()
    cleanup()


def _cleanup_at_exit() -> None:
    # After an uncaught error (Python has set sys.last_value) NCCL is left alone: tearing it down
    # while other ranks are still inside a collective can block, whereas exiting lets torchrun stop
    # the whole group. gloo's teardown does not wait for the other ranks.
    if getattr(sys, "last_value", None) is not None and dist.is_initialized() and dist.get_backend() == "nccl":
        return
    with suppress(Exception):  # the process is exiting; a failed teardown must not mask why
        cleanup()


# -- collectives -------------------------------------------------------------------------------------------
def comm_device() -> torch.device:
    """Where tensors must live for a collective: the current GPU under NCCL, else the CPU."""
    if dist.is_available() and dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@contextmanager
def peer_failure_hint(what: str) -> Iterator[None]:
    """Re-raise a failed collective with a hint: the cause is almost always on another rank."""
    try:
        yield
    except RuntimeError as e:
        first = (str(e).splitlines() or [type(e).__name__])[0][:300]
        raise RuntimeError(
            f"rank {get_rank()}: {what} failed ({first}). Another rank has most likely stopped with an "
            f"error or was killed: look for its traceback above. (A collective waits at most `timeout` "
            f"seconds, see groundup.utils.process_group.init_from_env.)") from e


# What a collective says when the rank at the other end of the connection is gone (gloo; NCCL; a timeout).
_PEER_GONE = ("connection reset by peer", "connection closed by peer", "broken pipe",
              "another rank has most likely stopped", "socket timeout", "timed out", "nccl communicator was aborted",
              "connection refused")


class PeerFailureError(GroundupError, RuntimeError):
    """Another rank of a distributed run stopped (killed, or failed), so this one cannot go on; says how to resume."""


def peer_stopped(e: BaseException) -> bool:
    """True when `e`, raised in a distributed run, says another rank is gone (not a bug of this rank)."""
    if not launched_by_torchrun() or not isinstance(e, RuntimeError):
        return False
    text = str(e).lower()
    return any(p in text for p in _PEER_GONE)


def peer_failure(e: BaseException, resume: str) -> PeerFailureError:
    """The one-line error for a rank whose peer stopped: which rank it was (by elimination where the world is
    two), what this rank saw, and `resume`, how to continue the run."""
    rank, world = get_rank(), get_world_size()
    who = f"rank {1 - rank}" if world == 2 else f"another of the {world} ranks"
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
    return PeerFailureError(f"rank {rank}: {who} stopped during training (killed, or failed: torchrun's summary "
                            f"names its exit code), so rank {rank} stops too (it saw: {first}); {resume}")


def buckets(tensors: Sequence[Tensor], cap_mb: float = 25.0) -> list[list[int]]:
    """Split the positions of `tensors` into buckets, each flattened into one buffer for one collective.

    A bucket holds tensors of one dtype and device, up to about `cap_mb` megabytes (a larger tensor
    gets a bucket of its own). One collective per bucket instead of one per tensor saves the fixed
    cost of a collective (a network round trip) hundreds of times per step; capping the size keeps
    the extra memory small. 25 MB is DistributedDataParallel's default too.

    Example:
        >>> buckets([torch.zeros(10), torch.zeros(10, dtype=torch.int64), torch.zeros(5)])
        [[0, 2], [1]]
    """
    cap = cap_mb * 2**20
    open_: dict[tuple, list[int]] = {}
    sizes: dict[tuple, float] = {}
    done: list[list[int]] = []
    for i, t in enumerate(tensors):
        key = (t.dtype, t.device)
        nbytes = t.numel() * t.element_size()
        if key in open_ and sizes[key] + nbytes > cap:
            done.append(open_.pop(key))
            sizes[key] = 0
        open_.setdefault(key, []).append(i)
        sizes[key] = sizes.get(key, 0) + nbytes
    return done + list(open_.values())


def all_reduce_sum(tensors: Sequence[Tensor]) -> list[Tensor]:
    """The element-wise sum of each tensor over all ranks, in one collective per dtype and device.

    The tensors are flattened into one buffer (a single all-reduce, however many tensors), and new
    tensors of the same shapes (and devices) are returned; the inputs are not changed. Tensors that
    live elsewhere than the backend needs (`comm_device`: CPU tensors under NCCL) travel there and
    back. In a single process the result equals the inputs.

    Example:
        >>> loss_sum, count = all_reduce_sum([loss_sum, torch.tensor(float(n))])
    """
    tensors = list(tensors)
    if not is_distributed():
        return [t.clone() for t in tensors]
    out: list[Tensor | None] = [None] * len(tensors)
    device = comm_device()
    for idx in buckets(tensors, cap_mb=float("inf")):
        flat = torch.cat([tensors[i].detach().reshape(-1) for i in idx]).to(device)
        with peer_failure_hint("all_reduce_sum"):
            dist.all_reduce(flat)
        for i, chunk in zip(idx, flat.split([tensors[i].numel() for i in idx])):
            out[i] = chunk.view_as(tensors[i]).to(tensors[i].device)
    return out


def broadcast_(tensors: Sequence[Tensor], src: int = 0, cap_mb: float = 25.0) -> None:
    """Overwrite `tensors` in place with rank `src`'s values (one broadcast per bucket, see `buckets`).

    Used to start every rank from rank 0's initial weights. Does nothing in a single process.
    """
    tensors = [t for t in tensors if t.numel()]
    if not is_distributed() or not tensors:
        return
    with torch.no_grad():
        for idx in buckets(tensors, cap_mb):
            flat = torch.cat([tensors[i].detach().reshape(-1) for i in idx]).to(comm_device())
            with peer_failure_hint("broadcast"):
                dist.broadcast(flat, src)
            for i, chunk in zip(idx, flat.split([tensors[i].numel() for i in idx])):
                tensors[i].copy_(chunk.view_as(tensors[i]))


def unwrap_model(model):
    """The user's model inside a `DistributedDataParallel` wrapper (or the model itself).

    Save and load `unwrap_model(learn.model).state_dict()`, so that a checkpoint has the same keys
    (no `module.` prefix) whether it was written by one process or by many.
    """
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return model.module
    return model
