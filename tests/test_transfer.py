"""Starting from a trained model: layer groups, freezing, discriminative learning rates, fine_tune, load(with_head=False)."""

import math

import pytest
import torch

from groundup.callbacks.core import Callback
from groundup.callbacks.schedules import OneCycle, one_cycle_sched
from groundup.learner import Learner
from groundup.losses import cross_entropy
from groundup.nn.models import ARCHS, get_arch, layer_groups, resnet
from groundup.optim import SGD, Adam, group_lrs
from groundup.run.config import opt_func_for
from groundup.utils.checkpoint_file import CheckpointError


class Images:
    """Loaders of float (N, 3, 16, 16) batches in `n_classes` classes (each class its own mean)."""

    def __init__(self, n_classes: int = 3, n: int = 48, bs: int = 8, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        y = torch.arange(n) % n_classes
        x = torch.randn(n, 3, 16, 16, generator=g) + y.view(-1, 1, 1, 1).float()
        self.train = [(x[i:i + bs], y[i:i + bs]) for i in range(0, n * 3 // 4, bs)]
        self.valid = [(x[i:i + bs], y[i:i + bs]) for i in range(n * 3 // 4, n, bs)]


def tiny_resnet(n_classes: int = 3):
    torch.manual_seed(0)
    return resnet(n_classes=n_classes, width=4, depth=2)  # layer groups: stem + block 1, block 2, head


def names_of(model, params) -> set[str]:
    ids = {id(p) for p in params}
    return {name for name, p in model.named_parameters() if id(p) in ids}


class LRs(Callback):
    """Records, per training batch, each optimizer group's (layer_group, lr)."""

    order = 30  # after OneCycle (10)

    def __init__(self):
        self.seen = []

    def before_batch(self):
        if self.learn.training:
            self.seen.append([(g.get("layer_group"), g["lr"]) for g in self.learn.opt.param_groups])


# -- layer groups ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, head", [("simple_cnn", {"5.weight", "5.bias"}), ("resnet", {"6.weight", "6.bias"}),
                                        ("resnet_fast", {"7.weight", "7.bias"}), ("resnet18", {"fc.weight", "fc.bias"}),
                                        ("resnet34", {"fc.weight", "fc.bias"})])
def test_every_registered_arch_splits_into_body_groups_and_the_head_last(name, head):
    model = get_arch(name, n_classes=5)
    groups = layer_groups(model)
    assert len(groups) >= 2 and all(groups)
    flat = [id(p) for g in groups for p in g]
    assert sorted(flat) == sorted(id(p) for p in model.parameters())  # each parameter exactly once
    assert names_of(model, groups[-1]) == head
    assert set(ARCHS) == {"simple_cnn", "resnet", "resnet_fast", "resnet18", "resnet34"}  # a new arch: add it here


def test_a_model_of_no_registered_arch_is_one_group():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3))
    assert [len(g) for g in layer_groups(model)] == [2]


# -- freezing --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("opt_func", [SGD, torch.optim.AdamW, opt_func_for("adam", wd_norms=False)])
def test_freeze_leaves_the_body_bit_identical_across_a_fit_and_trains_head_and_norms(opt_func):
    learn = Learner(tiny_resnet(), Images(), cross_entropy, lr=0.05, opt_func=opt_func)
    model = learn.model
    body = [p for g in learn.layer_groups()[:-1] for p in g]
    norm_ids = {id(p) for m in model.modules() if type(m).__name__ == "BatchNorm" for p in m.parameters()}
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    learn.freeze()
    learn.fit_one_cycle(2)
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    body_weights = names_of(model, [p for p in body if id(p) not in norm_ids])
    assert body_weights and not (changed & body_weights)  # bit-identical: no step, no weight decay
    assert names_of(model, learn.layer_groups()[-1]) <= changed  # the head trained
    assert names_of(model, [p for p in body if id(p) in norm_ids]) & changed  # train_bn: the norms trained


def test_freeze_without_train_bn_freezes_the_norm_layers_too():
    learn = Learner(tiny_resnet(), Images(), cross_entropy, lr=0.05, train_bn=False)
    body = [p for g in learn.layer_groups()[:-1] for p in g]
    before = [p.detach().clone() for p in body]
    learn.freeze().fit(1)
    assert all(torch.equal(p, b) for p, b in zip(body, before))


def test_freeze_to_and_unfreeze_set_which_groups_train():
    learn = Learner(tiny_resnet(), Images(), cross_entropy, train_bn=False)
    groups = learn.layer_groups()
    learn.freeze_to(1)
    assert [all(p.requires_grad for p in g) for g in groups] == [False, True, True]
    learn.freeze_to(-1)
    assert [any(p.requires_grad for p in g) for g in groups] == [False, False, True]
    learn.unfreeze()
    assert all(p.requires_grad for p in learn.model.parameters())
    with pytest.raises(ValueError, match=r"freeze_to\(3\): the model has 3 layer groups .* must be in \[-2, 2\]"):
        learn.freeze_to(3)


# -- discriminative learning rates -----------------------------------------------------------------------
def test_group_lrs_reads_slices_as_fastai():
    assert group_lrs(slice(1e-5, 1e-3), 3) == pytest.approx([1e-5, 1e-4, 1e-3])
    assert group_lrs(slice(1e-3), 3) == pytest.approx([1e-4, 1e-4, 1e-3])
    assert group_lrs(0.01, 2) == [0.01, 0.01]
    assert group_lrs(slice(1e-5, 1e-3), 1) == [1e-3]
    with pytest.raises(ValueError, match="swap them"):
        group_lrs(slice(1e-3, 1e-5), 3)


@pytest.mark.parametrize("opt_func", [SGD, Adam, torch.optim.SGD, torch.optim.AdamW,
                                      opt_func_for("adam", wd_norms=False)])
def test_fit_with_a_slice_gives_each_layer_group_its_rate(opt_func):
    rec = LRs()
    learn = Learner(tiny_resnet(), Images(), cross_entropy, lr=0.05, opt_func=opt_func)
    learn.fit(1, slice(1e-5, 1e-3), cbs=[rec])
    expected = [1e-5, 1e-4, 1e-3]
    for batch in rec.seen:
        assert {i for i, _ in batch} == {0, 1, 2}
        for i, lr in batch:
            assert lr == pytest.approx(expected[i])
    # the tensors of each optimizer group are those of its layer group
    for g in learn.opt.param_groups:
        assert {id(p) for p in g["params"]} <= {id(p) for p in learn.layer_groups()[g["layer_group"]]}


def test_a_float_lr_keeps_the_optimizer_as_before():
    learn = Learner(tiny_resnet(), Images(), cross_entropy, lr=0.05)
    learn.fit_one_cycle(1)
    assert len(learn.opt.param_groups) == 1 and "layer_group" not in learn.opt.param_groups[0]


def test_one_cycle_with_a_slice_runs_one_cycle_per_group():
    rec = LRs()
    learn = Learner(tiny_resnet(), Images(), cross_entropy, opt_func=torch.optim.AdamW)
    learn.fit(2, cbs=[OneCycle(slice(1e-4, 1e-2)), rec])
    n = len(rec.seen)
    peaks = group_lrs(slice(1e-4, 1e-2), 3)
    for step, batch in enumerate(rec.seen):
        for i, lr in batch:
            assert lr == pytest.approx(one_cycle_sched(peaks[i])(step / n), abs=1e-15)


def test_lr_find_with_a_slice_grows_every_group_and_keeps_their_ratios():
    rec = LRs()
    learn = Learner(tiny_resnet(), Images(), cross_entropy, cbs=[rec])
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    found = learn.lr_find(start_lr=slice(1e-6, 1e-4), max_iter=4, path=None)
    assert found.lrs[0] == pytest.approx(1e-4)
    for batch in rec.seen:
        lrs = dict(batch)
        assert lrs[2] / lrs[0] == pytest.approx(100)
    assert all(torch.equal(v, before[k]) for k, v in learn.model.state_dict().items())


def test_lr_find_with_a_slice_after_a_fit_puts_the_optimizer_back():
    learn = Learner(tiny_resnet(), Images(), cross_entropy, lr=0.01, opt_func=Adam)
    learn.fit(1)
    state = {k: v.clone() for k, v in learn.model.state_dict().items()}
    n_groups, step = len(learn.opt.param_groups), learn.opt.state_dict()["state"][0]["step"]
    learn.lr_find(start_lr=slice(1e-6, 1e-4), max_iter=3, path=None)
    assert len(learn.opt.param_groups) == n_groups and learn.opt.state_dict()["state"][0]["step"] == step
    assert all(torch.equal(v, state[k]) for k, v in learn.model.state_dict().items())
    learn.fit(1)


# -- fine_tune -------------------------------------------------------------------------------------------
class Phases(Callback):
    """Per fit: n_epochs, which groups train, and the peak lr of each layer group."""

    order = 30

    def __init__(self):
        self.fits = []

    def before_fit(self):
        self.fits.append({"n_epochs": self.learn.n_epochs, "peaks": {}, "first": None,
                          "trains": [all(p.requires_grad for p in g) for g in self.learn.layer_groups()]})

    def before_batch(self):
        if self.learn.training:
            fit = self.fits[-1]
            lrs = {g.get("layer_group"): g["lr"] for g in self.learn.opt.param_groups}
            fit["first"] = fit["first"] or lrs
            fit["peaks"] = {i: max(lr, fit["peaks"].get(i, 0)) for i, lr in lrs.items()}


def test_fine_tune_runs_a_frozen_one_cycle_then_a_discriminative_one():
    phases = Phases()
    learn = Learner(tiny_resnet(), Images(n=96), cross_entropy, opt_func=Adam, train_bn=False)
    body = [p for g in learn.layer_groups()[:-1] for p in g]
    before = [p.detach().clone() for p in body]
    learn.fine_tune(2, base_lr=4e-3, freeze_epochs=1, cbs=[phases])
    frozen, unfrozen = phases.fits
    assert frozen["n_epochs"] == 1 and frozen["trains"] == [False, False, True]
    assert frozen["peaks"][2] == pytest.approx(4e-3, rel=0.1)  # pct_start=0.99: the peak is at the very end
    assert frozen["peaks"][0] == pytest.approx(4e-4, rel=0.1)  # slice(base_lr): the body gets base_lr / 10
    assert unfrozen["n_epochs"] == 2 and unfrozen["trains"] == [True, True, True]
    assert unfrozen["peaks"][2] == pytest.approx(2e-3, rel=0.1)  # base_lr halved
    assert [unfrozen["peaks"][i] / unfrozen["peaks"][2] for i in range(3)] == pytest.approx([0.01, 0.1, 1])  # lr_mult
    assert [unfrozen["first"][i] for i in range(3)] == pytest.approx([2e-5 / 5, 2e-4 / 5, 2e-3 / 5])  # div=5
    assert not all(torch.equal(p, b) for p, b in zip(body, before))  # the body trained in phase 2


def test_fine_tune_rejects_bad_settings():
    learn = Learner(tiny_resnet(), Images(), cross_entropy)
    with pytest.raises(ValueError, match="lr_mult"):
        learn.fine_tune(1, lr_mult=0.5)


# -- load(with_head=False) -------------------------------------------------------------------------------
def test_load_without_head_keeps_the_body_and_makes_a_new_head(tmp_path):
    old = Learner(tiny_resnet(3), Images(3), cross_entropy, lr=0.05)
    old.fit(1)
    old.save(tmp_path / "a.pt")
    new = Learner(tiny_resnet(5), Images(5), cross_entropy)
    head_before = {k: v.clone() for k, v in new.model.state_dict().items() if k.startswith("4.")}
    new.load(tmp_path / "a.pt", with_head=False)
    saved = old.model.state_dict()
    t = new.transfer
    assert set(t.made) == {"4.weight", "4.bias"} and set(t.dropped) == {"4.weight", "4.bias"}
    assert set(t.kept) == set(saved) - {"4.weight", "4.bias"}
    state = new.model.state_dict()
    assert all(torch.equal(state[k], saved[k]) for k in t.kept)
    assert any(v.abs().sum() > 0 for v in head_before.values())
    assert all(torch.equal(state[k], torch.zeros_like(v)) for k, v in head_before.items())  # the output layer: 0
    assert "kept 35 tensors of the body, dropped 2 (4.weight, 4.bias), made 2 new (4.weight, 4.bias)" in str(t)
    xb, _ = next(iter(Images(5).valid))
    new.model.eval()
    assert torch.equal(new.model(xb), torch.zeros(len(xb), 5))  # every class equally likely at first
    new.fit(1)  # and it trains: the output layer learns from the body's features
    assert all(new.model.state_dict()[k].abs().sum() > 0 for k in head_before)


def test_only_the_output_layer_of_a_new_head_starts_at_zero(tmp_path):
    from groundup import Linear, ReLU, Sequential

    def net(n_classes):  # a head of two layers: 2.* (hidden) and 4.* (output)
        torch.manual_seed(0)
        return Sequential(Linear(6, 8), ReLU(), Linear(8, 8), ReLU(), Linear(8, n_classes))

    def two_groups(model):
        return [list(model[0].parameters()), [*model[2].parameters(), *model[4].parameters()]]

    Learner(net(3), Images(3), cross_entropy, splitter=two_groups).save(tmp_path / "a.pt")
    new = Learner(net(5), Images(5), cross_entropy, splitter=two_groups)
    hidden = new.model[2].weight.detach().clone()
    new.load(tmp_path / "a.pt", with_head=False)
    assert torch.equal(new.model[2].weight, hidden)  # as made: a zero hidden layer would pass no gradient
    assert not new.model[4].weight.any() and not new.model[4].bias.any()


def test_load_without_head_names_the_first_body_tensor_that_differs(tmp_path):
    old = Learner(tiny_resnet(3), Images(3), cross_entropy)
    old.save(tmp_path / "a.pt")
    torch.manual_seed(0)
    other = Learner(resnet(n_classes=3, width=8, depth=2), Images(3), cross_entropy)
    with pytest.raises(CheckpointError, match=r"a.pt does not fit this model's body: '0.0.weight' has shape "
                                              r"\(4, 3, 3, 3\) there and \(8, 3, 3, 3\) here"):
        other.load(tmp_path / "a.pt", with_head=False)


def test_fit_rejects_callbacks_in_the_lr_place():
    learn = Learner(tiny_resnet(), Images(), cross_entropy)
    with pytest.raises(TypeError, match="pass callbacks as cbs"):
        learn.fit(1, None, 0.1)
    assert math.isclose(learn.lr, 0.1)
