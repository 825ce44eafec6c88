import numpy as np
import pytest
import torch
from PIL import Image

from groundup.data.files import get_image_files
from groundup.data.images import CorruptImageError, Dataset, open_image


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "RGB"])
def test_open_image_converts_every_mode_to_rgb_at_the_requested_size(tmp_path, mode):
    im = Image.new("RGB", (40, 30), (200, 100, 50)).convert(mode)
    path = tmp_path / ("x.jpg" if mode in ("L", "CMYK", "RGB") else "x.png")
    im.save(path)
    x = open_image(path, 16)
    assert x.shape == (16, 16, 3) and x.dtype == np.uint8


def test_open_image_draft_mode_matches_a_full_decode_closely(tmp_path):
    yy, xx = np.mgrid[0:128, 0:128]
    px = np.stack([xx * 2, yy * 2, (xx + yy)], -1).astype(np.uint8)  # a smooth 128 px gradient
    Image.fromarray(px).save(tmp_path / "x.jpg", quality=95)
    fast = open_image(tmp_path / "x.jpg", 32).astype(float)
    full = np.asarray(Image.open(tmp_path / "x.jpg").convert("RGB").resize((32, 32), Image.BILINEAR), float)
    assert np.abs(fast - full).mean() < 3


def test_dataset_returns_uint8_hwc_and_label_index(image_folder):
    ds = Dataset(get_image_files(image_folder / "train"), size=8)
    assert len(ds) == 18 and ds.vocab == {"cat": 0, "dog": 1, "emu": 2}
    x, y = ds[7]
    assert x.shape == (8, 8, 3) and x.dtype == torch.uint8
    assert y == ds.vocab[ds.files[7].parent.name] and isinstance(y, int)


def test_dataset_rejects_bad_size(image_folder):
    with pytest.raises(ValueError, match="size must be a positive integer, got 0"):
        Dataset(get_image_files(image_folder), size=0)


def test_corrupt_file_raises_naming_it_or_is_skipped_with_a_warning(image_folder, caplog):
    bad = image_folder / "train" / "cat" / "broken.jpg"
    bad.write_bytes(b"not a jpeg at all")
    files = get_image_files(image_folder / "train")
    i = files.index(bad)
    with pytest.raises(CorruptImageError, match="broken.jpg"):
        Dataset(files, size=8)[i]
    ds = Dataset(files, size=8, skip_corrupt=True)
    assert ds[i] is None
    assert [(r.name, r.levelname) for r in caplog.records if "broken.jpg" in r.getMessage()] == \
        [("groundup.data.images", "WARNING")]  # a log record of the groundup logger
    xb, yb = ds.get_batch([i - 1, i, i + 1])  # dropped from the batch, remembered in the cache
    assert xb.shape[0] == 2 and yb.shape == (2,)


def test_dataset_batch_equals_items_cold_and_warm(image_folder):
    ds = Dataset(get_image_files(image_folder), size=8)
    items = [ds[i] for i in range(len(ds))]  # fills the cache
    assert ds.is_cached()
    xb, yb = ds.get_batch(range(len(ds)))
    assert torch.equal(xb, torch.stack([x for x, _ in items]))
    assert yb.tolist() == [y for _, y in items]
    cold = Dataset(get_image_files(image_folder), size=8, cache=False)
    assert cold.cache is None and torch.equal(cold.get_batch(range(len(ds)))[0], xb)
