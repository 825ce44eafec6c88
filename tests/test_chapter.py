"""The "Learner from scratch" chapter, typed against groundup's names, in the chapter's order.

Each test is one stretch of the chapter, run on the shipped imagenette-mini (600 training and 200
validation images of 10 classes, 64 px). Where the chapter writes its own class (SetupLearnerCB,
TrackResults, the LR finder, OneCycle), it is written here the way a reader would write it in a
notebook, on top of groundup's `Callback` and `Learner`; groundup's own versions are not used.
The checks are the values the chapter shows: shapes, parameter counts, hooks, where the LR finder
stops and the shape of the one-cycle schedule.
"""

import math
import re

import pytest
import torch
import torch.nn.functional as F

from groundup import (
    SGD,
    AdaptivePool,
    Callback,
    CancelFitException,
    ConvLayer,
    DataLoader,
    DataLoaders,
    Dataset,
    Learner,
    Linear,
    Module,
    Normalize,
    Parameter,
    Sequential,
    collate,
    cross_entropy,
    get_image_files,
    log_softmax,
    logsumexp,
    nll,
    parent_label,
    val2idx,
)
from groundup.callbacks.setup import to_device
from groundup.utils.devices import resolve_device
from groundup.run.build import shipped_dataset

# -- the reader's own pieces, as the chapter writes them -----------------------------------------


def files_and_vocab():
    files = get_image_files(shipped_dataset())
    lbls = sorted({parent_label(f) for f in files})  # the chapter: files.map(Self.parent.name()).unique()
    return files, lbls, val2idx(lbls)


def datasets(size=64):
    files, _, v2i = files_and_vocab()
    train = [f for f in files if f.parent.parent.name == "train"]
    valid = [f for f in files if f.parent.parent.name != "train"]
    return Dataset(train, v2i, size=size), Dataset(valid, v2i, size=size)


def chapter_dls(bs=128, size=64):
    """The chapter's loaders and its tfm_x: statistics of the first training batch, then NHWC -> NCHW."""
    train_ds, valid_ds = datasets(size)
    train_dl = DataLoader(train_ds, bs=bs, shuffle=True)
    valid_dl = DataLoader(valid_ds, bs=256, shuffle=False)
    xb, yb = next(iter(train_dl))
    xf = xb.float() / 255  # the chapter's images are floats in [0, 1]; groundup's loader yields uint8
    stats = [xf.mean((0, 1, 2)), xf.std((0, 1, 2))]
    norm = Normalize(stats)

    def tfm_x(x):
        return norm(x).permute((0, 3, 1, 2))

    return DataLoaders(train_dl, valid_dl), tfm_x, xb, yb


def simple_cnn():
    return Sequential(
        ConvLayer(3, 16, stride=2),   # 32
        ConvLayer(16, 32, stride=2),  # 16
        ConvLayer(32, 64, stride=2),  # 8
        ConvLayer(64, 128, stride=2),  # 4
        AdaptivePool(),
        Linear(128, 10),
    )


class T(Module):
    def __init__(self):
        super().__init__()
        self.c, self.l = ConvLayer(3, 4), Linear(4, 2)


class SetupLearnerCB(Callback):
    def __init__(self, tfm_x):
        self.tfm_x = tfm_x

    def before_batch(self):
        xb, yb = to_device(self.batch, resolve_device())
        self.learner.batch = self.tfm_x(xb), yb

    def before_fit(self):
        self.model.to(resolve_device())  # the walkthrough: .cuda() when available; the suite's rule here


class TrackResults(Callback):
    # The chapter's Learner fires before_epoch/after_epoch around each pass (training, then
    # validation); groundup fires them once per epoch and names the per-pass events like this:
    def before_train(self):
        self.accs, self.losses, self.ns = [], [], []

    def after_train(self):
        n = sum(self.ns)
        print(self.epoch, self.model.training, sum(self.losses).item() / n, sum(self.accs).item() / n)

    before_validate, after_validate = before_train, after_train

    def after_batch(self):
        xb, yb = self.batch
        acc = (self.preds.argmax(dim=1) == yb).float().sum()
        self.accs.append(acc)
        n = len(xb)
        self.losses.append(self.loss * n)
        self.ns.append(n)


class LRFinder(Callback):
    def before_fit(self):
        self.losses, self.lrs = [], []
        self.learner.lr = 1e-6

    def before_batch(self):
        if not self.model.training:
            return
        self.opt.lr *= 1.2

    def after_batch(self):
        if not self.model.training:
            return
        if self.opt.lr > 10 or torch.isnan(self.loss):
            raise CancelFitException
        self.losses.append(self.loss.item())
        self.lrs.append(self.opt.lr)


class OneCycle(Callback):
    def __init__(self, base_lr):
        self.base_lr = base_lr

    def before_fit(self):
        self.lrs = []

    def before_batch(self):
        if not self.model.training:
            return
        n = len(self.dls.train)
        bn = self.epoch * n + self.num
        mn = self.n_epochs * n
        pct = bn / mn
        pct_start, div_start = 0.25, 10
        if pct < pct_start:
            pct /= pct_start
            lr = (1 - pct) * self.base_lr / div_start + pct * self.base_lr
        else:
            pct = (pct - pct_start) / (1 - pct_start)
            lr = (1 - pct) * self.base_lr
        self.opt.lr = lr
        self.lrs.append(lr)


class GroupLrs(Callback):
    """Not from the chapter: what every parameter group's lr was when the optimizer stepped."""

    def before_fit(self):
        self.seen = []

    def after_step(self):
        self.seen.append([g["lr"] for g in self.opt.param_groups])


class NanLossAt(Callback):
    """Not from the chapter: make the loss the LR finder reads NaN at training batch `k` (None: never)."""

    def __init__(self, k):
        self.k, self.seen = k, 0

    def after_loss(self):
        if self.training:
            self.seen += 1
            if self.seen == self.k:
                self.learn.loss = torch.tensor(float("nan"))  # backward still uses loss_grad


def with_frozen_body(m):
    """Train only the head of a simple_cnn (not the chapter's doing; see the two tests that use it)."""
    for layer in m.layers[:4]:
        layer.requires_grad_(False)
    return m


def printed_rows(capsys):
    return [line.split() for line in capsys.readouterr().out.splitlines()]


# -- Data ---------------------------------------------------------------------------------------

def test_files_labels_and_the_train_valid_split():
    files, lbls, v2i = files_and_vocab()
    assert len(files) == 800 and files[0].suffix == ".JPEG"
    assert len(lbls) == 10 and v2i[lbls[0]] == 0 and v2i[lbls[-1]] == 9
    train_ds, valid_ds = datasets()
    assert (len(train_ds), len(valid_ds)) == (600, 200)
    x, y = train_ds[0]
    assert x.shape == (64, 64, 3) and x.dtype == torch.uint8 and y == v2i[lbls[0]]


def test_collate_dataloader_and_normalize_as_the_chapter():
    train_ds, _ = datasets()
    x, y = collate([1, 2], train_ds)
    assert x.shape == (2, 64, 64, 3) and y.shape == (2,)
    torch.manual_seed(0)
    dls, tfm_x, xb, yb = chapter_dls()
    assert xb.shape == (128, 64, 64, 3) and yb.shape == (128,) and len(dls.train) == 5
    t = tfm_x(xb)
    assert t.shape == (128, 3, 64, 64)
    torch.testing.assert_close(t.mean((0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(t.std((0, 2, 3)), torch.ones(3), atol=1e-4, rtol=0)


# -- Module and Parameter -----------------------------------------------------------------------

def test_parameter_conv_layer_linear_and_a_module_of_two():
    torch.manual_seed(0)
    p = Parameter(torch.tensor(3.0))
    assert p.requires_grad and p.item() == 3.0
    _, tfm_x, xb, _ = chapter_dls()
    l = ConvLayer(3, 4)
    assert len(l.parameters()) == 2
    xbt = tfm_x(xb)
    assert l(xbt).shape == (128, 4, 64, 64)  # stride 1 keeps the size
    l = Linear(4, 2)
    assert l(torch.ones(3, 4)).shape == (3, 2)
    assert len(T().parameters()) == 4


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_module_cuda_as_the_chapter():
    t = T()
    t.cuda()
    assert t.l.weight.device.type == "cuda"
    assert all(p.device.type == "cuda" for p in t.parameters())


# -- Simple CNN ---------------------------------------------------------------------------------

def test_simple_cnn_has_ten_parameters_and_its_four_hooks_fire_on_every_forward(capsys):
    from groundup import simple_cnn as groundups_simple_cnn

    torch.manual_seed(0)
    _, tfm_x, xb, _ = chapter_dls()
    xbt = tfm_x(xb)
    torch.manual_seed(1)
    m = simple_cnn()
    assert len(m.parameters()) == 10
    torch.manual_seed(1)
    assert all(torch.equal(a, b) for a, b in zip(m.parameters(), groundups_simple_cnn().parameters(), strict=True))

    def print_stats(outp, inp):
        print(outp.mean().item(), outp.std().item())

    for i in range(4):
        m.layers[i].hook = print_stats
    capsys.readouterr()
    r = m(xbt)
    assert r.shape == (128, 10)
    rows = printed_rows(capsys)
    assert len(rows) == 4 and all(len(row) == 2 and float(row[1]) > 0 for row in rows)
    m(xbt)
    assert len(printed_rows(capsys)) == 4  # four per forward, every forward
    for i in range(4):
        m.layers[i].hook = None
    m(xbt)
    assert printed_rows(capsys) == []


# -- Loss and SGD -------------------------------------------------------------------------------

def test_the_loss_pieces_and_sgd():
    torch.manual_seed(0)
    _, tfm_x, xb, yb = chapter_dls()
    m = simple_cnn()
    r = m(tfm_x(xb))
    sm = log_softmax(r)
    torch.testing.assert_close(sm, F.log_softmax(r, -1))
    torch.testing.assert_close(logsumexp(r), torch.logsumexp(r, -1))
    loss = nll(sm, yb)
    torch.testing.assert_close(loss, F.cross_entropy(r, yb))
    torch.testing.assert_close(cross_entropy(r, yb), loss)
    opt = SGD(m.parameters(), lr=0.1, wd=0.01)
    before = [p.detach().clone() for p in m.parameters()]
    loss.backward()
    opt.step()
    for p, old in zip(m.parameters(), before):
        torch.testing.assert_close(p.detach(), old - (p.grad + old * 0.01) * 0.1)  # the chapter's update


# -- Learner and callbacks ----------------------------------------------------------------------

def test_the_learner_with_the_chapters_callbacks_fits_one_epoch(capsys):
    torch.manual_seed(0)
    dls, tfm_x, _, _ = chapter_dls(size=32)  # smaller images than the chapter's 64 px, to keep the test fast
    cbs = [SetupLearnerCB(tfm_x), TrackResults()]
    learn = Learner(simple_cnn(), dls, cross_entropy, lr=0.1, cbs=cbs)
    capsys.readouterr()
    learn.fit(1)
    (e0, train, train_loss, train_acc), (e1, valid, valid_loss, valid_acc) = printed_rows(capsys)
    assert (e0, train, e1, valid) == ("0", "True", "0", "False")
    assert all(math.isfinite(float(v)) for v in (train_loss, valid_loss))
    assert 0 <= float(train_acc) <= 1 and 0 <= float(valid_acc) <= 1


@pytest.mark.parametrize("nan_at, n_recorded", [(None, 88), (40, 39)], ids=["lr-passes-10", "nan-loss"])
def test_the_chapters_lr_finder_stops_when_the_lr_passes_10_or_the_loss_is_nan(nan_at, n_recorded):
    torch.manual_seed(0)
    dls, tfm_x, _, _ = chapter_dls(bs=8, size=16)  # 75 training batches per epoch; lr passes 10 at the 89th
    # Only the head trains: the loss of a linear head grows at most linearly with the lr, so it cannot
    # overflow into NaN, which (at a point that depends on the seed and the machine) would stop the
    # finder by its other rule first. It also keeps this test fast.
    m = with_frozen_body(simple_cnn())
    lrfind, groups = LRFinder(), GroupLrs()
    learn = Learner(m, dls, cross_entropy, lr=0.1, cbs=[SetupLearnerCB(tfm_x), NanLossAt(nan_at), lrfind, groups])
    learn.fit(2)
    assert learn.lr == 1e-6  # set through self.learner in before_fit, before the optimizer exists
    n = len(lrfind.lrs)
    assert n == n_recorded and len(lrfind.losses) == n and all(math.isfinite(v) for v in lrfind.losses)
    assert lrfind.lrs == pytest.approx([1e-6 * 1.2 ** k for k in range(1, n + 1)])
    assert learn.opt.lr == pytest.approx(1e-6 * 1.2 ** (n + 1))  # the batch that stopped it
    assert (learn.epoch, learn.num) == divmod(n, len(dls.train))
    assert (learn.opt.lr > 10) == (nan_at is None) and lrfind.lrs[-1] < 10
    assert [lrs[0] for lrs in groups.seen] == pytest.approx([*lrfind.lrs, learn.opt.lr])  # each step used it


def test_the_chapters_one_cycle_rises_for_a_quarter_then_falls_to_0(capsys):
    torch.manual_seed(0)
    dls, tfm_x, _, _ = chapter_dls(bs=64, size=16)  # 10 training batches per epoch, 40 in 4 epochs
    onecyc, groups = OneCycle(0.1), GroupLrs()
    m = with_frozen_body(simple_cnn())  # the schedule does not depend on what trains; this keeps it fast
    learn = Learner(m, dls, cross_entropy, lr=0.1, cbs=[SetupLearnerCB(tfm_x), TrackResults(), onecyc, groups])
    learn.fit(4)
    lrs = onecyc.lrs
    assert len(lrs) == 40
    rising, falling = lrs[:10], lrs[10:]
    assert rising == pytest.approx([0.01 + 0.09 * k / 10 for k in range(10)])
    assert falling == pytest.approx([0.1 * (1 - k / 30) for k in range(30)])  # reaches 0 as training ends
    assert groups.seen == [[lr] * len(learn.opt.param_groups) for lr in lrs]
    rows = printed_rows(capsys)[-8:]
    assert [(r[0], r[1]) for r in rows] == [(str(e), t) for e in range(4) for t in ("True", "False")]


def test_the_statistics_row_of_coming_from_the_chapter_runs_as_the_readme_writes_it():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `stats = [xb.mean((0,1,2))"))
    chapter_line, first = re.findall(r"`(stats = [^`]+|xb = [^`]+)`", row)
    _, _, xb, _ = chapter_dls(bs=16, size=16)
    assert xb.dtype == torch.uint8
    with pytest.raises(RuntimeError, match="dtype"):  # why the row says what to do first
        exec(chapter_line, {"xb": xb})  # noqa: S102
    namespace = {"xb": xb}
    exec(f"{first}\n{chapter_line}", namespace)  # noqa: S102 - the row as written
    mean, std = namespace["stats"]
    torch.testing.assert_close(mean, xb.float().div(255).mean((0, 1, 2)))
    torch.testing.assert_close(Normalize(namespace["stats"])(xb).mean((0, 1, 2)), torch.zeros(3), atol=1e-4, rtol=0)
    assert "Normalize.from_batch(xb)" in row


def test_fit_takes_one_callback_as_the_chapter_passes_it():
    torch.manual_seed(0)
    dls, tfm_x, _, _ = chapter_dls(bs=64, size=16)
    m = with_frozen_body(simple_cnn())
    learn = Learner(m, dls, cross_entropy, lr=0.1, cbs=SetupLearnerCB(tfm_x))
    lrfind = LRFinder()
    learn.fit(1, cbs=lrfind)  # the chapter's learn.fit(2, cbs=LRFinder()), one epoch
    assert len(lrfind.lrs) == len(dls.train) and len(learn.cbs) == 1
