"""Parity: groundup's walkthrough pieces train exactly like plain PyTorch, step by step.

groundup's `simple_cnn`, `cross_entropy`, `SGD` (momentum, weight decay) and `OneCycle` (lr and
momentum cycled) inside the `Learner`, against a torch.nn copy of the same model trained by a
hand-written loop with `torch.nn.functional.cross_entropy`, `torch.optim.SGD` and the 1cycle schedule
written out here: same initial weights, same batches in the same order. If a piece of groundup
learned differently from its torch counterpart, the first step where the losses part names it.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from groundup.callbacks.core import Callback
from groundup.callbacks.schedules import OneCycle
from groundup.learner import Learner
from groundup.losses import cross_entropy
from groundup.nn.models import simple_cnn
from groundup.optim import SGD

N_EPOCHS, BS, MAX_LR, WD = 8, 16, 0.1, 1e-4
MOMS = (0.95, 0.85, 0.95)


def batches(seed: int, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 16, 16, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return [(x[i:i + BS], y[i:i + BS]) for i in range(0, n, BS)]


class Loaders:
    def __init__(self):
        self.train, self.valid = batches(0, 64), batches(1, 32)


class RecordLosses(Callback):
    def before_fit(self):
        self.losses = []

    def after_loss(self):
        if self.learn.training:
            self.losses.append(self.learn.loss.item())


def torch_twin(model) -> nn.Sequential:
    """The walkthrough's CNN as plain torch.nn layers, holding copies of `model`'s weights."""
    convs = [m for m in model.modules() if hasattr(m, "stride") and hasattr(m, "weight")]
    layers = []
    for conv in convs:
        c = nn.Conv2d(conv.weight.shape[1], conv.weight.shape[0], 3, stride=conv.stride, padding=1)
        c.weight.data.copy_(conv.weight.detach())
        c.bias.data.copy_(conv.bias.detach())
        layers += [c, nn.ReLU()]
    linear = list(model.modules())[-1]
    head = nn.Linear(linear.weight.shape[1], linear.weight.shape[0])
    head.weight.data.copy_(linear.weight.detach())
    head.bias.data.copy_(linear.bias.detach())
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)


def one_cycle(pct: float, start: float, peak: float, end: float, pct_start: float = 0.25) -> float:
    """Straight up from `start` to `peak` over the first `pct_start` of training, then straight to `end`."""
    if pct < pct_start:
        return start + (peak - start) * pct / pct_start
    return peak + (end - peak) * (pct - pct_start) / (1 - pct_start)


@pytest.mark.slow  # trains two models step by step: 10-20 s
@pytest.mark.parametrize("momentum, wd", [(0.0, 0.0), (0.9, WD)], ids=["walkthrough", "momentum-wd"])
def test_simple_cnn_sgd_one_cycle_match_torch_step_by_step(momentum, wd):
    """The walkthrough's settings (`Learner`'s default `SGD`: no momentum, no weight decay; OneCycle then
    sets only the lr) and SGD with momentum (cycled by OneCycle) and weight decay."""
    torch.manual_seed(0)
    model = simple_cnn(n_classes=10)
    twin = torch_twin(model)
    dls = Loaders()

    record = RecordLosses()
    opt_func = SGD if momentum == 0 else (lambda params, lr: SGD(params, lr, weight_decay=wd, momentum=momentum))
    learn = Learner(model, dls, cross_entropy, lr=MAX_LR, cbs=[record], opt_func=opt_func)
    learn.fit(N_EPOCHS, cbs=[OneCycle(MAX_LR, moms=MOMS)])

    opt = torch.optim.SGD(twin.parameters(), lr=MAX_LR, momentum=momentum, weight_decay=wd)
    n_steps = N_EPOCHS * len(dls.train)
    expected = []
    for step in range(n_steps):
        xb, yb = dls.train[step % len(dls.train)]
        pct = step / n_steps
        for group in opt.param_groups:
            group["lr"] = one_cycle(pct, MAX_LR / 10, MAX_LR, 0.0)
            if momentum:
                group["momentum"] = one_cycle(pct, MOMS[0], MOMS[1], MOMS[2])
        loss = F.cross_entropy(twin(xb), yb)
        expected.append(loss.item())
        loss.backward()
        opt.step()
        opt.zero_grad()

    assert len(record.losses) == n_steps == 32
    for step, (got, want) in enumerate(zip(record.losses, expected)):
        assert got == pytest.approx(want, rel=1e-4, abs=1e-5), f"the losses part at step {step}: {got} vs {want}"
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-4, atol=1e-5)
