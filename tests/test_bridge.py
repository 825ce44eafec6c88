"""to_torch: a torch.nn.Module view of a groundup model, and the tools that need one.

Export, jit.trace, DistributedDataParallel (one gloo process), torch.func.functional_call, ONNX
(when onnx and onnxscript are installed), and a groundup model nested in a torch.nn.Module.
"""

import copy
import io
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from groundup.nn import Linear, Sequential, TorchBridge, resnet, simple_cnn, to_torch
from groundup.optim import SGD

ARCHS = {"simple_cnn": simple_cnn, "resnet": resnet}


def batch(n=4, size=16):
    torch.manual_seed(1)
    return torch.randn(n, 3, size, size), torch.arange(n) % 10


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_to_torch_shares_every_tensor_under_the_same_state_dict_keys(arch):
    model = ARCHS[arch]()
    bridge = to_torch(model)
    assert isinstance(bridge, nn.Module) and bridge.module is model
    ours, theirs = model.state_dict(), bridge.state_dict()
    assert list(theirs) == list(ours)
    assert all(theirs[k].data_ptr() == ours[k].data_ptr() for k in ours)  # no copies
    assert [n for n, _ in bridge.named_parameters()] == [n for n, _ in model.named_parameters()]
    assert all(p is q for p, q in zip(bridge.parameters(), model.parameters(), strict=True))
    x, _ = batch()
    torch.testing.assert_close(bridge(x), model(x))


def test_training_the_bridge_with_torch_optim_trains_the_model_and_back():
    model = resnet()
    bridge = to_torch(model)
    x, y = batch()
    before = copy.deepcopy(model.state_dict())
    opt = torch.optim.SGD(bridge.parameters(), lr=0.1)
    F.cross_entropy(bridge(x), y).backward()
    opt.step()
    after = model.state_dict()
    assert not torch.equal(after["0.0.weight"], before["0.0.weight"])
    assert not torch.equal(after["0.1.running_mean"], before["0.1.running_mean"])  # BatchNorm ran in the bridge
    SGD(list(model.parameters()), lr=0.1).step()  # and a groundup optimizer moves the bridge's tensors
    torch.testing.assert_close(bridge.state_dict()["0.0.weight"], model.state_dict()["0.0.weight"])


def test_train_and_eval_on_either_side_switch_both():
    model = resnet()
    bridge = to_torch(model)
    bridge.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in bridge.modules())
    assert to_torch(model.eval()).training is False  # a bridge starts in the model's mode


def test_moving_or_casting_the_bridge_reaches_the_models_forward():
    model = resnet()
    bridge = to_torch(model)
    bridge.double()  # torch puts new buffer objects into the shared dicts; forward must read them
    bn = model.get_submodule("0.1")
    assert bn.running_mean.dtype == torch.float64 and bn.running_mean is dict(bn.named_buffers())["running_mean"]
    x, _ = batch()
    assert model.eval()(x.double()).dtype == torch.float64
    bridge.to(memory_format=torch.channels_last)
    assert model.get_submodule("0.0").weight.is_contiguous(memory_format=torch.channels_last)


def test_load_state_dict_through_the_bridge_loads_the_model_also_with_assign():
    source, model = resnet(), resnet()
    bridge = to_torch(model)
    bridge.load_state_dict(source.state_dict())
    x, _ = batch()
    torch.testing.assert_close(model.eval()(x), source.eval()(x))
    bridge.load_state_dict(resnet().state_dict(), assign=True)  # new tensor objects in the registries
    conv = model.get_submodule("0.0")
    assert conv.weight is dict(conv.named_parameters())["weight"]
    assert model.get_submodule("0.1").running_var is dict(model.named_buffers())["0.1.running_var"]


def test_functional_call_runs_the_model_with_the_given_tensors_and_then_restores_its_own():
    model = Sequential(Linear(3, 2))
    bridge = to_torch(model)
    x = torch.randn(5, 3)
    zeros = {k: torch.zeros_like(v) for k, v in bridge.state_dict().items()}
    torch.testing.assert_close(torch.func.functional_call(bridge, zeros, (x,)), torch.zeros(5, 2))
    weight = model[0].weight
    assert weight is dict(model.named_parameters())["0.weight"] and weight.abs().sum() > 0
    torch.testing.assert_close(model(x), F.linear(x, weight, model[0].bias))


def test_shared_submodules_get_one_bridge_and_torch_children_stay_themselves():
    shared, torch_child = Linear(2, 2), nn.Linear(2, 2)
    model = Sequential(shared, torch_child, shared)
    bridge = to_torch(model)
    assert bridge.get_submodule("0") is bridge.get_submodule("2")
    assert isinstance(bridge.get_submodule("0"), TorchBridge) and bridge.get_submodule("0").module is shared
    assert bridge.get_submodule("1") is torch_child
    # torch's state_dict lists a shared module under each of its names, groundup's under the first
    assert list(bridge.state_dict()) == list(model.state_dict()) + ["2.weight", "2.bias"]


def test_to_torch_returns_a_torch_module_as_it_is_and_refuses_anything_else():
    torch_model = nn.Linear(2, 2)
    assert to_torch(torch_model) is torch_model
    with pytest.raises(TypeError, match="to_torch expects a groundup Module .*got function"):
        to_torch(simple_cnn)


def test_a_bridged_model_survives_deepcopy_and_pickling():
    model = simple_cnn()
    to_torch(model)
    x, _ = batch()
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    for other in (copy.deepcopy(model), torch.load(buf, weights_only=False)):
        torch.testing.assert_close(other(x), model(x))
        conv = other[0]
        assert conv.weight is dict(conv.named_parameters())["weight"] and conv.weight is not model[0].weight


# -- the tools that need a torch.nn.Module ------------------------------------------------------------

@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_torch_export_through_the_bridge_computes_what_the_model_does(arch):
    model = ARCHS[arch]().eval()
    x, _ = batch()
    program = torch.export.export(to_torch(model), (x,))
    torch.testing.assert_close(program.module()(x), model(x))
    assert set(program.state_dict) == set(model.state_dict())
    weight = next(model.parameters())
    assert type(weight).__name__ == "Parameter" and not isinstance(weight, torch._subclasses.FakeTensor)


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_jit_trace_through_the_bridge_computes_what_the_model_does(arch):
    model = ARCHS[arch]().eval()
    x, _ = batch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated in favour of export
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the input checks are traced as constants
        traced = torch.jit.trace(to_torch(model), x)
    torch.testing.assert_close(traced(x), model(x))
    torch.testing.assert_close(traced(x * 2), model(x * 2))


def test_torch_compile_of_the_bridge_matches_the_model():
    torch._dynamo.reset()
    model = simple_cnn()
    x, _ = batch()
    compiled = torch.compile(to_torch(model), backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), model(x))
    torch._dynamo.reset()


def test_distributed_data_parallel_trains_a_bridged_model_like_one_process(tmp_path):
    if dist.is_initialized():
        pytest.skip("a process group is already running in this test process")
    torch.manual_seed(0)
    model = resnet()
    reference = copy.deepcopy(model)
    x, y = batch()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(to_torch(model))
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        F.cross_entropy(ddp(x), y).backward()
        opt.step()
    finally:
        dist.destroy_process_group()
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    F.cross_entropy(reference(x), y).backward()
    ref_opt.step()
    for (name, got), want in zip(model.state_dict().items(), reference.state_dict().values(), strict=True):
        torch.testing.assert_close(got, want, msg=name)


@pytest.mark.slow  # about 7 s on 2 cores; runs only where the optional extra `onnx` is installed
def test_onnx_export_through_the_bridge_computes_what_the_model_does(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    from onnx.reference import ReferenceEvaluator

    model = resnet().eval()
    x, _ = batch(n=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes about optional torchvision ops
        program = torch.onnx.export(to_torch(model), (x,), dynamo=True, verbose=False)
    program.save(tmp_path / "resnet.onnx")
    graph = onnx.load(tmp_path / "resnet.onnx")
    onnx.checker.check_model(graph)
    assert "6.weight" in {t.name for t in graph.graph.initializer}  # the head, named as in groundup
    out = ReferenceEvaluator(graph).run(None, {graph.graph.input[0].name: x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(out), model(x).detach(), rtol=1e-4, atol=1e-5)


# -- a groundup model inside a torch.nn.Module ----------------------------------------------------------

class TorchNet(nn.Module):
    def __init__(self, wrap: bool):
        super().__init__()
        self.body = to_torch(simple_cnn()) if wrap else simple_cnn()
        self.head = nn.Linear(10, 2)

    def forward(self, x):
        return self.head(self.body(x))


def test_a_groundup_model_assigned_into_a_torch_module_is_refused_with_the_fix():
    with pytest.raises(TypeError, match=r"groundup.nn.layers.Sequential into the torch.nn.Module "
                                        r".*TorchNet as 'body'.*missing from .*parameters\(\).*to_torch"):
        TorchNet(wrap=False)
    for build in (lambda: nn.Sequential(simple_cnn()), lambda: nn.ModuleList([simple_cnn()]),
                  lambda: nn.ModuleDict({"body": simple_cnn()}), lambda: nn.Linear(2, 2).add_module("x", Linear(2, 2))):
        with pytest.raises(TypeError, match="to_torch"):
            build()


def test_a_wrapped_groundup_model_is_a_registered_child_that_trains():
    net = TorchNet(wrap=True)
    assert list(net.state_dict())[:2] == ["body.0.weight", "body.0.bias"]
    assert len(list(net.parameters())) == 12  # simple_cnn's 10 tensors and the head's 2
    x, y = batch()
    first = net.body.module[0].weight.detach().clone()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    F.cross_entropy(net(x), y % 2).backward()
    opt.step()
    assert not torch.equal(net.body.module[0].weight, first)
    net.eval()
    assert not net.body.module.training


def test_groundup_and_torch_modules_still_nest_inside_groundup_modules():
    model = Sequential(simple_cnn(), nn.Linear(10, 2))  # both kinds register in a groundup parent
    assert len(list(model.parameters())) == 12
    assert isinstance(model, Sequential) and not isinstance(model, nn.Module)
