"""SGD and Adam against torch.optim (trajectories), param groups, checkpoints and argument checks."""

import io

import pytest
import torch

from groundup.nn.layers import Linear, ReLU, Sequential
from groundup.optim import SGD, Adam


def make_model(seed=0):
    torch.manual_seed(seed)
    return Sequential(Linear(6, 16), ReLU(), Linear(16, 3))


def train_steps(model, opt, n_steps, seed=1, schedule=None):
    gen = torch.Generator().manual_seed(seed)
    for i in range(n_steps):
        if schedule is not None:
            schedule(opt, i)
        x, y = torch.randn(32, 6, generator=gen), torch.randint(0, 3, (32,), generator=gen)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()


def twin_models():
    ours, ref = make_model(), make_model()
    return ours, ref, list(ours.parameters()), list(ref.parameters())


def assert_same_params(ours, ref):
    for p, q in zip(ours, ref, strict=True):
        torch.testing.assert_close(p, q)


@pytest.mark.parametrize("lr, wd, momentum", [(0.1, 0.0, 0.0), (0.05, 0.01, 0.0), (0.05, 0.0, 0.9), (0.1, 0.05, 0.8)])
def test_sgd_trajectory_matches_torch(lr, wd, momentum):
    model_a, model_b, a, b = twin_models()
    train_steps(model_a, SGD(a, lr, weight_decay=wd, momentum=momentum), 6)
    train_steps(model_b, torch.optim.SGD(b, lr, weight_decay=wd, momentum=momentum), 6)
    assert_same_params(a, b)


@pytest.mark.parametrize("lr, wd, momentum", [(0.05, 0.0, 0.9), (0.1, 0.05, 0.8)])
def test_nesterov_sgd_trajectory_matches_torch(lr, wd, momentum):
    model_a, model_b, a, b = twin_models()
    train_steps(model_a, SGD(a, lr, weight_decay=wd, momentum=momentum, nesterov=True), 6)
    train_steps(model_b, torch.optim.SGD(b, lr, weight_decay=wd, momentum=momentum, nesterov=True), 6)
    assert_same_params(a, b)
    model_c, _, c, _ = twin_models()
    train_steps(model_c, SGD(c, lr, weight_decay=wd, momentum=momentum), 6)
    assert any(not torch.allclose(p, q) for p, q in zip(a, c))  # it is not plain momentum


@pytest.mark.parametrize("lr, betas, eps, wd", [(1e-2, (0.9, 0.99), 1e-5, 0.0), (3e-3, (0.8, 0.9), 1e-8, 0.1)])
def test_adam_trajectory_matches_torch_adamw(lr, betas, eps, wd):
    model_a, model_b, a, b = twin_models()
    train_steps(model_a, Adam(a, lr, betas=betas, eps=eps, weight_decay=wd), 6)
    train_steps(model_b, torch.optim.AdamW(b, lr, betas=betas, eps=eps, weight_decay=wd), 6)
    assert_same_params(a, b)


def test_scheduled_hyper_parameters_take_effect_like_torch():
    def schedule(opt, i):
        for group in opt.param_groups:
            group["lr"] = 0.01 * (i + 1)
            group["betas"] = (0.95 - 0.02 * i, 0.99)

    model_a, model_b, a, b = twin_models()
    train_steps(model_a, Adam(a), 6, schedule=schedule)
    train_steps(model_b, torch.optim.AdamW(b, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.0), 6, schedule=schedule)
    assert_same_params(a, b)


def test_param_groups_keep_their_own_hyper_parameters_like_torch():
    model_a, model_b, _, _ = twin_models()
    opt_a = SGD([{"params": model_a[0].parameters(), "lr": 0.5}, {"params": model_a[2].parameters()}], 0.05,
                momentum=0.9)
    opt_b = torch.optim.SGD([{"params": model_b[0].parameters(), "lr": 0.5}, {"params": model_b[2].parameters()}],
                            0.05, momentum=0.9)
    assert [g["lr"] for g in opt_a.param_groups] == [0.5, 0.05]
    train_steps(model_a, opt_a, 5)
    train_steps(model_b, opt_b, 5)
    assert_same_params(model_a.parameters(), model_b.parameters())


def test_lr_property_reads_the_first_group_and_sets_all():
    model = make_model()
    opt = SGD([{"params": model[0].parameters(), "lr": 0.5}, {"params": model[2].parameters()}], 0.1)
    assert opt.lr == 0.5
    opt.lr = 0.01
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.01]
    with pytest.raises(ValueError, match="lr must be a finite number >= 0, got -1"):
        opt.lr = -1


@pytest.mark.parametrize("opt_cls", [SGD, Adam])
def test_lr_property_is_what_the_next_step_uses_in_every_group(opt_cls):
    a, b = torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)
    opt = opt_cls([{"params": [a]}, {"params": [b]}], lr=0.1)
    assert opt.lr == 0.1  # the common lr
    opt.lr *= 2  # the walkthrough's LR finder: read, multiply, write back
    assert opt.lr == pytest.approx(0.2) and [g["lr"] for g in opt.param_groups] == [opt.lr, opt.lr]
    a.grad, b.grad = torch.ones(3), torch.ones(2)
    opt.step()
    # SGD moves by lr * grad; Adam's first step by lr * g / (|g| + eps): both about -0.2 here
    torch.testing.assert_close(torch.cat([a, b]).detach(), torch.full((5,), -0.2), rtol=0, atol=1e-4)


@pytest.mark.parametrize("make_opt", [lambda ps: SGD(ps, 0.05, weight_decay=0.01, momentum=0.9),
                                      lambda ps: Adam(ps, 1e-2, weight_decay=0.1)], ids=["sgd", "adam"])
def test_state_dict_round_trip_resumes_bit_exactly(make_opt):
    uninterrupted = make_model()
    opt = make_opt(uninterrupted.parameters())
    train_steps(uninterrupted, opt, 3, seed=1)
    buf = io.BytesIO()
    torch.save({"model": uninterrupted.state_dict(), "opt": opt.state_dict()}, buf)
    train_steps(uninterrupted, opt, 3, seed=2)

    buf.seek(0)
    checkpoint = torch.load(buf, weights_only=True)
    resumed = make_model(seed=123)
    resumed.load_state_dict(checkpoint["model"])
    opt2 = make_opt(resumed.parameters())
    opt2.load_state_dict(checkpoint["opt"])
    train_steps(resumed, opt2, 3, seed=2)
    for p, q in zip(uninterrupted.parameters(), resumed.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_state_dict_refers_to_parameters_by_index_like_torch():
    model = make_model()
    opt = SGD(model.parameters(), 0.1, momentum=0.9)
    train_steps(model, opt, 1)
    sd = opt.state_dict()
    assert sd["param_groups"] == [{"lr": 0.1, "momentum": 0.9, "weight_decay": 0.0, "nesterov": False, "params": [0, 1, 2, 3]}]
    assert sorted(sd["state"]) == [0, 1, 2, 3] and set(sd["state"][0]) == {"momentum_buffer"}


def test_load_state_dict_rejects_a_different_model():
    opt = SGD(make_model().parameters(), 0.1)
    other = SGD(Linear(2, 2).parameters(), 0.1)
    with pytest.raises(ValueError, match="group 0 has 2 parameters in the state_dict and 4 here"):
        opt.load_state_dict(other.state_dict())


def test_zero_grad_sets_none_and_step_skips_params_without_grads():
    model = make_model()
    opt = SGD(model.parameters(), 0.1, momentum=0.9)
    model[2](torch.randn(4, 16)).sum().backward()  # only the last layer gets gradients
    before = model[0].weight.detach().clone()
    opt.step()
    torch.testing.assert_close(model[0].weight.detach(), before)
    assert model[0].weight not in opt.state
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_step_calls_the_closure_and_returns_its_loss():
    w = torch.ones(2, requires_grad=True)

    def closure():
        loss = (w ** 2).sum()
        loss.backward()
        return loss

    assert SGD([w], 0.1).step(closure).item() == 2.0
    torch.testing.assert_close(w.detach(), torch.full((2,), 0.8))


@pytest.mark.parametrize("make, match", [
    (lambda ps: SGD(ps, lr=-0.1), "SGD: lr must be a finite number >= 0, got -0.1"),
    (lambda ps: SGD(ps, lr=float("nan")), "lr must be a finite number >= 0, got nan"),
    (lambda ps: SGD(ps, lr=0.1, momentum=1.0), r"momentum must be a finite number in \[0, 1\), got 1.0"),
    (lambda ps: SGD(ps, lr=0.1, nesterov=True), r"SGD: nesterov=True needs a momentum > 0"),
    (lambda ps: SGD(ps, lr=0.1, weight_decay=-1e-4), r"SGD: weight_decay must be a finite number >= 0, got -0.0001"),
    (lambda ps: Adam(ps, betas=(0.9, 1.0)), r"Adam: betas\[1\] must be a finite number in \[0, 1\), got 1.0"),
    (lambda ps: Adam(ps, betas=(-0.1, 0.99)), r"betas\[0\] must be"),
    (lambda ps: Adam(ps, betas=0.9), r"betas must be a pair"),
    (lambda ps: Adam(ps, eps=0.0), r"eps must be a finite number > 0, got 0.0"),
    (lambda ps: Adam(ps, lr=float("inf")), r"lr must be a finite number >= 0, got inf"),
])
def test_bad_hyper_parameters_name_the_argument_and_value(make, match):
    with pytest.raises(ValueError, match=match):
        make(make_model().parameters())


def test_bad_parameter_lists_get_a_clear_error():
    with pytest.raises(ValueError, match="SGD got an empty parameter list"):
        SGD([], 0.1)
    with pytest.raises(TypeError, match=r"got a single tensor; wrap it in a list"):
        SGD(torch.zeros(2, requires_grad=True), 0.1)
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="appear twice"):
        Adam([{"params": [w]}, {"params": [w]}])
    with pytest.raises(TypeError, match="got a set"):
        SGD({w}, 0.1)


@pytest.mark.parametrize("opt_cls", [SGD, Adam])
def test_wd_is_the_walkthroughs_spelling_of_weight_decay(opt_cls, recwarn):
    opt = opt_cls(make_model().parameters(), lr=0.1, wd=0.25)
    assert opt.param_groups[0]["weight_decay"] == 0.25 and not recwarn.list


def test_decay_groups_leave_norms_and_biases_undecayed_and_match_torch_adamw_groups():
    from groundup.nn.models import resnet
    from groundup.optim import decay_groups

    model = resnet(width=4, depth=2)
    groups = decay_groups(model.parameters(), 0.05)
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
    assert all(p.ndim > 1 for p in groups[0]["params"]) and all(p.ndim == 1 for p in groups[1]["params"])
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(model.parameters()))
    torch_groups = [{"params": [p.detach().clone().requires_grad_() for p in g["params"]],
                     "weight_decay": g["weight_decay"]} for g in groups]
    ours, theirs = Adam(groups, lr=0.1), torch.optim.AdamW(torch_groups, lr=0.1, betas=(0.9, 0.99), eps=1e-5)
    for _ in range(3):
        for g, tg in zip(groups, torch_groups):
            for p, tp in zip(g["params"], tg["params"]):
                p.grad = torch.ones_like(p)
                tp.grad = torch.ones_like(tp)
        ours.step()
        theirs.step()
    for g, tg in zip(groups, torch_groups):
        for p, tp in zip(g["params"], tg["params"]):
            torch.testing.assert_close(p.detach(), tp.detach())


def test_decay_groups_drop_an_empty_group():
    from groundup.optim import decay_groups

    w = torch.zeros(3, 3, requires_grad=True)
    assert decay_groups([w], 0.1) == [{"params": [w], "weight_decay": 0.1}]
