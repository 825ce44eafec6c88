import random

import numpy as np
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
