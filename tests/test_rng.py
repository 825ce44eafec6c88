import random

import numpy as np
import pytest
import torch

from groundup.utils.rng import get_rng_state, seed_everything, set_rng_state


def draws():
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_a_restored_state_repeats_every_generator():
    seed_everything(3)
    state = get_rng_state()
    first = draws()
    set_rng_state(state)
    assert draws() == first


def test_the_state_is_plain_data_that_weights_only_loading_accepts(tmp_path):
    seed_everything(4)
    torch.save(get_rng_state(), tmp_path / "rng.pt")
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    seed_everything(4)
    expected = draws()
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert draws() == expected


@pytest.fixture
def restores_determinism(monkeypatch):
    """Put torch's process-wide algorithm settings back after the test."""
    cudnn = torch.backends.cudnn
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             cudnn.deterministic, cudnn.benchmark)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    cudnn.deterministic, cudnn.benchmark = saved[2], saved[3]


def test_set_deterministic_turns_on_every_switch_torch_has(restores_determinism):
    import os

    from groundup.utils.rng import set_deterministic

    torch.backends.cudnn.benchmark = True
    set_deterministic(True)
    assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    set_deterministic(False)
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.deterministic


def test_train_deterministic_is_a_setting_of_the_run(restores_determinism, image_folder, tmp_path):
    import json

    from groundup.cli import main

    assert not torch.are_deterministic_algorithms_enabled()
    out = tmp_path / "run"
    assert main(["train", "--data", str(image_folder), "--size", "16", "--bs", "8", "--num-workers", "0", "--epochs", "1",
                 "--quiet", "--deterministic", "--out", str(out)]) == 0
    assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
    assert json.loads((out / "summary.json").read_text())["config"]["deterministic"] is True
    assert 'deterministic = true' in (out / "config.toml").read_text()
