from types import SimpleNamespace

import torch

from groundup.callbacks.activations import TrackActivations
from groundup.learner import Learner
from groundup.losses import cross_entropy
from groundup.nn.layers import Linear, ReLU, Sequential


def test_activation_stats_callback_records_training_batches_and_removes_its_hooks(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = (x[:, 0] > 0).long()
    dls = SimpleNamespace(train=[(x[:32], y[:32]), (x[32:], y[32:])], valid=[(x[:16], y[:16])])
    model = Sequential(Linear(4, 8), ReLU(), Linear(8, 2))
    cb = TrackActivations(path=tmp_path / "act.png")
    Learner(model, dls, cross_entropy, lr=0.1, cbs=[cb]).fit(2)
    assert len(cb.stats.means) == 3 and all(len(m) == 4 for m in cb.stats.means)  # 2 epochs x 2 train batches
    assert (tmp_path / "act.png").read_bytes()[:4] == b"\x89PNG"
    n_before = len(cb.stats.means[0])
    model(x)  # hooks are gone: nothing more is recorded
    assert len(cb.stats.means[0]) == n_before
