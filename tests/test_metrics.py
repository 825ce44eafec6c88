"""accuracy: value, type (a 0-d tensor, no host sync) and target checks."""

import pytest
import torch

from groundup.metrics import accuracy


def test_accuracy_is_the_share_of_correct_argmaxes():
    torch.manual_seed(0)
    logits, targets = torch.randn(50, 7), torch.randint(0, 7, (50,))
    expected = sum(int(row.argmax() == t) for row, t in zip(logits, targets)) / 50
    result = accuracy(logits, targets)
    assert isinstance(result, torch.Tensor) and result.ndim == 0 and result.dtype == torch.float32
    assert result.item() == pytest.approx(expected)


def test_accuracy_of_perfect_and_hopeless_predictions():
    targets = torch.tensor([2, 0, 1])
    assert accuracy(torch.eye(3)[targets], targets).item() == 1.0
    assert accuracy(-torch.eye(3)[targets] + 0.5 * torch.eye(3)[(targets + 1) % 3], targets).item() == 0.0


@pytest.mark.parametrize("targets, match", [
    (torch.tensor([0, 5]), r"accuracy: targets must be class indices in \[0, 3\)"),
    (torch.tensor([0.0, 1.0]), r"integer class indices"),
    (torch.tensor([[0], [1]]), r"accuracy expects targets of shape \(N,\) = \(2,\)"),
])
def test_accuracy_rejects_bad_targets(targets, match):
    with pytest.raises((ValueError, TypeError), match=match):
        accuracy(torch.randn(2, 3), targets)
