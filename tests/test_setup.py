from types import SimpleNamespace

import torch

from groundup.callbacks.core import Callback, CancelFitException
from groundup.callbacks.setup import SetupLearnerCB
from groundup.data.preprocessing import Preprocessing
from groundup.learner import Learner
from groundup.losses import cross_entropy


def test_setup_learner_cb_normalizes_uint8_nhwc_to_float_nchw_on_the_device():
    xb = torch.randint(0, 256, (4, 8, 8, 3), dtype=torch.uint8)
    yb = torch.tensor([0, 1, 0, 1])
    class Dls:
        train, valid, stats = [(xb, yb)], [(xb, yb)], (torch.tensor([0.5] * 3), torch.tensor([0.25] * 3))
    class Check(Callback):
        def before_batch(self):
            x = self.xb
            assert x.shape == (4, 3, 8, 8) and x.dtype == torch.float32 and x.device.type == "cpu"
            torch.testing.assert_close(x, ((xb.float() / 255 - 0.5) / 0.25).permute(0, 3, 1, 2))
            raise CancelFitException
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    Learner(model, Dls(), cross_entropy, cbs=[SetupLearnerCB(device="cpu"), Check()]).fit(1)


def test_setup_learner_cb_takes_the_statistics_of_the_learners_preprocessing():
    xb = torch.full((2, 4, 4, 3), 51, dtype=torch.uint8)  # 0.2 after /255
    yb = torch.tensor([0, 1])
    dls = SimpleNamespace(train=[(xb, yb)], valid=[(xb, yb)])
    seen = []
    class Check(Callback):
        def before_batch(self):
            seen.append(self.xb)
            raise CancelFitException
    pre = Preprocessing(mean=[0.1] * 3, std=[0.5] * 3, size=4, vocab=["a", "b"])
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 2))
    learn = Learner(model, dls, cross_entropy, cbs=[SetupLearnerCB("cpu"), Check()], preprocessing=pre)
    learn.fit(1)
    torch.testing.assert_close(seen[0], torch.full((2, 3, 4, 4), (0.2 - 0.1) / 0.5))


def test_without_statistics_the_first_batch_sets_the_learners_preprocessing():
    g = torch.Generator().manual_seed(0)
    xb = torch.randint(0, 256, (8, 4, 4, 3), dtype=torch.uint8, generator=g)
    yb = torch.zeros(8, dtype=torch.long)
    dls = SimpleNamespace(train=[(xb, yb)], valid=[(xb, yb)])
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 2))
    learn = Learner(model, dls, cross_entropy, cbs=[SetupLearnerCB("cpu")])
    assert learn.preprocessing is None
    learn.fit(1)
    mean = (xb.double() / 255).mean((0, 1, 2)).float()  # the walkthrough's first-batch statistics
    torch.testing.assert_close(learn.preprocessing.mean, mean)
    assert learn.preprocessing.size == 4
