"""Learner.get_preds, validate and predict: the model's outputs without training."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import Points, groundup_mlp, torch_mlp
from PIL import Image

from groundup.callbacks.setup import SetupLearnerCB
from groundup.callbacks.tracking import TrackResults
from groundup.data.folder import ImageDataLoaders
from groundup.data.images import open_image
from groundup.learner import Learner
from groundup.losses import cross_entropy
from groundup.nn.models import simple_cnn


def points_learner(model=None, loss_func=cross_entropy):
    cbs = [TrackResults(print_table=False)]
    return Learner(model or groundup_mlp(), Points(), loss_func, lr=0.3, cbs=cbs)


def test_get_preds_gives_the_softmax_and_targets_of_the_validation_set():
    learn = points_learner()
    probs, targets = learn.get_preds()
    x = torch.cat([xb for xb, _ in learn.dls.valid])
    torch.testing.assert_close(probs, torch.softmax(learn.model(x), dim=1).detach())
    assert torch.equal(targets, torch.cat([yb for _, yb in learn.dls.valid]))
    assert probs.shape == (64, 2) and not probs.requires_grad


@pytest.mark.parametrize("model", [groundup_mlp, torch_mlp])
def test_per_item_losses_match_torch(model):
    learn = points_learner(model(), F.cross_entropy if model is torch_mlp else cross_entropy)
    probs, targets, losses = learn.get_preds(learn.dls.train, with_loss=True)
    expected = F.nll_loss(probs.log(), targets, reduction="none")
    torch.testing.assert_close(losses, expected, rtol=1e-4, atol=1e-5)
    assert losses.shape == (192,)


def test_per_item_losses_are_one_call_to_the_loss_function_also_with_label_smoothing():
    import functools

    from groundup.inference import item_losses

    calls = []

    def counted(preds, targets, **kw):
        calls.append(kw)
        return functools.partial(cross_entropy, label_smoothing=0.1)(preds, targets, **kw)

    torch.manual_seed(0)
    preds, targets = torch.randn(32, 5), torch.randint(0, 5, (32,))
    losses = item_losses(counted, preds, targets)
    assert calls == [{"reduction": "none"}]
    torch.testing.assert_close(losses, F.cross_entropy(preds, targets, label_smoothing=0.1, reduction="none"))


def test_per_item_losses_need_a_loss_that_takes_reduction():
    from groundup.inference import item_losses

    def plain(preds, targets):
        return cross_entropy(preds, targets)

    with pytest.raises(TypeError, match=r"reduction='none'.*plain does not"):
        item_losses(plain, torch.randn(4, 3), torch.zeros(4, dtype=torch.long))


class Spy(torch.nn.Module):
    """Records whether it ran in training mode and with gradients."""

    def __init__(self):
        super().__init__()
        self.lin, self.seen = torch.nn.Linear(2, 2), []

    def forward(self, x):
        self.seen.append((self.training, torch.is_grad_enabled()))
        return self.lin(x)


@pytest.mark.parametrize("train_mode", [True, False])
def test_get_preds_runs_in_eval_mode_without_grad_and_restores_the_mode(train_mode):
    spy = Spy().train(train_mode)
    learn = Learner(spy, Points(), F.cross_entropy)
    learn.get_preds()
    assert set(spy.seen) == {(False, False)}
    assert spy.training is train_mode


def test_validate_gives_the_numbers_of_the_validation_pass():
    learn = points_learner()
    learn.fit(1)
    result = learn.validate()
    assert result["loss"] == pytest.approx(learn.history[-1]["valid_loss"], rel=1e-5)
    assert result["acc"] == pytest.approx(learn.history[-1]["valid_acc"])
    assert learn.validate(learn.dls.train)["loss"] != pytest.approx(result["loss"])  # any loader


@pytest.fixture
def image_learner(image_folder):
    (image_folder / "classes.json").write_text(json.dumps({"cat": "Cat", "dog": "Dog", "emu": "Emu"}))
    dls = ImageDataLoaders.from_folder(image_folder, size=16, bs=4, num_workers=0, seed=0)
    torch.manual_seed(0)
    return Learner(simple_cnn(n_classes=3), dls, cross_entropy, lr=0.05, cbs=[SetupLearnerCB("cpu")])


def test_images_get_the_preprocessing_of_training(image_learner, image_folder):
    learn = image_learner
    path = min((image_folder / "val" / "dog").iterdir())
    pixels = open_image(path, 16)
    # the loader's path: the batch the validation loader makes of this one image
    from_loader, _ = learn.get_preds([(torch.from_numpy(pixels)[None], torch.tensor([1]))])
    for image in (path, str(path), Image.open(path), pixels, torch.from_numpy(pixels)):
        probs, targets = learn.get_preds([image])
        assert targets is None
        torch.testing.assert_close(probs, from_loader)


def test_a_larger_image_is_squashed_to_the_training_size(image_learner):
    big = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    small = np.array(Image.fromarray(big).resize((16, 16), Image.BILINEAR))
    torch.testing.assert_close(image_learner.get_preds([big])[0], image_learner.get_preds([small])[0])


def test_predict_returns_the_class_name_its_index_and_the_probabilities(image_learner, image_folder):
    learn = image_learner
    learn.fit(3)
    label, index, probs = learn.predict(min((image_folder / "val" / "emu").iterdir()))
    assert (label, index) == ("Emu", 2)  # the name from classes.json, the index of "emu" in the vocabulary
    assert probs.shape == (3,) and probs.sum().item() == pytest.approx(1.0) and int(probs.argmax()) == 2


def test_predict_takes_a_list_of_images_or_a_folder_and_gives_a_list_of_predictions(image_learner, image_folder):
    learn = image_learner
    files = sorted((image_folder / "val" / "emu").iterdir())
    one = [learn.predict(f) for f in files]
    many = learn.predict([files[0], str(files[1]), Image.open(files[2])])  # paths, a str, a PIL image
    assert [p.label for p in many] == [p.label for p in one] and len(many) == 3
    for got, want in zip(many, one):
        torch.testing.assert_close(got.probs, want.probs)
    from_folder = learn.predict(image_folder / "val" / "emu")  # its image files, sorted
    assert [p.index for p in from_folder] == [p.index for p in one]
    torch.testing.assert_close(torch.stack([p.probs for p in from_folder]), torch.stack([p.probs for p in one]))
    assert learn.predict([]) == []


def test_predict_names_a_folder_without_images(image_learner, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"predict: the folder .*empty holds no image files \(\.bmp, \.gif, "):
        image_learner.predict(tmp_path / "empty")


def test_predict_and_get_preds_reject_what_is_no_image(image_learner):
    with pytest.raises(TypeError, match=r"predict takes an image .* got int"):
        image_learner.predict(3)
    with pytest.raises(TypeError, match=r"predict takes an image .* item 1 of the list is a dict"):
        image_learner.predict(["a.jpg", {}])
    with pytest.raises(TypeError, match=r"must be uint8 \(0-255\), got dtype float32"):
        image_learner.predict(np.zeros((8, 8, 3), np.uint8).astype(np.float32))
    with pytest.raises(ValueError, match=r"needs targets, and a list of images has none"):
        image_learner.get_preds([np.zeros((8, 8, 3), np.uint8)], with_loss=True)
    with pytest.raises(ValueError, match=r"channels first\?"):
        image_learner.predict(np.zeros((3, 8, 8), np.uint8))


# -- test-time augmentation with flips ----------------------------------------------------------------------
def test_tta_forward_averages_the_probabilities_of_the_image_and_its_mirror_image():
    from groundup.inference import tta_forward

    torch.manual_seed(0)
    model = simple_cnn(n_classes=4).eval()
    x = torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        expected = (model(x).softmax(1) + model(x.flip(3)).softmax(1)) / 2
        got = tta_forward(model, x)
    assert torch.allclose(got.exp(), expected, atol=1e-6)
    assert torch.allclose(got.log_softmax(1), got, atol=1e-6)  # already log-probabilities: a loss reads them as logits


def test_tta_forward_stays_finite_where_a_probability_underflows():
    from groundup.inference import tta_forward

    logits = torch.tensor([[0.0, 200.0, -200.0]])
    got = tta_forward(lambda x: logits.expand(len(x), 3), torch.zeros(1, 3, 4, 4))
    assert torch.isfinite(got).all()


def test_get_preds_and_predict_with_tta_average_an_image_and_its_mirror_image(image_learner, image_folder):
    path = min((image_folder / "val").rglob("*.jpg"))
    pixels = open_image(path, 16)
    plain = image_learner.get_preds([pixels, np.ascontiguousarray(pixels[:, ::-1])])[0]
    tta = image_learner.get_preds([pixels], tta=True)[0]
    assert torch.allclose(tta[0], plain.mean(0), atol=1e-5)
    assert torch.allclose(image_learner.predict(pixels, tta=True).probs, tta[0], atol=1e-6)


def test_validate_with_tta_scores_the_averaged_predictions(image_learner):
    probs, targets = image_learner.get_preds(tta=True)
    result = image_learner.validate(tta=True)
    assert result["acc"] == pytest.approx((probs.argmax(1) == targets).float().mean().item())
    assert result["loss"] == pytest.approx(F.nll_loss(probs.log(), targets).item(), rel=1e-4)
    assert result != image_learner.validate()


def test_tta_on_inputs_that_are_not_images_says_so():
    learn = points_learner()
    with pytest.raises(ValueError, match=r"flips images, \(N, C, H, W\), but the model's input has shape \(32, 2\)"):
        learn.validate(tta=True)


# -- show_results ---------------------------------------------------------------------------------------------
def test_show_results_draws_the_first_validation_images_with_target_and_prediction(image_learner, tmp_path,
                                                                                   monkeypatch):
    from matplotlib.figure import Figure

    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    learn = image_learner
    fig = learn.show_results(6)
    assert isinstance(fig, Figure) and list((tmp_path / "here").iterdir()) == []  # no path, no file
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 6
    xb, yb = next(iter(learn.dls.valid))  # bs=4: the grid takes two batches
    xb2, yb2 = list(learn.dls.valid)[1]
    probs, _ = learn.get_preds([(torch.cat([xb, xb2])[:6], torch.cat([yb, yb2])[:6])])
    names = learn.preprocessing.class_names
    for ax, p, y, pixels in zip(shown, probs, torch.cat([yb, yb2]), torch.cat([xb, xb2])):
        k = int(p.argmax())
        assert ax.get_title() == f"true: {names[int(y)]}\npred: {names[k]} ({float(p[k]):.2f})"
        assert (ax.title.get_color() == "black") == (k == int(y))  # wrong ones in red
        assert np.array_equal(ax.images[0].get_array(), pixels.numpy())  # the pixels as loaded, not normalized
    learn.show_results(4, path=tmp_path / "results.png")
    assert (tmp_path / "results.png").read_bytes()[:4] == b"\x89PNG"


def test_show_results_un_normalizes_model_inputs_and_refuses_what_are_no_images():
    from groundup.data.preprocessing import Preprocessing
    from groundup.data.show import display_images

    pre = Preprocessing([0.5, 0.4, 0.3], [0.2, 0.25, 0.3])
    pixels = torch.randint(0, 256, (2, 5, 5, 3), dtype=torch.uint8)
    shown = display_images(pre(pixels), pre)  # the model's input (N, C, H, W), back to (N, H, W, C) in [0, 1]
    torch.testing.assert_close(shown, pixels.float() / 255, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"show_results draws images, but the loader's batches have shape \(32, 2\)"):
        points_learner().show_results()
