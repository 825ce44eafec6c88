"""Labels from a CSV, a function or lists: the same loaders as from class folders; bad rows named by line."""

import logging
import re

import numpy as np
import pytest
import torch

from groundup.cli import main
from groundup.data.csv_labels import LabelCSVError, read_label_csv
from groundup.data.files import get_image_files, parent_label
from groundup.data.folder import ImageDataLoaders


def write_csv(folder, rows, name="labels.csv", header="fname,label,is_valid"):
    path = folder / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def folder_rows(folder):
    """The image folder's files as CSV rows: relative name, parent label, 1 for val/."""
    return [f"{f.relative_to(folder).as_posix()},{parent_label(f)},{int(f.parts[-3] == 'val')}"
            for f in get_image_files(folder)]


def test_from_csv_ends_in_the_same_loaders_as_from_folder(image_folder):
    write_csv(image_folder, folder_rows(image_folder))
    a = ImageDataLoaders.from_folder(image_folder, size=8, bs=4, num_workers=0, seed=0)
    b = ImageDataLoaders.from_csv(image_folder, "labels.csv", valid_col="is_valid", size=8, bs=4, num_workers=0, seed=0)
    for x, y in ((a.train, b.train), (a.valid, b.valid)):
        assert sorted(x.dataset.files) == sorted(y.dataset.files)
        assert x.dataset.vocab == y.dataset.vocab
        lab = dict(zip(x.dataset.files, x.dataset.labels.tolist()))
        assert all(lab[f] == t for f, t in zip(y.dataset.files, y.dataset.labels.tolist()))
        assert y.dataset.cache is not None  # the decode cache too
    assert a.preprocessing.vocab == b.preprocessing.vocab and a.preprocessing.class_names == b.preprocessing.class_names
    assert not b.preprocessing.multi_label
    torch.testing.assert_close(b.preprocessing.mean, a.preprocessing.mean)
    torch.testing.assert_close(b.preprocessing.std, a.preprocessing.std)
    assert b.path == image_folder


def test_from_func_and_from_lists_label_the_same_files_the_same_way(image_folder):
    files = get_image_files(image_folder / "train")
    f = ImageDataLoaders.from_func(files, parent_label, path=image_folder, size=8, bs=4, num_workers=0, seed=1)
    rel = [p.relative_to(image_folder) for p in files]
    g = ImageDataLoaders.from_lists(rel, [parent_label(p) for p in files], path=image_folder, size=8, bs=4,
                                    num_workers=0, seed=1)
    assert f.valid.dataset.files == g.valid.dataset.files and len(f.valid.dataset) > 0
    assert f.preprocessing.vocab == g.preprocessing.vocab == ["cat", "dog", "emu"]
    assert (f.train.dataset.labels == g.train.dataset.labels).all()
    assert [parent_label(p) for p in g.train.dataset.files] == [g.preprocessing.vocab[i] for i in g.train.dataset.labels]


@pytest.mark.parametrize("rows, header, kwargs, pattern", [
    (["train/cat/cat_0.jpg,cat,0", "train/cat/nope.jpg,cat,0"], None, {},
     r"labels.csv, line 3: the file train/cat/nope.jpg is not there .*; correct the name or remove the row"),
    (["train/cat/cat_0.jpg,cat,0"], "fname,tags,is_valid", {"label_col": "label"},
     r"labels.csv: no column named 'label' \(label_col\); its first line names the columns 0: 'fname', 1: 'tags'"),
    (["train/cat/cat_0.jpg,cat,0"], None, {"label_col": 5}, r"no column 5 \(label_col\)"),
    (["train/cat/cat_0.jpg,cat,0", "train/cat/cat_1.jpg, ,0"], None, {},
     r"line 3: train/cat/cat_1.jpg has an empty label \('label'\); give it a label or remove the row"),
    (["train/cat/cat_0.jpg,cat,0", "train/dog/dog_0.jpg,dog,0", "train/cat/cat_0.jpg,dog,1"], None, {},
     r"line 4: train/cat/cat_0.jpg is listed again \(first on line 2\); list each file once"),
    (["train/cat/cat_0.jpg,cat,0", "train/cat/cat_1.jpg"], None, {},
     r"line 3: the row has 1 fields, so no 'label' \(column 1, label_col\)"),
    (["train/cat/cat_0.jpg,cat,maybe"], None, {"valid_col": 2}, r"line 2: .* has 'maybe' in the validation column"),
])
def test_a_bad_csv_is_one_error_naming_the_line_and_the_fix(image_folder, rows, header, kwargs, pattern):
    write_csv(image_folder, rows, header=header or "fname,label,is_valid")
    with pytest.raises(LabelCSVError, match=pattern) as e:
        read_label_csv(image_folder / "labels.csv", image_folder, **kwargs)
    if re.search(r"line \d", pattern):
        assert "--skip-corrupt" in str(e.value)


def test_skip_corrupt_skips_bad_rows_counts_and_logs_them(image_folder, caplog):
    rows = folder_rows(image_folder)
    bad = ["train/cat/gone.jpg,cat,0", "train/dog/dog_0.jpg,,0", rows[0]]  # missing file, empty label, duplicate
    write_csv(image_folder, rows + bad)
    with caplog.at_level(logging.WARNING, logger="groundup"):
        dls = ImageDataLoaders.from_csv(image_folder, valid_col=2, skip_corrupt=True, size=8, bs=4, num_workers=0)
    assert len(dls.train.dataset) + len(dls.valid.dataset) == len(rows)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("skipping the row" in m for m in messages) == 3
    assert any(f"skipped 3 of the {len(rows) + 3} rows of" in m for m in messages), messages


def test_train_from_a_csv_on_the_command_line(image_folder, tmp_path, capsys):
    rows = [r.rsplit(",", 1)[0] for r in folder_rows(image_folder)]
    write_csv(image_folder, rows, header="fname,label")
    out = tmp_path / "run"
    assert main(["train", "--data", str(image_folder), "--labels", "labels.csv", "--valid-pct", "0.3",
                 "--size", "16", "--bs", "4", "--num-workers", "0", "--epochs", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "a random 30% of its 27 images validates" in printed
    assert (out / "confusion_matrix.png").is_file()
    config = (out / "config.toml").read_text()
    assert 'labels = "labels.csv"' in config and "valid_pct = 0.3" in config


def test_a_bad_csv_on_the_command_line_is_one_line_with_status_2(image_folder, tmp_path, capsys):
    write_csv(image_folder, ["train/cat/cat_0.jpg,cat", "train/cat/typo.jpg,cat"], header="fname,label")
    assert main(["train", "--data", str(image_folder), "--labels", "labels.csv", "--num-workers", "0",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "labels.csv, line 3: the file train/cat/typo.jpg is not there" in err


def test_the_labels_and_split_are_config_file_keys(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text('labels = "labels.csv"\nvalid_col = "is_valid"\nvalid_pct = 0.25\ntask = "multi"\nthreshold = 0.4\n')
    assert main(["train", "--config", str(config), "--print-config"]) == 0
    printed = capsys.readouterr().out
    for line in ('labels = "labels.csv"', 'valid_col = "is_valid"', "valid_pct = 0.25", 'task = "multi"',
                 "threshold = 0.4"):
        assert line in printed, printed
    config.write_text('valid_col = "is_valid"\n')
    assert main(["train", "--config", str(config), "--print-config"]) == 2
    assert "--valid-col is_valid needs --labels" in capsys.readouterr().err
