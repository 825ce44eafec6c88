"""GradientAccumulation: K batches per step equal one batch K times larger (no BatchNorm), to float tolerance."""

import itertools

import pytest
import torch
from conftest import groundup_mlp, torch_mlp

from groundup.callbacks.core import Callback
from groundup.callbacks.gradient_accumulation import GradientAccumulation
from groundup.callbacks.gradient_clipping import GradientClipping
from groundup.learner import Learner
from groundup.losses import cross_entropy
from groundup.optim import SGD, Adam


class Loaders:
    """The same 96 points cut into batches of the given sizes (training), in order."""

    def __init__(self, sizes, seed=0):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(sum(sizes), 2, generator=g)
        y = (x[:, 0] - x[:, 1] > 0).long()
        bounds = torch.tensor([0, *sizes]).cumsum(0).tolist()
        self.train = [(x[a:b], y[a:b]) for a, b in itertools.pairwise(bounds)]
        self.valid = self.train[:1]


class Steps(Callback):
    """Counts optimizer steps."""
    def before_fit(self):
        self.n = 0

    def after_step(self):
        self.n += 1


def fit(make_model, sizes, cbs=(), opt_func=SGD, epochs=2):
    steps = Steps()
    learn = Learner(make_model(), Loaders(sizes), cross_entropy, lr=0.1, opt_func=opt_func, cbs=[steps, *cbs])
    learn.fit(epochs)
    return list(learn.model.parameters()), steps.n


@pytest.mark.parametrize("make_model", [groundup_mlp, torch_mlp])
@pytest.mark.parametrize("opt_func", [SGD, lambda p, lr: SGD(p, lr, momentum=0.9, weight_decay=0.01),
                                      lambda p, lr: Adam(p, lr, weight_decay=0.01)])
def test_k_batches_per_step_equal_one_batch_k_times_larger(make_model, opt_func):
    big, n_big = fit(make_model, [32, 32, 32], opt_func=opt_func)
    small, n_small = fit(make_model, [8] * 12, cbs=[GradientAccumulation(4)], opt_func=opt_func)
    assert n_big == n_small == 6
    for a, b in zip(big, small):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_shorter_last_group_is_averaged_over_its_own_batches():
    big, n_big = fit(groundup_mlp, [32, 16])
    small, n_small = fit(groundup_mlp, [8] * 6, cbs=[GradientAccumulation(4)])  # groups of 4 and 2 batches
    assert n_big == n_small == 4
    for a, b in zip(big, small):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_without_accumulation_the_small_batches_train_differently():  # the test above can tell them apart
    big, _ = fit(groundup_mlp, [32, 32, 32])
    small, _ = fit(groundup_mlp, [8] * 12)
    assert not all(torch.allclose(a, b, atol=1e-4) for a, b in zip(big, small))


class Scaler(Callback):
    """A gradient scaler on the CPU (as MixedPrecision sets one for float16), scale 2**10."""
    def before_fit(self):
        self.learn.grad_scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)


def test_accumulation_with_a_grad_scaler_unscales_the_sum_once():
    plain, _ = fit(groundup_mlp, [8] * 12, cbs=[GradientAccumulation(4)])
    scaled, n = fit(groundup_mlp, [8] * 12, cbs=[GradientAccumulation(4), Scaler()])
    assert n == 6
    for a, b in zip(plain, scaled):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_clipping_sees_the_summed_gradient_of_the_group():
    seen = []

    class Norm(Callback):
        order = 20  # after GradientClipping

        def after_backward(self):
            seen.append(torch.linalg.vector_norm(torch.stack(
                [torch.linalg.vector_norm(p.grad) for p in self.learn.model.parameters()])).item())

    clip = GradientClipping(0.01)
    fit(groundup_mlp, [8] * 12, cbs=[GradientAccumulation(4), clip, Norm()], epochs=1)
    assert len(seen) == 3 and max(seen) == pytest.approx(0.01, rel=1e-4)
    assert clip.last_norm.item() > 0.01


def test_k_must_be_a_positive_integer():
    with pytest.raises(ValueError, match=r"GradientAccumulation: k must be a positive integer, got 0"):
        GradientAccumulation(0)
