from functools import partial

import pytest
import torch
from conftest import Points, groundup_mlp, torch_mlp
from torch import nn

from groundup.callbacks.mixed_precision import MixedPrecision
from groundup.callbacks.setup import SetupLearnerCB
from groundup.callbacks.tracking import TrackResults
from groundup.learner import Callback, CancelBatchException, CancelFitException, CancelStepException, Learner
from groundup.losses import cross_entropy
from groundup.optim import SGD, Adam


class Probe(Callback):
    """Notes the preds dtype and whether autocast is on at each event of interest."""
    order = 0  # after MixedPrecision (-5)
    def __init__(self):
        self.pred_dtypes, self.autocast_at = set(), {}
    def after_pred(self):
        self.pred_dtypes.add(self.learn.preds.dtype)
        self.autocast_at.setdefault("after_pred", set()).add(torch.is_autocast_enabled("cpu"))
    def after_backward(self):
        self.autocast_at.setdefault("after_backward", set()).add(torch.is_autocast_enabled("cpu"))
    def after_batch(self):
        self.autocast_at.setdefault("after_batch", set()).add(torch.is_autocast_enabled("cpu"))


@pytest.mark.parametrize("model_fn", [groundup_mlp, torch_mlp])
def test_bf16_autocast_is_on_for_the_forward_pass_only(model_fn):
    probe = Probe()
    Learner(model_fn(), Points(n=64), cross_entropy, cbs=[MixedPrecision(), probe]).fit(1)
    assert probe.pred_dtypes == {torch.bfloat16}
    assert probe.autocast_at == {"after_pred": {True}, "after_backward": {False}, "after_batch": {False}}
    assert not torch.is_autocast_enabled("cpu")


@pytest.mark.parametrize("model_fn, opt_func, lr, dtype", [
    (groundup_mlp, SGD, 0.3, torch.bfloat16),
    (torch_mlp, torch.optim.SGD, 0.3, torch.bfloat16),
    (groundup_mlp, Adam, 0.03, torch.float16),          # float16 on CPU: the GradScaler path
    (torch_mlp, torch.optim.AdamW, 0.03, torch.float16),
])
def test_the_loss_goes_down_over_two_epochs(model_fn, opt_func, lr, dtype):
    track, mp = TrackResults(print_table=False), MixedPrecision(dtype=dtype)
    learn = Learner(model_fn(), Points(), cross_entropy, lr=lr, cbs=[mp, track], opt_func=opt_func)
    learn.fit(2)
    h = track.history
    assert h[1]["train_loss"] < h[0]["train_loss"] and h[1]["valid_acc"] > 0.8
    assert learn.grad_scaler is None  # the extension points are back to their defaults after fit
    assert (mp.scaler is not None) == (dtype == torch.float16)


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_autocast_is_off_after_fit_even_after_an_error(exc):
    class Fail(Callback):
        def after_pred(self):
            raise exc
    learn = Learner(groundup_mlp(), Points(n=64), cross_entropy, cbs=[MixedPrecision(torch.float16), Fail()])
    with pytest.raises(type(exc)):
        learn.fit(1)
    assert not torch.is_autocast_enabled("cpu") and learn.grad_scaler is None


def test_autocast_is_left_when_a_batch_is_cancelled_before_the_loss():
    class Skip(Callback):
        def after_pred(self):
            raise CancelBatchException
    probe = Probe()
    Learner(groundup_mlp(), Points(n=64), cross_entropy, cbs=[MixedPrecision(), Skip(), probe]).fit(1)
    assert probe.autocast_at["after_batch"] == {False}


def test_float16_grads_are_unscaled_before_later_callbacks_see_them():
    grads = []
    class GradProbe(Callback):
        order = 0
        def after_backward(self):
            if self.learn.iter == 0 and self.learn.epoch == 0:
                grads.extend(p.grad.clone() for p in self.learn.model.parameters())
    mp = MixedPrecision(torch.float16)
    learn = Learner(torch_mlp(), Points(), cross_entropy, lr=0.1, cbs=[mp, GradProbe()])
    learn.fit(1)
    assert mp.scaler.get_scale() >= 2.0 ** 10  # the loss really was scaled up

    model = torch_mlp()  # the same first batch in float32, no scaling
    xb, yb = Points().train[0]
    cross_entropy(model(xb), yb).backward()
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=2e-2, atol=2e-3)


def test_a_cancelled_step_does_not_break_the_next_unscale():
    class SkipFirstStep(Callback):
        order = 0  # after MixedPrecision has unscaled in after_backward
        def after_backward(self):
            if self.learn.iter == 0:
                raise CancelStepException
    track = TrackResults(print_table=False)
    learn = Learner(groundup_mlp(), Points(), cross_entropy, lr=0.03, opt_func=Adam,
                    cbs=[MixedPrecision(torch.float16), SkipFirstStep(), track])
    learn.fit(2)
    assert track.history[1]["train_loss"] < track.history[0]["train_loss"]


# -- the Learner's grad-scaler extension point, on CPU --------------------------------------------

def scaled_learner(opt_cls):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    learn = Learner(model, Points(n=8), cross_entropy, opt_func=opt_cls)
    learn.opt = opt_cls(list(model.parameters()), lr=0.1)
    learn.grad_scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    return model, learn


@pytest.mark.parametrize("opt_cls", [SGD, partial(torch.optim.SGD, momentum=0.0)])
def test_backward_and_step_through_a_grad_scaler_match_a_plain_step(opt_cls):
    model, learn = scaled_learner(opt_cls)
    ref = nn.Linear(3, 2)
    ref.load_state_dict(model.state_dict())
    x = torch.randn(4, 3)
    learn.loss_grad = model(x).sum()
    learn.backward()
    ref(x).sum().backward()
    torch.testing.assert_close(model.weight.grad, ref.weight.grad)  # unscaled before callbacks see them
    learn.step()
    with torch.no_grad():
        for p in ref.parameters():
            p -= 0.1 * p.grad
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b)
    assert learn.grad_scaler.get_scale() == 1024.0


def test_a_step_with_inf_grads_is_skipped_and_the_scale_backs_off():
    model, learn = scaled_learner(SGD)
    before = [p.detach().clone() for p in model.parameters()]
    learn.loss_grad = model(torch.randn(4, 3)).sum()
    model.weight.register_hook(lambda g: torch.full_like(g, float("inf")))
    learn.backward()
    learn.step()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert learn.grad_scaler.get_scale() == 512.0


def test_a_skipped_step_is_closed_before_the_next_backward():
    model, learn = scaled_learner(SGD)
    ref = nn.Linear(3, 2)
    ref.load_state_dict(model.state_dict())
    for _ in range(2):  # no step between the two: the second unscale must not fail
        learn.opt.zero_grad()
        x = torch.randn(4, 3)
        learn.loss_grad = model(x).sum()
        learn.backward()
    ref(x).sum().backward()
    torch.testing.assert_close(model.weight.grad, ref.weight.grad)  # the second batch's gradient, unscaled once
    learn.step()
    with torch.no_grad():
        for p in ref.parameters():
            p -= 0.1 * p.grad
    for a, b in zip(model.parameters(), ref.parameters()):  # the step is a plain step on that gradient
        torch.testing.assert_close(a, b)
    assert learn.grad_scaler.get_scale() == 1024.0  # neither batch had inf gradients: no back-off


def test_scaler_state_round_trips_through_the_callback():
    mp = MixedPrecision(torch.float16)
    Learner(groundup_mlp(), Points(n=64), cross_entropy, cbs=[mp]).fit(1)
    state = mp.state_dict()
    assert state["scaler"]["scale"] == mp.scaler.get_scale()
    state["scaler"]["scale"] = 256.0
    fresh = MixedPrecision(torch.float16)
    fresh.load_state_dict(state)
    assert fresh.state_dict() == state  # kept until the scaler is made
    Learner(groundup_mlp(), Points(n=64), cross_entropy, cbs=[fresh]).fit(1, cbs=[StopAtStart()])
    assert fresh.scaler.get_scale() == 256.0
    assert MixedPrecision().state_dict() == {}


class StopAtStart(Callback):
    def before_epoch(self):
        raise CancelFitException


@pytest.mark.parametrize("kwargs, match", [
    ({"dtype": torch.float32}, "dtype must be torch.bfloat16, torch.float16 or None"),
    ({"device_type": "tpu"}, "device_type must be 'cpu', 'cuda' or None, got 'tpu'"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MixedPrecision(**kwargs)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_float16_with_grad_scaling_on_cuda():
    probe_dtypes = set()
    class DtypeProbe(Callback):
        def after_pred(self):
            probe_dtypes.add(self.learn.preds.dtype)
    track, mp = TrackResults(print_table=False), MixedPrecision()
    learn = Learner(torch_mlp(), Points(), cross_entropy, lr=0.3,
                    cbs=[SetupLearnerCB(device="cuda"), mp, track, DtypeProbe()], opt_func=torch.optim.SGD)
    learn.fit(2)
    assert probe_dtypes == {torch.float16} and mp.scaler is not None
    assert track.history[1]["train_loss"] < track.history[0]["train_loss"]
    assert not torch.is_autocast_enabled("cuda")
