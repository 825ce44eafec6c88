"""The run folder: a fresh one for each run, and what a finished run leaves in it.

    new_out_dir(out)                  `out` if new or empty, else `runs/<date-time>[-n]`
    write_run_folder(learn, cfg, ...) metrics.csv, summary.json, losses.png, schedule.png, the
                                      interpretation of the validation set (confusion_matrix.png,
                                      top_losses.png, per_class.csv), the diagnosis (summary.json's
                                      `diagnosis`, label_errors.png) and report.html
    base_summary(...)                 the fields every summary.json has (`train` and `evaluate` alike)
"""

from __future__ import annotations

import datetime
import logging
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from groundup._version import __version__
from groundup.callbacks.checkpoint import Checkpoint
from groundup.inference import model_device
from groundup.learner import Learner
from groundup.run.checkup import checkup_learner, label_error_indices
from groundup.run.config import TrainConfig
from groundup.run.doctor import CONFIDENT
from groundup.run.interpret import Interpretation
from groundup.run.machine import describe_device
from groundup.run.report import write_metrics_csv, write_per_class_csv, write_report, write_summary
from groundup.run.training_plot import plot_training
from groundup.utils.process_group import get_world_size, launched_by_torchrun

__all__ = ["base_summary", "check_out_dir", "command_line", "effective_settings", "interpret_validation",
           "new_out_dir", "package_versions", "write_run_folder"]

log = logging.getLogger("groundup.run")


def package_versions() -> dict[str, str]:
    import matplotlib
    import PIL

    return {"groundup": __version__, "python": platform.python_version(), "torch": str(torch.__version__),
            "numpy": np.__version__, "pillow": PIL.__version__, "matplotlib": matplotlib.__version__}


def base_summary(model: Any, started: str, wall_seconds: float, argv: Sequence[str] | None) -> dict[str, Any]:
    """The fields every summary.json has, for `train` and `evaluate` alike: where and with what it ran."""
    device = model_device(model)
    return {"started": started, "wall_seconds": wall_seconds, "device": str(device),
            "machine": describe_device(device), "n_params": sum(p.numel() for p in model.parameters()),
            "command": command_line(argv) if argv is not None else None, "versions": package_versions()}


def check_out_dir(out: str | None) -> None:
    """Raise ValueError if `out` is a file or a folder that is not empty (creates nothing: check before working)."""
    if out is None:
        return
    path = Path(out).expanduser()
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        have = ", ".join(sorted(p.name for p in path.iterdir())[:5]) if path.is_dir() else "a file"
        raise ValueError(f"--out {path} already exists and is not empty ({have}); choose another --out "
                         f"or remove it (to continue that run: --resume {path / 'model.pt'})")


def new_out_dir(out: str | None, suffix: str = "") -> Path:
    """A fresh folder for a run: `out` if it is new or empty (else an error), or `runs/<date-time>[-n]`."""
    if out is not None:
        check_out_dir(out)
        path = Path(out).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return path
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + suffix
    for n in range(1000):
        path = Path("runs") / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
    raise ValueError(f"could not find a free folder name runs/{stamp}-N; pass --out")


def command_line(argv: Sequence[str]) -> str:
    """The command as typed: `groundup train ...`, `python -m groundup train ...`, or for a torchrun run
    `torchrun --nnodes=N --nproc_per_node=M -m groundup train ...` (rebuilt from torchrun's variables)."""
    if launched_by_torchrun():
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        nodes = max(1, get_world_size() // max(local, 1))
        prog = f"torchrun --nnodes={nodes} --nproc_per_node={local} -m groundup"
    elif getattr(getattr(sys.modules.get("__main__"), "__spec__", None), "name", None) == "groundup.__main__":
        prog = "python -m groundup"
    else:
        prog = "groundup"
    return f"{prog} {shlex.join(argv)}".strip()


def effective_settings(cfg: TrainConfig, learn: Learner) -> dict[str, str]:
    """The run's settings as the report shows them: every value spelled out (what None stood for
    included), defaults marked `(default)`."""
    defaults, shown = TrainConfig().to_dict(), {}
    for key, value in cfg.to_dict().items():
        text = f"{value:.4g}" if key == "lr" and isinstance(value, float) else str(value)
        if key == "data" and value is None:
            text = "imagenette-mini, shipped with groundup (default)"
        elif key == "num_workers" and value is None:
            workers = getattr(learn.dls.train, "num_workers", "?")
            text = f"{workers} (default: one per usable CPU core, at most 8)"
        elif value is None:  # spelled out: what an unset setting means (as --print-config says it)
            text = f"{cfg._unset_meaning(key)} (default)"
        elif value == defaults[key]:
            text += " (default)"
        shown[key] = text
    return shown


def interpret_validation(learn: Learner, tta: bool = False) -> Interpretation:
    """The `Interpretation` of the whole validation set (also on rank 0 after a distributed run); with
    `tta`, of the predictions with flip test-time augmentation. (`DistributedTraining` leaves the
    loaders unsharded after fit: rank 0 sees every validation image.)"""
    return Interpretation.from_learner(learn, learn.dls.valid, tta=tta)


def _best(history: Sequence[dict[str, Any]],
          checkpoint: Checkpoint | None) -> tuple[dict[str, Any] | None, str, str | None]:
    """The best epoch's row, the column it was chosen by and the rule as a sentence (None: no best.pt)."""
    if checkpoint is not None and checkpoint.best_by is not None:
        by = checkpoint.best_by
        rule = f"best.pt holds the epoch with the {'lowest' if by.endswith('loss') else 'highest'} {by}"
        row = next((r for r in history if r.get("epoch") == checkpoint.best_epoch), None)
        return row, by, rule
    row = min((r for r in history if r.get("valid_loss") is not None), key=lambda r: r["valid_loss"],
              default=None)
    return row, "valid_loss", None


def _per_class_note(interp: Interpretation, tta: bool) -> str:
    """What the per-class (per-tag) table of a run shows, as a sentence for the report."""
    how = (f"On the {len(interp)} validation images, with the model after the last epoch "
           f"(model.pt){' and flip test-time augmentation' if tta else ''}")
    if interp.multi_label:
        return (f"{how}, a tag predicted where its probability is above {interp.threshold:g}: micro-F1 "
                f"{interp.fbeta():.4f}, macro-F1 {interp.fbeta(average='macro'):.4f}, accuracy_multi "
                f"{interp.accuracy:.4f}. A tag's support is how many images have it; its accuracy the share of "
                f"images whose decision on it is right.")
    return (f"{how}: accuracy {interp.accuracy:.4f}. A class's accuracy is the share of its images predicted "
            f"correctly (the same number as its recall).")


def write_run_folder(learn: Learner, cfg: TrainConfig, run_dir: Path, facts: dict[str, Any]) -> dict[str, Any]:
    """Write metrics.csv, the plots, the interpretation, summary.json and report.html of a finished fit;
    return the summary.

    The interpretation looks at the validation set with the model after the last epoch (the one in
    `model.pt`): `confusion_matrix.png`, `top_losses.png` and `per_class.csv`.

    Args:
        learn: the learner after `fit_run`.
        cfg: the run's settings.
        run_dir: the run folder.
        facts: what `fit_run` returned, plus `data_path`, `wall_seconds`, `started`, `resumed_from`
            and `argv` (the command line, or None).
    """
    history, recorder = learn.history, facts["recorder"]
    write_metrics_csv(history, run_dir / "metrics.csv")
    best, best_by, best_rule = _best(history, facts.get("checkpoint"))
    plots = {}
    if recorder.losses:
        plot_training(recorder.losses, history, run_dir / "losses.png",
                      best_epoch=best.get("epoch") if best and best_rule else None,
                      best_rule=f"{'lowest' if best_by.endswith('loss') else 'highest'} {best_by}")
        plots["Training loss per batch; validation loss and accuracy per epoch"] = run_dir / "losses.png"
    interp = interpret_validation(learn, tta=cfg.tta)
    if interp.multi_label:  # no confusion matrix: tags are not exclusive
        interp.plot_per_tag(run_dir / "per_tag.png")
    else:
        interp.plot_confusion_matrix(run_dir / "confusion_matrix.png")
    try:
        interp.plot_top_losses(9, run_dir / "top_losses.png")
    except ValueError as e:  # which image is which is not known (skipped images, found by worker processes)
        log.warning("no top_losses.png: %s", e)
    per_class = interp.per_class()
    write_per_class_csv(per_class, run_dir / "per_class.csv")
    if interp.multi_label:
        plots["Precision, recall and F1 of each tag on the validation set"] = run_dir / "per_tag.png"
    else:
        plots["Confusion matrix of the validation set (rows: actual class, columns: predicted)"] = \
            run_dir / "confusion_matrix.png"
    if (run_dir / "top_losses.png").is_file():
        plots["Top losses: the validation images the model got most wrong"] = run_dir / "top_losses.png"
    if recorder.losses:
        recorder.plot_lr(run_dir / "schedule.png")
        plots["Learning rate per batch"] = run_dir / "schedule.png"
    if (run_dir / "lr_find.png").is_file():
        plots["Learning rate finder"] = run_dir / "lr_find.png"
    checkup = checkup_learner(learn, cfg.to_dict(), recorder.losses, interp)
    diagnosis_plots = {}
    shown = label_error_indices(checkup.findings)[:16]
    if shown:
        interp.plot_items(shown, run_dir / "label_errors.png",
                          f"likely label errors: validation images predicted wrong with probability >= {CONFIDENT:g}")
        diagnosis_plots["Likely label errors (true label, predicted label and its probability)"] = \
            run_dir / "label_errors.png"
    pre, dls = learn.preprocessing, learn.dls
    model = learn.unwrapped_model
    final = history[-1] if history else {}
    world = get_world_size()
    summary = {
        **base_summary(model, facts["started"], facts["wall_seconds"], facts.get("argv")),
        "final": final,
        "tta_acc": round(interp.accuracy, 6) if cfg.tta else None,
        "best": best,
        "best_by": best_by,
        "best_rule": best_rule,
        "monitor": cfg.monitor,
        "stopped_epoch": facts.get("stopped_epoch"),
        "train_seconds": round(sum(r.get("seconds", 0.0) for r in history), 3),
        "epoch_seconds": [round(r.get("seconds", 0.0), 3) for r in history],
        "data_path": str(Path(facts["data_path"]).resolve()),
        "n_train": len(dls.train.dataset),
        "n_valid": len(dls.valid.dataset),
        "n_images": len(dls.train.dataset) + len(dls.valid.dataset),
        "vocab": pre.vocab,
        "class_names": pre.class_names,
        "stats": {"mean": pre.mean.tolist(), "std": pre.std.tolist()},
        "lr_finder": facts["lr_finder"],
        "config": cfg.to_dict(),  # the run's settings (arch, lr, schedule, epochs, seed, ...): here only
        "settings": effective_settings(cfg, learn),
        "world_size": world,
        "global_batch": cfg.bs * world,
        "resumed_from": facts["resumed_from"],
        "init": facts.get("init") if facts.get("init") is not None else (
            {"from": cfg.init} if cfg.init is not None else None),  # where the starting weights came from
        "start_epoch": facts["start_epoch"],
        "multi_label": pre.multi_label,
        "threshold": pre.threshold if pre.multi_label else None,
        **({"metrics": {"valid micro-F1": interp.fbeta(average="micro"),
                        "valid macro-F1": interp.fbeta(average="macro")}} if interp.multi_label else {}),
        "per_class": per_class,
        "per_class_note": _per_class_note(interp, cfg.tta),
        "most_confused": interp.most_confused()[:20],
        **checkup.to_summary(),
        "files": sorted(["metrics.csv", "summary.json", "model.pt", "report.html", "per_class.csv",
                         *(name for name in ("steps.csv", "config.toml", "label_errors.png")
                           if (run_dir / name).is_file()),
                         *(Path(p).name for p in plots.values()),
                         *(["best.pt"] if (run_dir / "best.pt").is_file() else [])]),
    }
    write_summary(summary, run_dir / "summary.json")
    write_report(summary, history, plots, run_dir / "report.html", title=f"groundup run {run_dir.name}",
                 diagnosis_plots=diagnosis_plots)
    return summary


