import json
import re
import subprocess
import sys

import pytest
import torch

from groundup.utils.checkpoint_file import CheckpointError, read_checkpoint
from groundup.cli import main
from groundup.data.files import get_image_files
from groundup.run.predictor import Prediction, Predictor, find_images


def assert_one_line_error(capsys, pattern):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("groundup: error:") and "Traceback" not in err, err
    assert re.search(pattern, err), err


def test_predict_prints_label_and_probability_for_each_image(run, image_folder, capsys):
    image = image_folder / "val" / "dog" / "dog_0.jpg"
    assert main(["predict", str(run / "model.pt"), str(image), str(image_folder / "val" / "cat")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + 3
    path, label, prob = lines[0].split("\t")
    assert path == str(image) and label in {"cat", "dog", "emu"} and 0 < float(prob) <= 1
    assert all(line.split("\t")[0].startswith(str(image_folder / "val" / "cat")) for line in lines[1:])


def test_predict_top_k_lists_labels_by_probability(run, image_folder, capsys):
    image = image_folder / "val" / "emu" / "emu_1.jpg"
    assert main(["predict", str(run / "model.pt"), str(image), "--top", "5"]) == 0
    fields = capsys.readouterr().out.strip("\n").split("\t")[1:]
    labels, probs = fields[::2], [float(f) for f in fields[1::2]]
    assert sorted(labels) == ["cat", "dog", "emu"]  # top 5 of 3 classes: all three
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1, abs=1e-3)


def test_predict_json_is_machine_readable(run, image_folder, capsys):
    assert main(["predict", str(run / "model.pt"), str(image_folder / "val"), "--json", "--top", "2"]) == 0
    preds = json.loads(capsys.readouterr().out)
    assert len(preds) == 9
    for p in preds:
        assert set(p) == {"path", "label", "name", "prob", "top"}
        assert p["top"][0]["label"] == p["label"] and len(p["top"]) == 2
        assert set(p["top"][0]) == {"label", "name", "prob"} and p["top"][0]["name"] == p["name"]


def test_predictions_agree_with_the_validation_accuracy_of_training(run, image_folder):
    predictor = Predictor.from_checkpoint(run / "model.pt", device="cpu")
    files = get_image_files(image_folder / "val")
    preds = predictor.predict(files, bs=4)
    acc = sum(p.label == f.parent.name for p, f in zip(preds, files)) / len(files)
    summary = json.loads((run / "summary.json").read_text())
    assert acc == pytest.approx(summary["final"]["valid_acc"])


def test_predictor_probabilities_sum_to_one(run):
    predictor = Predictor.from_checkpoint(run / "model.pt", device="cpu")
    probs = predictor.probabilities(torch.randint(0, 256, (5, 16, 16, 3), dtype=torch.uint8))
    assert probs.shape == (5, 3)
    torch.testing.assert_close(probs.sum(1), torch.ones(5))
    assert Prediction("x.jpg", ["a", "b"], [0.7, 0.2]).to_dict()["top"][1] == {"label": "b", "name": "b", "prob": 0.2}


@pytest.mark.slow  # a groundup subprocess
def test_python_dash_m_groundup_predict(run, image_folder, tmp_path):
    r = subprocess.run([sys.executable, "-m", "groundup", "predict", str(run / "model.pt"),
                        str(image_folder / "val" / "cat" / "cat_0.jpg")], capture_output=True, text=True,
                       check=False, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("\t") == 2


def test_an_unreadable_image_is_a_one_line_error(run, tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    assert main(["predict", str(run / "model.pt"), str(bad)]) == 2
    assert_one_line_error(capsys, r"cannot decode image file .*broken.jpg")
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("args, pattern", [
    (["{run}/model.pt", "{tmp}/missing.jpg"], r"image or folder not found: .*missing.jpg"),
    (["{run}/model.pt", "{tmp}/empty"], r"no image files in folder .*empty"),
    (["{tmp}/nothing.pt", "{tmp}/empty"], r"checkpoint not found: .*nothing.pt"),
    (["{run}/model.pt", "{run}", "--top", "0"], r"--top must be a positive integer, got 0"),
])
def test_predict_argument_errors(run, tmp_path, capsys, args, pattern):
    (tmp_path / "empty").mkdir()
    args = [a.format(run=run, tmp=tmp_path) for a in args]
    assert main(["predict", *args]) == 2
    assert_one_line_error(capsys, pattern)


def test_a_truncated_checkpoint_is_a_one_line_error(run, image_folder, capsys):
    data = (run / "model.pt").read_bytes()
    (run / "model.pt").write_bytes(data[: len(data) // 2])
    assert main(["predict", str(run / "model.pt"), str(image_folder / "val")]) == 2
    assert_one_line_error(capsys, r"cannot read checkpoint .*model.pt: the file is truncated")


def test_a_checkpoint_for_another_architecture_is_a_one_line_error(run, image_folder, capsys):
    ckpt = read_checkpoint(run / "model.pt")
    ckpt["arch"]["name"] = "resnet"  # simple_cnn weights labelled as a resnet
    torch.save(ckpt, run / "relabelled.pt")
    assert main(["predict", str(run / "relabelled.pt"), str(image_folder / "val")]) == 2
    assert_one_line_error(capsys, r"its weights do not fit the architecture 'resnet'")
    with pytest.raises(CheckpointError, match="do not fit"):
        Predictor.from_checkpoint(run / "relabelled.pt")


def test_find_images_takes_files_and_folders(image_folder):
    one = image_folder / "train" / "cat" / "cat_0.jpg"
    files = find_images([one, image_folder / "val"])
    assert files[0] == one and len(files) == 1 + 9
    with pytest.raises(ValueError, match="no images given"):
        find_images([])


def test_any_learner_checkpoint_predicts_as_the_learner_would(image_folder, tmp_path):
    from groundup.callbacks.setup import SetupLearnerCB
    from groundup.data.folder import ImageDataLoaders
    from groundup.learner import Learner
    from groundup.losses import cross_entropy
    from groundup.nn.models import simple_cnn

    dls = ImageDataLoaders.from_folder(image_folder, size=16, bs=4, num_workers=0, seed=0)
    learn = Learner(simple_cnn(n_classes=3), dls, cross_entropy, lr=0.05, cbs=[SetupLearnerCB("cpu")])
    learn.fit(1)
    learn.save(tmp_path / "plain.pt")  # no run settings: the preprocessing and arch are enough
    files = sorted(get_image_files(image_folder / "val"))
    preds = Predictor.from_checkpoint(tmp_path / "plain.pt", device="cpu").predict(files)
    xb = torch.as_tensor(dls.valid.dataset.get_batch(list(range(len(files))))[0])  # (n, 16, 16, 3) uint8
    learn.model.eval()
    with torch.no_grad():
        probs = torch.softmax(learn.model(learn.preprocessing.normalize(xb).permute(0, 3, 1, 2)), 1)
    order = [dls.valid.dataset.files.index(f) for f in files]
    assert [p.label for p in preds] == [learn.preprocessing.vocab[int(probs[i].argmax())] for i in order]


def test_a_checkpoint_of_format_version_1_still_predicts(run, image_folder, tmp_path):
    ckpt = read_checkpoint(run / "model.pt")
    pre = ckpt.pop("preprocessing")
    del ckpt["arch"], ckpt["history"]
    ckpt.update(version=1, vocab=pre["vocab"], stats={"mean": torch.tensor(pre["mean"]), "std": torch.tensor(pre["std"])})
    torch.save(ckpt, tmp_path / "v1.pt")
    files = sorted(get_image_files(image_folder / "val"))
    old = Predictor.from_checkpoint(tmp_path / "v1.pt", device="cpu").predict(files, top_k=3)
    new = Predictor.from_checkpoint(run / "model.pt", device="cpu").predict(files, top_k=3)
    assert [p.labels for p in old] == [p.labels for p in new]
    assert [q for p in old for q in p.probs] == pytest.approx([q for p in new for q in p.probs])

def test_every_line_of_the_top_k_output_is_tab_separated(run, image_folder, capsys):
    (image_folder / "classes.json").write_text(json.dumps({"cat": "house cat", "dog": "dog", "emu": "emu"}))
    assert main(["train", "--data", str(image_folder), "--size", "16", "--bs", "4", "--num-workers", "0",
                 "--epochs", "1", "--quiet", "--out", str(run.parent / "named")]) == 0
    capsys.readouterr()
    named = run.parent / "named" / "model.pt"
    assert main(["predict", str(named), str(image_folder / "val"), "--top", "2"]) == 0
    for line in capsys.readouterr().out.splitlines():
        fields = line.split("\t")
        assert len(fields) == 5 and " " not in fields[2] + fields[4]  # path, name, prob, name, prob
        assert {fields[1], fields[3]} <= {"house cat", "dog", "emu"}  # the display names, spaces and all
        assert float(fields[2]) >= float(fields[4])


def test_predictions_carry_the_class_names_and_json_keeps_the_labels(run, image_folder, capsys):
    ckpt = read_checkpoint(run / "model.pt")
    ckpt["preprocessing"]["class_names"] = ["Cat", "Dog", "Emu"]
    torch.save(ckpt, run / "named.pt")
    image = image_folder / "val" / "emu" / "emu_0.jpg"
    pred = Predictor.from_checkpoint(run / "named.pt").predict([image], top_k=3)[0]
    assert sorted(pred.names) == ["Cat", "Dog", "Emu"] and pred.name == pred.names[0]
    assert [n.lower() for n in pred.names] == pred.labels
    assert main(["predict", str(run / "named.pt"), str(image_folder / "val"), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)[0]
    assert set(first) == {"path", "label", "name", "prob", "top"} and first["label"] in {"cat", "dog", "emu"}
    assert first["name"] == first["label"].capitalize()  # the class name beside the folder name


def test_predict_tta_averages_each_image_and_its_mirror_image(run, image_folder, capsys):
    predictor = Predictor.from_checkpoint(run / "model.pt", device="cpu")
    xb = torch.randint(0, 256, (3, 16, 16, 3), dtype=torch.uint8)
    expected = (predictor.probabilities(xb) + predictor.probabilities(xb.flip(2))) / 2
    torch.testing.assert_close(predictor.probabilities(xb, tta=True), expected, atol=1e-5, rtol=1e-4)
    image = image_folder / "val" / "emu" / "emu_1.jpg"
    assert main(["predict", str(run / "model.pt"), str(image), "--top", "3", "--tta", "--json"]) == 0
    (pred,) = json.loads(capsys.readouterr().out)
    tta = predictor.predict([image], top_k=3, tta=True)[0]
    assert pred["label"] == tta.labels[0] and pred["prob"] == pytest.approx(tta.probs[0])
    assert tta.probs != predictor.predict([image], top_k=3)[0].probs
