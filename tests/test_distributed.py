"""Data-parallel training (`DistributedTraining`, `groundup.distributed`) on CPU: gloo, 2 processes, 127.0.0.1.

The distributed runs are real torchrun launches of this very file:

    python -m torch.distributed.run --nproc_per_node=2 tests/test_distributed.py <scenario> <out folder>

Each rank trains tiny models on a tiny synthetic data set (45 training samples: shards of unequal
size, a short last batch) and saves what it saw and ended with; the tests compare that with one
process trained on the same global batches. Ranks start from different seeds on purpose, so the
runs only agree if DistributedTraining makes them agree (weights and shuffling seeds broadcast from rank 0).
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import redirect_stdout
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from conftest import make_image_folder
from torch import nn

from groundup.callbacks.checkpoint import Checkpoint
from groundup.callbacks.distributed import DistributedTraining
from groundup.callbacks.setup import SetupLearnerCB
from groundup.callbacks.tracking import TrackResults
from groundup.data.folder import ImageDataLoaders
from groundup.data.loader import DataLoader, DataLoaders
from groundup.learner import Callback, CancelFitException, Learner
from groundup.losses import cross_entropy
from groundup.nn.layers import BatchNorm, Flatten, Linear, ReLU, Sequential
from groundup.optim import SGD
from groundup.utils.process_group import (
    all_reduce_sum,
    broadcast_,
    buckets,
    get_rank,
    get_world_size,
    init_from_env,
    is_distributed,
    is_main_process,
    unwrap_model,
)

WORLD, N_TRAIN, N_VALID, BS, VALID_BS, EPOCHS = 2, 45, 21, 4, 5, 3
METRICS = ("train_loss", "train_acc", "valid_loss", "valid_acc")

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="needs torch.distributed with the gloo backend")


# -- what every rank and the single-process reference build alike ------------------------------------------
def make_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N_TRAIN + N_VALID, 3, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    items = [(x[i], int(y[i])) for i in range(len(x))]
    return items[:N_TRAIN], items[N_TRAIN:]


def make_model(kind: str):
    if kind == "groundup":
        return Sequential(Linear(3, 8), ReLU(), Linear(8, 2))
    if kind == "groundup_bn":
        return Sequential(Linear(3, 8), BatchNorm(8), ReLU(), Linear(8, 2))
    if kind == "torch":
        return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    if kind == "torch_bn":
        return nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    raise ValueError(kind)


def make_learner(kind: str, seed: int, bs: int = BS, valid_bs: int = VALID_BS, cbs=()) -> Learner:
    """The model's weights and the loader's shuffling seed both come from `seed` (via torch's RNG)."""
    torch.manual_seed(seed)
    model = make_model(kind)
    train, valid = make_data()
    dls = DataLoaders(DataLoader(train, bs, shuffle=True), DataLoader(valid, valid_bs))  # seed=None: drawn
    opt_func = (partial(SGD, momentum=0.9, weight_decay=0.01) if kind.startswith("groundup")
                else partial(torch.optim.SGD, momentum=0.9, weight_decay=0.01))
    return Learner(model, dls, cross_entropy, lr=0.1, cbs=list(cbs), opt_func=opt_func)


def reference(kind: str, cbs=(), n_epochs: int = EPOCHS) -> Learner:
    """One process, rank 0's seed, the global batch size: the run the distributed one must equal."""
    learn = make_learner(kind, seed=100, bs=BS * WORLD, valid_bs=VALID_BS * WORLD, cbs=cbs)
    learn.fit(n_epochs)
    return learn


class SeenSamples(Callback):
    """Record which samples (by position in the data set) each batch holds."""
    order = -20

    def __init__(self):
        train, valid = make_data()
        self.ids = {tuple(x.tolist()): i for i, (x, _) in enumerate(train + valid)}
        self.seen: list[tuple[int, bool, list[int]]] = []

    def before_batch(self):
        self.seen.append((self.learn.epoch, self.learn.training,
                          [self.ids[tuple(x.tolist())] for x in self.learn.batch[0]]))


class CancelAt(Callback):
    """Raise CancelFitException on one rank only, after a given batch."""
    order = 40

    def __init__(self, rank: int, epoch: int, iter: int, training: bool = True):
        self.where = (rank, epoch, iter, training)

    def after_batch(self):
        if (get_rank(), self.learn.epoch, self.learn.iter, self.learn.training) == self.where:
            raise CancelFitException


class FailAt(Callback):
    """Raise an error on one rank only."""
    def __init__(self, rank: int, epoch: int, iter: int):
        self.where = (rank, epoch, iter)

    def after_batch(self):
        if (get_rank(), self.learn.epoch, self.learn.iter) == self.where:
            raise RuntimeError(f"boom on rank {get_rank()}")


def loader_state(dls) -> dict:
    """What DistributedTraining changes on the loaders during fit (and must put back after it)."""
    return {"shards": [(dl.rank, dl.world_size) for dl in (dls.train, dls.valid)],
            "seeds": [dls.train.seed, dls.valid.seed], "augment": (dls.augment.seed, dls.augment.rank)}


class LoaderState(Callback):
    """Records `loader_state` at the first training batch."""

    def __init__(self):
        self.seen = None

    def before_batch(self):
        if self.learn.training and self.seen is None:
            self.seen = loader_state(self.learn.dls)


def state_of(learn: Learner) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in unwrap_model(learn.model).state_dict().items()}


# -- the rank side (run by torchrun) ------------------------------------------------------------------------
def run_rank(scenario: str, out: Path) -> None:
    # A short timeout: should a test break the agreement between ranks, they fail instead of hanging.
    assert init_from_env(timeout=60) and is_distributed(), "run me with torchrun --nproc_per_node=2"
    rank, results = get_rank(), {}
    if scenario == "fail":
        make_learner("groundup", 100 + rank, cbs=[FailAt(rank=1, epoch=1, iter=1), DistributedTraining()]).fit(EPOCHS)
        return
    for kind in ("groundup", "torch"):
        seen, track = SeenSamples(), TrackResults()
        ckpt = Checkpoint(out / f"ckpt_{kind}_rank{rank}", best_by=None)
        learn = make_learner(kind, 100 + rank, cbs=[seen, track, ckpt, DistributedTraining()])
        printed = io.StringIO()
        with redirect_stdout(printed):
            learn.fit(EPOCHS)
        results[kind] = {"state": state_of(learn), "model_type": type(learn.model), "history": track.history,
                         "seen": seen.seen, "stdout": printed.getvalue()}
    for kind in ("groundup_bn", "torch_bn"):  # per-rank batch statistics; running statistics averaged
        learn = make_learner(kind, 100 + rank, cbs=[DistributedTraining()])
        learn.fit(2)
        results[kind] = {"state": state_of(learn)}
    for kind in ("groundup", "torch"):  # one rank cancels; both must stop at the same step
        track = TrackResults(print_table=False)
        learn = make_learner(kind, 100 + rank, cbs=[CancelAt(rank=1, epoch=1, iter=2), track, DistributedTraining()])
        learn.fit(EPOCHS)
        results[f"cancel_{kind}"] = {"state": state_of(learn), "history": track.history}
    track = TrackResults(print_table=False)  # a cancel during validation: agreed at the end of the epoch
    learn = make_learner("groundup", 100 + rank, cbs=[CancelAt(1, 0, 1, training=False), track, DistributedTraining()])
    learn.fit(EPOCHS)
    results["cancel_valid"] = {"state": state_of(learn), "epochs": [r["epoch"] for r in track.history]}
    learn = make_learner("groundup", 100 + rank, cbs=[DistributedTraining()])  # resume a single-process checkpoint
    learn.load(out / "single.pt")
    learn.fit(EPOCHS, start_epoch=1)
    results["resumed"] = {"state": state_of(learn)}
    torch.manual_seed(100 + rank)  # image folder, statistics measured with a per-rank random seed
    dls = ImageDataLoaders.from_folder(out / "images", size=8, bs=4, num_workers=0, cache=False, augment=True)
    setup, during = SetupLearnerCB(device="cpu"), LoaderState()
    before = loader_state(dls)
    learn = Learner(Sequential(Flatten(), Linear(8 * 8 * 3, 3)), dls, cross_entropy, lr=0.1,
                    cbs=[setup, during, DistributedTraining()])
    learn.fit(1)
    results["images"] = {"state": state_of(learn), "mean": learn.preprocessing.mean, "std": learn.preprocessing.std,
                         "during": during.seen, "before": before, "after": loader_state(dls)}
    g = torch.Generator().manual_seed(0)  # uint8 images, no preprocessing object: first-batch statistics
    pixels = torch.randint(0, 256, (16, 4, 4, 3), dtype=torch.uint8, generator=g)
    pixels[4:8] //= 4  # rank 1's shard of the first global batch (items 4-7) is darker than rank 0's (0-3)
    items = [(pixels[i], i % 2) for i in range(16)]
    learn = Learner(Sequential(Flatten(), Linear(4 * 4 * 3, 2)), DataLoaders(DataLoader(items, 4), DataLoader(items, 4)),
                    cross_entropy, lr=0.1, cbs=[SetupLearnerCB(device="cpu"), DistributedTraining()])
    learn.fit(1)
    results["first_batch_stats"] = {"mean": learn.preprocessing.mean, "std": learn.preprocessing.std,
                                    "state": state_of(learn)}
    learn = make_learner("groundup", 100 + rank, cbs=[DistributedTraining()])
    learn.dls = DataLoaders(*[[b for b in dl] for dl in learn.dls])  # plain lists cannot be sharded
    try:
        learn.fit(1)
    except TypeError as e:
        results["plain_loader_error"] = str(e)
    torch.save(results, out / f"rank{rank}.pt")


# -- the test side ------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(scenario: str, out: Path, timeout: float) -> subprocess.CompletedProcess:
    """Run this file on 2 ranks; past `timeout`, kill torchrun and its workers (its own process group)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    if sys.platform.startswith("linux"):
        env["GLOO_SOCKET_IFNAME"] = "lo"  # keep gloo on the loopback interface (127.0.0.1)
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={WORLD}", "--nnodes=1",
           "--master_addr=127.0.0.1", f"--master_port={free_port()}", __file__, scenario, str(out)]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                          start_new_session=True) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            pytest.fail(f"torchrun {scenario} did not finish in {timeout} s (ranks hanging?):\n{stderr[-4000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Launch the main scenario once; return (out folder, [rank 0 results, rank 1 results])."""
    out = tmp_path_factory.mktemp("dist")
    single = make_learner("groundup", seed=100, bs=BS * WORLD, valid_bs=VALID_BS * WORLD)
    single.fit(1)
    single.save(out / "single.pt")
    make_image_folder(out / "images")
    proc = torchrun("main", out, timeout=120)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return out, [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def assert_same_state(a: dict, b: dict, atol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for k, v in a.items():
        torch.testing.assert_close(v, b[k], atol=atol, rtol=1e-4, msg=f"{k} differs")


@pytest.mark.parametrize("kind", ["groundup", "torch"])
@pytest.mark.slow  # torchrun: two processes
def test_final_weights_equal_one_process_on_the_global_batches(run, kind):
    _, ranks = run
    expected = state_of(reference(kind))
    for r in ranks:
        assert_same_state(r[kind]["state"], expected)


@pytest.mark.slow  # torchrun: two processes
def test_torch_model_is_unwrapped_after_fit(run):
    _, ranks = run
    assert all(r["torch"]["model_type"] is nn.Sequential for r in ranks)


@pytest.mark.parametrize("kind", ["groundup", "torch"])
@pytest.mark.slow  # torchrun: two processes
def test_every_sample_is_seen_once_per_epoch_across_ranks(run, kind):
    _, ranks = run
    orders = []
    for epoch in range(EPOCHS):
        for training, n in ((True, N_TRAIN), (False, N_VALID)):
            per_rank = [[ids for e, t, ids in r[kind]["seen"] if e == epoch and t == training] for r in ranks]
            assert len(per_rank[0]) == len(per_rank[1])  # equal batch counts: no rank waits for another
            ids = sorted(i for batches in per_rank for b in batches for i in b)
            assert ids == list(range(n) if training else range(N_TRAIN, N_TRAIN + n))
            assert all(abs(len(a) - len(b)) <= 1 for a, b in zip(*per_rank))  # near-equal shards, no padding
            if training:
                orders.append([i for pair in zip(*per_rank) for b in pair for i in b])
    assert len({tuple(o) for o in orders}) == EPOCHS  # a new shuffle every epoch


@pytest.mark.parametrize("kind", ["groundup", "torch"])
@pytest.mark.slow  # torchrun: two processes
def test_metrics_equal_one_process_and_only_rank_0_prints(run, kind):
    _, ranks = run
    track = TrackResults(print_table=False)
    reference(kind, cbs=[track])
    for r in ranks:
        assert len(r[kind]["history"]) == EPOCHS
        for got, want in zip(r[kind]["history"], track.history):
            assert got["epoch"] == want["epoch"]
            for m in METRICS:
                assert got[m] == pytest.approx(want[m], abs=1e-5), m
    assert "train_loss" in ranks[0][kind]["stdout"] and len(ranks[0][kind]["stdout"].splitlines()) == EPOCHS + 1
    assert ranks[1][kind]["stdout"] == ""


@pytest.mark.parametrize("kind", ["groundup", "torch"])
@pytest.mark.slow  # torchrun: two processes
def test_only_rank_0_writes_and_its_checkpoint_resumes_in_one_process(run, kind):
    out, ranks = run
    assert (out / f"ckpt_{kind}_rank0" / "model.pt").is_file()
    assert not (out / f"ckpt_{kind}_rank1").exists()
    # the distributed checkpoint (no "module." prefix) loads into one process and continues there
    learn = make_learner(kind, seed=100, bs=BS * WORLD, valid_bs=VALID_BS * WORLD)  # rank 0's loader seed
    ckpt = learn.load(out / f"ckpt_{kind}_rank0" / "model.pt")
    assert ckpt["epoch"] == EPOCHS - 1
    assert_same_state(state_of(learn), ranks[0][kind]["state"], atol=0)
    learn.fit(EPOCHS + 1, start_epoch=EPOCHS)
    assert_same_state(state_of(learn), state_of(reference(kind, n_epochs=EPOCHS + 1)))


@pytest.mark.slow  # torchrun: two processes
def test_a_single_process_checkpoint_resumes_distributed(run):
    _, ranks = run
    expected = state_of(reference("groundup"))
    for r in ranks:
        assert_same_state(r["resumed"]["state"], expected)


@pytest.mark.parametrize("kind", ["groundup_bn", "torch_bn"])
@pytest.mark.slow  # torchrun: two processes
def test_ranks_agree_on_weights_and_batchnorm_running_statistics(run, kind):
    _, (r0, r1) = run
    assert any("running_mean" in k for k in r0[kind]["state"])
    assert_same_state(r0[kind]["state"], r1[kind]["state"], atol=1e-6)


@pytest.mark.parametrize("kind", ["groundup", "torch"])
@pytest.mark.slow  # torchrun: two processes
def test_a_cancel_on_one_rank_stops_every_rank_at_the_same_step(run, kind):
    _, ranks = run
    track = TrackResults(print_table=False)
    expected = state_of(reference(kind, cbs=[CancelAt(rank=0, epoch=1, iter=2), track]))
    for r in ranks:
        assert_same_state(r[f"cancel_{kind}"]["state"], expected)
        assert len(r[f"cancel_{kind}"]["history"]) == len(track.history) == 1


@pytest.mark.slow  # torchrun: two processes
def test_a_cancel_during_validation_stops_every_rank_after_that_epoch(run):
    _, (r0, r1) = run
    assert r0["cancel_valid"]["epochs"] == r1["cancel_valid"]["epochs"] == [0]
    assert_same_state(r0["cancel_valid"]["state"], r1["cancel_valid"]["state"], atol=0)


@pytest.mark.slow  # torchrun: two processes
def test_ranks_agree_on_the_normalization_statistics_of_an_image_folder(run):
    _, (r0, r1) = run
    (seed0, rank0), (seed1, rank1) = r0["images"]["during"]["augment"], r1["images"]["during"]["augment"]
    assert seed0 == seed1 and (rank0, rank1) == (0, 1)  # rank 0's seed, each rank its own crops
    assert r1["images"]["during"]["shards"] == [(1, 2), (1, 2)]
    for r in (r0, r1):  # after fit, each rank's loaders are as they were before it
        assert r["images"]["after"] == r["images"]["before"]
    assert torch.equal(r0["images"]["mean"], r1["images"]["mean"])
    assert torch.equal(r0["images"]["std"], r1["images"]["std"])
    assert_same_state(r0["images"]["state"], r1["images"]["state"], atol=0)


@pytest.mark.slow  # torchrun: two processes
def test_without_preprocessing_every_rank_normalizes_with_rank_0s_first_batch_statistics(run):
    """Each rank's shard of the first batch has other statistics; rank 0's are used everywhere (issue 26, 8)."""
    _, (r0, r1) = run
    first = r0["first_batch_stats"]
    assert torch.equal(first["mean"], r1["first_batch_stats"]["mean"])
    assert torch.equal(first["std"], r1["first_batch_stats"]["std"])
    assert_same_state(first["state"], r1["first_batch_stats"]["state"], atol=0)


@pytest.mark.slow  # torchrun: two processes
def test_loaders_that_cannot_shard_are_refused_with_advice(run):
    _, ranks = run
    for r in ranks:
        assert "DistributedSampler" in r["plain_loader_error"] and "dls.train is a list" in r["plain_loader_error"]


@pytest.mark.slow  # torchrun: two processes
def test_an_error_on_rank_1_ends_both_processes_with_its_message(tmp_path):
    start = time.monotonic()
    proc = torchrun("fail", tmp_path, timeout=90)
    assert proc.returncode != 0
    assert "boom on rank 1" in proc.stdout + proc.stderr
    assert time.monotonic() - start < 60


# -- single-process behaviour (no launch) ----------------------------------------------------------------
def rank_0_seeds(tensors, src=0):
    """A broadcast from a pretend rank 0 whose seeds are one more than ours (statistics: the same)."""
    for t in tensors:
        if t.dtype == torch.int64:
            t.add_(1)


@pytest.mark.parametrize("fails", [False, True])
def test_the_loaders_are_put_back_after_fit_also_when_it_raises(image_folder, monkeypatch, fails):
    """Rank 1 of a pretend world of 2 (a real one-process gloo group underneath, for DDP)."""
    import groundup.callbacks.distributed as distributed

    class Boom(Callback):
        def after_batch(self):
            if fails:
                raise RuntimeError("boom")

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        monkeypatch.setattr(distributed, "init_from_env", lambda *a, **k: True)
        monkeypatch.setattr(distributed, "get_rank", lambda: 1)
        monkeypatch.setattr(distributed, "get_world_size", lambda: 2)
        monkeypatch.setattr(distributed, "broadcast_", rank_0_seeds)
        dls = ImageDataLoaders.from_folder(image_folder, size=8, bs=4, num_workers=0, seed=3, cache=False,
                                           augment=True)
        dls.train.seed = dls.valid.seed = dls.augment.seed = 7  # this rank's own seeds; rank 0's are 8
        before, during = loader_state(dls), LoaderState()
        learn = Learner(Sequential(Flatten(), Linear(8 * 8 * 3, 3)), dls, cross_entropy, lr=0.1,
                        cbs=[SetupLearnerCB("cpu"), during, Boom(), DistributedTraining()])
        if fails:
            with pytest.raises(RuntimeError, match="boom"):
                learn.fit(1)
        else:
            learn.fit(1)
        assert during.seen == {"shards": [(1, 2), (1, 2)], "seeds": [8, 8], "augment": (8, 1)}
        assert loader_state(dls) == before  # unsharded, their own seeds, augment.rank 0
        dls.close()
    finally:
        dist.destroy_process_group()


def test_distributed_cb_does_nothing_in_a_single_process():
    with_cb = make_learner("groundup", seed=100, cbs=[DistributedTraining()])
    with_cb.fit(2)
    without = make_learner("groundup", seed=100)
    without.fit(2)
    assert_same_state(state_of(with_cb), state_of(without), atol=0)
    assert with_cb.dls.train.world_size == 1


def test_helpers_answer_for_one_process_without_torchrun(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    assert (get_rank(), get_world_size(), is_main_process(), is_distributed()) == (0, 1, True, False)
    assert init_from_env() is False
    t = torch.arange(3.0)
    assert torch.equal(all_reduce_sum([t])[0], t)
    broadcast_([t])
    assert torch.equal(t, torch.arange(3.0))


def test_rank_comes_from_torchrun_variables_before_the_group_exists(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert (get_rank(), get_world_size(), is_main_process()) == (1, 2, False)


def test_init_without_torchrun_variables_says_to_use_torchrun(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for var in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(RuntimeError, match="torchrun --nproc_per_node"):
        init_from_env()


def test_buckets_split_by_dtype_and_size():
    f, i = torch.zeros(2**18), torch.zeros(10, dtype=torch.int64)  # 1 MB of float32
    assert buckets([f, i, f, f, f], cap_mb=2) == [[0, 2], [1], [3, 4]]
    assert buckets([torch.zeros(2**20)], cap_mb=1) == [[0]]  # a big tensor gets a bucket of its own


def test_distributed_cb_checks_its_arguments():
    with pytest.raises(ValueError, match="bucket_mb"):
        DistributedTraining(bucket_mb=0)
    with pytest.raises(ValueError, match="backend"):
        DistributedTraining(backend="mpi")


if __name__ == "__main__":  # a torchrun worker: python tests/test_distributed.py <scenario> <out folder>
    run_rank(sys.argv[1], Path(sys.argv[2]))
