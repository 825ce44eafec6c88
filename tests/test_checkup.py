"""The diagnosis of real (tiny) runs: in summary.json, report.html and train's output, and `groundup doctor`."""

import csv
import json
import logging
import shutil

from conftest import make_image_folder

from groundup.cli import main


def folder_with_problems(tmp_path):
    """The tiny image set, plus a mislabelled validation image and a training image copied into val/."""
    root = make_image_folder(tmp_path / "images", n_train=12, n_valid=4)
    other = make_image_folder(tmp_path / "other", n_train=1, n_valid=1, seed=5)
    shutil.copy(other / "val/cat/cat_0.jpg", root / "val/dog/mislabelled.jpg")  # a cat filed as a dog
    shutil.copy(root / "train/emu/emu_3.jpg", root / "val/emu/leaked.jpg")
    return root


def train_args(root, out, *extra):
    return ["train", "--data", str(root), "--size", "16", "--bs", "4", "--num-workers", "0", "--epochs", "6",
            "--quiet", "--out", str(out), *extra]


def test_a_run_lists_leakage_and_label_errors_with_paths_and_thumbnails(tmp_path, capsys):
    root, out = folder_with_problems(tmp_path), tmp_path / "run"
    assert main(train_args(root, out)) == 0
    summary = json.loads((out / "summary.json").read_text())
    found = {f["name"]: f for f in summary["diagnosis"]}
    assert set(found) == {"leakage", "label_errors"}  # nothing else is wrong with this run
    assert found["leakage"]["items"] == [{"train": str(root / "train/emu/emu_3.jpg"),
                                          "valid": str(root / "val/emu/leaked.jpg"), "kind": "exact",
                                          "distance": 0}]
    assert [m["file"] for m in found["label_errors"]["items"]] == [str(root / "val/dog/mislabelled.jpg")]
    assert (out / "label_errors.png").is_file() and "label_errors.png" in summary["files"]
    report = (out / "report.html").read_text()
    assert report.index('id="diagnosis"') < report.index('id="run"')  # shown first
    assert "mislabelled.jpg" in report and "Likely label errors" in report
    assert summary["diagnosis_notes"]["seconds"] < summary["wall_seconds"]

    capsys.readouterr()
    assert main(["doctor", str(out)]) == 0  # the same diagnosis from the folder alone
    printed = capsys.readouterr().out
    assert "warning: leakage" in printed and "info: label_errors" in printed and "mislabelled.jpg" in printed
    assert main(["doctor", str(out), "--json"]) == 0
    assert {f["name"] for f in json.loads(capsys.readouterr().out)["diagnosis"]} == set(found)


def test_doctor_prints_the_diagnosis_the_run_wrote_also_with_tta(tmp_path, capsys, monkeypatch):
    from groundup.learner import Learner

    root, out = folder_with_problems(tmp_path), tmp_path / "run"
    assert main(train_args(root, out, "--tta")) == 0
    written = json.loads((out / "summary.json").read_text())["diagnosis"]
    assert "label_errors" in {f["name"] for f in written}
    asked, get_preds = [], Learner.get_preds

    def spy(self, *args, **kwargs):
        asked.append(kwargs.get("tta", False))
        return get_preds(self, *args, **kwargs)

    monkeypatch.setattr(Learner, "get_preds", spy)
    capsys.readouterr()
    assert main(["doctor", str(out), "--json"]) == 0
    assert asked == [True]  # judged on the run's own (flip-averaged) predictions, as the run judged them
    assert json.loads(capsys.readouterr().out)["diagnosis"] == written


def test_doctor_reads_a_run_made_before_it_and_says_what_it_could_not_check(tmp_path, capsys):
    root, out = make_image_folder(tmp_path / "images"), tmp_path / "run"
    assert main(train_args(root, out, "--lr", "3")) == 0
    # as groundup 0.2 left it: no data_seconds column, no steps.csv, no diagnosis in summary.json
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    with (out / "metrics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, [c for c in rows[0] if c != "data_seconds"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (out / "steps.csv").unlink()
    capsys.readouterr()
    assert main(["doctor", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "error: lr_too_high" in printed and "try: --lr 0.3" in printed
    assert "not checked: the data loader (metrics.csv has no data_seconds column" in printed
    assert "not checked: the loss batch by batch (no steps.csv)" in printed


def test_train_prints_the_diagnosis_at_the_end(tmp_path, caplog):
    root = make_image_folder(tmp_path / "images")
    args = [a for a in train_args(root, tmp_path / "run", "--lr", "3") if a != "--quiet"]
    with caplog.at_level(logging.INFO, logger="groundup.run"):
        assert main(args) == 0
    text = caplog.text
    assert "diagnosis: " in text and "lr_too_high" in text and "groundup doctor" in text


def test_doctor_on_a_folder_that_is_not_a_run_is_one_line_and_status_2(tmp_path, capsys):
    assert main(["doctor", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("groundup: error: run folder not found") and len(err.splitlines()) == 1
    assert main(["doctor", str(tmp_path)]) == 2
    assert "is not a groundup run folder" in capsys.readouterr().err


def test_doctor_reads_the_training_images_at_the_size_the_run_stored_them(tmp_path, capsys, monkeypatch):
    from groundup.run import checkup

    root = make_image_folder(tmp_path / "images")
    sizes = {}
    real_dataset = checkup.Dataset

    def spy(files, *args, size, **kwargs):
        sizes.setdefault("valid" if files[0].parent.parent.name == "val" else "train", size)
        return real_dataset(files, *args, size=size, **kwargs)

    monkeypatch.setattr(checkup, "Dataset", spy)
    for crop, stored in (("resize", 20), ("pad", 16)):  # resized crops cache 1.25x the size; shifts the size
        out = tmp_path / crop
        sizes.clear()
        assert main(train_args(root, out, "--augment", "--crop", crop, "--epochs", "1")) == 0
        sizes.clear()
        assert main(["doctor", str(out)]) == 0
        assert sizes == {"train": stored, "valid": 16}, crop
    capsys.readouterr()
