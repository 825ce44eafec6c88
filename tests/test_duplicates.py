"""Copies between the training and the validation set: exact (content hash) and near (dHash checked on thumbnails)."""

import shutil

import numpy as np
from PIL import Image

from groundup.data.duplicates import NEAR_BITS, content_hashes, dhash, find_duplicates
from groundup.data.files import get_image_files, grandparent_split, parent_label, val2idx
from groundup.data.images import Dataset


def photo(seed: int, size: int = 48) -> np.ndarray:
    """A smooth random picture (blurred blobs), unlike any other seed's."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 6, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.BICUBIC))


def folder(tmp_path, n=6):
    for split, seeds in (("train", range(n)), ("val", range(100, 100 + n))):
        for s in seeds:
            d = tmp_path / split / ("a" if s % 2 else "b")
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(photo(s)).save(d / f"{s}.jpg", quality=95)
    return tmp_path


def datasets(root):
    train, valid = grandparent_split(get_image_files(root))
    vocab = val2idx(parent_label(f) for f in train)
    return train, valid, Dataset(train, vocab, size=32), Dataset(valid, vocab, size=32)


def test_a_clean_split_has_no_duplicates(tmp_path):
    train, valid, tds, vds = datasets(folder(tmp_path))
    assert find_duplicates(train, valid, tds, vds) == []


def test_exact_and_near_copies_are_found_with_their_paths(tmp_path):
    root = folder(tmp_path)
    shutil.copy(root / "train/b/0.jpg", root / "val/b/copy.jpg")  # byte for byte
    Image.fromarray(photo(3)).resize((40, 40)).save(root / "val/a/near.jpg", quality=70)  # resized, re-encoded
    train, valid, tds, vds = datasets(root)
    found = find_duplicates(train, valid, tds, vds)
    assert [(d.kind, d.train.endswith("0.jpg"), d.valid.endswith("copy.jpg")) for d in found[:1]] == \
        [("exact", True, True)]
    assert len(found) == 2 and found[1].kind == "near" and found[1].valid.endswith("near.jpg")
    assert found[1].train.endswith("3.jpg") and found[1].distance <= NEAR_BITS
    assert find_duplicates(train, valid) == found[:1]  # without the data sets: exact copies only


def test_dhash_is_the_sign_of_horizontal_differences_and_content_hashes_are_sha1(tmp_path):
    ramp = np.tile(np.arange(0, 255, 255 / 36).astype(np.uint8)[::-1][:36], (32, 1))  # bright left, dark right
    hashes, stds, thumbs = dhash(np.repeat(ramp[None, :, :, None], 3, axis=3))
    assert hashes[0] == np.uint64(2**64 - 1) and stds[0] > 0 and thumbs.shape == (1, 16, 16, 3)
    assert dhash(np.repeat(ramp[None, :, ::-1, None], 3, axis=3))[0][0] == 0
    (tmp_path / "x").write_bytes(b"abc")
    assert content_hashes([tmp_path / "x"]) == ["a9993e364706816aba3e25717850c26c9cd0d89d"]


def test_smooth_different_pictures_are_not_near_copies(tmp_path):
    # two skies: the same gradient, a small different object: dHash within NEAR_BITS, thumbnails apart
    sky = np.tile(np.linspace(90, 200, 48)[:, None, None], (1, 48, 3)).astype(np.uint8)
    a, b = sky.copy(), sky.copy()
    a[10:20, 10:20] = (250, 30, 30)
    b[30:44, 28:44] = (20, 20, 20)
    for split, img in (("train", a), ("val", b)):
        (tmp_path / split / "sky").mkdir(parents=True)
        Image.fromarray(img).save(tmp_path / split / "sky" / "p.png")
    train, valid, tds, vds = datasets(tmp_path)
    assert find_duplicates(train, valid, tds, vds, max_distance=64) == []
