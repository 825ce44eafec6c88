"""ActivationStats: what it records, when, that it keeps no activations, removal and the PNG."""

import gc
import weakref

import pytest
import torch

from groundup.nn.layers import ConvLayer, Linear, Sequential
from groundup.nn.models import simple_cnn
from groundup.nn.stats import ActivationStats


def small_cnn():
    torch.manual_seed(0)
    return Sequential(ConvLayer(3, 4, stride=2), ConvLayer(4, 8, stride=2))


def test_records_mean_std_near_zero_and_histogram_per_layer_per_batch():
    model, outputs = small_cnn(), []
    model[1].register_forward_hook(lambda m, i, out: outputs.append(out.detach()))
    with ActivationStats(model, bins=20, hist_range=(0, 5)) as stats:
        for _ in range(3):
            model(torch.randn(2, 3, 16, 16))
    assert [m.shape for m in stats.means] == [(3,), (3,)]
    last = outputs[-1]
    torch.testing.assert_close(stats.means[1][-1], last.mean())
    torch.testing.assert_close(stats.stds[1][-1], last.std())
    torch.testing.assert_close(stats.near_zero[1][-1], (last.abs() < 1e-3).float().mean())
    assert stats.histograms[1].shape == (3, 20)
    torch.testing.assert_close(stats.histograms[1][-1], torch.histc(last, 20, 0, 5))
    assert 0.2 < stats.near_zero[0][0].item() < 0.8  # about half of ReLU outputs are zero at init


def test_records_only_training_passes_by_default():
    model = small_cnn()
    with ActivationStats(model) as stats:
        model(torch.randn(2, 3, 8, 8))
        model.eval()
        model(torch.randn(2, 3, 8, 8))
    assert stats.means[0].shape == (1,)
    with ActivationStats(model, train_only=False) as everything:
        model(torch.randn(2, 3, 8, 8))
    assert everything.means[0].shape == (1,)


def test_keeps_no_activation_tensors():
    model = small_cnn()
    with ActivationStats(model, bins=10) as stats:
        out = model(torch.randn(2, 3, 8, 8))
        ref = weakref.ref(out)
        del out
        gc.collect()
        assert ref() is None  # nothing kept the last activation alive
    # What is kept: a few numbers per layer per batch, on the CPU.
    for column in (stats.means, stats.stds, stats.near_zero, stats.histograms):
        assert all(t.device.type == "cpu" for t in column)
    assert [m.shape for m in stats.means] == [(1,), (1,)]
    assert [h.shape for h in stats.histograms] == [(1, 10), (1, 10)]


def test_reset_and_remove():
    model = small_cnn()
    stats = ActivationStats(model)
    model(torch.randn(2, 3, 8, 8))
    stats.reset()
    assert stats.means[0].numel() == 0
    stats.remove()
    model(torch.randn(2, 3, 8, 8))
    assert stats.means[0].numel() == 0
    ref = weakref.ref(stats)
    del stats
    gc.collect()
    assert ref() is None  # no hook is left on the model: nothing there refers to the stats any more


def test_works_on_torch_modules():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU())
    with ActivationStats(model) as stats:
        model(torch.randn(5, 4))
    assert [m.shape for m in stats.means] == [(1,), (1,)]
    assert stats.near_zero[0][0].item() == 0.0  # a Linear's outputs are not exactly zero


def test_plot_writes_a_png(tmp_path):
    model = simple_cnn()
    with ActivationStats(model[:4]) as stats:
        for _ in range(2):
            model(torch.randn(4, 3, 32, 32))
    path = stats.plot(tmp_path / "stats" / "activations.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_before_recording_says_what_to_do(tmp_path):
    stats = ActivationStats([Linear(2, 2)])
    with pytest.raises(ValueError, match="nothing recorded yet"):
        stats.plot(tmp_path / "x.png")


def test_rejects_bad_histogram_settings():
    with pytest.raises(ValueError, match=r"hist_range must be \(low, high\) with low < high"):
        ActivationStats([Linear(2, 2)], hist_range=(1, 1))


def test_layer_stats_match_torch_and_find_channels_that_never_fire():
    from groundup.nn.stats import layer_stats

    torch.manual_seed(0)
    model = Sequential(ConvLayer(3, 8, stride=2), ConvLayer(8, 4, stride=2, act=False))
    with torch.no_grad():
        model[0].bias[:2] = -1e3  # two of the eight ReLU channels can never fire
    xb = torch.randn(5, 3, 8, 8)
    rows = layer_stats(model.children(), lambda: [model(xb), model(xb + 1)])
    h = model[0](torch.cat([xb, xb + 1]))  # (10, 8, 4, 4): what the hook saw
    assert rows[0]["layer"] == "0: ConvLayer" and rows[0]["channels"] == 8 and rows[0]["non_negative"]
    torch.testing.assert_close(torch.tensor(rows[0]["std"]), h.std(unbiased=False), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.tensor(rows[0]["mean"]), h.mean(), rtol=1e-4, atol=1e-5)
    assert rows[0]["zero_share"] == pytest.approx(float((h == 0).float().mean()))
    assert rows[0]["dead_share"] == pytest.approx(2 / 8)
    assert not rows[1]["non_negative"] and rows[1]["dead_share"] == 0.0
