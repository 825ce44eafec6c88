"""ProgressiveResize: early training epochs on smaller images, the rest and every validation at full size."""

import csv

import pytest
import torch
import torch.nn.functional as F
from conftest import one_line_error, tiny

from groundup.callbacks.core import Callback
from groundup.callbacks.progressive_resize import ProgressiveResize
from groundup.cli import main
from groundup.data.loader import DataLoaders
from groundup.learner import Learner
from groundup.losses import cross_entropy
from groundup.nn import AdaptivePool, ConvLayer, Linear, Sequential


@pytest.mark.parametrize("start, until, n, full, sizes", [
    (48, 0.5, 22, 64, [48] * 11 + [64] * 11),          # the fast recipe's: two sizes, a multiple of 16 each
    (32, 0.5, 8, 64, [32, 32, 48, 48, 64, 64, 64, 64]),
    (32, 1.0, 4, 64, [32, 32, 48, 48]),                  # until 1: the full size is never reached
    (8, 0.5, 3, 16, [8, 8, 16]),
    (64, 0.5, 4, 64, [64] * 4),                          # start at full size: nothing to do
    (96, 0.5, 4, 64, [64] * 4),                          # larger than the images: never upscaled
])
def test_the_size_grows_in_steps_of_16_to_the_full_size(start, until, n, full, sizes):
    cb = ProgressiveResize(start, until)
    assert [cb.size_at(e, n, full) for e in range(n)] == sizes


class Shapes(Callback):
    order = 0  # after ProgressiveResize (-5): sees what the model sees

    def before_fit(self):
        self.seen = []

    def before_batch(self):
        xb = self.learn.batch[0]
        self.seen.append((self.learn.epoch, self.learn.training, tuple(xb.shape),
                          xb.is_contiguous(memory_format=torch.channels_last)))


def batches(n=2, side=32, seed=0):
    """`n` batches of 4 channels-last images (N, C, H, W), as SetupLearnerCB makes them from NHWC uint8 ones."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(4, 3, side, side, generator=g).contiguous(memory_format=torch.channels_last),
             torch.tensor([0, 1, 0, 1])) for _ in range(n)]


def conv_net():
    return Sequential(ConvLayer(3, 4, stride=2), AdaptivePool(), Linear(4, 2))


def test_training_batches_shrink_validation_batches_never_and_the_layout_is_kept():
    torch.manual_seed(0)
    dls = DataLoaders(batches(), batches(seed=1))
    shapes = Shapes()
    Learner(conv_net(), dls, cross_entropy, lr=0.1, cbs=[ProgressiveResize(16, until=0.5), shapes],
            progress=False).fit(4)
    train = {(e, s[2]) for e, t, s, _ in shapes.seen if t}
    valid = {s[2] for e, t, s, _ in shapes.seen if not t}
    assert train == {(0, 16), (1, 16), (2, 32), (3, 32)} and valid == {32}
    assert all(cl for *_, cl in shapes.seen)  # channels-last in, channels-last out


def test_a_shrunk_batch_is_the_antialiased_resize_of_the_full_one():
    xb = torch.rand(2, 3, 32, 32)
    got = []

    class Grab(Callback):
        order = 0

        def before_batch(self):
            got.append(self.learn.batch[0])

    learn = Learner(conv_net(), DataLoaders([(xb, torch.tensor([0, 1]))], []), cross_entropy, lr=1e-9,
                    cbs=[ProgressiveResize(16), Grab()], progress=False)
    learn.fit(1)
    want = F.interpolate(xb, size=(16, 16), mode="bilinear", antialias=True, align_corners=False)
    assert torch.allclose(got[0], want)
    assert torch.allclose(want.mean(), xb.mean(), atol=1e-3)  # an average of pixels, not a subsample


@pytest.mark.parametrize("kwargs, pattern", [({"start": 4}, "start must be an integer >= 8, got 4"),
                                             ({"start": 32, "until": 0}, "until must be a finite number > 0"),
                                             ({"start": 32, "until": 1.5}, r"until is a fraction .* got 1.5"),
                                             ({"start": 32, "step": 0}, "step must be a positive integer")])
def test_bad_arguments_name_themselves(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        ProgressiveResize(**kwargs)


def test_the_cli_trains_the_early_epochs_smaller_and_records_the_setting(image_folder, tmp_path):
    out = tmp_path / "run"
    assert main([*tiny(image_folder, "--arch", "resnet_fast", "--start-size", "8", epochs=3), "--out", str(out)]) == 0
    toml = (out / "config.toml").read_text()
    assert "start_size = 8" in toml and "grow_until = 0.5" in toml
    assert len(list(csv.DictReader((out / "metrics.csv").open()))) == 3


@pytest.mark.parametrize("flag, value, pattern", [("--start-size", "4", "--start-size must be an integer >= 8"),
                                                  ("--grow-until", "2", "--grow-until is a fraction"),
                                                  ("--grow-until", "0.3", r"--grow-until 0.3 needs --start-size")])
def test_bad_flags_are_one_line_errors(image_folder, tmp_path, capsys, flag, value, pattern):
    assert main([*tiny(image_folder, flag, value), "--out", str(tmp_path / "run")]) == 2
    one_line_error(capsys, pattern)
