"""simple_cnn, ResBlock, resnet and the architecture registry."""

import pytest
import torch

from groundup.nn.layers import BatchNorm
from groundup.nn.models import ARCHS, ResBlock, get_arch, resnet, simple_cnn
from groundup.nn.module import Module


def torch_simple_cnn():
    layers = []
    for ni, nf in [(3, 16), (16, 32), (32, 64), (64, 128)]:
        layers += [torch.nn.Conv2d(ni, nf, 3, stride=2, padding=1), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(128, 10))


def test_simple_cnn_has_ten_parameter_tensors_and_outputs_n_by_10():
    model = simple_cnn()
    assert len(list(model.parameters())) == 10
    assert model(torch.randn(4, 3, 64, 64)).shape == (4, 10)


def test_simple_cnn_computes_what_the_torch_nn_version_does():
    torch.manual_seed(0)
    ours, ref = simple_cnn(), torch_simple_cnn()
    with torch.no_grad():
        for p, q in zip(ours.parameters(), ref.parameters(), strict=True):
            q.copy_(p)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(ours(x), ref(x))


def test_simple_cnn_takes_input_channels_and_classes():
    model = simple_cnn(n_in=1, n_classes=5)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 5)


@pytest.mark.parametrize("kwargs, size", [({}, 64), ({"width": 8, "depth": 2, "blocks_per_stage": 2}, 32),
                                          ({"n_in": 1, "n_classes": 3, "depth": 3}, 28)])
def test_resnet_forward_and_backward_shapes(kwargs, size):
    torch.manual_seed(0)
    model = resnet(**kwargs)
    n_in = kwargs.get("n_in", 3)
    out = model(torch.randn(4, n_in, size, size))
    assert out.shape == (4, kwargs.get("n_classes", 10))
    out.sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name


def test_resnet_is_made_of_groundup_modules_with_batchnorm():
    model = resnet()
    assert all(isinstance(m, Module) for m in model.modules())
    assert sum(isinstance(m, BatchNorm) for m in model.modules()) > 0
    assert len(list(model.buffers())) > 0


def test_resnet_eval_output_does_not_depend_on_the_rest_of_the_batch():
    torch.manual_seed(0)
    model = resnet(width=8, depth=2)
    model(torch.randn(8, 3, 16, 16))  # one training step of running statistics
    model.eval()
    x = torch.randn(4, 3, 16, 16)
    torch.testing.assert_close(model(x)[:1], model(x[:1]))


def test_res_block_starts_as_relu_of_its_shortcut():
    # The last BatchNorm's scale starts at zero, so the conv path adds nothing at init.
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(ResBlock(8, 8)(x), x.relu())
    block = ResBlock(8, 16, stride=2)
    torch.testing.assert_close(block(x), block.shortcut(x).relu())
    assert block(x).shape == (2, 16, 3, 3)


def test_get_arch_builds_registered_models_with_keywords():
    assert set(ARCHS) == {"simple_cnn", "resnet", "resnet_fast", "resnet18", "resnet34"}
    assert get_arch("simple_cnn", n_classes=4)(torch.randn(1, 3, 16, 16)).shape == (1, 4)


def test_get_arch_lists_valid_names_for_unknown_ones():
    with pytest.raises(ValueError, match=r"unknown architecture 'resnt' \(did you mean 'resnet'\?\); valid names: resnet, resnet18, resnet34, resnet_fast, simple_cnn"):
        get_arch("resnt")


def test_model_factories_reject_bad_sizes():
    with pytest.raises(ValueError, match="resnet: depth must be a positive integer, got 0"):
        resnet(depth=0)


@pytest.mark.parametrize("stem_stride, first_stride, side", [(1, 2, 4), (2, 1, 4), (2, 2, 2)])
def test_resnet_stem_and_first_stage_strides_set_the_resolution(stem_stride, first_stride, side):
    from groundup.nn.models import resnet

    model = resnet(width=8, depth=4, stem_stride=stem_stride, first_stride=first_stride)
    seen = []
    handle = model[-3].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    handle.remove()
    assert seen[0][-2:] == (side, side)


def test_resnet_fast_is_the_recipe_shape_and_rebuilds_from_its_spec():
    from groundup.nn.models import build_arch, resnet_fast

    model = resnet_fast(n_classes=10)
    assert 1.0e6 < sum(p.numel() for p in model.parameters()) < 1.5e6
    # The recipe's shape (issue 25): a 3->16 stride-2 conv and a 16->32 conv, average-pool shortcuts.
    assert [tuple(layer[0].weight.shape[:2]) for layer in model[:2]] == [(16, 3), (32, 16)]
    assert [type(block.shortcut[0]).__name__ for block in model[3:6]] == ["AvgPool"] * 3
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    assert model.arch_spec == {"name": "resnet_fast", "kwargs": {"n_in": 3, "n_classes": 10}}
    assert type(build_arch(model.arch_spec)) is type(model)


def test_avg_pool_is_torch_avg_pool_and_keeps_an_odd_last_row():
    from groundup.nn.layers import AvgPool

    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(AvgPool(2)(x), torch.nn.AvgPool2d(2)(x))
    odd = torch.randn(2, 3, 5, 5)
    out = AvgPool(2)(odd)
    assert out.shape == (2, 3, 3, 3)  # as a stride-2 conv with padding 1 gives
    torch.testing.assert_close(out[..., -1, -1], odd[..., -1, -1])  # the last window holds one pixel
    with pytest.raises(ValueError, match="4-D"):
        AvgPool(2)(torch.randn(3, 8, 8))


def test_an_avg_shortcut_averages_every_pixel_then_a_1x1_conv_of_stride_1():
    torch.manual_seed(0)
    block = ResBlock(4, 8, stride=2, shortcut="avg")
    x = torch.randn(2, 4, 8, 8)
    assert block(x).shape == (2, 8, 4, 4)
    conv = block.shortcut[1][0]
    assert conv.weight.shape == (8, 4, 1, 1) and conv.stride == 1
    block.eval()  # the shortcut alone: the averaged input through the 1x1 conv and its BatchNorm
    bn = block.shortcut[1][1]
    want = torch.nn.functional.conv2d(torch.nn.functional.avg_pool2d(x, 2), conv.weight)
    want = (want - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(bn.running_var.view(1, -1, 1, 1) + bn.eps)
    want = want * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(block.shortcut(x), want)
    # The shape does not change: no shortcut layer at all, whatever the kind.
    assert ResBlock(8, 8, shortcut="avg").shortcut is None
    with pytest.raises(ValueError, match="shortcut must be one of conv, avg"):
        ResBlock(4, 8, stride=2, shortcut="pool")


def test_a_two_layer_stem_and_its_split_keeps_the_stem_with_the_first_half_of_the_blocks():
    from groundup.nn.models import _resnet_split

    model = resnet(width=32, stem=(16, 32), stem_stride=2, first_stride=1, shortcut="avg")
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    assert [tuple(layer[0].weight.shape[:2]) for layer in model[:2]] == [(16, 3), (32, 16)]
    assert model[0][0].stride == 2 and model[1][0].stride == 1
    groups = _resnet_split(model)
    stem_and_two_blocks = [p for layer in model[:4] for p in layer.parameters()]
    assert [id(p) for p in groups[0]] == [id(p) for p in stem_and_two_blocks]
    assert sum(len(g) for g in groups) == len(list(model.parameters()))
    with pytest.raises(ValueError, match="stem must be"):
        resnet(stem=())


def test_torch_default_init_draws_what_torch_nn_draws():
    from groundup.nn.layers import torch_default_

    for ref in (torch.nn.Conv2d(16, 32, 3), torch.nn.Linear(256, 10)):
        w, b = torch.empty_like(ref.weight), torch.empty_like(ref.bias)
        torch.manual_seed(0)
        torch_default_(w, b)
        torch.manual_seed(0)
        ref.reset_parameters()
        torch.testing.assert_close(w, ref.weight.detach())
        torch.testing.assert_close(b, ref.bias.detach())


def test_resnet_init_torch_has_torch_scales_and_keeps_the_zero_batchnorm():
    torch.manual_seed(0)
    ours = resnet(width=32, init="torch")
    conv = ours[1].convs[0][0].weight  # a 3x3 conv of 32 -> 32 channels: fan_in 288
    assert abs(conv.std().item() - 1 / (3 * 288) ** 0.5) < 0.002
    assert abs(resnet(width=32)[1].convs[0][0].weight.std().item() - (2 / 576) ** 0.5) < 0.004  # xavier by default
    assert float(ours[1].convs[1][1].weight.abs().sum()) == 0.0  # each block still starts as the identity
    with pytest.raises(ValueError, match="init must be 'groundup' or 'torch'"):
        resnet(init="he")
