"""The training doctor: rules that read a run's numbers and say what went wrong and what to try next.

Every rule is a pure function of numbers a run folder holds (metrics.csv, steps.csv, the settings,
the data's label counts, a few activation statistics, duplicate pairs, the confident mistakes), so
each can be tested without training. Each returns a `Finding` (or None): a name, a severity, the
evidence (this run's numbers) and one action (a flag to try, with its value). `diagnose` runs them
all on a `RunNumbers`; what it lacked the numbers for, it lists as not checked.

The rules, one sentence each (the README's "When training goes wrong" says how each threshold was
chosen):

    lr_too_high       a batch loss is NaN/inf, or above SPIKE x the first batch's, or the last tenth of
                      the batches' losses averages above the first tenth's
    lr_too_low        the last tenth of the batches' losses averages less than SLOW_FALL below the first
                      tenth's
    underfitting      the final training accuracy is below UNDERFIT_ACC and within UNDERFIT_GAP of the
                      validation accuracy
    overfitting       the validation loss rose in each of the last OVERFIT_EPOCHS epochs, ends OVERFIT_RISE
                      above its lowest, and the training loss fell meanwhile; or the model ends with its
                      training images learned by heart (train_acc MEMORIZED or more) and a train-valid
                      accuracy gap of OVERFIT_GAP or more
    loader_bottleneck the loop waited for batches for DATA_SHARE or more of the median epoch (after the
                      first, which fills the decode cache)
    dead_units        a layer with non-negative (ReLU) outputs has DEAD_SHARE or more of its channels at 0 for
                      every image seen
    exploding / vanishing_activations  a layer's output std is above EXPLODING_STD / below VANISHING_STD
    class_imbalance   the largest training class has IMBALANCE times the images of the smallest
    missing_classes   a validation label has no training images
    leakage           a validation image is a copy of a training image (same bytes, or dHash within NEAR_BITS)
    label_errors      validation images predicted wrong with probability CONFIDENT or more, by a model right
                      on at least LABEL_CHECK_ACC of them
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from groundup.data.duplicates import NEAR_BITS

__all__ = ["CONFIDENT", "DATA_SHARE", "DEAD_SHARE", "EXPLODING_STD", "IMBALANCE", "LABEL_CHECK_ACC",
           "MEMORIZED", "OVERFIT_EPOCHS", "OVERFIT_GAP", "OVERFIT_RISE", "SEVERITIES", "SLOW_FALL", "SPIKE",
           "UNDERFIT_ACC", "UNDERFIT_GAP", "VANISHING_STD", "WORKERS_FLAG", "Finding", "RunNumbers",
           "class_imbalance", "dead_units", "diagnose", "format_diagnosis", "label_errors", "leakage",
           "loader_bottleneck", "lr_too_high", "lr_too_low", "missing_classes", "odd_activations",
           "overfitting", "underfitting"]

SEVERITIES = ("error", "warning", "info")  # error: the run's result is not to be trusted; info: worth a look

SPIKE = 2.0           # a batch loss this many times the first batch's is a spike
SLOW_FALL = 0.10      # the loss must fall by at least this share over a run
UNDERFIT_ACC = 0.70   # final training accuracy below this ...
UNDERFIT_GAP = 0.05   # ... and within this of the validation accuracy: the model cannot fit the data
OVERFIT_EPOCHS = 3    # epochs in a row the validation loss rose
OVERFIT_RISE = 0.05   # the last validation loss is this share above its lowest
MEMORIZED = 0.95      # a final training accuracy this high: the training images are learned by heart
OVERFIT_GAP = 0.15    # ... and the validation accuracy this far below it (imagenette2-224, fast recipe, 15
                      # epochs: 0.88 - 0.79 with augmentation, 1.00 - 0.70 without it)
DATA_SHARE = 0.30     # share of an epoch spent waiting for batches
DEAD_SHARE = 0.50     # share of a layer's channels never active
EXPLODING_STD = 1e3   # a layer's output std above this
VANISHING_STD = 1e-3  # a layer's output std below this (and not because its units are dead)
IMBALANCE = 4.0       # largest class / smallest class in the training data
CONFIDENT = 0.90      # a wrong prediction this probable is "confidently wrong"
LABEL_CHECK_ACC = 0.60  # below this validation accuracy, confident mistakes are the model's, not the labels'
WORKERS_FLAG = "--num-workers"  # the data-loading processes' flag of `groundup train`
MAX_ITEMS = 20        # images listed per finding


@dataclass
class Finding:
    """One thing the doctor found: what, how bad, the numbers that show it, and what to try."""

    name: str
    severity: str  # one of SEVERITIES
    evidence: str  # this run's numbers that triggered the rule
    action: str  # one concrete thing to try (usually a flag with its value)
    items: list[dict[str, Any]] = field(default_factory=list)  # images it is about (leakage, label errors)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunNumbers:
    """What the rules read; None where the run folder (or the run) did not have it.

    Args:
        history: one dict per epoch (metrics.csv's rows: train_loss, train_acc, valid_loss, valid_acc,
            seconds, data_seconds, lr).
        config: the run's settings (`TrainConfig.to_dict()`).
        batch_losses: the training loss of every batch (steps.csv), in order.
        num_workers: the loader's processes as run; cpu_cores: the cores the run could use.
        train_counts, valid_counts: images per label in each set.
        layers: `groundup.nn.stats.layer_stats` rows of the final model on a few validation batches.
        duplicates: `groundup.data.duplicates.Duplicate` pairs (as dicts or tuples) between train and valid.
        mistakes: validation images predicted wrong: dicts with file, actual, predicted, prob.
        valid_acc: the final model's validation accuracy (for the label check).
        n_classes: the number of classes (chance is ln(n_classes)).
        not_checked: what could not be gathered and why (the rules add their own).
    """

    history: list[dict[str, Any]] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    batch_losses: list[float] | None = None
    num_workers: int | None = None
    cpu_cores: int | None = None
    train_counts: dict[str, int] | None = None
    valid_counts: dict[str, int] | None = None
    layers: list[dict[str, Any]] | None = None
    duplicates: list[Any] | None = None
    mistakes: list[dict[str, Any]] | None = None
    valid_acc: float | None = None
    n_classes: int | None = None
    not_checked: list[str] = field(default_factory=list)


def _g(x: float) -> str:
    return f"{x:.3g}"


def _epoch_losses(history: Sequence[Mapping[str, Any]] | None) -> list[float]:
    return [float(r["train_loss"]) for r in history or () if r.get("train_loss") is not None]


# -- the learning rate ------------------------------------------------------------------------------
def _lr_action(lr_text: str, opt: str | None) -> str:
    """The action of an lr finding; `--lr auto` is offered only with SGD, where the finder chooses the lr
    (with AdamW it keeps the default 0.01 unless the curve rises before 0.005, and never raises it:
    README, "--lr auto")."""
    return lr_text + (", or --lr auto to let the LR finder choose" if opt == "sgd" else "")


def lr_too_high(batch_losses: Sequence[float] | None, epoch_losses: Sequence[float], lr: float,
                n_classes: int | None = None, opt: str | None = None) -> Finding | None:
    """The loss turned NaN, spiked above SPIKE x its first value, or ended above where it started.

    From epoch means alone (no steps.csv) the first value is already an average over the first epoch,
    spike included; then the start is chance, ln(n_classes), the loss of a model that knows nothing.
    """
    losses = list(batch_losses) if batch_losses else list(epoch_losses)
    unit = "batch" if batch_losses else "epoch"
    if not losses:
        return None
    action = _lr_action(f"--lr {_g(lr / 10)} (a tenth of this run's {_g(lr)})", opt)
    bad = next((i for i, v in enumerate(losses) if not math.isfinite(v)), None)
    if bad is not None:
        return Finding("lr_too_high", "error", f"the training loss of {unit} {bad} is {losses[bad]} (not finite)",
                       action)
    first = losses[0] if batch_losses or not n_classes or n_classes < 2 else math.log(n_classes)
    start = "its first value" if first == losses[0] else f"chance, ln({n_classes}) ="
    peak = max(range(len(losses)), key=losses.__getitem__)
    if first > 0 and losses[peak] > SPIKE * first:
        return Finding("lr_too_high", "error" if losses[peak] > 10 * first else "warning",
                       f"the training loss spiked to {_g(losses[peak])} at {unit} {peak}, "
                       f"{losses[peak] / first:.3g}x {start} {_g(first)} (the rule: > {SPIKE:g}x)", action)
    k = max(1, len(losses) // 10)
    start, end = statistics.fmean(losses[:k]), statistics.fmean(losses[-k:])
    if len(losses) >= 2 and end > start:
        return Finding("lr_too_high", "warning",
                       f"the training loss rose: its last tenth averages {_g(end)}, its first tenth {_g(start)}",
                       action)
    return None


def lr_too_low(batch_losses: Sequence[float] | None, epoch_losses: Sequence[float], lr: float,
               epochs: int, opt: str | None = None) -> Finding | None:
    """The loss fell by less than SLOW_FALL over the run (the last tenth of the batches against the first)."""
    losses = list(batch_losses) if batch_losses else list(epoch_losses)
    if len(losses) < 2 or not all(math.isfinite(v) for v in losses):
        return None
    k = max(1, len(losses) // 10)
    start, end = statistics.fmean(losses[:k]), statistics.fmean(losses[-k:])
    if start <= 0 or end > start or 1 - end / start >= SLOW_FALL:
        return None
    unit = "batches" if batch_losses else "epochs"
    return Finding("lr_too_low", "warning",
                   f"in {epochs} epochs the training loss fell by {100 * (1 - end / start):.1f}% (the last tenth "
                   f"of the {unit} averages {_g(end)}, the first {_g(start)}; the rule: < {100 * SLOW_FALL:g}%) "
                   f"at lr {_g(lr)}",
                   _lr_action(f"--lr {_g(lr * 10)} (ten times this run's)", opt))


# -- fitting ----------------------------------------------------------------------------------------
def underfitting(history: Sequence[Mapping[str, Any]], config: Mapping[str, Any]) -> Finding | None:
    """The final training accuracy is low (< UNDERFIT_ACC) and close to the validation accuracy (< UNDERFIT_GAP)."""
    last = history[-1] if history else {}
    train, valid = last.get("train_acc"), last.get("valid_acc")
    if train is None or valid is None or train >= UNDERFIT_ACC or train - valid >= UNDERFIT_GAP:
        return None
    epochs, arch = int(config.get("epochs") or len(history)), config.get("arch")
    if config.get("augment"):
        action = "--no-augment (augmentation makes the training images harder to fit)"
    elif arch == "simple_cnn":
        action = f"--arch resnet (a bigger model), or --epochs {2 * epochs}"
    else:
        action = f"--epochs {2 * epochs} (twice as many)"
    return Finding("underfitting", "warning",
                   f"final training accuracy {train:.3f} (< {UNDERFIT_ACC}) is within {train - valid:+.3f} of the "
                   f"validation accuracy {valid:.3f}: the model does not even fit the training images", action)


def overfitting(history: Sequence[Mapping[str, Any]], config: Mapping[str, Any]) -> Finding | None:
    """The validation loss rose in each of the last OVERFIT_EPOCHS epochs, ends OVERFIT_RISE above its lowest,
    and the training loss fell meanwhile; or the final training accuracy is MEMORIZED or more and the
    validation accuracy OVERFIT_GAP or more below it (a one-cycle schedule's last epochs can lower the
    validation loss of a model that has learned its training images by heart)."""
    rows = [r for r in history if r.get("valid_loss") is not None and r.get("train_loss") is not None]
    if len(rows) <= OVERFIT_EPOCHS:
        return None
    evidence = _loss_rise(rows) or _memorized(rows)
    if evidence is None:
        return None
    if not config.get("augment"):
        action = "--augment (random crops and flips)"
    elif config.get("patience") is None:
        action = f"--patience {OVERFIT_EPOCHS} (stop when the validation loss stops improving)"
    else:
        wd = config.get("wd") or (1e-2 if config.get("opt", "adam") == "adam" else 1e-4)
        action = f"--wd {_g(wd * 10)} (ten times the weight decay)"
    return Finding("overfitting", "warning", evidence, action)


def _loss_rise(rows: Sequence[Mapping[str, Any]]) -> str | None:
    """The evidence of a validation loss that rises while the training loss falls, or None."""
    tail = rows[-OVERFIT_EPOCHS - 1:]
    rising = all(b["valid_loss"] > a["valid_loss"] for a, b in itertools.pairwise(tail))
    best = min(range(len(rows)), key=lambda i: rows[i]["valid_loss"])
    lo, last = rows[best], rows[-1]
    if (not rising or not last["valid_loss"] >= lo["valid_loss"] * (1 + OVERFIT_RISE)
            or not last["train_loss"] < tail[0]["train_loss"]):
        return None
    gap = ""
    if all(r.get(k) is not None for r in (lo, last) for k in ("train_acc", "valid_acc")):
        gap = (f"; the train-valid accuracy gap grew from {lo['train_acc'] - lo['valid_acc']:.3f} to "
               f"{last['train_acc'] - last['valid_acc']:.3f}")
    return (f"the validation loss rose from {lo['valid_loss']:.4f} (epoch {lo.get('epoch', best)}) to "
            f"{last['valid_loss']:.4f} (epoch {last.get('epoch', len(rows) - 1)}) while the training loss "
            f"fell from {lo['train_loss']:.4f} to {last['train_loss']:.4f}{gap}")


def _memorized(rows: Sequence[Mapping[str, Any]]) -> str | None:
    """The evidence of training images learned by heart with a wide train-valid gap, or None."""
    last = rows[-1]
    if last.get("train_acc") is None or last.get("valid_acc") is None:
        return None
    gap = last["train_acc"] - last["valid_acc"]
    if last["train_acc"] < MEMORIZED or gap < OVERFIT_GAP:
        return None
    early = rows[(len(rows) - 1) // 3]
    was = (f"; the gap was {early['train_acc'] - early['valid_acc']:.3f} at epoch {early.get('epoch')}"
           if early.get("train_acc") is not None and early.get("valid_acc") is not None else "")
    return (f"the model has learned its training images by heart (train_acc {last['train_acc']:.4f} at epoch "
            f"{last.get('epoch', len(rows) - 1)}) but is right on only {last['valid_acc']:.4f} of the validation "
            f"images, a gap of {gap:.3f}{was}")


# -- the data loader ----------------------------------------------------------------------------------
def loader_bottleneck(history: Sequence[Mapping[str, Any]], num_workers: int | None,
                      cpu_cores: int | None) -> Finding | None:
    """The loop waited for batches for DATA_SHARE or more of the median epoch (after the first)."""
    rows = [r for r in history if r.get("data_seconds") is not None and r.get("seconds")]
    if len(rows) > 1:
        rows = rows[1:]  # the first epoch decodes every image into the cache: slow by design
    if not rows:
        return None
    shares = [r["data_seconds"] / r["seconds"] for r in rows]
    share = statistics.median(shares)
    if share < DATA_SHARE:
        return None
    epoch = statistics.median(r["seconds"] for r in rows)
    if num_workers is not None and cpu_cores is not None and num_workers < cpu_cores:
        action = f"{WORKERS_FLAG} {cpu_cores} (one loading process per core; this run had {num_workers})"
    elif num_workers == 0:
        action = f"{WORKERS_FLAG} 2 (load batches in worker processes)"
    else:
        action = ("--size smaller, or a machine with more CPU cores: the loader already has a process per core "
                  f"({num_workers})")
    return Finding("loader_bottleneck", "warning",
                   f"the loop waited for batches {100 * share:.0f}% of the median epoch ({epoch:.2f} s; the "
                   f"rule: >= {100 * DATA_SHARE:g}%)", action)


# -- activations ----------------------------------------------------------------------------------------
def dead_units(layers: Sequence[Mapping[str, Any]], lr: float) -> Finding | None:
    """A layer with ReLU (non-negative) outputs has DEAD_SHARE or more channels at 0 on every image seen."""
    dead = [r for r in layers if r.get("non_negative") and r["dead_share"] >= DEAD_SHARE]
    if not dead:
        return None
    text = "; ".join(f"layer {r['layer']}: {100 * r['dead_share']:.0f}% of {r['channels']} channels never "
                     f"active, {100 * r['zero_share']:.0f}% of outputs 0" for r in dead)
    return Finding("dead_units", "error" if any(r["dead_share"] >= 0.99 for r in dead) else "warning",
                   f"{text} (the rule: >= {100 * DEAD_SHARE:g}% of a layer's channels)",
                   f"--lr {_g(lr / 10)} (a large step can switch ReLU units off for good), or --arch resnet "
                   f"(BatchNorm keeps units in range)")


def odd_activations(layers: Sequence[Mapping[str, Any]]) -> Finding | None:
    """A layer's output std is above EXPLODING_STD (exploding) or below VANISHING_STD without dead units (vanishing)."""
    big = [r for r in layers if math.isfinite(r["std"]) and r["std"] > EXPLODING_STD or not math.isfinite(r["std"])]
    if big:
        return Finding("exploding_activations", "error",
                       "; ".join(f"layer {r['layer']}: output std {_g(r['std'])}" for r in big)
                       + f" (the rule: > {EXPLODING_STD:g})",
                       "--clip 1 (clip the gradient norm), or --arch resnet (BatchNorm keeps outputs in range)")
    small = [r for r in layers if r["std"] < VANISHING_STD and r["dead_share"] < DEAD_SHARE]
    if small:
        return Finding("vanishing_activations", "warning",
                       "; ".join(f"layer {r['layer']}: output std {_g(r['std'])}" for r in small)
                       + f" (the rule: < {VANISHING_STD:g})",
                       "--arch resnet (BatchNorm and residual connections keep the signal's scale)")
    return None


# -- the data ------------------------------------------------------------------------------------------
def class_imbalance(train_counts: Mapping[str, int]) -> Finding | None:
    """The largest training class has IMBALANCE or more times the images of the smallest."""
    if len(train_counts) < 2:
        return None
    big = max(train_counts, key=train_counts.__getitem__)
    small = min(train_counts, key=train_counts.__getitem__)
    ratio = train_counts[big] / max(train_counts[small], 1)
    if ratio < IMBALANCE:
        return None
    return Finding("class_imbalance", "warning",
                   f"the training set has {train_counts[big]} images of {big} and {train_counts[small]} of {small} "
                   f"({ratio:.1f}x; the rule: >= {IMBALANCE:g}x)",
                   f"add images of {small} (at least {math.ceil(train_counts[big] / IMBALANCE)}), and read its "
                   f"recall in per_class.csv rather than the overall accuracy")


def missing_classes(train_counts: Mapping[str, int], valid_counts: Mapping[str, int]) -> Finding | None:
    """Some validation labels have no training images: the model can never predict them."""
    missing = sorted(k for k, n in valid_counts.items() if n and not train_counts.get(k))
    if not missing:
        return None
    n = sum(valid_counts[k] for k in missing)
    return Finding("missing_classes", "error",
                   f"{len(missing)} validation label(s) have no training images: {', '.join(missing[:10])} "
                   f"({n} validation images the model cannot get right)",
                   f"add training images under train/{missing[0]}/, or remove val/{missing[0]}/")


def leakage(duplicates: Sequence[Any]) -> Finding | None:
    """A validation image is a copy of a training image (the same bytes, or a dHash within NEAR_BITS bits)."""
    if not duplicates:
        return None
    rows = [d._asdict() if hasattr(d, "_asdict") else dict(d) for d in duplicates]
    exact = sum(r["kind"] == "exact" for r in rows)
    return Finding("leakage", "warning",
                   f"{len(rows)} validation image(s) are copies of training images ({exact} byte for byte, "
                   f"{len(rows) - exact} near copies within {NEAR_BITS} of 64 dHash bits): the validation score "
                   f"counts them as if unseen",
                   "move or delete the validation copies listed (or their training twins), then train again",
                   rows[:MAX_ITEMS])


def label_errors(mistakes: Sequence[Mapping[str, Any]], valid_acc: float | None) -> Finding | None:
    """Validation images predicted wrong with probability >= CONFIDENT by a model right on >= LABEL_CHECK_ACC."""
    if valid_acc is None or valid_acc < LABEL_CHECK_ACC:
        return None
    sure = sorted((m for m in mistakes if m["prob"] >= CONFIDENT), key=lambda m: -m["prob"])
    if not sure:
        return None
    return Finding("label_errors", "info",
                   f"{len(sure)} validation image(s) are predicted wrong with probability >= {CONFIDENT:g} by a "
                   f"model right on {100 * valid_acc:.1f}% of them: look at them, their labels may be wrong",
                   "look at the images listed (label_errors.png); move each mislabelled one to its right class "
                   "folder", [dict(m) for m in sure[:MAX_ITEMS]])


# -- all of them --------------------------------------------------------------------------------------------
def diagnose(numbers: RunNumbers) -> tuple[list[Finding], list[str]]:
    """Run every rule the numbers allow; return (findings, worst first; what could not be checked, and why)."""
    cfg, hist = numbers.config, numbers.history or []
    lr = cfg.get("lr") if isinstance(cfg.get("lr"), (int, float)) else None
    found: list[Finding | None] = []
    not_checked = list(numbers.not_checked)
    epoch_losses = _epoch_losses(hist)
    if lr is None or not (numbers.batch_losses or epoch_losses):
        not_checked.append("the learning rate (no losses or no lr recorded)")
    else:
        n_classes = numbers.n_classes or (len(numbers.train_counts) if numbers.train_counts else None)
        opt = cfg.get("opt")
        high = lr_too_high(numbers.batch_losses, epoch_losses, lr, n_classes, opt)
        low = None if high else lr_too_low(numbers.batch_losses, epoch_losses, lr, int(cfg.get("epochs") or 0), opt)
        found += [high, low]
        if not (high or low):  # a bad lr explains poor fitting; the lr is the thing to change first
            found.append(underfitting(hist, cfg))
    if hist:
        found.append(overfitting(hist, cfg))
        if any(r.get("data_seconds") is not None for r in hist):
            found.append(loader_bottleneck(hist, numbers.num_workers, numbers.cpu_cores))
        else:
            not_checked.append("the data loader (metrics.csv has no data_seconds column: a run made before "
                               "groundup measured it)")
    else:
        not_checked.append("fitting and the data loader (no per-epoch metrics)")
    if numbers.layers is not None:
        found += [dead_units(numbers.layers, lr or 1e-2), odd_activations(numbers.layers)]
    if numbers.train_counts is not None:
        found.append(class_imbalance(numbers.train_counts))
        if numbers.valid_counts is not None:
            found.append(missing_classes(numbers.train_counts, numbers.valid_counts))
    if numbers.duplicates is not None:
        found.append(leakage(numbers.duplicates))
    if numbers.mistakes is not None:
        if numbers.valid_acc is not None and numbers.valid_acc < LABEL_CHECK_ACC:
            not_checked.append(f"label errors (the model is right on {100 * numbers.valid_acc:.1f}% of the "
                               f"validation images, < {100 * LABEL_CHECK_ACC:g}%: its confident mistakes say more "
                               f"about it than about the labels)")
        else:
            found.append(label_errors(numbers.mistakes, numbers.valid_acc))
    findings = [f for f in found if f is not None]
    findings.sort(key=lambda f: SEVERITIES.index(f.severity))
    return findings, not_checked


def format_diagnosis(findings: Sequence[Finding | Mapping[str, Any]], not_checked: Sequence[str] = (),
                     items: int = 3) -> str:
    """The diagnosis as a few lines of text: one per finding (and its action), the first `items` images each."""
    rows = [f.to_dict() if isinstance(f, Finding) else dict(f) for f in findings]
    lines = ["diagnosis: no problems found" if not rows else f"diagnosis: {len(rows)} finding(s)"]
    for r in rows:
        lines.append(f"  {r['severity']}: {r['name']}: {r['evidence']}")
        lines.append(f"    try: {r['action']}")
        for it in r.get("items", [])[:items]:
            lines.append("    " + ", ".join(f"{k} {v}" for k, v in it.items()))
        if len(r.get("items", [])) > items:
            lines.append(f"    ... and {len(r['items']) - items} more (summary.json: diagnosis)")
    for what in not_checked:
        lines.append(f"  not checked: {what}")
    return "\n".join(lines)
