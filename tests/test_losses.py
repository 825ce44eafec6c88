"""logsumexp, log_softmax, nll and cross_entropy against torch, and the target checks."""

import pytest
import torch
import torch.nn.functional as F

from groundup.losses import check_targets, cross_entropy, log_softmax, logsumexp, nll


@pytest.mark.parametrize("shape, dim", [((6, 10), -1), ((3, 4, 5), 1), ((7,), 0)])
def test_logsumexp_matches_torch(shape, dim):
    torch.manual_seed(0)
    x = torch.randn(*shape) * 5
    torch.testing.assert_close(logsumexp(x, dim), torch.logsumexp(x, dim))
    torch.testing.assert_close(logsumexp(x, dim, keepdim=True), torch.logsumexp(x, dim, keepdim=True))


def test_logsumexp_is_exact_for_huge_logits_and_handles_infinities():
    x = torch.tensor([[1e4, 1e4, -1e4], [-1e4, -1e4, -1e4], [float("-inf")] * 3, [0.0, float("inf"), 1.0]])
    torch.testing.assert_close(logsumexp(x), torch.logsumexp(x, -1))
    assert torch.isfinite(logsumexp(x[:2])).all()


def test_logsumexp_gradient_is_softmax():
    x = (torch.randn(4, 6) * 100).requires_grad_()
    logsumexp(x).sum().backward()
    torch.testing.assert_close(x.grad, x.detach().softmax(-1))


def test_log_softmax_matches_torch():
    x = torch.randn(5, 7) * 20
    torch.testing.assert_close(log_softmax(x), F.log_softmax(x, -1))


def test_nll_matches_torch():
    torch.manual_seed(0)
    log_probs, targets = F.log_softmax(torch.randn(8, 5), -1), torch.randint(0, 5, (8,))
    torch.testing.assert_close(nll(log_probs, targets), F.nll_loss(log_probs, targets))


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.5])
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_cross_entropy_and_its_gradient_match_torch(label_smoothing, scale):
    torch.manual_seed(0)
    logits, targets = torch.randn(16, 10) * scale, torch.randint(0, 10, (16,))
    a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ours = cross_entropy(a, targets, label_smoothing=label_smoothing)
    ref = F.cross_entropy(b, targets, label_smoothing=label_smoothing)
    torch.testing.assert_close(ours, ref)
    assert ours.ndim == 0 and torch.isfinite(ours)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_reductions_and_their_gradients_match_torch(reduction, label_smoothing):
    torch.manual_seed(0)
    logits, targets = torch.randn(16, 10) * 3, torch.randint(0, 10, (16,))
    a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ours = cross_entropy(a, targets, label_smoothing=label_smoothing, reduction=reduction)
    ref = F.cross_entropy(b, targets, label_smoothing=label_smoothing, reduction=reduction)
    torch.testing.assert_close(ours, ref)
    assert ours.shape == ((16,) if reduction == "none" else ())
    weights = torch.rand(ours.shape)  # a different weight per item: checks each item's gradient
    (ours * weights).sum().backward()
    (ref * weights).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_cross_entropy_mean_is_the_mean_of_the_items_losses_bit_for_bit_as_before():
    torch.manual_seed(0)
    logits, targets = torch.randn(64, 10), torch.randint(0, 10, (64,))
    log_probs = log_softmax(logits, dim=1)
    before = -log_probs.gather(1, targets.unsqueeze(1)).mean()  # the arithmetic of 0.1: the walkthrough's numbers
    assert torch.equal(cross_entropy(logits, targets), before)
    smoothed = 0.9 * before - 0.1 * log_probs.mean(dim=1).mean()
    assert torch.equal(cross_entropy(logits, targets, label_smoothing=0.1), smoothed)


def test_cross_entropy_rejects_an_unknown_reduction():
    with pytest.raises(ValueError, match=r"reduction must be one of 'mean', 'sum', 'none', got 'avg'"):
        cross_entropy(torch.randn(4, 10), torch.zeros(4, dtype=torch.long), reduction="avg")


def test_cross_entropy_accepts_other_integer_dtypes():
    logits, targets = torch.randn(4, 3), torch.tensor([0, 2, 1, 2], dtype=torch.int32)
    torch.testing.assert_close(cross_entropy(logits, targets), F.cross_entropy(logits, targets.long()))


@pytest.mark.parametrize("targets, error, match", [
    (torch.tensor([0, 1, 10, 2]), ValueError, r"class indices in \[0, 10\).*got a target of 10"),
    (torch.tensor([0, -1, 3, 2]), ValueError, r"got a target of -1"),
    (torch.tensor([0.0, 1.0, 2.0, 3.0]), TypeError, r"integer class indices.*got dtype torch.float32.*targets.long\(\)"),
    (torch.zeros(4, 1, dtype=torch.long), ValueError, r"targets of shape \(N,\) = \(4,\).*got shape \(4, 1\).*squeeze\(1\)"),
    (torch.zeros(4, 10, dtype=torch.long), ValueError, r"one-hot.*argmax\(1\)"),
    (torch.zeros(3, dtype=torch.long), ValueError, r"got shape \(3,\)"),
])
def test_bad_targets_get_a_clear_error(targets, error, match):
    with pytest.raises(error, match=match):
        cross_entropy(torch.randn(4, 10), targets)


def test_bad_logits_and_label_smoothing_get_a_clear_error():
    with pytest.raises(ValueError, match=r"logits of shape \(N, C\), got shape \(4, 10, 2\)"):
        cross_entropy(torch.randn(4, 10, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\], got 1.5"):
        cross_entropy(torch.randn(4, 10), torch.zeros(4, dtype=torch.long), label_smoothing=1.5)


def test_value_check_can_be_turned_off_or_forced():
    logits, targets = torch.randn(2, 3), torch.tensor([0, 3])
    assert check_targets("f", logits, targets, values=False) is targets
    with pytest.raises(ValueError, match="got a target of 3"):
        check_targets("f", logits, targets, values=True)


# -- multi-label: binary cross-entropy with logits ------------------------------------------------------

from groundup.losses import binary_cross_entropy_with_logits, log_sigmoid  # noqa: E402


def test_log_sigmoid_matches_torch_and_stays_finite_at_the_extremes():
    x = torch.tensor([-1e4, -100.0, -3.0, 0.0, 2.5, 100.0, 1e4])
    torch.testing.assert_close(log_sigmoid(x), F.logsigmoid(x))
    assert torch.isfinite(log_sigmoid(x)).all()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("with_pos_weight", [False, True])
def test_binary_cross_entropy_with_logits_matches_torch_values_and_gradients(reduction, with_pos_weight):
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(6, 4, generator=g) * 8).requires_grad_()  # some far beyond where sigmoid rounds to 0/1
    targets = (torch.rand(6, 4, generator=g) > 0.5).float()
    pos_weight = torch.tensor([1.0, 3.0, 0.5, 2.0]) if with_pos_weight else None
    ours = binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight, reduction=reduction)
    ref_logits = logits.detach().clone().requires_grad_()
    ref = F.binary_cross_entropy_with_logits(ref_logits, targets, pos_weight=pos_weight, reduction=reduction)
    torch.testing.assert_close(ours, ref)
    ours.sum().backward()
    ref.sum().backward()
    torch.testing.assert_close(logits.grad, ref_logits.grad)


def test_binary_cross_entropy_is_exact_where_the_sigmoid_saturates():
    logits, targets = torch.tensor([[200.0, -200.0]]), torch.tensor([[0.0, 1.0]])
    loss = binary_cross_entropy_with_logits(logits, targets, reduction="none")
    torch.testing.assert_close(loss, torch.tensor([[200.0, 200.0]]))  # log(sigmoid(-200)) computed naively is -inf


def test_binary_cross_entropy_label_smoothing_moves_targets_towards_a_half():
    logits, targets = torch.randn(3, 5), (torch.rand(3, 5) > 0.5).float()
    smoothed = binary_cross_entropy_with_logits(logits, targets, label_smoothing=0.2)
    torch.testing.assert_close(smoothed, F.binary_cross_entropy_with_logits(logits, targets * 0.8 + 0.1))


def test_binary_cross_entropy_with_class_indices_says_how_to_make_them_multi_hot():
    with pytest.raises(ValueError, match=r"targets of the logits' shape \(4, 3\), got \(4,\); class indices\? "
                                         r"make them multi-hot: torch.nn.functional.one_hot\(targets, 3\)"):
        binary_cross_entropy_with_logits(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))
