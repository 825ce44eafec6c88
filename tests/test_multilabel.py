"""Multi-label classification end to end: several tags per image, chosen from the data or forced; a sigmoid per
tag, BCE loss, tags above a threshold in predict, get_preds, Interpretation, the run folder, predict and export."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from groundup.cli import main
from groundup.data.folder import ImageDataLoaders
from groundup.data.preprocessing import Preprocessing
from groundup.inference import tta_forward
from groundup.learner import Learner, TagsPrediction
from groundup.losses import binary_cross_entropy_with_logits
from groundup.callbacks.setup import SetupLearnerCB
from groundup.nn.models import get_arch
from groundup.run.interpret import Interpretation


def tagged_images(root, n=40, size=16, seed=0):
    """`root/img/<i>.jpg` whose red and green channels say its tags ('red', 'green', both, or 'dark'), and labels.csv."""
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True)
    rows = ["fname,tags"]
    for i in range(n):
        red, green = i % 2, (i // 2) % 2
        px = np.zeros((size, size, 3)) + [200 * red + 20, 200 * green + 20, 30]
        Image.fromarray(np.clip(px + rng.normal(0, 10, px.shape), 0, 255).astype(np.uint8)).save(root / "img" / f"{i}.jpg")
        tags = [t for t, on in (("red", red), ("green", green)) if on] or ["dark"]
        rows.append(f"img/{i}.jpg,{' '.join(tags)}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture
def tagged(tmp_path):
    return tagged_images(tmp_path / "tagged")


def test_several_tags_in_a_row_make_multi_hot_targets(tagged):
    dls = ImageDataLoaders.from_csv(tagged, size=8, bs=4, num_workers=0, seed=0)
    pre = dls.preprocessing
    assert pre.multi_label and pre.vocab == ["dark", "green", "red"] and pre.threshold == 0.5
    ds = dls.train.dataset
    i = next(k for k, f in enumerate(ds.files) if f.name == "3.jpg")  # red and green
    assert ds.labels[i].tolist() == [0.0, 1.0, 1.0]
    xb, yb = next(iter(dls.train))
    assert yb.dtype == torch.float32 and yb.shape == (4, 3)
    assert isinstance(ds[i][1], torch.Tensor) and ds[i][1].tolist() == [0.0, 1.0, 1.0]


def test_the_task_can_be_forced_either_way(tagged):
    single = ImageDataLoaders.from_csv(tagged, size=8, num_workers=0, task="single")  # each cell one label
    assert not single.preprocessing.multi_label and "red green" in single.preprocessing.vocab
    lists = ImageDataLoaders.from_lists([f"img/{i}.jpg" for i in range(10)], ["red", "dark"] * 5, path=tagged,
                                        size=8, num_workers=0, task="multi", threshold=0.3, valid_pct=0.5)
    assert lists.preprocessing.multi_label and lists.preprocessing.threshold == 0.3
    assert lists.train.dataset.labels.shape[1] == 2
    with pytest.raises(ValueError, match=r"has 2 labels \['a', 'b'\], but task='single' takes one label"):
        ImageDataLoaders.from_lists(["img/0.jpg", "img/1.jpg"], [["a", "b"], ["a"]], path=tagged, task="single")


def test_preprocessing_carries_the_task_and_threshold_through_plain_data():
    pre = Preprocessing([0.5] * 3, [0.2] * 3, size=8, vocab=["a", "b"], multi_label=True, threshold=0.3)
    back = Preprocessing.from_dict(json.loads(json.dumps(pre.to_dict())))
    assert back.multi_label and back.threshold == 0.3 and back.with_stats([0.1] * 3, [0.3] * 3).multi_label
    old = {k: v for k, v in pre.to_dict().items() if k not in ("multi_label", "threshold")}  # a 0.2 checkpoint
    assert not Preprocessing.from_dict(old).multi_label
    torch.testing.assert_close(pre.probabilities(torch.tensor([[0.0, 2.0]])), torch.sigmoid(torch.tensor([[0.0, 2.0]])))
    with pytest.raises(ValueError, match="threshold must be a probability in"):
        Preprocessing([0.5] * 3, [0.2] * 3, multi_label=True, threshold=1.5)


def test_flip_tta_of_a_multi_label_model_averages_the_sigmoids():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5))
    x = torch.randn(2, 3, 4, 4) * 5
    mean = (torch.sigmoid(model(x)) + torch.sigmoid(model(x.flip(3)))) / 2
    torch.testing.assert_close(torch.sigmoid(tta_forward(model, x, multi_label=True)), mean)


def test_a_learner_trains_predicts_and_interprets_tags(tagged):
    dls = ImageDataLoaders.from_csv(tagged, size=8, bs=8, num_workers=0, seed=0)
    torch.manual_seed(0)
    learn = Learner(get_arch("simple_cnn", n_classes=3), dls, binary_cross_entropy_with_logits, lr=3e-3,
                    cbs=[SetupLearnerCB("cpu")], opt_func=torch.optim.Adam)
    before = learn.validate()["loss"]
    learn.fit(6)
    after = learn.validate()
    assert after["loss"] < before / 2 and after["acc"] > 0.9, (before, after)
    probs, targets = learn.get_preds()
    assert targets.shape == probs.shape == (len(dls.valid.dataset), 3)
    assert not torch.allclose(probs.sum(1), torch.ones(len(probs)))  # a sigmoid per tag, not a softmax
    both = tagged / "img" / "3.jpg"
    tags, mask, p = learn.predict(both)
    assert isinstance(learn.predict(both), TagsPrediction)
    assert tags == [learn.preprocessing.vocab[i] for i in p.argsort(descending=True).tolist() if p[i] > 0.5]
    assert sorted(tags) == ["green", "red"] and mask.tolist() == [False, True, True]
    interp = Interpretation.from_learner(learn)
    rows = {r["label"]: r for r in interp.per_class()}
    assert set(rows) == {"dark", "green", "red"} and rows["red"]["support"] == int(targets[:, 2].sum())
    assert interp.most_confused() == []
    with pytest.raises(ValueError, match="a multi-label model has no confusion matrix"):
        interp.confusion_matrix()


def test_per_tag_scores_match_a_hand_computation():
    probs = torch.tensor([[0.9, 0.2], [0.6, 0.7], [0.1, 0.8], [0.3, 0.4]])  # predicted: {0}, {0, 1}, {1}, {}
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    interp = Interpretation(probs, targets, torch.zeros(4), ["a", "b"], multi_label=True)
    a, b = interp.per_class()
    # tag a: TP 1 (item 0), FP 1 (item 1), FN 1 (item 3): precision 1/2, recall 1/2; right on items 0 and 2
    assert (a["support"], a["precision"], a["recall"], a["f1"], a["accuracy"]) == (2, 0.5, 0.5, 0.5, 0.5)
    # tag b: TP 2 (items 1, 2), FP 0, FN 1 (item 3): precision 1, recall 2/3, F1 0.8; right on items 0, 1, 2
    assert (b["support"], b["precision"], b["f1"], b["accuracy"]) == (3, 1.0, pytest.approx(0.8), 0.75)
    assert b["recall"] == pytest.approx(2 / 3)
    assert interp.fbeta() == pytest.approx(2 * 3 / (2 * 3 + 1 + 2))  # micro: TP 3, FP 1, FN 2
    assert interp.accuracy == pytest.approx(5 / 8)
    assert interp.top_losses(4)[0].predicted in ("a", "a b", "b", "(none)")


def test_train_predict_and_export_a_multi_label_model_on_the_command_line(tagged, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(tagged), "--labels", "labels.csv", "--size", "16", "--bs", "8",
                 "--num-workers", "0", "--epochs", "4", "--lr", "0.01", "--quiet", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["multi_label"] and summary["threshold"] == 0.5
    assert set(summary["metrics"]) == {"valid micro-F1", "valid macro-F1"}
    assert (out / "per_tag.png").is_file() and not (out / "confusion_matrix.png").exists()
    assert "Per-tag results" in (out / "report.html").read_text()
    capsys.readouterr()
    image = tagged / "img" / "3.jpg"
    assert main(["predict", str(out / "model.pt"), str(image), "--threshold", "0.01"]) == 0
    fields = capsys.readouterr().out.strip().split("\t")
    from groundup.run.predictor import Predictor
    predictor = Predictor.from_checkpoint(out / "model.pt", device="cpu")
    pixels = torch.from_numpy(np.array(Image.open(image).convert("RGB").resize((16, 16))))[None]
    ours = predictor.probabilities(pixels)[0]
    above = [predictor.vocab[i] for i in ours.argsort(descending=True).tolist() if ours[i] > 0.01]
    assert fields[0] == str(image) and fields[1::2] == above and {"green", "red"} <= set(above)  # every tag above 0.01
    probs = [float(p) for p in fields[2::2]]
    assert probs == sorted(probs, reverse=True)
    assert main(["predict", str(out / "model.pt"), str(image), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)[0]
    assert record["threshold"] == 0.5 and all(t["prob"] > 0.5 for t in record["tags"])
    assert main(["export", str(out / "model.pt"), "--out", str(tmp_path / "m.pt2")]) == 0
    program = torch.export.load(str(tmp_path / "m.pt2"))
    exported = program.module()(pixels)[0]
    assert not torch.isclose(exported.sum(), torch.tensor(1.0))  # sigmoids, not a softmax
    torch.testing.assert_close(exported, ours, atol=1e-5, rtol=1e-4)
    capsys.readouterr()
    assert main(["evaluate", str(out / "model.pt"), "--data", str(tagged), "--labels", "labels.csv",
                 "--out", str(tmp_path / "eval")]) == 0
    printed = capsys.readouterr().out
    assert "micro-F1" in printed and "on 40 images of" in printed
    evaluated = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert evaluated["multi_label"] and (tmp_path / "eval" / "per_tag.png").is_file()
    assert {r["label"] for r in evaluated["per_class"]} == {"dark", "green", "red"}
