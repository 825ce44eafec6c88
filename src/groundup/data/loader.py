"""`collate`, the `DataLoader` with persistent worker processes, and `DataLoaders` (walkthrough step 3).

How the workers work (and why it beats the walkthrough's ProcessPoolExecutor per epoch):
- Workers start once, on the first epoch, and are reused by every later epoch. With the 'fork'
  start method (Linux) they inherit the dataset, so it is never pickled; with 'spawn' it is
  pickled once per worker, not once per batch.
- The main process sends batch *indices* to one shared task queue; whichever worker is free
  takes the next task, loads and collates the batch, and sends it back. Results are put back in
  order, with at most `prefetch` batches per worker in flight.
- Every epoch has a tag: results of an epoch that was abandoned (a `break`, a cancel) are
  recognised by their tag and dropped, so the next epoch never sees stale batches.
- A worker that dies is noticed within `timeout` seconds at most and raises an error naming it
  and the signal that killed it (also when it died handing over a batch: torch passes a tensor
  through its sender, so receiving it fails first); an exception inside a worker is re-raised in
  the main process with the worker's traceback.
- Workers ignore Ctrl-C (the main process handles it and stops them), are daemons (ended when
  the main process exits), and leave by themselves if the main process disappears.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing as mp
import os
import queue
import random
import signal
import time
import traceback
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Self

import numpy as np
import torch
from torch import Tensor

from groundup.utils.checks import check_int
from groundup.data.preprocessing import Preprocessing
from groundup.utils.errors import GroundupError


def collate(samples: Sequence[Any], ds: Any = None) -> Any:
    """Stack a list of samples into a batch: tuples field by field, tensors/arrays stacked, numbers to tensors.

    With a dataset, `collate(idxs, ds)` is the walkthrough's form: the first argument is then a list
    of indices, and the samples are `ds[i]` for each of them. `None` samples (skipped corrupt
    images) are dropped.

    Example:
        >>> xb, yb = collate([(torch.zeros(2, 2), 0), (torch.ones(2, 2), 1)])   # (2, 2, 2), tensor([0, 1])
        >>> xb, yb = collate([1, 2], train_ds)                                  # (2, 64, 64, 3), (2,)
    """
    if ds is not None:
        if not (hasattr(ds, "__len__") and hasattr(ds, "__getitem__")):
            raise TypeError(f"collate(idxs, ds) needs a dataset with __len__ and __getitem__ as ds, "
                            f"got {type(ds).__name__}; to batch samples you already have, call collate(samples)")
        samples = [ds[int(i)] for i in samples]
    samples = [s for s in samples if s is not None]
    if not samples:
        raise ValueError("cannot collate an empty batch (were all its images skipped as corrupt?)")
    first = samples[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(samples)
    if isinstance(first, np.ndarray):
        return torch.from_numpy(np.stack(samples))
    if isinstance(first, (bool, int, np.integer)):
        return torch.tensor(samples, dtype=torch.int64)
    if isinstance(first, (float, np.floating)):
        return torch.tensor(samples, dtype=torch.float32)
    if isinstance(first, (tuple, list)):
        if any(len(s) != len(first) for s in samples):
            raise ValueError(f"samples have different lengths: {sorted({len(s) for s in samples})}")
        return tuple(collate(field) for field in zip(*samples))
    if isinstance(first, dict):
        return {k: collate([s[k] for s in samples]) for k in first}
    raise TypeError(f"collate cannot batch samples of type {type(first).__name__}; "
                    "pass a collate_fn that can")


class WorkerError(GroundupError, RuntimeError):
    """A DataLoader worker process died or failed; the message says which and why."""


def _pinned(batch):
    """`batch` (a tensor, or a tuple/list/dict of them) with every tensor in page-locked host memory."""
    if isinstance(batch, torch.Tensor):
        return batch.pin_memory()
    if isinstance(batch, (tuple, list)):
        return type(batch)(_pinned(b) for b in batch)
    if isinstance(batch, dict):
        return {k: _pinned(v) for k, v in batch.items()}
    return batch


def _fetch(dataset, collate_fn, idxs):
    if collate_fn is collate and hasattr(dataset, "get_batch"):
        return dataset.get_batch(idxs)  # the dataset's own vectorised path (e.g. a warm decode cache)
    return collate_fn([dataset[int(i)] for i in idxs])


def _worker_loop(dataset, collate_fn, tasks, results, worker_id: int, seed: int, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process handles Ctrl-C and stops us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the command line's handler, inherited by a fork: just stop
    torch.set_num_threads(1)  # workers are parallel already; one thread each avoids oversubscription
    random.seed(seed + worker_id)
    np.random.seed((seed + worker_id) % 2**32)
    torch.manual_seed(seed + worker_id)
    while True:
        try:
            task = tasks.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:
                return  # the main process is gone
            continue
        if task is None:
            return
        tag, i, idxs = task
        try:
            results.put((tag, i, _fetch(dataset, collate_fn, idxs), None))
        except Exception as e:  # noqa: BLE001 - shipped to the main process and re-raised there
            msg = f"{type(e).__name__} in DataLoader worker {worker_id} (pid {os.getpid()}) " \
                  f"loading batch {i}:\n{traceback.format_exc()}"
            results.put((tag, i, None, (type(e), str(e), msg)))


# What a signal that killed a worker most likely means, and what to do about it.
_SIGNAL_HINTS = {
    "SIGKILL": "the system's out-of-memory killer sends it: if memory is short, use fewer workers (--num-workers) "
               "or a smaller batch (--bs)",
    "SIGBUS": "a memory-mapped file could not be backed, e.g. a full disk under GROUNDUP_HOME: free some space",
    "SIGSEGV": "it crashed in native code (a bug in a library it ran, or a damaged image decoder)",
    "SIGTERM": "something outside groundup asked it to stop",
}


def _how_it_died(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        hint = _SIGNAL_HINTS.get(name, "something outside groundup sent it")
        return f"was killed by signal {-code} ({name}); {hint}"
    return f"exited unexpectedly (exit code {code}); if it was killed for memory, use fewer workers or a smaller batch"


class _WorkerPool:
    """`n` persistent worker processes sharing one task queue and one result queue."""

    def __init__(self, dataset, collate_fn, n: int, seed: int):
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        ctx = mp.get_context(method)
        self.tasks, self.results = ctx.Queue(), ctx.Queue()
        self.procs = [ctx.Process(target=_worker_loop, daemon=True, name=f"groundup-worker-{k}",
                                  args=(dataset, collate_fn, self.tasks, self.results, k, seed, os.getpid()))
                      for k in range(n)]
        for p in self.procs:
            p.start()

    def check_alive(self, wait: float = 0.0) -> None:
        """Raise `WorkerError` naming the first dead worker and how it died; look for up to `wait` seconds."""
        deadline = time.monotonic() + wait
        while True:
            for k, p in enumerate(self.procs):
                if not p.is_alive():
                    self.close()
                    raise WorkerError(f"DataLoader worker {k} (pid {p.pid}) {_how_it_died(p.exitcode)}")
            if time.monotonic() >= deadline:
                return
            time.sleep(0.02)

    def close(self) -> None:
        for _ in self.procs:
            with contextlib.suppress(Exception):  # best effort: the queue may be broken already
                self.tasks.put_nowait(None)
        for p in self.procs:
            p.join(timeout=1.0)
            if p.is_alive():
                p.terminate()
                p.join(timeout=1.0)
        for q in (self.tasks, self.results):
            q.cancel_join_thread()
            q.close()
        self.procs = []


class DataLoader:
    """Batches of a dataset, optionally shuffled and loaded by persistent worker processes.

    Args:
        dataset: any object with `__len__` and `__getitem__` (a groundup `Dataset`, a list, ...).
        bs: batch size.
        shuffle: a new order every epoch. The order of epoch `e` depends only on `(seed, e)`.
        num_workers: worker processes; 0 loads in the calling process (`n_workers`, the walkthrough's
            name, works too).
        drop_last: drop the last batch when it is smaller than `bs`.
        seed: makes shuffling reproducible; None draws one from torch's global RNG (so
            `torch.manual_seed` controls it too).
        collate_fn: turns a list of samples into a batch (default `collate`).
        timeout: seconds between checks that the workers are alive.
        prefetch: batches in flight per worker.
        pin_memory: copy each batch into page-locked ("pinned") host memory, from which a copy to a
            GPU with `non_blocking=True` runs alongside the computation instead of before it. None
            (the default): pinned when the batches go to a CUDA device (`SetupLearnerCB` says so
            through `pin_for`); pinning needs CUDA.

    Example:
        >>> dl = DataLoader(ds, bs=128, shuffle=True, num_workers=2, seed=42)
        >>> for xb, yb in dl: ...          # xb: (128, 64, 64, 3) uint8, yb: (128,) int64

    Sharding for data-parallel training: `shard(rank, world_size)` makes this loader yield only
    rank `rank`'s part of every batch (see `epoch_batches`).
    """

    def __init__(self, dataset, bs: int = 64, shuffle: bool = False, num_workers: int = 0,
                 drop_last: bool = False, seed: int | None = None,
                 collate_fn: Callable[[list], Any] = collate, timeout: float = 5.0, prefetch: int = 2,
                 n_workers: int | None = None, pin_memory: bool | None = None):
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(f"DataLoader needs a dataset with __len__ and __getitem__, "
                            f"got {type(dataset).__name__}")
        if n_workers is not None:  # the walkthrough's spelling, kept beside PyTorch's
            num_workers = n_workers
        check_int("DataLoader", "bs", bs)
        check_int("DataLoader", "num_workers", num_workers, low=0)
        check_int("DataLoader", "prefetch", prefetch)
        self.dataset, self.bs, self.shuffle, self.num_workers = dataset, bs, shuffle, num_workers
        self.drop_last, self.collate_fn, self.timeout, self.prefetch = drop_last, collate_fn, timeout, prefetch
        if pin_memory not in (None, True, False):
            raise ValueError(f"DataLoader: pin_memory must be True, False or None (pinned when training on CUDA), "
                             f"got {pin_memory!r}")
        self.pin_memory = pin_memory
        self._pin = bool(pin_memory)  # what this iteration does: `pin_for` decides when pin_memory is None
        self.seed = int(torch.randint(0, 2**62, ()).item()) if seed is None else int(seed)
        self.epoch = 0  # the epoch the next iteration runs; `set_epoch` moves it (resume)
        self.rank, self.world_size = 0, 1
        self._pool: _WorkerPool | None = None
        self._tags = itertools.count()
        self._finalizer = None

    def pin_for(self, device: torch.device) -> bool:
        """Pin the batches if `device` is a CUDA device (unless `pin_memory` was given); return the choice."""
        self._pin = self.pin_memory if self.pin_memory is not None else torch.device(device).type == "cuda"
        return self._pin

    # -- which indices go into which batch ------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use the order of `epoch` (for resuming and for sharded loading)."""
        self.epoch = int(epoch)

    def shard(self, rank: int, world_size: int) -> DataLoader:
        """Yield only rank `rank`'s part of each batch, for data-parallel training; returns self.

        Every rank computes the same global order (same seed and epoch) and cuts the same global
        batches of `bs * world_size` samples; rank r takes the r-th of `world_size` near-equal
        slices. Every sample is seen exactly once per epoch across ranks, with no padding. If the
        last global batch would leave a rank empty it is merged into the one before it.
        """
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        if world_size > len(self.dataset):
            raise ValueError(f"cannot shard {len(self.dataset)} samples over {world_size} ranks")
        self.rank, self.world_size = rank, world_size
        return self

    def global_batches(self, epoch: int) -> list[np.ndarray]:
        """The index arrays of every global batch of `epoch` (before sharding)."""
        n = len(self.dataset)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        gbs = self.bs * self.world_size
        stop = n - n % gbs if self.drop_last else n
        batches = [order[i:i + gbs] for i in range(0, stop, gbs)]
        if len(batches) > 1 and len(batches[-1]) < self.world_size:
            batches[-2:] = [np.concatenate(batches[-2:])]  # no rank may get an empty batch
        return batches

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """The index arrays this loader (this rank) yields in `epoch`."""
        if self.world_size == 1:
            return self.global_batches(epoch)
        return [np.array_split(b, self.world_size)[self.rank] for b in self.global_batches(epoch)]

    def __len__(self) -> int:
        n, gbs = len(self.dataset), self.bs * self.world_size
        if self.drop_last:
            return n // gbs
        k = -(-n // gbs)
        return k - 1 if k > 1 and n % gbs and n % gbs < self.world_size else k

    # -- iteration ------------------------------------------------------------------------------
    def __iter__(self):
        batches = self.epoch_batches(self.epoch)
        self.epoch += 1
        if self.num_workers == 0 or self._warm_cache():
            loaded = (_fetch(self.dataset, self.collate_fn, idxs) for idxs in batches)
        else:
            loaded = self._iter_workers(batches)
        if not self._pin:
            yield from loaded
            return
        for batch in loaded:
            yield _pinned(batch)

    def _warm_cache(self) -> bool:
        # A fully decoded cache makes a batch one gather from a memory map: cheaper in this
        # process than shipping it from a worker (benchmarks/bench_data.py, cached epochs).
        is_cached = getattr(self.dataset, "is_cached", None)
        return self.collate_fn is collate and callable(is_cached) and is_cached()

    def _start_workers(self) -> _WorkerPool:
        if self._pool is None:
            self._pool = _WorkerPool(self.dataset, self.collate_fn, self.num_workers, self.seed)
            self._finalizer = weakref.finalize(self, self._pool.close)
        return self._pool

    def _iter_workers(self, batches: list[np.ndarray]):
        pool = self._start_workers()
        tag, sent, done = next(self._tags), 0, {}
        try:
            for i in range(len(batches)):
                while sent < len(batches) and sent < i + self.num_workers * self.prefetch:
                    pool.tasks.put((tag, sent, batches[sent]))
                    sent += 1
                while i not in done:
                    try:
                        rtag, j, batch, err = pool.results.get(timeout=self.timeout)
                    except queue.Empty:
                        pool.check_alive()
                        continue
                    except Exception as e:  # a batch that cannot be received: did the worker that sent it die?
                        pool.check_alive(wait=2.0)
                        raise WorkerError(f"could not receive a batch from the DataLoader workers "
                                          f"({type(e).__name__}: {e}); all of them are still running") from e
                    if rtag == tag:
                        done[j] = (batch, err)
                batch, err = done.pop(i)
                if err is not None:
                    etype, text, msg = err
                    try:
                        exc = etype(text)
                    except Exception:  # noqa: BLE001 - an exception type we cannot rebuild
                        exc = WorkerError(text)
                    raise exc from WorkerError(msg)
                yield batch
        except (KeyboardInterrupt, WorkerError):
            self.close()  # Ctrl-C or a dead worker: stop every worker now, leave no orphans
            raise

    def close(self) -> None:
        """Stop the worker processes (they start again on the next iteration)."""
        if self._finalizer is not None:
            self._finalizer()
        self._pool, self._finalizer = None, None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self):
        state = self.__dict__.copy()
        state.update(_pool=None, _finalizer=None, _tags=None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._tags = itertools.count()

    def __repr__(self) -> str:
        return (f"DataLoader({len(self.dataset)} samples, bs={self.bs}, shuffle={self.shuffle}, "
                f"num_workers={self.num_workers})")


class DataLoaders:
    """A training and a validation `DataLoader`: `.train`, `.valid`, and `.preprocessing` when known.

    Args:
        train, valid: the two loaders (or any iterables of batches).
        preprocessing: image size, vocabulary, class names and statistics of the inputs (see
            `Preprocessing`); the Learner takes it from here.
        vocab, stats: the walkthrough's separate pieces ({label: index}, (mean, std)); used to
            build `preprocessing` when it is not given.
        augment: a `BatchAugment` (or any callable `(xb, epoch=, batch=)`) that the Learner applies
            to every uint8 training batch before `preprocessing`; None: no augmentation.

    For a folder of images, `ImageDataLoaders.from_folder` (in `groundup.data.folder`) builds
    everything: both loaders and their preprocessing.
    """

    def __init__(self, train: DataLoader, valid: DataLoader, vocab: dict | None = None,
                 stats: tuple[Tensor, Tensor] | None = None, preprocessing: Preprocessing | None = None,
                 augment: Callable[..., Tensor] | None = None):
        self.train, self.valid = train, valid
        self.augment = augment
        if preprocessing is None and stats is not None:
            preprocessing = Preprocessing(*stats, vocab=vocab)
        self.preprocessing = preprocessing
        self._vocab = vocab

    @property
    def vocab(self) -> dict[str, int] | None:
        """The walkthrough's vocabulary, `{label: index}` (from `preprocessing` when it has one)."""
        if self.preprocessing is not None and self.preprocessing.vocab is not None:
            return {label: i for i, label in enumerate(self.preprocessing.vocab)}
        return self._vocab

    @property
    def stats(self) -> tuple[Tensor, Tensor] | None:
        """`(mean, std)` of the inputs, from `preprocessing`."""
        return None if self.preprocessing is None else self.preprocessing.stats

    def __iter__(self):
        return iter((self.train, self.valid))

    def __getitem__(self, i: int) -> DataLoader:
        return (self.train, self.valid)[i]

    def show_batch(self, path: str | os.PathLike = "batch.png", max_n: int = 16, ncols: int | None = None):
        """Write a PNG grid of the first training batch, titled with the class names (see `show_batch`)."""
        from groundup.data.show import show_batch  # matplotlib only when a picture is asked for

        return show_batch(self, path, max_n=max_n, ncols=ncols)

    def close(self) -> None:
        """Stop the worker processes of both loaders."""
        for dl in (self.train, self.valid):
            if hasattr(dl, "close"):
                dl.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(train={self.train!r}, valid={self.valid!r})"
