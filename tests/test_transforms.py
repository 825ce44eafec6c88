import pytest
import torch

from groundup.data.transforms import Normalize, batch_stats, to_nchw


def test_batch_stats_match_the_walkthrough_formula():
    xb = torch.randint(0, 256, (4, 5, 6, 3), dtype=torch.uint8)
    mean, std = batch_stats(xb)
    xf = xb.float() / 255
    torch.testing.assert_close(mean, xf.mean((0, 1, 2)))
    torch.testing.assert_close(std, xf.std((0, 1, 2)))


def test_normalize_uint8_and_float_agree_with_the_formula():
    xb = torch.randint(0, 256, (4, 5, 6, 3), dtype=torch.uint8)
    norm = Normalize.from_batch(xb)
    expected = (xb.float() / 255 - norm.mean) / norm.std
    torch.testing.assert_close(norm(xb), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(norm(xb.float() / 255), expected, rtol=1e-5, atol=1e-5)
    out = norm(xb)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.mean((0, 1, 2)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std((0, 1, 2)), torch.ones(3), atol=1e-4, rtol=0)


def test_normalize_takes_the_walkthroughs_stats_pair():
    xb = torch.randint(0, 256, (4, 5, 6, 3), dtype=torch.uint8)
    xf = xb.float() / 255  # the walkthrough's images are floats in [0, 1]
    stats = [xf.mean((0, 1, 2)), xf.std((0, 1, 2))]
    ours, theirs = Normalize(*stats), Normalize(stats)
    assert torch.equal(theirs.mean, ours.mean) and torch.equal(theirs.std, ours.std)
    torch.testing.assert_close(theirs(xf), (xf - stats[0]) / stats[1])
    torch.testing.assert_close(theirs(xb), theirs(xf), rtol=1e-5, atol=1e-5)
    assert torch.equal(Normalize(tuple(stats)).mean, ours.mean)  # dls.stats is a tuple


@pytest.mark.parametrize("arg, got", [([0.5, 0.4, 0.3], "a list of 3"), (0.5, "0.5")])
def test_normalize_with_one_argument_that_is_not_a_pair_says_what_to_pass(arg, got):
    with pytest.raises(TypeError, match=rf"got one argument, {got}; pass .* pair \[mean, std\].*Normalize\(mean, std\)"):
        Normalize(arg)


def test_normalize_refuses_0_255_statistics_for_uint8_batches():
    xb = torch.randint(0, 256, (4, 5, 6, 3), dtype=torch.uint8)
    xf = xb.float()  # forgot the / 255
    norm = Normalize([xf.mean((0, 1, 2)), xf.std((0, 1, 2))])
    with pytest.raises(ValueError, match=r"0-255 units.*batch_stats\(xb\), or on xb.float\(\) / 255"):
        norm(xb)
    assert norm(xf).shape == xb.shape  # float input in the same units is fine


def test_to_nchw_is_a_view_with_channels_second():
    xb = torch.randn(2, 5, 6, 3)
    x = to_nchw(xb)
    assert x.shape == (2, 3, 5, 6) and x.data_ptr() == xb.data_ptr()
    assert torch.equal(x[:, 1], xb[..., 1])


def test_layout_errors_say_what_was_received():
    with pytest.raises(ValueError, match=r"channels last.*\(2, 3, 8, 8\).*channels-first already"):
        to_nchw(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"shape \(N, H, W, C\), got \(8, 8, 3\)"):
        Normalize([0.5] * 3, [0.2] * 3)(torch.zeros(8, 8, 3))
    with pytest.raises(ValueError, match="Normalize has 3 channels.*with 1"):
        Normalize([0.5] * 3, [0.2] * 3)(torch.zeros(2, 8, 8, 1))
    with pytest.raises(ValueError, match=r"every std must be > 0, got \[0.0"):
        Normalize([0.5], [0.0])
