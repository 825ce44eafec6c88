import pytest
import torch

from groundup.utils.smoothing import EMA


def test_ema_is_bias_corrected_like_adam():
    ema = EMA(0.9)
    assert ema.update(2.0) == pytest.approx(2.0)  # no pull towards the initial 0
    assert ema.update(4.0) == pytest.approx((0.9 * 0.1 * 2 + 0.1 * 4) / (1 - 0.81))
    ema.reset()
    assert ema.value == 0.0 and ema.count == 0


def test_ema_of_tensors_stays_a_tensor_and_matches_floats():
    floats, tensors = EMA(0.98), EMA(0.98)
    for x in [3.0, 1.0, 2.0, 5.0]:
        f, t = floats.update(x), tensors.update(torch.tensor(x, dtype=torch.float64))
    assert isinstance(t, torch.Tensor) and t.item() == pytest.approx(f)


def test_ema_checks_beta():
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\), got 1"):
        EMA(1)


def test_update_many_equals_one_update_at_a_time():
    xs = torch.tensor([3.0, 1.0, 2.0, 5.0, 4.0], dtype=torch.float64)
    one, many = EMA(0.9), EMA(0.9)
    one.update(7.0)
    many.update(7.0)
    for x in xs.tolist():
        expected = one.update(x)
    assert float(many.update_many(xs)) == pytest.approx(expected) and many.count == 6
