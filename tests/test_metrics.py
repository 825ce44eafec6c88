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


# -- multi-label: accuracy_multi and F-beta, against hand computations -----------------------------------

from groundup.metrics import accuracy_multi, fbeta_multi  # noqa: E402

# 3 images, 3 tags. Probabilities, and the decisions at 0.5:
PROBS = torch.tensor([[0.9, 0.2, 0.6],    # predicted: tags 0, 2
                      [0.4, 0.8, 0.1],    # predicted: tag 1
                      [0.7, 0.6, 0.3]])   # predicted: tags 0, 1
TARGETS = torch.tensor([[1.0, 0.0, 0.0],  # tag 0          -> TP(0), FP(2)
                        [1.0, 1.0, 0.0],  # tags 0, 1      -> FN(0), TP(1)
                        [1.0, 0.0, 1.0]]) # tags 0, 2      -> TP(0), FP(1), FN(2)
LOGITS = torch.log(PROBS / (1 - PROBS))


def test_accuracy_multi_is_the_share_of_right_decisions():
    # wrong decisions: (0, 2), (1, 0), (2, 1), (2, 2): 4 of 9
    torch.testing.assert_close(accuracy_multi(LOGITS, TARGETS), torch.tensor(5 / 9))
    torch.testing.assert_close(accuracy_multi(PROBS, TARGETS, sigmoid=False), torch.tensor(5 / 9))
    # at 0.65 the decisions are tag 0 / tag 1 / tag 0: wrong (1, 0), (2, 2): 7 of 9
    torch.testing.assert_close(accuracy_multi(LOGITS, TARGETS, threshold=0.65), torch.tensor(7 / 9))


def test_fbeta_micro_and_macro_match_a_hand_computation():
    # micro: TP = 3 (0,0), (1,1), (2,0); FP = 2 (0,2), (2,1); FN = 2 (1,0), (2,2)
    torch.testing.assert_close(fbeta_multi(LOGITS, TARGETS), torch.tensor(2 * 3 / (2 * 3 + 2 + 2)))
    b2 = 4.0  # beta = 2
    torch.testing.assert_close(fbeta_multi(LOGITS, TARGETS, beta=2.0), torch.tensor((1 + b2) * 3 / ((1 + b2) * 3 + b2 * 2 + 2)))
    # macro, F1 per tag: tag 0: TP 2, FP 0, FN 1 -> 4/5; tag 1: TP 1, FP 1, FN 0 -> 2/3; tag 2: TP 0, FP 1, FN 1 -> 0
    torch.testing.assert_close(fbeta_multi(LOGITS, TARGETS, average="macro"), torch.tensor((4 / 5 + 2 / 3 + 0) / 3))


def test_fbeta_of_a_tag_never_present_nor_predicted_is_zero_and_bad_average_is_named():
    probs, targets = torch.tensor([[0.9, 0.1]]), torch.tensor([[1.0, 0.0]])
    torch.testing.assert_close(fbeta_multi(probs, targets, average="macro", sigmoid=False), torch.tensor(0.5))
    with pytest.raises(ValueError, match="average must be 'micro' or 'macro', got 'weighted'"):
        fbeta_multi(probs, targets, average="weighted")
