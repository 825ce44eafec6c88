"""Layers against torch.nn / torch.nn.functional (forward and gradients), init statistics, input errors."""

import math

import pytest
import torch
import torch.nn.functional as F

from groundup.nn.layers import AdaptivePool, BatchNorm, ConvLayer, Flatten, Linear, ReLU, Sequential


def grads_of(*tensors):
    return [t.grad.clone() for t in tensors]


@pytest.mark.parametrize("stride, bias, act", [(2, True, True), (1, False, True), (2, True, False), (1, True, False)])
def test_conv_layer_forward_and_backward_match_torch(stride, bias, act):
    torch.manual_seed(0)
    layer = ConvLayer(3, 8, stride=stride, bias=bias, act=act)
    ref = torch.nn.Conv2d(3, 8, 3, stride=stride, padding=1, bias=bias)
    with torch.no_grad():
        ref.weight.copy_(layer.weight)
        if bias:
            ref.bias.copy_(torch.randn(8))
            layer.bias.copy_(ref.bias)
    x = torch.randn(4, 3, 11, 9)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = layer(x1)
    expected = ref(x2).relu() if act else ref(x2)
    torch.testing.assert_close(out, expected)
    assert out.shape == (4, 8, math.ceil(11 / stride), math.ceil(9 / stride))
    g = torch.randn_like(out)
    out.backward(g)
    expected.backward(g)
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(layer.weight.grad, ref.weight.grad)
    if bias:
        torch.testing.assert_close(layer.bias.grad, ref.bias.grad)


def test_conv_layer_1x1_kernel_matches_torch():
    torch.manual_seed(0)
    layer = ConvLayer(4, 6, stride=2, act=False, kernel_size=1)
    x = torch.randn(2, 4, 7, 7)
    torch.testing.assert_close(layer(x), F.conv2d(x, layer.weight, layer.bias, stride=2))


def test_conv_layer_keeps_the_size_by_default_as_the_walkthrough():
    x = torch.randn(2, 3, 64, 64)
    layer = ConvLayer(3, 4)
    assert layer.stride == 1 and layer(x).shape == (2, 4, 64, 64)
    assert ConvLayer(3, 4, stride=2)(x).shape == (2, 4, 32, 32)
    assert len(layer.parameters()) == 2  # weight and bias, as the walkthrough's len(l.parameters())


@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 7)])
def test_linear_forward_and_backward_match_torch(shape):
    torch.manual_seed(0)
    layer, ref = Linear(7, 4), torch.nn.Linear(7, 4)
    with torch.no_grad():
        ref.weight.copy_(layer.weight)
        ref.bias.copy_(layer.bias)
    x = torch.randn(*shape)
    out, expected = layer(x), ref(x)
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    expected.sum().backward()
    torch.testing.assert_close(grads_of(layer.weight, layer.bias), grads_of(ref.weight, ref.bias))


def test_linear_without_bias():
    layer = Linear(3, 2, bias=False)
    assert layer.bias is None and len(list(layer.parameters())) == 1
    x = torch.randn(4, 3)
    torch.testing.assert_close(layer(x), x @ layer.weight.T)


@pytest.mark.parametrize("shape", [(8, 5, 6, 6), (16, 5)])
def test_batchnorm_training_matches_torch_and_updates_running_stats(shape):
    torch.manual_seed(0)
    bn = BatchNorm(5, momentum=0.2)
    ref = (torch.nn.BatchNorm2d if len(shape) == 4 else torch.nn.BatchNorm1d)(5, momentum=0.2)
    with torch.no_grad():
        for p in (bn.weight, bn.bias):
            p.copy_(torch.randn(5))
        ref.weight.copy_(bn.weight)
        ref.bias.copy_(bn.bias)
    for _ in range(3):
        x = torch.randn(*shape) * 3 + 1
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        out, expected = bn(x1), ref(x2)
        torch.testing.assert_close(out, expected)
        g = torch.randn_like(out)
        out.backward(g)
        expected.backward(g)
        torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(grads_of(bn.weight, bn.bias), grads_of(ref.weight, ref.bias))
    torch.testing.assert_close(bn.running_mean, ref.running_mean)
    torch.testing.assert_close(bn.running_var, ref.running_var)


def test_batchnorm_eval_uses_running_stats_and_leaves_them_alone():
    torch.manual_seed(0)
    bn = BatchNorm(3)
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([1.0, -2.0, 0.5]))
        bn.running_var.copy_(torch.tensor([4.0, 0.25, 1.0]))
    before = bn.running_mean.clone()
    bn.eval()
    x = torch.randn(2, 3, 4, 4)
    expected = (x - bn.running_mean[:, None, None]) / (bn.running_var[:, None, None] + bn.eps).sqrt()
    torch.testing.assert_close(bn(x), expected)
    torch.testing.assert_close(bn.running_mean, before)


def test_adaptive_pool_forward_and_backward_match_torch():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 5, 7)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, expected = AdaptivePool()(x1), F.adaptive_avg_pool2d(x2, 1).flatten(1)
    torch.testing.assert_close(out, expected)
    out.backward(torch.ones_like(out) * 2)
    expected.backward(torch.ones_like(expected) * 2)
    torch.testing.assert_close(x1.grad, x2.grad)


def test_flatten_and_relu():
    x = torch.randn(2, 3, 4)
    assert Flatten()(x).shape == (2, 12)
    torch.testing.assert_close(ReLU()(x), x.clamp_min(0))


# -- init --------------------------------------------------------------------------------------

def test_conv_init_is_kaiming_with_relu_and_xavier_without():
    torch.manual_seed(0)
    fan_in, fan_out = 64 * 9, 128 * 9
    kaiming = ConvLayer(64, 128).weight.std().item()
    xavier = ConvLayer(64, 128, act=False).weight.std().item()
    assert kaiming == pytest.approx(math.sqrt(2 / fan_in), rel=0.03)
    assert xavier == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.03)
    assert torch.count_nonzero(ConvLayer(3, 8).bias) == 0


def test_kaiming_init_keeps_relu_activations_from_shrinking():
    torch.manual_seed(0)
    x = torch.randn(16, 32, 16, 16)
    y = x
    for _ in range(4):
        y = ConvLayer(32, 32, stride=1)(y)
    # Second moment of ReLU outputs stays ~1 layer after layer (it would halve each layer with 1/fan_in).
    assert 0.5 < y.pow(2).mean().item() < 2.0


def test_linear_init_is_xavier_normal_with_zero_bias_as_the_walkthrough():
    layer = Linear(300, 200)
    assert layer.weight.std().item() == pytest.approx(math.sqrt(2 / (300 + 200)), rel=0.05)
    assert abs(layer.weight.mean().item()) < 0.01 and torch.equal(layer.bias, torch.zeros(200))


# -- Sequential --------------------------------------------------------------------------------

def test_sequential_indexes_iterates_and_names_children_by_position():
    a, b, c = Linear(4, 3), ReLU(), Linear(3, 2)
    model = Sequential(a, b, c)
    assert len(model) == 3 and model[0] is a and model[-1] is c and list(model) == [a, b, c]
    assert isinstance(model[1:], Sequential) and list(model[1:]) == [b, c]
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    x = torch.randn(5, 4)
    torch.testing.assert_close(model(x), c(b(a(x))))


def test_sequential_explains_a_list_argument():
    with pytest.raises(TypeError, match=r"use Sequential\(\*layers\)"):
        Sequential([Linear(1, 1)])


# -- errors ------------------------------------------------------------------------------------

def test_conv_says_channels_last_input_needs_permute():
    with pytest.raises(ValueError, match=r"\(128, 64, 64, 3\), which looks channels-last.*permute\(0, 3, 1, 2\)"):
        ConvLayer(3, 16)(torch.randn(128, 64, 64, 3))


def test_conv_names_wrong_channel_count():
    with pytest.raises(ValueError, match=r"ConvLayer\(3, 16\) expects 3 channels in dim 1.*got shape \(8, 1, 28, 28\)"):
        ConvLayer(3, 16)(torch.randn(8, 1, 28, 28))


@pytest.mark.parametrize("shape, hint", [((64, 64, 3), r"permute\(2, 0, 1\).unsqueeze\(0\)"),
                                         ((3, 64, 64), r"unsqueeze\(0\)"),
                                         ((8, 3), "")])
def test_conv_names_wrong_number_of_dims(shape, hint):
    msg = r"ConvLayer\(3, 16\) expects a 4-D batch \(N, 3, H, W\), got shape " + re_shape(shape) + ".*" + hint
    with pytest.raises(ValueError, match=msg):
        ConvLayer(3, 16)(torch.randn(*shape))


def re_shape(shape):
    return r"\(" + ", ".join(map(str, shape)) + r"\)"


def test_conv_says_integer_images_need_converting():
    with pytest.raises(ValueError, match=r"dtype torch.uint8.*x.float\(\) / 255"):
        ConvLayer(3, 16)(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))


def test_linear_says_to_flatten_first():
    with pytest.raises(ValueError, match=r"Linear\(784, 10\) got input of shape \(64, 28, 28\); flatten it to \(64, 784\)"):
        Linear(784, 10)(torch.randn(64, 28, 28))


def test_linear_names_wrong_feature_count():
    with pytest.raises(ValueError, match=r"Linear\(128, 10\) expects input of shape \(N, 128\), got shape \(4, 64\)"):
        Linear(128, 10)(torch.randn(4, 64))


def test_batchnorm_says_channels_last_and_wrong_channels():
    with pytest.raises(ValueError, match="channels-last"):
        BatchNorm(3)(torch.randn(4, 8, 8, 3))
    with pytest.raises(ValueError, match=r"BatchNorm\(16\) expects 16 channels.*got shape \(4, 8\)"):
        BatchNorm(16)(torch.randn(4, 8))


def test_adaptive_pool_names_wrong_dims():
    with pytest.raises(ValueError, match=r"AdaptivePool expects a 4-D batch.*got shape \(2, 3\)"):
        AdaptivePool()(torch.randn(2, 3))


@pytest.mark.parametrize("make, match", [
    (lambda: ConvLayer(0, 16), r"ConvLayer\(0, 16\): ni must be a positive integer, got 0"),
    (lambda: ConvLayer(3, 16, stride=1.5), "stride must be a positive integer, got 1.5"),
    (lambda: ConvLayer(3, 16, kernel_size=2), "kernel_size must be odd"),
    (lambda: Linear(10, -1), r"Linear\(10, -1\): nf must be a positive int"),
    (lambda: BatchNorm(4, eps=0), "eps must be a finite number > 0"),
    (lambda: BatchNorm(4, momentum=2), r"momentum must be in \[0, 1\]"),
])
def test_layer_constructors_reject_bad_sizes(make, match):
    with pytest.raises(ValueError, match=match):
        make()
