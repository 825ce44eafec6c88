"""Parameter, Module registration, modes, devices/dtypes, state dicts, repr and forward hooks."""

import copy
import io

import pytest
import torch

from groundup.nn.layers import BatchNorm, ConvLayer, Linear, ReLU, Sequential
from groundup.nn.module import Hooks, IncompatibleKeys, Module, Parameter, StateDictError


class TwoLayer(Module):
    def __init__(self):
        super().__init__()
        self.hidden = Linear(4, 8)
        self.out = Linear(8, 2)

    def forward(self, x):
        return self.out(self.hidden(x).relu())


class WithLayerTuple(Module):
    """The walkthrough's pattern: modules kept in a tuple and registered explicitly."""

    def __init__(self):
        super().__init__()
        self.layers = (Linear(3, 5), ReLU(), Linear(5, 1))
        self.register_modules(*self.layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


# -- Parameter -------------------------------------------------------------------------------------

def test_parameter_requires_grad_and_prints_like_a_tensor():
    p = Parameter(torch.zeros(2, 3))
    assert isinstance(p, torch.Tensor) and p.requires_grad
    assert repr(p).startswith("Parameter containing:\ntensor(")
    assert not Parameter(torch.zeros(1), requires_grad=False).requires_grad


def test_results_of_ops_on_a_parameter_are_plain_tensors():
    p = Parameter(torch.ones(3))
    assert type(p * 2) is torch.Tensor
    assert type(p.detach()) is torch.Tensor


def test_parameter_rejects_non_tensors():
    with pytest.raises(TypeError, match="expects a torch.Tensor, got list"):
        Parameter([1.0, 2.0])


def test_parameter_survives_deepcopy_and_pickle():
    p = Parameter(torch.randn(3))
    q = copy.deepcopy(p)
    buf = io.BytesIO()
    torch.save(p, buf)
    buf.seek(0)
    r = torch.load(buf, weights_only=False)
    for other in (q, r):
        assert type(other) is Parameter and other.requires_grad
        torch.testing.assert_close(other.detach(), p.detach())


# -- registration ----------------------------------------------------------------------------------

def test_module_registers_parameters_and_children_by_type():
    model = TwoLayer()
    names = [n for n, _ in model.named_parameters()]
    assert names == ["hidden.weight", "hidden.bias", "out.weight", "out.bias"]
    assert [n for n, _ in model.named_children()] == ["hidden", "out"]
    assert len(list(model.modules())) == 3


def test_parameters_and_children_are_plain_instance_attributes():
    # The hot path reads self.weight from __dict__: no __getattr__ fallback exists.
    layer = Linear(2, 3)
    assert "weight" in layer.__dict__ and layer.__dict__["weight"] is layer._parameters["weight"]
    assert not hasattr(Module, "__getattr__")


def test_register_modules_names_children_by_position():
    model = WithLayerTuple()
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert model(torch.randn(4, 3)).shape == (4, 1)


def test_nested_state_dict_keys_read_like_torch():
    class Net(Module):
        def __init__(self):
            super().__init__()
            self.layers = Sequential(Linear(2, 3), ReLU(), Linear(3, 1))

    assert list(Net().state_dict()) == ["layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"]


@pytest.mark.parametrize("value", [Parameter(torch.zeros(1)), Linear(1, 1)], ids=["parameter", "module"])
def test_assigning_before_init_says_to_call_super_init(value):
    class Forgetful(Module):
        def __init__(self):
            self.thing = value

    with pytest.raises(AttributeError, match=r"call super\(\).__init__\(\) at the top of Forgetful.__init__"):
        Forgetful()


def test_assigning_a_plain_tensor_to_a_parameter_name_says_how_to_update():
    layer = Linear(2, 2)
    with pytest.raises(TypeError, match=r"weight is a Parameter.*Parameter\(t\).*copy_"):
        layer.weight = torch.zeros(2, 2)


def test_reassigning_or_deleting_unregisters():
    model = TwoLayer()
    model.out = None
    assert "out" not in dict(model.named_children())
    del model.hidden
    assert list(model.parameters()) == []


def test_shared_parameters_are_listed_once():
    a = Linear(3, 3)
    model = Sequential(a, a)
    assert len(list(model.parameters())) == 2


def test_parameters_is_a_list_counted_with_len_at_any_depth():
    class Mixed(Module):  # a groundup child holding a torch.nn child, beside a torch.nn child
        def __init__(self):
            super().__init__()
            self.inner = Sequential(Linear(2, 3), torch.nn.Linear(3, 3))
            self.theirs = torch.nn.Sequential(torch.nn.Linear(3, 1))

    model = Mixed()
    params = model.parameters()
    assert isinstance(params, list) and len(params) == 6
    assert [p.shape for p in params] == [p.shape for _, p in model.named_parameters()]
    assert len(TwoLayer().parameters()) == 4 and len(model.inner.parameters()) == 4


def test_module_without_forward_says_to_define_it():
    class Empty(Module):
        pass

    with pytest.raises(NotImplementedError, match="Empty has no forward"):
        Empty()(torch.zeros(1))


def test_torch_modules_can_be_children():
    class Mixed(Module):
        def __init__(self):
            super().__init__()
            self.ours = Linear(2, 3)
            self.theirs = torch.nn.Linear(3, 1)
            self.drop = torch.nn.Dropout(0.5)

        def forward(self, x):
            return self.theirs(self.drop(self.ours(x)))

    model = Mixed()
    assert [n for n, _ in model.named_parameters()] == ["ours.weight", "ours.bias", "theirs.weight", "theirs.bias"]
    model.eval()
    assert not model.drop.training
    model.to(torch.float64)
    assert model.theirs.weight.dtype == torch.float64
    assert model(torch.randn(4, 2, dtype=torch.float64)).shape == (4, 1)


# -- modes, devices, grads -------------------------------------------------------------------------

def test_train_and_eval_reach_every_child():
    model = Sequential(TwoLayer(), Sequential(BatchNorm(2)))
    assert model.eval() is model
    assert all(not m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_train_rejects_non_bool_modes():
    with pytest.raises(TypeError, match="expects a bool, got 'eval'"):
        Linear(1, 1).train("eval")


def test_to_dtype_keeps_the_same_parameter_objects():
    model = Sequential(ConvLayer(3, 4), BatchNorm(4))
    before = list(model.parameters())
    assert model.to(torch.float64) is model
    after = list(model.parameters())
    assert all(a is b for a, b in zip(before, after))
    assert all(type(p) is Parameter and p.dtype == torch.float64 and p.requires_grad for p in after)
    assert all(b.dtype == torch.float64 for b in model.buffers())
    assert model[1].running_mean is dict(model[1].named_buffers())["running_mean"]
    out = model(torch.randn(2, 3, 8, 8, dtype=torch.float64))
    assert out.dtype == torch.float64


def test_to_rejects_integer_dtypes_and_unknown_arguments():
    with pytest.raises(TypeError, match="floating point or complex"):
        Linear(1, 1).to(torch.int64)
    with pytest.raises(TypeError, match="expects a device"):
        Linear(1, 1).to(3.5)


def test_zero_grad_sets_grads_to_none():
    model = TwoLayer()
    model(torch.randn(5, 4)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_requires_grad_and_apply():
    model = TwoLayer().requires_grad_(False)
    assert not any(p.requires_grad for p in model.parameters())
    seen = []
    model.apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["TwoLayer", "Linear", "Linear"]


# -- state dicts -----------------------------------------------------------------------------------

def test_state_dict_holds_plain_tensors_and_buffers():
    model = Sequential(ConvLayer(3, 4), BatchNorm(4))
    sd = model.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var"]
    assert all(type(v) is torch.Tensor and not v.requires_grad for v in sd.values())
    assert [n for n, _ in model.named_buffers()] == ["1.running_mean", "1.running_var"]


def test_non_persistent_buffers_are_not_saved():
    layer = Linear(2, 2)
    layer.register_buffer("scratch", torch.zeros(2), persistent=False)
    assert "scratch" not in layer.state_dict()
    assert any(b is layer.scratch for b in layer.buffers())


def test_state_dict_round_trips_through_torch_save_weights_only():
    torch.manual_seed(0)
    source, target = Sequential(ConvLayer(3, 4), BatchNorm(4)), Sequential(ConvLayer(3, 4), BatchNorm(4))
    source(torch.randn(2, 3, 8, 8))  # moves BatchNorm's running stats away from their init
    buf = io.BytesIO()
    torch.save(source.state_dict(), buf)
    buf.seek(0)
    result = target.load_state_dict(torch.load(buf, weights_only=True))
    assert result == IncompatibleKeys([], [])
    for (k, a), b in zip(source.state_dict().items(), target.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(source.eval()(x), target.eval()(x))


def test_strict_load_names_missing_and_unexpected_keys():
    sd = TwoLayer().state_dict()
    sd["extra.weight"] = sd.pop("out.bias")
    with pytest.raises(StateDictError, match=r"missing keys.*'out.bias'.*unexpected keys.*'extra.weight'"):
        TwoLayer().load_state_dict(sd)
    with pytest.raises(RuntimeError):  # catchable like torch's error too
        TwoLayer().load_state_dict(sd)


def test_non_strict_load_returns_the_keys_it_skipped():
    sd = TwoLayer().state_dict()
    sd["extra"] = sd.pop("out.bias")
    assert TwoLayer().load_state_dict(sd, strict=False) == IncompatibleKeys(["out.bias"], ["extra"])


def test_load_names_shape_mismatches():
    sd = TwoLayer().state_dict()
    sd["out.weight"] = torch.zeros(3, 8)
    with pytest.raises(ValueError, match=r"out.weight: checkpoint has \(3, 8\), model has \(2, 8\)"):
        TwoLayer().load_state_dict(sd, strict=False)


def test_deepcopy_keeps_registration_and_copies_values():
    model = TwoLayer()
    clone = copy.deepcopy(model)
    assert clone.hidden.weight is dict(clone.named_parameters())["hidden.weight"]
    assert clone.hidden.weight is not model.hidden.weight
    torch.testing.assert_close(clone.hidden.weight, model.hidden.weight)


def test_repr_shows_the_tree_and_parameter_counts():
    text = repr(Sequential(ConvLayer(3, 16, stride=2), Linear(16, 10)))
    assert text.splitlines()[0] == "Sequential(  # 618 parameters"
    assert "(0): ConvLayer(3, 16, stride=2)  # 448 parameters" in text
    assert "(1): Linear(16, 10)  # 170 parameters" in text


# -- hooks -----------------------------------------------------------------------------------------

def test_forward_hook_gets_module_inputs_and_output():
    layer, x = Linear(3, 2), torch.randn(4, 3)
    seen = []
    layer.register_forward_hook(lambda m, inputs, out: seen.append((m, inputs, out)))
    out = layer(x)
    (m, inputs, hooked_out), = seen
    assert m is layer and inputs[0] is x and hooked_out is out


def test_several_hooks_run_in_registration_order():
    layer, calls = ReLU(), []
    for i in range(3):
        layer.register_forward_hook(lambda m, inp, out, i=i: calls.append(i))
    layer(torch.zeros(1))
    assert calls == [0, 1, 2]


def test_hook_handle_removes_and_works_as_context_manager():
    layer, calls = ReLU(), []
    handle = layer.register_forward_hook(lambda *a: calls.append("a"))
    with layer.register_forward_hook(lambda *a: calls.append("b")):
        layer(torch.zeros(1))
    handle.remove()
    handle.remove()  # removing twice is harmless
    layer(torch.zeros(1))
    assert calls == ["a", "b"] and not layer._forward_hooks


def test_hook_returning_a_value_replaces_the_output_like_torch():
    layer = ReLU()
    layer.register_forward_hook(lambda m, inp, out: out + 1)
    torch.testing.assert_close(layer(torch.zeros(2)), torch.ones(2))


@pytest.mark.parametrize("make", [lambda: Sequential(Linear(3, 4), ReLU(), Linear(4, 2)),
                                  lambda: torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(),
                                                              torch.nn.Linear(4, 2))],
                         ids=["groundup", "torch"])
def test_hooks_removes_every_hook_when_the_block_ends(make):
    model, shapes = make(), []

    def record(module, inputs, out):
        shapes.append(tuple(out.shape))

    with pytest.raises(RuntimeError, match="boom"), Hooks(model, record) as hooks:
        assert len(hooks) == 3
        model(torch.randn(5, 3))
        raise RuntimeError("boom")  # hooks go away even when the block fails
    model(torch.randn(5, 3))
    assert shapes == [(5, 4), (5, 4), (5, 2)]


def test_hook_slot_calls_output_then_inputs_after_each_forward():
    layer, x, seen = Linear(3, 2), torch.randn(4, 3), []
    layer.hook = lambda outp, inp: seen.append((outp, inp))
    out = layer(x)
    layer(x)
    assert len(seen) == 2 and seen[0][0] is out and seen[0][1][0] is x
    assert len(layer._forward_hooks) == 1  # it is a registered forward hook, not a stray attribute


def test_hook_slot_holds_one_function_and_none_or_del_removes_it():
    layer, calls = ReLU(), []
    first, second = (lambda o, i: calls.append("first")), (lambda o, i: calls.append("second"))
    assert layer.hook is None
    layer.hook = first
    layer.hook = second  # replaces, does not add
    assert layer.hook is second
    layer(torch.zeros(1))
    layer.hook = None
    layer(torch.zeros(1))
    layer.hook = first
    del layer.hook
    layer(torch.zeros(1))
    assert calls == ["second"] and layer.hook is None and not layer._forward_hooks


def test_hook_slot_ignores_the_return_value_and_keeps_other_hooks():
    layer, calls = ReLU(), []
    layer.register_forward_hook(lambda m, inp, out: calls.append("registered"))
    layer.hook = lambda outp, inp: outp + 1  # the walkthrough ignores what a hook returns
    torch.testing.assert_close(layer(torch.zeros(2)), torch.zeros(2))
    layer.hook = None
    layer(torch.zeros(2))
    assert calls == ["registered", "registered"]


def test_hook_slot_survives_deepcopy_on_the_copy_only():
    model, calls = Sequential(Linear(2, 2)), []
    model[0].hook = lambda outp, inp: calls.append(outp.shape)
    clone = copy.deepcopy(model)
    clone[0].hook = None  # removing it from the copy leaves the original's
    clone(torch.zeros(1, 2))
    model(torch.zeros(1, 2))
    assert calls == [(1, 2)]


def test_hook_slot_errors_say_what_to_do():
    with pytest.raises(TypeError, match=r"ReLU.hook must be a function hook\(output, inputs\), or None.*got str"):
        ReLU().hook = "print"

    class Early(Module):
        def __init__(self):
            self.hook = print
            super().__init__()

    with pytest.raises(AttributeError, match=r"Early.hook before Module.__init__\(\) ran; call super"):
        Early()


def test_hooks_explains_a_single_module_argument():
    with pytest.raises(TypeError, match=r"wrap it in a list: Hooks\(\[module\], fn\)"):
        Hooks(Linear(1, 1), print)


def test_parameters_is_a_list_and_next_works_as_on_torchs_generator():
    from groundup.nn.models import simple_cnn

    model = simple_cnn()
    params = model.parameters()
    assert len(params) == 10 and params[0] is next(model.parameters())
    assert next(params) is params[0] and next(params) is params[1]  # an iterator over itself
    assert list(model.parameters()) == list(model.parameters())  # each call starts afresh


def test_add_module_is_torchs_name_for_register_module():
    from groundup.nn.layers import Linear, Sequential

    model = Sequential(Linear(2, 3))
    model.add_module("head", Linear(3, 1))
    assert model.head is model.get_submodule("head") and "head.weight" in model.state_dict()
