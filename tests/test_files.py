from pathlib import Path

import pytest

from groundup.data.files import get_image_files, grandparent_split, label_files, parent_label, val2idx


def test_get_image_files_is_recursive_sorted_and_filters_extensions(tmp_path):
    for p in ["b/2.JPEG", "a/1.png", "a/sub/3.jpg", "a/notes.txt", "a/.hidden.jpg", ".git/x.jpg"]:
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / p).write_bytes(b"")
    files = get_image_files(tmp_path)
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["a/1.png", "a/sub/3.jpg", "b/2.JPEG"]
    assert files == get_image_files(str(tmp_path))  # deterministic


def test_get_image_files_missing_folder_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        get_image_files(tmp_path / "nope")


def test_labels_come_from_parent_folder_and_val2idx_is_sorted():
    assert parent_label(Path("train/n01440764/x.JPEG")) == "n01440764"
    assert val2idx(["dog", "cat", "dog", "emu"]) == {"cat": 0, "dog": 1, "emu": 2}


def test_grandparent_split_separates_train_and_val(image_folder):
    train, valid = grandparent_split(get_image_files(image_folder))
    assert len(train) == 18 and len(valid) == 9
    assert all(f.parent.parent.name == "train" for f in train)
    assert all(f.parent.parent.name == "val" for f in valid)
    _, valid2 = grandparent_split([Path("valid/cat/1.jpg"), Path("test/cat/2.jpg")])
    assert valid2 == [Path("valid/cat/1.jpg")]


def test_label_files_rejects_a_label_outside_the_vocab():
    assert label_files([Path("train/cat/1.jpg")], {"cat": 0}) == [0]
    with pytest.raises(ValueError, match="'dog' of train/dog/1.jpg is not in the vocabulary"):
        label_files([Path("train/dog/1.jpg")], {"cat": 0})
