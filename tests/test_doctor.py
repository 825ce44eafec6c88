"""The training doctor's rules (groundup.run.doctor): each triggered by a run's numbers, and quiet on a healthy run."""

import pytest

from groundup.data.duplicates import Duplicate
from groundup.run.doctor import (
    RunNumbers,
    class_imbalance,
    dead_units,
    diagnose,
    format_diagnosis,
    label_errors,
    leakage,
    loader_bottleneck,
    lr_too_high,
    lr_too_low,
    missing_classes,
    odd_activations,
    overfitting,
    underfitting,
)

# The default run on the shipped set (groundup train, seed 42): metrics.csv's train/valid columns.
HEALTHY = [
    {"epoch": 0, "train_loss": 2.270, "train_acc": 0.135, "valid_loss": 2.181, "valid_acc": 0.175},
    {"epoch": 1, "train_loss": 2.103, "train_acc": 0.227, "valid_loss": 2.203, "valid_acc": 0.220},
    {"epoch": 2, "train_loss": 2.028, "train_acc": 0.290, "valid_loss": 2.123, "valid_acc": 0.195},
    {"epoch": 3, "train_loss": 1.991, "train_acc": 0.277, "valid_loss": 2.118, "valid_acc": 0.265},
    {"epoch": 4, "train_loss": 1.869, "train_acc": 0.358, "valid_loss": 2.168, "valid_acc": 0.295},
    {"epoch": 5, "train_loss": 1.675, "train_acc": 0.433, "valid_loss": 2.106, "valid_acc": 0.290},
    {"epoch": 6, "train_loss": 1.580, "train_acc": 0.422, "valid_loss": 1.907, "valid_acc": 0.335},
    {"epoch": 7, "train_loss": 1.387, "train_acc": 0.527, "valid_loss": 1.953, "valid_acc": 0.365},
    {"epoch": 8, "train_loss": 1.306, "train_acc": 0.537, "valid_loss": 1.944, "valid_acc": 0.355},
    {"epoch": 9, "train_loss": 1.166, "train_acc": 0.610, "valid_loss": 1.911, "valid_acc": 0.365},
]
# groundup train --recipe fast --no-augment --epochs 15 --data imagenette2-224 (measured)
NO_AUGMENT = [
    {"epoch": 0, "train_loss": 2.030, "train_acc": 0.309, "valid_loss": 1.928, "valid_acc": 0.349},
    {"epoch": 1, "train_loss": 1.758, "train_acc": 0.456, "valid_loss": 1.724, "valid_acc": 0.490},
    {"epoch": 2, "train_loss": 1.529, "train_acc": 0.564, "valid_loss": 1.650, "valid_acc": 0.518},
    {"epoch": 3, "train_loss": 1.370, "train_acc": 0.637, "valid_loss": 1.435, "valid_acc": 0.606},
    {"epoch": 4, "train_loss": 1.215, "train_acc": 0.704, "valid_loss": 1.571, "valid_acc": 0.569},
    {"epoch": 5, "train_loss": 1.090, "train_acc": 0.764, "valid_loss": 1.333, "valid_acc": 0.665},
    {"epoch": 6, "train_loss": 0.932, "train_acc": 0.847, "valid_loss": 1.321, "valid_acc": 0.671},
    {"epoch": 7, "train_loss": 0.784, "train_acc": 0.922, "valid_loss": 1.512, "valid_acc": 0.616},
    {"epoch": 8, "train_loss": 0.669, "train_acc": 0.975, "valid_loss": 1.346, "valid_acc": 0.676},
    {"epoch": 9, "train_loss": 0.600, "train_acc": 0.994, "valid_loss": 1.339, "valid_acc": 0.677},
    {"epoch": 10, "train_loss": 0.567, "train_acc": 0.999, "valid_loss": 1.277, "valid_acc": 0.693},
    {"epoch": 11, "train_loss": 0.547, "train_acc": 1.000, "valid_loss": 1.253, "valid_acc": 0.704},
    {"epoch": 12, "train_loss": 0.536, "train_acc": 1.000, "valid_loss": 1.248, "valid_acc": 0.703},
    {"epoch": 13, "train_loss": 0.530, "train_acc": 1.000, "valid_loss": 1.248, "valid_acc": 0.703},
    {"epoch": 14, "train_loss": 0.527, "train_acc": 1.000, "valid_loss": 1.250, "valid_acc": 0.705},
]
# groundup train --recipe fast --epochs 15 --data imagenette2-224 (measured)
FAST = [
    {"epoch": 0, "train_loss": 2.028, "train_acc": 0.312, "valid_loss": 1.930, "valid_acc": 0.360},
    {"epoch": 1, "train_loss": 1.769, "train_acc": 0.448, "valid_loss": 1.699, "valid_acc": 0.491},
    {"epoch": 2, "train_loss": 1.579, "train_acc": 0.547, "valid_loss": 1.600, "valid_acc": 0.540},
    {"epoch": 3, "train_loss": 1.456, "train_acc": 0.594, "valid_loss": 1.471, "valid_acc": 0.594},
    {"epoch": 4, "train_loss": 1.345, "train_acc": 0.640, "valid_loss": 1.419, "valid_acc": 0.625},
    {"epoch": 5, "train_loss": 1.262, "train_acc": 0.684, "valid_loss": 1.405, "valid_acc": 0.630},
    {"epoch": 6, "train_loss": 1.188, "train_acc": 0.719, "valid_loss": 1.269, "valid_acc": 0.694},
    {"epoch": 7, "train_loss": 1.135, "train_acc": 0.738, "valid_loss": 1.222, "valid_acc": 0.713},
    {"epoch": 8, "train_loss": 1.073, "train_acc": 0.774, "valid_loss": 1.206, "valid_acc": 0.715},
    {"epoch": 9, "train_loss": 1.013, "train_acc": 0.800, "valid_loss": 1.115, "valid_acc": 0.755},
    {"epoch": 10, "train_loss": 0.966, "train_acc": 0.819, "valid_loss": 1.084, "valid_acc": 0.770},
    {"epoch": 11, "train_loss": 0.920, "train_acc": 0.842, "valid_loss": 1.056, "valid_acc": 0.783},
    {"epoch": 12, "train_loss": 0.883, "train_acc": 0.862, "valid_loss": 1.042, "valid_acc": 0.791},
    {"epoch": 13, "train_loss": 0.863, "train_acc": 0.873, "valid_loss": 1.040, "valid_acc": 0.790},
    {"epoch": 14, "train_loss": 0.848, "train_acc": 0.881, "valid_loss": 1.038, "valid_acc": 0.793},
]
FALLING = [2.43 - 0.012 * i for i in range(100)]  # a healthy loss, batch by batch


@pytest.mark.parametrize("losses, triggered", [
    (FALLING, False),
    ([2.4, 2.3, float("nan"), 2.0], True),          # NaN
    ([2.4, 2.3, 2.2, 6.8, 2.3, 2.2], True),         # a spike above 2x the start
    ([2.4, 2.5, 2.6, 2.7, 2.8, 2.9], True),         # rises above its start
    ([2.4, 2.6, 2.3, 2.5, 2.2, 2.0], False),        # noisy but falling
])
def test_lr_too_high(losses, triggered):
    found = lr_too_high(losses, [], lr=0.01)
    assert (found is not None) == triggered
    if triggered:
        assert found.name == "lr_too_high" and "--lr 0.001" in found.action


def test_lr_too_high_reads_epoch_means_without_steps():
    # the --lr 3 run's metrics.csv: the spike is inside the first epoch's mean; chance is ln(10) = 2.30
    found = lr_too_high(None, [66514.1, 2.9, 7.5, 2.4], lr=3, n_classes=10)
    assert found.severity == "error" and "chance, ln(10) = 2.3" in found.evidence
    assert lr_too_high(None, [r["train_loss"] for r in HEALTHY], lr=0.01, n_classes=10) is None


def test_lr_auto_is_offered_with_sgd_only_where_it_measured_better():
    spike = [2.4, 2.3, 6.8, 2.3]
    assert lr_too_high(spike, [], lr=0.1, opt="sgd").action.endswith("or --lr auto to let the LR finder choose")
    assert lr_too_high(spike, [], lr=0.1, opt="adam").action == "--lr 0.01 (a tenth of this run's 0.1)"
    assert "--lr auto" not in lr_too_low([2.4] * 10, [], lr=1e-5, epochs=10, opt="adam").action
    assert "--lr auto" in lr_too_low([2.4] * 10, [], lr=1e-5, epochs=10, opt="sgd").action


@pytest.mark.parametrize("losses, triggered", [
    (FALLING, False),
    ([2.53 - 0.0015 * i for i in range(100)], True),  # the --lr 1e-5 run: 5.9% in 10 epochs
])
def test_lr_too_low(losses, triggered):
    found = lr_too_low(losses, [], lr=1e-5, epochs=10)
    assert (found is not None) == triggered
    if triggered:
        assert "--lr 0.0001" in found.action and "fell by" in found.evidence


def test_underfitting_is_low_training_accuracy_close_to_validation():
    assert underfitting(HEALTHY, {"arch": "simple_cnn", "epochs": 10}) is None  # a gap of 0.245: it fits
    rows = [{"train_acc": 0.40, "valid_acc": 0.38}]
    found = underfitting(rows, {"arch": "simple_cnn", "epochs": 10})
    assert found.name == "underfitting" and "--arch resnet" in found.action and "--epochs 20" in found.action
    assert "--no-augment" in underfitting(rows, {"arch": "resnet", "augment": True}).action
    assert underfitting([{"train_acc": 0.95, "valid_acc": 0.93}], {}) is None  # fits well


def test_overfitting_is_validation_loss_rising_while_training_loss_falls():
    assert overfitting(HEALTHY, {}) is None  # its lowest validation loss is the last
    rows = [dict(r) for r in HEALTHY]
    for k, r in enumerate(rows[6:]):  # after epoch 5: valid_loss climbs, train_loss keeps falling
        r["valid_loss"] = 2.11 + 0.1 * (k + 1)  # 2.21, 2.31, 2.41, 2.51
    found = overfitting(rows, {"augment": False})
    assert found.name == "overfitting" and "epoch 5" in found.evidence and found.action.startswith("--augment")
    assert overfitting(rows, {"augment": True}).action.startswith("--patience 3")
    assert overfitting(rows, {"augment": True, "patience": 3, "wd": 0.01}).action.startswith("--wd 0.1")


def test_overfitting_is_also_training_images_learned_by_heart_far_above_validation():
    # without augmentation the validation loss falls again in the one-cycle's last epochs: no rise to see
    found = overfitting(NO_AUGMENT, {"augment": False})
    assert found.name == "overfitting" and found.action.startswith("--augment")
    assert "learned its training images by heart (train_acc 1.0000 at epoch 14)" in found.evidence
    assert "right on only 0.7050 of the validation images, a gap of 0.295" in found.evidence
    assert overfitting(FAST, {"augment": True}) is None  # with augmentation: train_acc 0.881, valid_acc 0.793
    assert overfitting(HEALTHY, {}) is None  # a wide gap, but the training images are far from learned


def test_overfitting_needs_several_epochs_of_rise():
    rows = [dict(r) for r in HEALTHY]
    rows[-1]["valid_loss"] = 2.5  # one bad epoch after the lowest: noise, not a trend
    assert overfitting(rows, {}) is None


def test_loader_bottleneck_reads_the_share_of_each_epoch_spent_waiting():
    slow = [{"seconds": 10.0, "data_seconds": 9.0}] + [{"seconds": 4.0, "data_seconds": 2.0}] * 3
    found = loader_bottleneck(slow, num_workers=0, cpu_cores=8)
    assert found.name == "loader_bottleneck" and "50%" in found.evidence and "--num-workers 8" in found.action
    # the first epoch (filling the decode cache) does not count; the rest barely waited
    fast = [{"seconds": 10.0, "data_seconds": 9.0}] + [{"seconds": 4.0, "data_seconds": 0.01}] * 3
    assert loader_bottleneck(fast, num_workers=0, cpu_cores=8) is None
    assert "already has a process per core" in loader_bottleneck(slow, num_workers=2, cpu_cores=2).action


def layer(std=1.0, dead=0.0, zeros=0.5, non_negative=True, name="0: ConvLayer"):
    return {"layer": name, "mean": 0.5, "std": std, "zero_share": zeros, "dead_share": dead, "channels": 16,
            "non_negative": non_negative}


def test_dead_units_are_relu_channels_that_never_fire():
    assert dead_units([layer(), layer(dead=0.2)], lr=0.1) is None
    found = dead_units([layer(), layer(dead=1.0, zeros=1.0, name="2: ConvLayer")], lr=0.1)
    assert found.severity == "error" and "layer 2: ConvLayer: 100% of 16 channels" in found.evidence
    assert "--lr 0.01" in found.action
    assert dead_units([layer(dead=0.9, non_negative=False)], lr=0.1) is None  # not a rectified output


def test_exploding_and_vanishing_activations():
    assert odd_activations([layer(), layer(std=30.0)]) is None
    assert odd_activations([layer(std=5e4)]).name == "exploding_activations"
    assert odd_activations([layer(std=float("inf"))]).name == "exploding_activations"
    assert odd_activations([layer(std=1e-5)]).name == "vanishing_activations"
    assert odd_activations([layer(std=1e-5, dead=1.0)]) is None  # dead, reported as such


def test_class_imbalance_and_missing_classes():
    assert class_imbalance({"a": 60, "b": 60, "c": 55}) is None
    found = class_imbalance({"a": 400, "b": 60, "c": 50})
    assert "400 images of a and 50 of c (8.0x" in found.evidence and "add images of c (at least 100)" in found.action
    assert missing_classes({"a": 5, "b": 5}, {"a": 2, "b": 2}) is None
    found = missing_classes({"a": 5}, {"a": 2, "b": 3})
    assert found.severity == "error" and "b" in found.evidence and "train/b/" in found.action


def test_leakage_lists_the_pairs_with_paths():
    assert leakage([]) is None
    found = leakage([Duplicate("train/a/1.jpg", "val/a/9.jpg", "exact", 0),
                     Duplicate("train/b/2.jpg", "val/b/3.jpg", "near", 2)])
    assert "2 validation image(s)" in found.evidence and "1 byte for byte, 1 near" in found.evidence
    assert found.items[0] == {"train": "train/a/1.jpg", "valid": "val/a/9.jpg", "kind": "exact", "distance": 0}


def test_label_errors_are_confident_mistakes_of_a_good_model():
    mistakes = [{"file": "val/cat/1.jpg", "actual": "cat", "predicted": "dog", "prob": 0.97},
                {"file": "val/cat/2.jpg", "actual": "cat", "predicted": "dog", "prob": 0.55}]
    found = label_errors(mistakes, valid_acc=0.9)
    assert found.name == "label_errors" and [m["file"] for m in found.items] == ["val/cat/1.jpg"]
    assert label_errors(mistakes[1:], valid_acc=0.9) is None  # not confident
    assert label_errors(mistakes, valid_acc=0.4) is None  # the model's mistakes, not the labels'


def test_diagnose_on_the_healthy_run_is_clean_and_says_what_it_could_not_check():
    findings, not_checked = diagnose(RunNumbers(history=HEALTHY, config={"lr": 0.01, "epochs": 10},
                                                batch_losses=FALLING))
    assert findings == []
    assert any("data loader" in n for n in not_checked)  # no data_seconds column


def test_diagnose_blames_the_lr_not_the_model_and_puts_errors_first():
    numbers = RunNumbers(history=[{"train_loss": 2.3, "train_acc": 0.1, "valid_loss": 2.3, "valid_acc": 0.1}],
                         config={"lr": 3.0, "epochs": 1}, batch_losses=[2.4, 600.0, 2.3],
                         layers=[layer(dead=0.6)], train_counts={"a": 100, "b": 10})
    findings, _ = diagnose(numbers)
    assert [f.name for f in findings] == ["lr_too_high", "dead_units", "class_imbalance"]
    text = format_diagnosis(findings)
    assert text.startswith("diagnosis: 3 finding(s)") and "try: --lr 0.3" in text


def test_format_diagnosis_of_a_clean_run():
    assert format_diagnosis([], ["x (why)"]) == "diagnosis: no problems found\n  not checked: x (why)"
