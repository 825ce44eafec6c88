import numpy as np
import pytest
from conftest import PNG_SIGNATURE
from PIL import Image

from groundup.run.training_plot import BOUNDARY_COLOR, epoch_ends, plot_training, training_figure

HISTORY = [{"epoch": k, "train_loss": 2 - k / 2, "valid_loss": 1.9 - k / 3, "valid_acc": 0.3 + k / 10,
            "seconds": 1.0} for k in range(4)]
LOSSES = [2.5 - 0.05 * i for i in range(40)]  # 10 batches per epoch


@pytest.mark.parametrize("n_batches, n_epochs, ends", [(40, 4, [10, 20, 30, 40]), (7, 2, [4, 7]), (5, 0, [])])
def test_epoch_ends(n_batches, n_epochs, ends):
    assert epoch_ends(n_batches, n_epochs) == ends


def test_the_plot_marks_every_epoch_boundary(tmp_path):
    path = plot_training(LOSSES, HISTORY, tmp_path / "losses.png", best_epoch=3)
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    png = np.asarray(Image.open(path).convert("RGB"), dtype=int)
    assert png.shape[1] >= 800
    fig = training_figure(LOSSES, HISTORY, best_epoch=3)
    fig.canvas.draw()
    ax = fig.axes[0]
    (_, y_low), (_, y_high) = ax.transAxes.transform([(0, 0), (0, 1)])
    height = png.shape[0]
    rows = slice(round(height - y_high), round(height - y_low))  # the axes' rows (PNG rows run down)
    colour = np.array([int(BOUNDARY_COLOR[i:i + 2], 16) for i in (1, 3, 5)])
    near = (np.abs(png - colour) <= 40).all(axis=2)
    for x in (10.5, 20.5, 30.5):  # between batches 10 and 11, 20 and 21, 30 and 31
        px = round(ax.transData.transform((x, 0))[0])
        share = near[rows, px - 1:px + 2].any(axis=1).mean()
        assert share > 0.4, (x, share)  # a dashed line down most of the axes
    between = round(ax.transData.transform((15.5, 0))[0])
    assert near[rows, between - 1:between + 2].any(axis=1).mean() < 0.05  # and none between boundaries


def test_centred_mean_does_not_lag():
    from groundup.run.training_plot import centred_mean

    assert centred_mean([1, 2, 3, 4, 5], 3) == pytest.approx([1.5, 2, 3, 4, 4.5])
    falling = [2.0 * 0.98 ** i for i in range(200)]  # 20 epochs of 10 batches, loss falling steadily
    smooth = centred_mean(falling, 5)
    assert max(abs(a - b) for a, b in zip(smooth, falling)) < 0.05  # on the curve, not epochs behind it
    with pytest.raises(ValueError, match="window must be >= 1"):
        centred_mean(falling, 0)


def test_the_default_smoothing_follows_the_batch_losses_at_the_end_of_a_long_run():
    losses = [2.0 * 0.98 ** i for i in range(200)]
    history = [{"epoch": k, "valid_loss": 1.0, "valid_acc": 0.5} for k in range(20)]
    fig = training_figure(losses, history)
    smooth = next(line for line in fig.axes[0].lines if "mean of" in line.get_label())
    assert smooth.get_ydata()[-1] == pytest.approx(losses[-1], rel=0.05)  # an EMA(0.98) ends 2x too high


@pytest.mark.parametrize("n_epochs", [20, 100])
def test_the_epoch_labels_along_the_top_never_overlap(n_epochs):
    losses = [1.0] * (5 * n_epochs)
    history = [{"epoch": k, "valid_loss": 1.0, "valid_acc": 0.5} for k in range(n_epochs)]
    fig = training_figure(losses, history)
    fig.canvas.draw()
    top = next(ax for ax in fig.axes[0].child_axes if ax.get_xlabel() == "epoch")
    labels = [t for t in top.get_xticklabels() if t.get_text()]
    assert labels[0].get_text() == "0" and 5 <= len(labels) <= 10
    boxes = [t.get_window_extent() for t in labels]
    assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:]))  # left to right, apart
