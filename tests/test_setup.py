from types import SimpleNamespace

import pytest
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


def _fake_gpus(monkeypatch, n):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)


@pytest.mark.parametrize("device, n_gpus, pinned", [("cuda", 1, True), ("cuda:1", 2, True), ("cpu", 1, False)])
def test_batches_for_a_cuda_device_come_in_pinned_host_memory(monkeypatch, device, n_gpus, pinned):
    """Pinned memory lets the non_blocking copy to the GPU overlap compute (issue 26, point 6)."""
    from groundup.data.loader import DataLoader, DataLoaders

    _fake_gpus(monkeypatch, n_gpus)
    x = torch.randint(0, 256, (8, 4, 4, 3), dtype=torch.uint8)
    dls = DataLoaders(DataLoader(list(zip(x, range(8))), 4), DataLoader(list(zip(x, range(8))), 4))
    model = torch.nn.Linear(2, 2)
    monkeypatch.setattr(model, "to", lambda device: model)  # no GPU to move it to here
    setup = SetupLearnerCB(device=device)
    Learner(model, dls, cross_entropy, cbs=[setup])
    setup.before_fit()
    assert (dls.train._pin, dls.valid._pin) == (pinned, pinned)
    pins = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda t: pins.append(t.shape) or t)  # pinning needs CUDA
    batches = list(dls.train)
    assert pins == ([(4, 4, 4, 3), (4,)] * 2 if pinned else [])
    assert len(batches) == 2


def test_pin_memory_given_to_the_loader_is_kept_whatever_the_device():
    from groundup.data.loader import DataLoader

    assert DataLoader([1, 2], pin_memory=False).pin_for(torch.device("cuda", 0)) is False
    assert DataLoader([1, 2]).pin_for(torch.device("cpu")) is False
    with pytest.raises(ValueError, match="pin_memory must be True, False or None"):
        DataLoader([1, 2], pin_memory="yes")
