import json

import pytest
import torch
from PIL import Image

from groundup.data import show
from groundup.data.folder import ImageDataLoaders
from groundup.data.show import show_batch


def test_show_batch_writes_a_png_grid(tmp_path):
    xb = torch.randint(0, 256, (5, 8, 8, 3), dtype=torch.uint8)
    out = show_batch((xb, torch.tensor([0, 1, 2, 0, 1])), tmp_path / "b.png", vocab={"a": 0, "b": 1, "c": 2})
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(out).size[0] > 100


def test_show_batch_rejects_channels_first(tmp_path):
    with pytest.raises(ValueError, match=r"\(N, H, W, C\), got shape \(2, 3, 8, 8\)"):
        show_batch((torch.zeros(2, 3, 8, 8), torch.zeros(2)), tmp_path / "b.png")


@pytest.fixture
def titles(monkeypatch):
    """The titles of the images in the grid show_batch writes."""
    seen = []
    real = show.save_figure

    def save(fig, path):
        seen.extend(ax.get_title() for ax in fig.axes if ax.get_title())
        return real(fig, path)
    monkeypatch.setattr(show, "save_figure", save)
    return seen


def test_show_batch_of_loaders_titles_with_their_class_names(image_folder, tmp_path, titles):
    (image_folder / "classes.json").write_text(json.dumps({"cat": "Cat", "dog": "Dog", "emu": "Emu"}))
    dls = ImageDataLoaders.from_folder(image_folder, size=16, bs=6, num_workers=0, seed=0)
    show_batch(dls, tmp_path / "b.png")
    assert len(titles) == 6 and set(titles) <= {"Cat", "Dog", "Emu"}
    titles.clear()
    dls.show_batch(tmp_path / "c.png", max_n=4)
    assert len(titles) == 4 and set(titles) <= {"Cat", "Dog", "Emu"}
    titles.clear()
    show_batch(dls.valid, tmp_path / "d.png")  # one loader: its data set's vocabulary
    assert set(titles) == {"cat", "dog", "emu"}
    titles.clear()
    show_batch(next(iter(dls.valid)), tmp_path / "e.png")  # a bare batch knows no names
    assert set(titles) == {"0", "1", "2"}
