"""Module's torch.nn-style methods checked against torch.nn itself (the same model built both ways).

Devices and dtypes (`cuda`, `cpu`, `half`, `bfloat16`, `float`, `double`, `to(memory_format=...)`),
`get_submodule`, forward pre-hooks and full backward hooks. (Kept apart from test_module.py, which
covers the chapter's Module: registration, state dicts, forward hooks.)
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from groundup.nn.layers import BatchNorm, ConvLayer, Linear
from groundup.nn.models import resnet
from groundup.nn.module import Module


class Net(Module):
    """Conv, BatchNorm, a head, an integer buffer and a torch.nn child: every kind of tensor `.to` meets."""

    def __init__(self):
        super().__init__()
        self.conv = ConvLayer(3, 4, stride=2, act=False)
        self.bn = BatchNorm(4)
        self.head = Linear(4, 3)
        self.extra = nn.Linear(3, 2)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, x):
        return self.extra(self.head(F.relu(self.bn(self.conv(x))).mean((2, 3))))


class TorchNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 3)
        self.extra = nn.Linear(3, 2)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, x):
        return self.extra(self.head(F.relu(self.bn(self.conv(x))).mean((2, 3))))


def twins():
    """A groundup Net and a torch.nn TorchNet with the same weights (and gradients)."""
    torch.manual_seed(0)
    ours, theirs = Net(), TorchNet()
    theirs.load_state_dict(ours.state_dict(), strict=False)  # torch's BatchNorm also has num_batches_tracked
    x = torch.randn(2, 3, 8, 8)
    for model in (ours, theirs):
        model(x).sum().backward()  # so that gradients get converted too
    return ours, theirs


def layout(model):
    """What `.to` and friends decide: dtype, device and channels-last-ness of every tensor and gradient."""
    tensors = dict(model.state_dict())
    tensors |= {f"{k}.grad": p.grad for k, p in model.named_parameters()}
    return {k: (t.dtype, t.device.type, t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last))
            for k, t in tensors.items() if "num_batches_tracked" not in k}


CONVERSIONS = {
    "half": lambda m: m.half(),
    "bfloat16": lambda m: m.bfloat16(),
    "float": lambda m: m.double().float(),
    "double": lambda m: m.double(),
    "cpu": lambda m: m.cpu(),
    "to(float64)": lambda m: m.to(torch.float64),
    "to(cpu, bfloat16)": lambda m: m.to("cpu", torch.bfloat16),
    "to(dtype=, non_blocking=)": lambda m: m.to(dtype=torch.float64, non_blocking=True),
    "to(channels_last)": lambda m: m.to(memory_format=torch.channels_last),
    "to(float64, channels_last)": lambda m: m.to(torch.float64, memory_format=torch.channels_last),
}


@pytest.mark.parametrize("name", list(CONVERSIONS))
def test_conversions_change_the_same_tensors_as_torch_nn_does(name):
    ours, theirs = twins()
    params_before = list(ours.parameters())
    assert CONVERSIONS[name](ours) is ours
    CONVERSIONS[name](theirs)
    assert layout(ours) == layout(theirs)
    assert all(a is b for a, b in zip(ours.parameters(), params_before, strict=True))  # optimizers keep working
    dtype = ours.head.weight.dtype
    x = torch.randn(2, 3, 8, 8, dtype=dtype)
    if "channels_last" in name:
        x = x.contiguous(memory_format=torch.channels_last)
    tolerance = {"rtol": 1e-2, "atol": 1e-2} if dtype in (torch.float16, torch.bfloat16) else {}
    torch.testing.assert_close(ours(x), theirs(x), **tolerance)


def test_channels_last_model_keeps_its_output_layout_like_torch():
    ours, theirs = twins()
    for model in (ours, theirs):
        model.to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    got, want = ours.conv(x), theirs.conv(x)
    assert got.is_contiguous(memory_format=torch.channels_last) == want.is_contiguous(
        memory_format=torch.channels_last) is True  # the conv keeps NHWC strides
    torch.testing.assert_close(got, want)


def test_to_rejects_a_memory_format_that_is_not_one():
    with pytest.raises(TypeError, match=r"memory_format=.*torch.channels_last, got 'nhwc'"):
        Net().to(memory_format="nhwc")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("call", ["cuda()", "cuda(0)", "to('cuda')"])
def test_cuda_moves_the_same_tensors_as_torch_nn_and_cpu_moves_them_back(call):
    ours, theirs = twins()
    move = {"cuda()": lambda m: m.cuda(), "cuda(0)": lambda m: m.cuda(0), "to('cuda')": lambda m: m.to("cuda")}
    move[call](ours)
    move[call](theirs)
    assert layout(ours) == layout(theirs)
    assert all(t.is_cuda for t in ours.state_dict().values())
    x = torch.randn(2, 3, 8, 8, device="cuda")
    torch.testing.assert_close(ours(x), theirs(x))
    ours.cpu()
    theirs.cpu()
    assert layout(ours) == layout(theirs)


# -- get_submodule -----------------------------------------------------------------------------------

def test_get_submodule_finds_every_named_module_as_torch_does():
    for model in (resnet(), Net(), TorchNet()):
        for name, module in model.named_modules():
            assert model.get_submodule(name) is module
    assert resnet().get_submodule("") is not None
    ours, theirs = Net(), TorchNet()
    assert type(ours.get_submodule("extra")) is type(theirs.get_submodule("extra")) is nn.Linear


def test_get_submodule_names_the_missing_part_like_torchs_attribute_error():
    model = resnet()
    with pytest.raises(AttributeError):
        TorchNet().get_submodule("conv.nope")  # the oracle raises the same type
    with pytest.raises(AttributeError, match=r"no submodule '1.convs.7': 1.convs \(Sequential\) has no child "
                                             r"'7'; its children: 0, 1"):
        model.get_submodule("1.convs.7")
    with pytest.raises(TypeError, match="expects a dotted name"):
        model.get_submodule(1)


# -- forward pre-hooks -------------------------------------------------------------------------------

def linear_twins():
    torch.manual_seed(0)
    ours, theirs = Linear(4, 3), nn.Linear(4, 3)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


@pytest.mark.parametrize("returns", ["nothing", "a tuple", "a tensor"])
def test_forward_pre_hook_sees_and_may_replace_the_inputs_as_in_torch(returns):
    x = torch.randn(2, 4)
    results = {}
    for model in linear_twins():
        calls = []

        def pre_hook(module, inputs, calls=calls):
            calls.append(("pre", module, len(inputs)))
            return {"nothing": None, "a tuple": (inputs[0] * 2,), "a tensor": inputs[0] * 2}[returns]

        model.register_forward_hook(lambda module, inputs, out, calls=calls: calls.append(("forward", inputs[0])))
        handle = model.register_forward_pre_hook(pre_hook)
        out = model(x)
        handle.remove()
        results[type(model).__module__.split(".")[0]] = (out, [c[0] for c in calls], calls[1][1], model(x))
        assert calls[0][1] is model and calls[0][2] == 1
    (out, order, seen, after), (t_out, t_order, t_seen, t_after) = results["groundup"], results["torch"]
    torch.testing.assert_close(out, t_out)
    torch.testing.assert_close(seen, t_seen)  # forward hooks see the replaced inputs, in both
    assert order == t_order == ["pre", "forward"]
    torch.testing.assert_close(after, t_after)  # removed: the second call runs without it


def test_forward_pre_hook_must_be_callable():
    with pytest.raises(TypeError, match=r"hook\(module, inputs\), got int"):
        Linear(2, 2).register_forward_pre_hook(3)


# -- full backward hooks -----------------------------------------------------------------------------

@pytest.mark.parametrize("replace", [False, True])
def test_full_backward_hook_gets_the_gradients_torch_gives(replace):
    x = torch.randn(2, 4, requires_grad=True)
    seen, input_grads = [], []
    for model in linear_twins():
        def hook(module, grad_input, grad_output):
            seen.append((module, grad_input, grad_output))
            return (grad_input[0] * 10,) if replace else None

        handle = model.register_full_backward_hook(hook)
        (model(x) ** 2).sum().backward()
        input_grads.append(x.grad)
        handle.remove()
        model(x).sum().backward()  # removed: no second call
        x.grad = None
    (module, gin, gout), (t_module, t_gin, t_gout) = seen
    assert isinstance(module, Linear) and isinstance(t_module, nn.Linear)
    assert len(gin) == len(t_gin) == 1 and len(gout) == len(t_gout) == 1
    torch.testing.assert_close(gin[0], t_gin[0])
    torch.testing.assert_close(gout[0], t_gout[0])
    torch.testing.assert_close(input_grads[0], input_grads[1])


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")  # torch's own note, for both models
def test_full_backward_hook_on_a_whole_model_sees_none_for_inputs_without_grad():
    ours, theirs = twins()
    x = torch.randn(2, 3, 8, 8)  # no requires_grad: torch passes (None,) as grad_input
    seen = []
    for model in (ours, theirs):
        model.register_full_backward_hook(lambda m, gin, gout: seen.append((gin, gout[0].shape)))
        model(x).sum().backward()
    assert seen[0] == seen[1] == ((None,), torch.Size([2, 2]))
