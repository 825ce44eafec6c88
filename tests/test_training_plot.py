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
