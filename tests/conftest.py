"""Shared fixtures: tiny image folders made on the fly, and an isolated GROUNDUP_HOME."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def pinned_to_the_cpu(request, monkeypatch) -> None:
    """The default suite trains on the CPU on every machine, a GPU machine included.

    `GROUNDUP_DEVICE=cpu` makes `auto` (the default of every `--device`, `SetupLearnerCB()`,
    `Predictor`, ...) mean the CPU, in this process and in the ones it starts (CLI and torchrun
    subprocesses inherit it); so a test means the same wherever it runs. `gpu`-marked tests
    (`pytest -m gpu`) see the machine as it is: `auto` is CUDA there.
    """
    if request.node.get_closest_marker("gpu"):
        monkeypatch.delenv("GROUNDUP_DEVICE", raising=False)
    else:
        monkeypatch.setenv("GROUNDUP_DEVICE", "cpu")


@pytest.fixture(autouse=True)
def groundup_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own GROUNDUP_HOME, so caches never leak between tests (or into ~)."""
    home = tmp_path_factory.mktemp("groundup_home")
    monkeypatch.setenv("GROUNDUP_HOME", str(home))
    return home


def make_image_folder(root: Path, classes=("cat", "dog", "emu"), n_train=6, n_valid=3, size=16,
                      seed=0) -> Path:
    """Write `train/<class>/*.jpg` and `val/<class>/*.jpg`: each class has its own mean colour."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_valid)):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                base = np.array([60 + 70 * c, 200 - 60 * c, 40 + 50 * (c % 2)], dtype=np.float64)
                px = np.clip(base + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(px).save(folder / f"{name}_{i}.jpg", quality=95)
    return root


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """A tiny data set: 3 classes, 6 train + 3 val images each, 16×16 JPEGs."""
    return make_image_folder(tmp_path / "images")


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or skip the test where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Points:
    """Loaders over `n` 2-D points in 2 classes (which side of a line): 3/4 training, 1/4 validation.

    With the defaults: 6 training batches and 2 validation batches of 32.
    """

    def __init__(self, n: int = 256, bs: int = 32, seed: int = 0):
        import torch

        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 2, generator=g)
        y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
        self.train = [(x[i:i + bs], y[i:i + bs]) for i in range(0, n * 3 // 4, bs)]
        self.valid = [(x[i:i + bs], y[i:i + bs]) for i in range(n * 3 // 4, n, bs)]


def groundup_mlp():
    """A 2-16-2 MLP of groundup modules, same weights every call."""
    import torch

    from groundup.nn.layers import Linear, ReLU, Sequential

    torch.manual_seed(0)
    return Sequential(Linear(2, 16), ReLU(), Linear(16, 2))


def torch_mlp():
    """The same MLP in torch.nn, same weights every call."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))


@pytest.fixture
def run(image_folder, tmp_path) -> Path:
    """A finished 2-epoch `groundup train` run on the tiny image folder; returns its folder."""
    from groundup.cli import main

    out = tmp_path / "run"
    assert main(["train", "--data", str(image_folder), "--size", "16", "--bs", "4", "--num-workers", "0",
                 "--epochs", "2", "--quiet", "--out", str(out)]) == 0
    return out


# -- the fault suites' helpers (tests/test_faults.py, tests/test_fault_suite.py) ----------------------------
def tiny(folder, *extra, epochs=2, size=16):
    """Arguments for a fast `groundup train` on the tiny image folder."""
    return ["train", "--data", str(folder), "--size", str(size), "--bs", "4", "--num-workers", "0",
            "--epochs", str(epochs), "--quiet", *map(str, extra)]


def one_line_error(capsys, pattern: str) -> str:
    """stderr is exactly one line, `groundup: error: ...`, matching `pattern`; return it."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("groundup: error:"), err
    assert re.search(pattern, err), err
    return err
