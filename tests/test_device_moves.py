"""When the model moves to another device, everything that trains with it follows (issue 26, point 1).

No GPU here: the model goes to torch's `meta` device, which any CPU machine has (tensors with a shape
and no data; the whole training pass runs on it). On a GPU the same code moves things to `cuda:N`.
"""

import pytest
import torch

from groundup.callbacks.core import Callback, CancelFitException
from groundup.callbacks.setup import SetupLearnerCB
from groundup.callbacks.tracking import TrackResults
from groundup.data.preprocessing import Preprocessing
from groundup.learner import Learner
from groundup.losses import cross_entropy
from groundup.nn.models import simple_cnn
from groundup.optim import SGD, Adam, state_to_param_devices

OPTIMIZERS = {
    "groundup SGD": lambda params, lr: SGD(params, lr, momentum=0.9),
    "groundup Adam": Adam,
    "torch SGD": lambda params, lr: torch.optim.SGD(params, lr, momentum=0.9),
    "torch AdamW": torch.optim.AdamW,
}


class ImageDls:
    """Two training batches and one validation batch of uint8 (N, 8, 8, 3) images, 2 classes."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (16, 8, 8, 3), dtype=torch.uint8, generator=g)
        y = torch.randint(0, 2, (16,), generator=g)
        self.train, self.valid = [(x[:8], y[:8]), (x[8:], y[8:])], [(x[:8], y[:8])]


class WhereIsEverything(Callback):
    """After the first training pass on the new device: note where each piece lives, then stop."""

    order = 40  # before TrackResults (50) turns its sums into numbers (a meta tensor has no value)

    def after_train(self):
        learn = self.learn
        track = learn.get_cb(TrackResults)
        self.opt_state = {f"{i}.{k}": v.device for i, s in enumerate(learn.opt.state.values())
                          for k, v in s.items() if isinstance(v, torch.Tensor)}
        self.n_states = len(learn.opt.state)
        self.params = {p.device for p in learn.model.parameters()}
        self.sums = {track._loss_sum.device, *(m.device for m in track._sums)}
        self.normalize = {device for device, _ in learn.preprocessing.normalize._cache}
        raise CancelFitException


def _learner(opt_func):
    torch.manual_seed(0)
    return Learner(simple_cnn(3, 2), ImageDls(), cross_entropy, lr=0.01, opt_func=opt_func,
                   preprocessing=Preprocessing([0.5] * 3, [0.25] * 3),
                   cbs=[SetupLearnerCB("cpu"), TrackResults(print_table=False)])


def _fit_on_meta(learn) -> WhereIsEverything:
    learn.get_cb(SetupLearnerCB).device = torch.device("meta")  # no CUDA here; meta is another device
    probe = WhereIsEverything()
    learn.fit(1, cbs=[probe])
    return probe


def _assert_all_on_meta(probe, opt_name):
    meta = torch.device("meta")
    assert probe.params == {meta}
    assert probe.n_states == len(list(simple_cnn(3, 2).parameters()))  # every parameter has its state
    # torch.optim keeps a non-capturable optimizer's step counts on the CPU by design; all else moves
    moved = {k: d for k, d in probe.opt_state.items() if not (opt_name.startswith("torch") and k.endswith(".step"))}
    assert moved and set(moved.values()) == {meta}, moved
    assert probe.sums == {meta}  # the metric accumulators live where the batches are
    assert meta in probe.normalize  # the statistics were copied to the batches' device


@pytest.mark.parametrize("opt_name", OPTIMIZERS)
def test_the_optimizer_state_follows_the_model_to_another_device_between_fits(opt_name):
    learn = _learner(OPTIMIZERS[opt_name])
    learn.fit(1)  # the state (momentum, moments) is made on the CPU
    assert {v.device.type for s in learn.opt.state.values() for v in s.values()
            if isinstance(v, torch.Tensor)} == {"cpu"}
    _assert_all_on_meta(_fit_on_meta(learn), opt_name)


@pytest.mark.parametrize("opt_name", OPTIMIZERS)
def test_a_checkpoint_loaded_on_the_cpu_resumes_on_another_device(opt_name, tmp_path):
    """`learn.load` then `fit` (what `groundup train --resume` does): the state is loaded on the CPU."""
    learn = _learner(OPTIMIZERS[opt_name])
    learn.fit(1)
    learn.save(tmp_path / "model.pt")
    resumed = _learner(OPTIMIZERS[opt_name])
    resumed.load(tmp_path / "model.pt")
    assert resumed.opt is not None and resumed.opt.state  # built and loaded while the model is on the CPU
    _assert_all_on_meta(_fit_on_meta(resumed), opt_name)


def test_state_to_param_devices_moves_only_what_is_elsewhere():
    p = torch.nn.Parameter(torch.ones(3))
    opt = SGD([p], lr=0.1, momentum=0.9)
    p.grad = torch.ones(3)
    opt.step()
    assert state_to_param_devices(opt) is False  # nothing elsewhere: nothing copied
    torch.utils.swap_tensors(p, torch.nn.Parameter(p.detach().to("meta")))  # the parameter moves, as in .to()
    assert opt.state[p]["momentum_buffer"].device.type == "cpu"
    assert state_to_param_devices(opt) is True
    assert opt.state[p]["momentum_buffer"].device.type == "meta"
    assert opt.state[p]["momentum_buffer"].shape == p.shape


def test_a_groundup_model_keeps_its_parameter_objects_when_it_moves_to_meta():
    model = simple_cnn(3, 2)
    before = [id(p) for p in model.parameters()]
    model.to("meta")
    assert [id(p) for p in model.parameters()] == before  # an optimizer built before still holds them
    assert {p.device.type for p in model.parameters()} == {"meta"}
