import pytest
import torch
from PIL import Image

from groundup.data.show import show_batch


def test_show_batch_writes_a_png_grid(tmp_path):
    xb = torch.randint(0, 256, (5, 8, 8, 3), dtype=torch.uint8)
    out = show_batch((xb, torch.tensor([0, 1, 2, 0, 1])), tmp_path / "b.png", vocab={"a": 0, "b": 1, "c": 2})
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(out).size[0] > 100


def test_show_batch_rejects_channels_first(tmp_path):
    with pytest.raises(ValueError, match=r"\(N, H, W, C\), got shape \(2, 3, 8, 8\)"):
        show_batch((torch.zeros(2, 3, 8, 8), torch.zeros(2)), tmp_path / "b.png")
