"""Interpretation: confusion matrix, per-class scores, most confused, top losses and their plots."""

import json
import shutil

import numpy as np
import pytest
from matplotlib.figure import Figure
import torch
from conftest import PNG_SIGNATURE
from PIL import Image

from groundup.callbacks.setup import SetupLearnerCB
from groundup.data.folder import ImageDataLoaders
from groundup.run.interpret import Interpretation, format_per_class, labelled_files
from groundup.learner import Learner
from groundup.losses import cross_entropy
from groundup.nn.models import simple_cnn

CAT_COLOUR = (60, 200, 40)  # the mean colour of conftest's "cat" images


def made_up():
    """4 classes; targets 0,0,0,1,1,2,2,2 (class 3 absent); preds 0,0,1,1,1,2,0,0."""
    preds = torch.tensor([0, 0, 1, 1, 1, 2, 0, 0])
    probs = torch.full((8, 4), 0.1)
    probs[torch.arange(8), preds] = 0.7
    targets = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    losses = -probs[torch.arange(8), targets].log()
    return Interpretation(probs, targets, losses, ["a", "b", "c", "d"], vocab=["A", "B", "C", "D"])


def test_confusion_matrix_counts_actual_by_predicted():
    assert made_up().confusion_matrix().tolist() == [[2, 1, 0, 0], [0, 2, 0, 0], [2, 0, 1, 0], [0, 0, 0, 0]]


def test_per_class_scores():
    rows = {r["name"]: r for r in made_up().per_class()}
    assert rows["a"] == {"label": "A", "name": "a", "support": 3, "accuracy": pytest.approx(2 / 3),
                         "precision": pytest.approx(2 / 4), "recall": pytest.approx(2 / 3),
                         "f1": pytest.approx(2 * (1 / 2) * (2 / 3) / (1 / 2 + 2 / 3))}
    assert rows["b"]["precision"] == pytest.approx(2 / 3) and rows["b"]["recall"] == 1.0
    assert rows["d"] == {"label": "D", "name": "d", "support": 0, "accuracy": None, "precision": None,
                         "recall": None, "f1": None}  # nothing to divide by
    table = format_per_class(made_up().per_class())
    assert table.splitlines()[0].split() == ["name", "support", "accuracy", "precision", "recall", "f1"]
    assert table.splitlines()[4].split() == ["d", "0", "-", "-", "-", "-"]


def test_most_confused_lists_off_diagonal_pairs_most_frequent_first():
    interp = made_up()
    assert interp.most_confused() == [("c", "a", 2), ("a", "b", 1)]
    assert interp.most_confused(min_count=2) == [("c", "a", 2)]


def test_top_losses_are_the_highest_losses_first():
    top = made_up().top_losses(3)
    assert [t.index for t in top][:1] in ([6], [7]) and {t.index for t in top} == {2, 6, 7}
    assert top[0].actual == "c" and top[0].predicted == "a" and top[0].prob == pytest.approx(0.7)
    assert top[0].loss == pytest.approx(-np.log(0.1))
    assert len(made_up().top_losses(100)) == 8


@pytest.fixture
def trained(image_folder):
    """A simple_cnn that learned the colour data; one validation image is mislabelled (a cat in emu/)."""
    disguised = image_folder / "val" / "emu" / "cat_in_disguise.jpg"
    Image.new("RGB", (16, 16), CAT_COLOUR).save(disguised, quality=95)
    (image_folder / "classes.json").write_text(json.dumps({"cat": "Cat", "dog": "Dog", "emu": "Emu"}))
    dls = ImageDataLoaders.from_folder(image_folder, size=16, bs=4, num_workers=0, seed=0)
    torch.manual_seed(0)
    learn = Learner(simple_cnn(n_classes=3), dls, cross_entropy, lr=0.05, cbs=[SetupLearnerCB("cpu")])
    learn.fit_one_cycle(6)
    return learn


def test_from_learner_interprets_the_validation_set(trained):
    interp = Interpretation.from_learner(trained)
    assert len(interp) == 10 and interp.class_names == ["Cat", "Dog", "Emu"]
    assert interp.accuracy == pytest.approx(trained.validate()["acc"])
    assert interp.loss == pytest.approx(trained.validate()["loss"], rel=1e-5)
    top = interp.top_losses(1)[0]
    assert top.item.endswith("cat_in_disguise.jpg") and (top.actual, top.predicted) == ("Emu", "Cat")


def pixels_at_cells(interp, png):
    """The grey level of each cell of the confusion-matrix PNG, right of the cell's centre (off the count)."""
    fig = interp.confusion_figure()
    fig.canvas.draw()
    ax, height = fig.axes[0], fig.get_size_inches()[1] * 100  # save_figure writes 100 dpi
    grey = np.asarray(Image.open(png).convert("L"), dtype=float)
    n = interp.n_classes
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            x, y = ax.transData.transform((j + 0.35, i))
            out[i, j] = grey[round(height - y), round(x)]
    return out


def test_the_confusion_matrix_png_is_darkest_on_the_diagonal_for_a_model_that_learned(trained, tmp_path):
    interp = Interpretation.from_learner(trained)
    path = tmp_path / "cm.png"
    assert isinstance(interp.plot_confusion_matrix(path), Figure)
    assert path.read_bytes()[:8] == PNG_SIGNATURE and Image.open(path).size[0] >= 400
    grey = pixels_at_cells(interp, path)
    diagonal, off = np.diag(grey), grey[~np.eye(3, dtype=bool)]
    assert diagonal.max() < off.min(), grey  # every diagonal cell darker than every other cell


def test_the_top_losses_grid_shows_the_worst_image(trained, tmp_path):
    interp = Interpretation.from_learner(trained)
    path = tmp_path / "top.png"
    assert isinstance(interp.plot_top_losses(4, path), Figure)
    png = np.asarray(Image.open(path).convert("RGB"), dtype=int)
    assert path.read_bytes()[:8] == PNG_SIGNATURE and png.shape[1] >= 300
    near = (np.abs(png - np.array(CAT_COLOUR)) <= 8).all(axis=2)
    assert near.sum() > 2000  # the solid cat-coloured image, the top loss, is drawn large in the grid


def test_class_names_must_match_the_model_outputs():
    with pytest.raises(ValueError, match=r"3 class names for 4 model outputs; .*simple_cnn\(n_classes=3\)"):
        Interpretation(torch.full((2, 4), 0.25), torch.tensor([0, 1]), torch.ones(2), ["a", "b", "c"])


def test_plot_top_losses_needs_the_images():
    with pytest.raises(ValueError, match="plot_top_losses needs the images"):
        made_up().plot_top_losses(2)


def test_from_checkpoint_and_a_labelled_folder(trained, image_folder, tmp_path):
    ckpt = trained.save(tmp_path / "model.pt")
    interp = Interpretation.from_checkpoint(ckpt, image_folder)  # a data set: its val/ split
    assert len(interp) == 10 and interp.accuracy == pytest.approx(trained.validate()["acc"])
    assert interp.class_names == ["Cat", "Dog", "Emu"] and interp.vocab == ["cat", "dog", "emu"]
    test = tmp_path / "test"
    shutil.copytree(image_folder / "train" / "dog", test / "dog")  # a test set, <label>/*.jpg: some labels
    interp = Interpretation.from_checkpoint(ckpt, test)
    assert len(interp) == 6 and interp.confusion_matrix().sum(dim=1).tolist() == [0, 6, 0]


def test_a_folder_with_labels_the_model_does_not_know_is_an_error(trained, tmp_path, image_folder):
    ckpt = trained.save(tmp_path / "model.pt")
    shutil.copytree(image_folder / "train" / "dog", tmp_path / "test" / "wolf")
    with pytest.raises(ValueError, match=r"not trained on: wolf; its labels are cat"):
        Interpretation.from_checkpoint(ckpt, tmp_path / "test")


def test_labelled_files_wants_label_folders(tmp_path, image_folder):
    shutil.copy(image_folder / "val" / "dog" / "dog_0.jpg", tmp_path / "loose.jpg")
    with pytest.raises(ValueError, match=r"images outside label folders \(e.g. loose.jpg\)"):
        labelled_files(tmp_path)
    with pytest.raises(FileNotFoundError, match="data folder not found"):
        labelled_files(tmp_path / "nope")
    assert len(labelled_files(image_folder, split="train")) == 18


def test_top_losses_finds_the_images_when_unreadable_ones_were_skipped(image_folder, tmp_path):
    from groundup.callbacks.setup import SetupLearnerCB
    from groundup.data.folder import ImageDataLoaders
    from groundup.run.interpret import Interpretation
    from groundup.learner import Learner
    from groundup.losses import cross_entropy
    from groundup.nn.models import simple_cnn

    (image_folder / "val" / "cat" / "broken.jpg").write_bytes(b"not an image")
    dls = ImageDataLoaders.from_folder(image_folder, size=16, bs=4, num_workers=0, seed=0, skip_corrupt=True)
    learn = Learner(simple_cnn(n_classes=3), dls, cross_entropy, cbs=[SetupLearnerCB("cpu")])
    interp = Interpretation.from_learner(learn)
    assert len(interp.items) == len(dls.valid.dataset) - 1 and all(not str(p).endswith("broken.jpg") for p in interp.items)
    interp.plot_top_losses(4, tmp_path / "top.png")
    assert (tmp_path / "top.png").is_file()


def test_plots_return_a_figure_and_write_a_file_only_when_given_a_path(trained, tmp_path, monkeypatch):
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    interp = Interpretation.from_learner(trained)
    cm, top = interp.plot_confusion_matrix(), interp.plot_top_losses(4)
    assert isinstance(cm, Figure) and isinstance(top, Figure) and cm.axes and top.axes
    assert list((tmp_path / "cwd").iterdir()) == []
