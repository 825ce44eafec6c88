"""resnet18/34 have torchvision's layout and names: torchvision's state dicts load, and the outputs match.

torchvision cannot be installed beside the pinned torch, so `TwinResNet` below is torchvision's
ResNet (torchvision/models/resnet.py: BasicBlock, `_make_layer`) written out in plain torch.nn.
"""

import pytest
import torch
from torch import nn

from groundup.nn.models import resnet18, resnet34
from groundup.nn.module import StateDictError


class TwinBlock(nn.Module):
    expansion = 1

    def __init__(self, ni, nf, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(ni, nf, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(nf)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(nf, nf, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(nf)
        self.downsample = None
        if stride != 1 or ni != nf:
            self.downsample = nn.Sequential(nn.Conv2d(ni, nf, 1, stride, bias=False), nn.BatchNorm2d(nf))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class TwinResNet(nn.Module):
    def __init__(self, layers, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        ni = 64
        for i, n in enumerate(layers):
            nf = 64 * 2 ** i
            blocks = [TwinBlock(ni, nf, 1 if i == 0 else 2)] + [TwinBlock(nf, nf) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            ni = nf
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def trained_looking(twin: nn.Module) -> nn.Module:
    """Random non-trivial BatchNorm statistics and scales, so a wrong mapping cannot hide."""
    g = torch.Generator().manual_seed(1)
    for m in twin.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.num_batches_tracked.fill_(1234)
    return twin.eval()


@pytest.mark.parametrize("build, layers", [(resnet18, (2, 2, 2, 2)), (resnet34, (3, 4, 6, 3))])
def test_a_torchvision_state_dict_loads_strictly_and_the_outputs_match(build, layers, tmp_path):
    torch.manual_seed(0)
    twin = trained_looking(TwinResNet(layers))
    path = tmp_path / "resnet-0000.pth"
    torch.save(twin.state_dict(), path)  # what torchvision ships: a bare state dict
    model = build()
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in twin.state_dict().items()]  # same names, shapes and order
    model.load_state_dict(torch.load(path))
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), twin(x))
    assert int(model.state_dict()["bn1.num_batches_tracked"]) == 1234


def test_resnet18_with_another_head_size_names_the_first_mismatched_key():
    state = TwinResNet((2, 2, 2, 2)).state_dict()
    with pytest.raises(StateDictError, match="fc.weight"):
        resnet18(n_classes=10).load_state_dict(state)
    del state["layer1.0.bn1.running_var"]
    with pytest.raises(StateDictError, match="layer1.0.bn1.running_var"):
        resnet18().load_state_dict(state)


def test_resnet18_counts_training_batches_as_torch_batchnorm_does():
    model = resnet18(n_classes=4)
    model(torch.randn(2, 3, 32, 32))
    assert int(model.bn1.num_batches_tracked) == 1
    model.eval()(torch.randn(2, 3, 32, 32))
    assert int(model.bn1.num_batches_tracked) == 1
