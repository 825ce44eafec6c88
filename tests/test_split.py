"""The random split: a hash of each file's name with the seed, so a file keeps its side when files are added."""

import logging
import shutil

import numpy as np
import pytest

from groundup.data.folder import ImageDataLoaders
from groundup.data.split import hash_split


def test_the_same_file_keeps_its_side_when_files_are_added():
    names = [f"img/{i}.jpg" for i in range(2000)]
    before = hash_split(names, 0.2, seed=42)
    after = hash_split([f"new/{i}.jpg" for i in range(700)] + names[::-1], 0.2, seed=42)  # more files, other order
    assert (after[700:][::-1] == before).all()
    assert 0.18 < before.mean() < 0.22  # about valid_pct of any set


def test_another_seed_is_another_split_and_the_same_seed_the_same():
    names = [f"{i}.png" for i in range(500)]
    assert (hash_split(names, 0.3, seed=1) == hash_split(names, 0.3, seed=1)).all()
    assert (hash_split(names, 0.3, seed=1) != hash_split(names, 0.3, seed=2)).any()


@pytest.mark.parametrize("pct", [0, 1, 1.5, -0.1])
def test_valid_pct_must_be_a_share(pct):
    with pytest.raises(ValueError, match="valid_pct must be a finite number in"):
        hash_split(["a.jpg"], pct)


def test_a_folder_without_val_holds_out_a_seeded_random_share_and_says_so(image_folder, caplog):
    shutil.rmtree(image_folder / "val")  # 18 training images left, in train/<label>/
    with caplog.at_level(logging.INFO, logger="groundup"):
        dls = ImageDataLoaders.from_folder(image_folder, size=8, bs=4, num_workers=0, seed=3, valid_pct=0.25)
    lines = [r.getMessage() for r in caplog.records if "no validation part" in r.getMessage()]
    assert len(lines) == 1 and "a random 25% of its 18 images validates" in lines[0], lines
    names = [f"train/{f.parent.name}/{f.name}" for f in dls.train.dataset.files + dls.valid.dataset.files]
    expected = hash_split(names, 0.25, seed=3)
    assert expected.sum() == len(dls.valid.dataset) and not expected[:len(dls.train.dataset)].any()
    again = ImageDataLoaders.from_folder(image_folder, size=8, bs=4, num_workers=0, seed=3, valid_pct=0.25)
    assert again.valid.dataset.files == dls.valid.dataset.files


def test_class_folders_straight_in_the_folder_are_split_at_random_with_default_share(image_folder):
    root = image_folder.parent / "flat"
    shutil.copytree(image_folder / "train", root)  # root/<label>/*.jpg: 18 images
    dls = ImageDataLoaders.from_folder(root, size=8, bs=4, num_workers=0, seed=0)
    names = [f"{f.parent.name}/{f.name}" for f in sorted(dls.train.dataset.files + dls.valid.dataset.files)]
    assert sorted(dls.valid.dataset.files) == sorted(root / n for n, v in zip(names, hash_split(names, 0.2, 0)) if v)
    assert dls.preprocessing.vocab == ["cat", "dog", "emu"]


def test_valid_pct_with_a_val_folder_is_an_error_that_says_which_to_drop(image_folder):
    with pytest.raises(ValueError, match=r"valid_pct=0.3 was given, but .* has its own validation part"):
        ImageDataLoaders.from_folder(image_folder, size=8, num_workers=0, valid_pct=0.3)
