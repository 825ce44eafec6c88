"""GradientClipping: the gradient norm at the step is at most max_norm; smaller gradients are left alone."""

import pytest
import torch
from conftest import Points, groundup_mlp

from groundup.callbacks.core import Callback
from groundup.callbacks.gradient_clipping import GradientClipping
from groundup.learner import Learner
from groundup.losses import cross_entropy


class Norms(Callback):
    order = 20  # after GradientClipping (10)

    def before_fit(self):
        self.norms = []

    def after_backward(self):
        grads = [p.grad for p in self.learn.model.parameters()]
        self.norms.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item())


@pytest.mark.parametrize("max_norm", [0.05, 1e3])
def test_the_norm_at_the_step_is_at_most_max_norm(max_norm):
    norms, clip = Norms(), GradientClipping(max_norm)
    Learner(groundup_mlp(), Points(), cross_entropy, lr=0.1, cbs=[clip, norms]).fit(1)
    unclipped = Norms()
    Learner(groundup_mlp(), Points(), cross_entropy, lr=0.1, cbs=[unclipped]).fit(1)
    assert len(norms.norms) == 6 and max(norms.norms) <= max_norm * (1 + 1e-5)
    if max_norm > max(unclipped.norms):  # nothing to clip: the same training
        assert norms.norms == pytest.approx(unclipped.norms)
    else:
        assert norms.norms[0] == pytest.approx(max_norm, rel=1e-4) and unclipped.norms[0] > max_norm
        assert clip.last_norm.item() > max_norm  # the norm before clipping


def test_max_norm_must_be_positive():
    with pytest.raises(ValueError, match=r"GradientClipping: max_norm must be a finite number > 0, got 0"):
        GradientClipping(0)
