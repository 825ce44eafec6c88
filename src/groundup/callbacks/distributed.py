"""`DistributedTraining`: data-parallel training over the processes torchrun started, added with one line.

Each of N processes (ranks) holds a full copy of the model and trains on its own slice of every
global batch; averaging the gradients before each step keeps the copies identical. What happens where:

    before_fit       join the process group (`init_from_env`); shard `dls.train` and `dls.valid`
                     (every rank takes its slice of each global batch of bs × N samples); agree the
                     loaders' shuffling seeds; train the model wrapped in DistributedDataParallel
                     (`learn.wrap_model`; a groundup model through `groundup.nn.to_torch`), which
                     starts every rank from rank 0's weights
    after_loss       note this rank's batch size n_local
    after_backward   gradients = Σ_ranks(n_local × local gradient) / Σ_ranks(n_local), i.e. exactly the
                     gradient of one process on the whole global batch, shards of unequal size included
    after_train      average BatchNorm's running statistics over the ranks
    after_fit        put the loaders back as they were (unsharded, their own seeds, `augment.rank`),
                     also when fit raised

DistributedDataParallel all-reduces the gradients in buckets of about `bucket_mb` megabytes while
the backward pass runs; its communication hook (`_weighted_sum_hook`) does the weighting.
Stopping together: with `learn.hold_cancel_fit`, a `CancelFitException` of any callback becomes
a request that rides along in the first gradient bucket of the next batch (and in one small
all-reduce per training pass and per epoch), so every rank stops at the same step. The README's
"Training on several GPUs or machines" gives the limitations (per-rank BatchNorm statistics, the
other Cancel exceptions raised alike on every rank, a loss that is a mean over the batch).
"""

from __future__ import annotations

import inspect

import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from groundup.callbacks.core import Callback, CancelFitException
from groundup.inference import model_device
from groundup.nn.bridge import to_torch
from groundup.utils.process_group import (
    DEFAULT_TIMEOUT,
    all_reduce_sum,
    broadcast_,
    comm_device,
    get_rank,
    get_world_size,
    init_from_env,
)

__all__ = ["DistributedTraining", "ddp_device_ids"]


class _SyncState:
    """What one batch's gradient all-reduce carries besides the gradients (shared with the DDP hook).

    The first bucket ends with a header `[n_local, stop]`; after the all-reduce it holds
    `[global batch size, number of ranks that asked to stop]`.
    """

    __slots__ = ("header", "n_local", "stop")

    def __init__(self) -> None:
        self.n_local, self.stop = 0.0, 0.0
        self.header: Tensor | None = None


def _weighted_sum_hook(state, bucket):  # no annotations: DDP checks them, and ours are strings (PEP 563)
    """DDP communication hook: all-reduce n_local × gradient (bucket 0 also carries the header).

    `state` is the `_SyncState`, `bucket` a `dist.GradBucket`; returns a `Future[Tensor]`.

    DistributedDataParallel calls it for each bucket as soon as the bucket's gradients are ready,
    so the communication overlaps the rest of the backward pass. The division by the global batch
    size happens in `DistributedTraining.after_backward`, once every bucket (and so the header) is back.
    """
    buf = bucket.buffer()
    buf.mul_(state.n_local)  # the local mean gradient times n_local: this rank's sum over its samples
    if bucket.index() != 0:
        return dist.all_reduce(buf, async_op=True).get_future().then(lambda fut: fut.value()[0])
    header = torch.tensor([state.n_local, state.stop], dtype=buf.dtype, device=buf.device)
    flat = torch.cat([buf, header])

    def unpack(fut: torch.futures.Future) -> Tensor:
        out = fut.value()[0]
        state.header = out[-2:]
        return out[:-2]

    return dist.all_reduce(flat, async_op=True).get_future().then(unpack)


def ddp_device_ids(device: torch.device) -> list[int] | None:
    """DistributedDataParallel's `device_ids` for a model on `device`: `[r]` on `cuda:r`, None on the CPU."""
    if device.type != "cuda":
        return None
    if device.index is None:
        raise ValueError(f"DistributedTraining: the model is on {device}, with no GPU index; put it on this "
                         f"process's own GPU (SetupLearnerCB() picks cuda:LOCAL_RANK)")
    return [device.index]


def _batch_size(batch) -> int:
    """Samples in a batch: the length of its first tensor (`batch` = (xb, yb, ...))."""
    x = batch
    while isinstance(x, (tuple, list)):
        x = x[0]
    if isinstance(x, dict):
        x = next(iter(x.values()))
    return len(x)


class DistributedTraining(Callback):
    """Train data-parallel on every process torchrun started; in a single process, do nothing.

    Add it to the Learner's callbacks and start the unchanged script with torchrun:

        learn = Learner(model, dls, cross_entropy, cbs=[SetupLearnerCB(), TrackResults(), DistributedTraining()])
        learn.fit(5)

        $ torchrun --nproc_per_node=4 train.py        # 4 GPUs (NCCL), or 4 CPU processes (gloo)

    `dls.train` and `dls.valid` must be groundup `DataLoader`s (they shard themselves: each sample
    once per epoch over all ranks, no padding) or torch DataLoaders built with a `DistributedSampler`.
    `bs` is the batch size per rank: the global batch is bs × world size. After `fit` (also one that
    raised) the loaders are as they were before it: unsharded, with their own seeds, and the
    augmentation's `rank` back (rank 0's normalization statistics stay in `learn.preprocessing`:
    the model was trained with them). Only rank 0 prints and
    writes files (see `groundup.utils.process_group.is_main_process`). See the module docstring for what runs
    at each event, and the README for the launch commands.

    It uses the Learner's extension points: `learn.wrap_model` (the model trains wrapped in
    `DistributedDataParallel`, a groundup one through `to_torch`, until the end of `fit`;
    `learn.unwrapped_model` is the user's model throughout) and `learn.hold_cancel_fit` (a
    `CancelFitException` of another callback is held until all ranks agree to stop).

    Args:
        bucket_mb: size of a gradient bucket in megabytes (one all-reduce per bucket).
        timeout: seconds a collective waits for the other ranks before it fails (see `init_from_env`).
        backend: "nccl" or "gloo"; default from the model's device at `before_fit`: NCCL on a GPU,
            gloo on the CPU (`groundup.utils.process_group.backend_for`).
    """

    order = -7  # after SetupLearnerCB (-10) has put the model on its device

    def __init__(self, bucket_mb: float = 25.0, timeout: float = DEFAULT_TIMEOUT,
                 backend: str | None = None) -> None:
        if not bucket_mb > 0:
            raise ValueError(f"DistributedTraining: bucket_mb must be > 0, got {bucket_mb!r}")
        if not timeout > 0:
            raise ValueError(f"DistributedTraining: timeout must be > 0 seconds, got {timeout!r}")
        if backend not in (None, "nccl", "gloo"):
            raise ValueError(f"DistributedTraining: backend must be 'nccl', 'gloo' or None, got {backend!r}")
        self.bucket_mb, self.timeout, self.backend = bucket_mb, timeout, backend
        self.active = False  # True during a fit with more than one process
        self._ddp: DistributedDataParallel | None = None
        self._sync = _SyncState()
        self._params: list[Tensor] = []
        self._samplers: list[DistributedSampler] = []
        self._restore: list[tuple[object, dict[str, int]]] = []  # (object, attributes before fit)
        self._flag_host: Tensor | None = None
        self._flag_event = None
        self._flag_pending = False

    # -- events ---------------------------------------------------------------------------------------
    def before_fit(self) -> None:
        learn = self.learn
        model = learn.model
        # The training device (where SetupLearnerCB, order -10, has put the model) picks the backend
        # and NCCL's GPU: gloo for a model on the CPU, even on a machine with GPUs.
        self.active = init_from_env(self.backend, self.timeout, device=model_device(model))
        if not self.active:
            return
        if isinstance(model, DistributedDataParallel):
            raise TypeError("DistributedTraining wraps the model in DistributedDataParallel itself; give the "
                            "Learner the plain model (learn.model = learn.model.module)")
        if dist.get_backend() == "nccl" and any(p.device.type != "cuda" for p in model.parameters()):
            raise ValueError("DistributedTraining: NCCL needs the model on this process's GPU, but some parameters "
                             "are on the CPU; add SetupLearnerCB() to the callbacks (it picks cuda:LOCAL_RANK)")
        self._shard_loaders(learn.dls)
        self._params = [p for p in model.parameters() if p.requires_grad]
        self._sync = _SyncState()
        self._flag_pending = False
        self._wrap_ddp()  # DistributedDataParallel broadcasts rank 0's parameters and buffers
        learn.hold_cancel_fit = True  # a rank that left alone would leave the others waiting in a collective

    def before_epoch(self) -> None:
        if not self.active:
            return
        for sampler in self._samplers:
            sampler.set_epoch(self.learn.epoch)  # a torch DistributedSampler reshuffles per epoch only if told
        self._agree_to_stop()  # a cancel from before_fit, the last validation pass or after_epoch

    def after_loss(self) -> None:
        if self.active and self.learn.training:
            self._sync.n_local = float(_batch_size(self.learn.batch))
            self._sync.stop = float(self.learn.cancel_fit_requested)  # rides along with the gradients
            self._sync.header = None

    def after_backward(self) -> None:
        if not self.active:
            return
        header = self._sync.header  # the hook has summed n_local × gradient; divide by the global count
        if header is None:
            raise RuntimeError("DistributedTraining: DistributedDataParallel did not all-reduce the gradients "
                               "in this backward pass (does the loss depend on the model's parameters?)")
        grads = [p.grad for p in self._params if p.grad is not None]
        torch._foreach_div_(grads, header[0])
        if self._stop_seen(header[1]):
            self._stop_together()

    def after_train(self) -> None:
        if not self.active:
            return
        model = self.learn.unwrapped_model
        running = [b for b in (model.buffers() if hasattr(model, "buffers") else ()) if b.is_floating_point()]
        self._agree_to_stop(self._poll_flag(), average=running)

    def after_fit(self) -> None:
        # The Learner hands the user's model back and stops holding cancels; forget this fit's state
        # and leave the loaders as they were found.
        self._ddp = None
        self._sync.stop, self._flag_pending = 0.0, False
        for obj, attrs in reversed(self._restore):
            for name, value in attrs.items():
                setattr(obj, name, value)
        self._restore = []

    # -- helpers ----------------------------------------------------------------------------------------
    def _shard_loaders(self, dls) -> None:
        rank, world = get_rank(), get_world_size()
        seeded, self._samplers = [], []
        for name in ("train", "valid"):
            dl = getattr(dls, name)
            if hasattr(dl, "shard") and hasattr(dl, "seed"):  # groundup's DataLoader
                self._restore.append((dl, {"rank": dl.rank, "world_size": dl.world_size, "seed": dl.seed}))
                dl.shard(rank, world)
                seeded.append(dl)
            elif isinstance(getattr(dl, "sampler", None), DistributedSampler):
                self._samplers.append(dl.sampler)
            else:
                raise TypeError(
                    f"DistributedTraining: dls.{name} is a {type(dl).__name__}, which cannot give each of the "
                    f"{world} ranks its own part of the data; use groundup.data.DataLoader (it shards "
                    f"itself), or a torch DataLoader with sampler=DistributedSampler(dataset)")
        if seeded:  # a seed drawn at random differs per process: everyone takes rank 0's
            seeds = torch.tensor([dl.seed for dl in seeded], dtype=torch.int64, device=comm_device())
            broadcast_([seeds])
            for dl, seed in zip(seeded, seeds.tolist()):
                dl.seed = int(seed)
        augment = getattr(dls, "augment", None)
        if augment is not None and hasattr(augment, "rank"):  # each rank draws its own crops (seeded by its rank)
            self._restore.append((augment, {"seed": augment.seed, "rank": augment.rank}))
            seed = torch.tensor([augment.seed], dtype=torch.int64, device=comm_device())
            broadcast_([seed])
            augment.seed, augment.rank = int(seed.item()), rank
        self._agree_on_normalization(dls)

    def _agree_on_normalization(self, dls) -> None:
        # Statistics measured on a sample drawn with the loader's seed differ per rank without a
        # fixed seed, so each rank would normalize its inputs differently: take rank 0's.
        pre = self.learn.preprocessing
        if pre is not None:
            mean_std = [pre.mean.clone(), pre.std.clone()]
            broadcast_(mean_std)
            self.learn.preprocessing = pre.with_stats(*mean_std)

    def _wrap_ddp(self) -> None:
        model = to_torch(self.learn.model)  # a groundup model through the bridge: the same tensors
        device = next(model.parameters()).device
        # Buffers are averaged once per training pass (after_train), not broadcast at every forward.
        no_buffer_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in
                          inspect.signature(DistributedDataParallel).parameters else {"broadcast_buffers": False})
        ddp = DistributedDataParallel(model, device_ids=ddp_device_ids(device),
                                      bucket_cap_mb=self.bucket_mb, **no_buffer_sync)
        ddp.register_comm_hook(self._sync, _weighted_sum_hook)
        self._ddp = ddp
        self.learn.wrap_model(lambda _: ddp)

    def _stop_seen(self, flag: Tensor) -> bool:
        """Whether any rank asked to stop. On a GPU: the previous batch's answer (no host sync)."""
        if flag.device.type != "cuda":
            return flag.item() > 0
        stop = self._poll_flag()
        if self._flag_host is None or self._flag_host.dtype != flag.dtype:
            self._flag_host = torch.empty((), dtype=flag.dtype, pin_memory=True)
            self._flag_event = torch.cuda.Event()
        self._flag_host.copy_(flag, non_blocking=True)
        self._flag_event.record()
        self._flag_pending = True
        return stop

    def _poll_flag(self) -> bool:
        """The stop flag copied off the GPU by the last `_stop_seen`, if not read yet."""
        if not self._flag_pending:
            return False
        self._flag_event.synchronize()
        self._flag_pending = False
        return self._flag_host.item() > 0

    def _agree_to_stop(self, stop: bool = False, average: list[Tensor] | tuple = ()) -> None:
        """One all-reduce: raise CancelFitException on every rank if any asked; average `average` in place."""
        flag = torch.tensor([1.0 if stop or self.learn.cancel_fit_requested else 0.0], device=comm_device())
        summed = all_reduce_sum([flag, *average])
        world = get_world_size()
        with torch.no_grad():
            for t, total in zip(average, summed[1:]):
                t.copy_(total / world)
        if summed[0].item() > 0:
            self._stop_together()

    def _stop_together(self) -> None:
        """Every rank has agreed: stop fitting here (this cancel must not be held)."""
        self.learn.hold_cancel_fit = False
        raise CancelFitException

    def __repr__(self) -> str:
        return f"DistributedTraining(bucket_mb={self.bucket_mb}, timeout={self.timeout}, backend={self.backend})"


