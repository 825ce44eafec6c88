import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from groundup.data.folder import ImageDataLoaders, image_stats
from groundup.data.images import CorruptImageError
from groundup.data.loader import DataLoader, WorkerError, collate
from groundup.data.transforms import batch_stats


def test_collate_stacks_tuples_numbers_arrays_and_dicts_and_drops_none():
    xb, yb = collate([(torch.zeros(2, 2), 0), None, (torch.ones(2, 2), 1)])
    assert xb.shape == (2, 2, 2) and yb.tolist() == [0, 1] and yb.dtype == torch.int64
    assert collate([np.zeros(3), np.ones(3)]).shape == (2, 3)
    assert collate([1.5, 2.5]).dtype == torch.float32
    assert collate([{"a": 1}, {"a": 2}])["a"].tolist() == [1, 2]
    with pytest.raises(TypeError, match="cannot batch samples of type str"):
        collate(["a", "b"])
    with pytest.raises(ValueError, match="empty batch"):
        collate([None])


class Squares:
    """Any object with __len__ and __getitem__ can be loaded."""
    def __len__(self):
        return 10
    def __getitem__(self, i):
        return torch.tensor([i, i * i]), i


def test_collate_takes_the_walkthroughs_indices_and_dataset():
    xb, yb = collate([1, 2], Squares())
    assert xb.tolist() == [[1, 1], [2, 4]] and yb.tolist() == [1, 2]
    xb2, yb2 = collate(np.array([1, 2]), Squares())  # index arrays as the DataLoader makes them
    assert torch.equal(xb2, xb) and torch.equal(yb2, yb)
    with pytest.raises(TypeError, match=r"needs a dataset .* as ds, got int; .*call collate\(samples\)"):
        collate([1, 2], 3)


def test_batches_cover_the_dataset_in_order_and_drop_last():
    dl = DataLoader(Squares(), bs=4)
    assert len(dl) == 3
    batches = list(dl)
    assert [len(y) for _, y in batches] == [4, 4, 2]
    assert torch.cat([y for _, y in batches]).tolist() == list(range(10))
    assert [len(y) for _, y in DataLoader(Squares(), bs=4, drop_last=True)] == [4, 4]
    assert len(DataLoader(Squares(), bs=4, drop_last=True)) == 2
    assert DataLoader(list(range(5)), bs=2).__iter__().__next__().tolist() == [0, 1]


def order(dl):
    return torch.cat([y for _, y in dl]).tolist()


def test_shuffle_is_reproducible_from_the_seed_and_new_every_epoch():
    a, b = DataLoader(Squares(), 3, shuffle=True, seed=1), DataLoader(Squares(), 3, shuffle=True, seed=1)
    e0, e1 = order(a), order(a)
    assert e0 == order(b) and e1 == order(b)
    assert e0 != e1 and sorted(e0) == list(range(10))
    assert order(DataLoader(Squares(), 3, shuffle=True, seed=2)) != e0
    a.set_epoch(1)
    assert order(a) == e1  # resuming at epoch 1 replays epoch 1's order
    torch.manual_seed(0)
    c = order(DataLoader(Squares(), 3, shuffle=True))
    torch.manual_seed(0)
    assert order(DataLoader(Squares(), 3, shuffle=True)) == c  # seed=None follows torch.manual_seed


@pytest.mark.parametrize("bad", [{"bs": 0}, {"bs": 2.5}, {"num_workers": -1}])
def test_bad_arguments_name_themselves(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=f"DataLoader: {name} must be"):
        DataLoader(Squares(), **{"bs": 2, **bad})
    with pytest.raises(TypeError, match="needs a dataset with __len__ and __getitem__, got int"):
        DataLoader(5)


def children_since(before: set[int]) -> list[int]:
    """PIDs of this process's live child processes that are not in `before` (the workers started since)."""
    return sorted(p.pid for p in mp.active_children() if p.pid not in before)


def test_workers_give_the_same_batches_and_persist_across_epochs():
    plain = list(DataLoader(Squares(), 3, shuffle=True, seed=5))
    before = {p.pid for p in mp.active_children()}
    with DataLoader(Squares(), 3, shuffle=True, seed=5, num_workers=2) as dl:
        got = list(dl)
        pids = children_since(before)
        assert len(pids) == 2
        list(dl)
        assert children_since(before) == pids  # started once, reused
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(plain, got))
    assert children_since(before) == [] and not any(_alive(p) for p in pids)  # close() stopped them


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_an_abandoned_epoch_does_not_leak_batches_into_the_next():
    with DataLoader(Squares(), 2, num_workers=2) as dl:
        for _ in dl:
            break
        assert order(dl) == list(range(10))


class Fails:
    def __len__(self):
        return 8
    def __getitem__(self, i):
        if i == 5:
            raise CorruptImageError("cannot decode image file /x/five.jpg: bad")
        return i


def test_a_worker_exception_is_reraised_with_its_type_and_message():
    with DataLoader(Fails(), 2, num_workers=2) as dl, pytest.raises(CorruptImageError, match="five.jpg"):
        list(dl)


class Dies:
    def __len__(self):
        return 8
    def __getitem__(self, i):
        if i == 3:
            os._exit(7)
        return i


def test_a_dead_worker_raises_a_clear_error_instead_of_hanging():
    before = {p.pid for p in mp.active_children()}
    dl = DataLoader(Dies(), 2, num_workers=2, timeout=0.2)
    with pytest.raises(WorkerError, match=r"worker \d \(pid \d+\) exited unexpectedly \(exit code 7\)"):
        list(dl)
    assert children_since(before) == []  # the other worker was stopped too


@pytest.mark.slow  # a subprocess with workers
def test_ctrl_c_leaves_no_orphan_workers(tmp_path):
    script = textwrap.dedent("""
        import multiprocessing, sys, time, torch
        from groundup.data.loader import DataLoader
        class Slow:
            def __len__(self): return 10_000
            def __getitem__(self, i): time.sleep(0.01); return i
        dl = DataLoader(Slow(), 4, num_workers=2)
        it = iter(dl); next(it)
        print(*[p.pid for p in multiprocessing.active_children()], flush=True)  # the two workers
        for _ in it: pass
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) != 0
    deadline = time.time() + 10
    while any(_alive(p) for p in pids) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)


@pytest.mark.parametrize("n,bs,world", [(10, 2, 2), (11, 2, 2), (9, 4, 2), (13, 2, 3), (7, 3, 3)])
def test_shards_see_every_sample_once_with_equal_batch_counts(n, bs, world):
    ds = list(range(n))
    loaders = [DataLoader(ds, bs, shuffle=True, seed=3).shard(r, world) for r in range(world)]
    per_rank = [[b.tolist() for b in dl] for dl in loaders]
    assert len({len(b) for b in per_rank}) == 1 and len(per_rank[0]) == len(loaders[0])
    seen = sorted(i for batches in per_rank for b in batches for i in b)
    assert seen == ds
    assert all(len(b) > 0 for batches in per_rank for b in batches)
    # the next epoch is shuffled differently, identically on every rank
    assert [b.tolist() for b in loaders[0]] != per_rank[0]


def test_from_folder_builds_both_loaders_vocab_and_stats(image_folder):
    dls = ImageDataLoaders.from_folder(image_folder, size=8, bs=4, num_workers=0, seed=0)
    assert dls.vocab == {"cat": 0, "dog": 1, "emu": 2}
    assert dls.train.shuffle and not dls.valid.shuffle and dls.valid.bs == 8
    assert len(dls.train.dataset) == 18 and len(dls.valid.dataset) == 9
    xb, yb = next(iter(dls.train))
    assert xb.shape == (4, 8, 8, 3) and xb.dtype == torch.uint8 and yb.dtype == torch.int64
    mean, std = dls.stats
    assert mean.shape == (3,) and 0 < mean.min() and mean.max() < 1 and (std > 0).all()
    assert torch.equal(ImageDataLoaders.from_folder(image_folder, size=8, bs=4, seed=0).stats[0], mean)
    train, valid = dls
    assert train is dls.train and valid is dls[1]


def test_from_folder_errors_name_the_folder(image_folder, tmp_path):
    with pytest.raises(FileNotFoundError, match="data folder not found: .*missing"):
        ImageDataLoaders.from_folder(tmp_path / "missing")
    import shutil
    shutil.rmtree(image_folder / "train")
    with pytest.raises(ValueError, match=r"data folder .*images has val/ but no train/ subfolder; expected .*/train/"
                                         r"<label>/"):
        ImageDataLoaders.from_folder(image_folder)


def test_from_folder_with_workers_loads_the_whole_epoch_then_reads_the_cache(image_folder):
    dls = ImageDataLoaders.from_folder(image_folder, size=8, bs=4, num_workers=2, seed=0)
    with dls.train as dl:
        first = sorted(torch.cat([y for _, y in dl]).tolist())
        assert dl.dataset.is_cached()
        second = sorted(torch.cat([y for _, y in dl]).tolist())
    assert first == second and len(first) == 18


def test_from_folder_stats_are_those_of_every_training_image_of_a_small_set(image_folder):
    dls = ImageDataLoaders.from_folder(image_folder, size=8, bs=4, num_workers=0, seed=0)
    ds = dls.train.dataset  # 18 images, fewer than STATS_IMAGES: all of them, not one batch of 4
    everything = batch_stats(ds.get_batch(range(len(ds)))[0])
    for ours, want in zip(dls.stats, everything):
        torch.testing.assert_close(ours, want)
    for ours, want in zip(image_stats(ds, np.arange(len(ds)), chunk=5), everything):  # chunks of any size
        torch.testing.assert_close(ours, want)


def test_dataloader_takes_the_walkthroughs_n_workers_beside_num_workers(recwarn):
    assert DataLoader(list(range(4)), 2, n_workers=0).num_workers == 0 and not recwarn.list
