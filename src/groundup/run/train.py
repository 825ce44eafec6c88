"""A training run, as `groundup train` does it: build the learner, fit, write the run folder.

    train(cfg, out=..., resume=...)
      ├─ open_resume (run.resume)        when resuming: the checkpoint, read once, and its settings
      ├─ open_init (run.init)            with --init: the weights to start from, read once, arch checked
      ├─ build_learner (run.build)       data -> loaders, model, Learner (then apply_init: body, new head)
      ├─ fit_run (run.fit)               LR finder, the run's callbacks, resuming, fit
      └─ write_run_folder (run.folder)   metrics.csv, plots, interpretation, summary.json, report.html

The command line (`groundup.commands.train`) parses its flags into a `TrainConfig` (and, with
`--resume`, a `Resume`) and calls `train`.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from groundup.callbacks.checkpoint import stale_best
from groundup.callbacks.terminate_on_nan import NonFiniteLossError
from groundup.learner import Learner
from groundup.run.build import build_learner
from groundup.run.config import TrainConfig
from groundup.run.doctor import format_diagnosis
from groundup.run.fit import fit_run
from groundup.run.folder import check_out_dir, new_out_dir, write_run_folder
from groundup.run.init import apply_init, open_init
from groundup.run.resume import Resume, changes_of, open_resume
from groundup.utils.atomic import remove_stale_temp_files
from groundup.utils.disk import DiskFullError
from groundup.utils.errors import Terminated, note_run_dir
from groundup.utils.process_group import finish, get_world_size, is_main_process, peer_failure, peer_stopped

__all__ = ["train"]

log = logging.getLogger("groundup.run")


def _what_is_kept(learn: Learner, run_dir: Path) -> str:
    """Which checkpoints a run that stopped early left, for its error message."""
    done = [r["epoch"] for r in learn.history if "epoch" in r]
    if not done or not (run_dir / "model.pt").is_file():
        return f"no checkpoint was written to {run_dir} (no epoch finished)"
    best = ", best.pt the best one" if (run_dir / "best.pt").is_file() else ""
    return f"{run_dir / 'model.pt'} keeps the last good epoch ({done[-1]}){best}"


# What a finished run's folder holds whatever its settings (plots that depend on them are not required).
RUN_FOLDER_FILES = ("metrics.csv", "per_class.csv", "confusion_matrix.png", "summary.json", "report.html")


def _unfinished(resume: Resume) -> str:
    """What a finished run's folder lacks ('' if nothing): files a kill or a full disk at the report stage
    left unwritten, or a `best.pt` older than the best epoch `model.pt` records (see `stale_best`)."""
    here = resume.path.parent
    missing = [name for name in RUN_FOLDER_FILES if not (here / name).is_file()]
    state = (resume.checkpoint.get("callbacks") or {}).get("checkpoint") or {}
    stale = stale_best(here / "model.pt", here / "best.pt", state.get("best_epoch"))
    return "; ".join(([f"{here} lacks {', '.join(missing)}"] if missing else []) + ([stale] if stale else []))


def _vocab_difference(data: list[str], saved: list[str]) -> str:
    """How the data's labels differ from the checkpoint's, for the error message."""
    only_data, only_saved = [v for v in data if v not in saved], [v for v in saved if v not in data]
    clip = lambda labels: ", ".join(labels[:5]) + (" ..." if len(labels) > 5 else "")
    parts = ([f"only in the data: {clip(only_data)}"] if only_data else []) + \
            ([f"only in the checkpoint: {clip(only_saved)}"] if only_saved else [])
    return "; ".join(parts) or f"the same {len(data)} labels in another order"


def _resumes_in_place(out: str | None, resume: Resume | None) -> bool:
    """True when the run writes into its checkpoint's own folder (resuming, with no other `out`)."""
    if resume is None:
        return False
    here = resume.path.parent
    return out is None or Path(out).expanduser().resolve() == here.resolve()


def _run_dir(out: str | None, resume: Resume | None) -> Path:
    """The run folder: a fresh one, or (resuming) the checkpoint's own folder unless `out` names another."""
    if _resumes_in_place(out, resume):
        run_dir = resume.path.parent
        remove_stale_temp_files(run_dir)  # what a kill during an earlier write left behind
        return run_dir
    return new_out_dir(out)


def train(cfg: TrainConfig, out: str | None = None, resume: str | Path | Resume | None = None, quiet: bool = False,
          argv: Sequence[str] | None = None, epochs: int | None = None) -> dict[str, Any]:
    """Train as `groundup train` does and write the run's files; return the summary.

    Args:
        cfg: the settings. When resuming, only those a resumed run may change (`RESUME_MAY_CHANGE`:
            `data`, `num_workers`, `device`, `tensorboard`, `skip_corrupt`) are taken from it; the rest
            are the checkpoint's.
        out: the run folder; default `runs/<date-time>` (or the checkpoint's folder when resuming).
        resume: the run to continue from its last finished epoch: a checkpoint written by an earlier
            run, or the `Resume` that `open_resume` made of one (then `cfg` and `epochs` are not used:
            the `Resume` holds its settings). A run that has finished all its epochs is left alone (its
            summary is returned, nothing is written), unless its folder is incomplete (a kill or a full
            disk after the last checkpoint, see `RUN_FOLDER_FILES`, or a stale best.pt): then the run
            folder is finished (best.pt repaired, summary, report and plots written) and says so.
        quiet: no table, no progress bar. The other messages are log records of the "groundup.run"
            logger (see `groundup.utils.logs`), shown by the command line and routed by the application.
        argv: the command line, recorded in the summary.
        epochs: when resuming, a new number of epochs (a constant schedule can be extended; see
            `open_resume`).
    """
    start = time.perf_counter()
    started = datetime.datetime.now().isoformat(timespec="seconds")
    main_process = is_main_process()
    say = log.info if main_process else (lambda *a: None)
    if resume is not None and not isinstance(resume, Resume):
        resume = open_resume(resume, changes_of(cfg), epochs=epochs)
    if resume is not None:
        cfg = resume.cfg
        unfinished = _unfinished(resume) if resume.finished and _resumes_in_place(out, resume) else ""
        if unfinished:  # killed after its last checkpoint, before its run folder was complete: finish it
            say(f"{resume.path} has finished all {cfg.epochs} epochs, but {unfinished}; finishing its run folder")
        elif resume.finished:  # nothing left to train: touch nothing
            here = resume.path.parent
            if out is not None and Path(out).expanduser().resolve() != here.resolve():
                check_out_dir(out)  # the same answer as for a run with epochs left
            remove_stale_temp_files(here)  # what a kill during an earlier write left behind; results stay as they are
            say(f"{resume.path} has finished all {cfg.epochs} epochs already; nothing to do ({here} is left as "
                f"it is; to train for longer, start a new run)")
            summary = here / "summary.json"
            return json.loads(summary.read_text()) if summary.is_file() else {}
    if main_process and not _resumes_in_place(out, resume):
        check_out_dir(out)  # a bad --out is refused before any work (or any cache file) is done
    init = open_init(cfg.init, cfg.arch) if cfg.init is not None and resume is None else None
    learn = build_learner(cfg)
    data_path = learn.dls.path
    try:
        init_facts = apply_init(learn, init, say) if init is not None else None
        pre = resume.preprocessing if resume is not None else None
        if pre is not None and pre.vocab != learn.preprocessing.vocab:
            raise ValueError(f"the labels in {data_path} differ from those the checkpoint {resume.path} was "
                             f"trained on ({_vocab_difference(learn.preprocessing.vocab, pre.vocab or [])}); "
                             f"resume with the same --data")
        run_dir = _run_dir(out, resume) if main_process else Path(out or ".")  # only rank 0 writes
        try:
            facts = fit_run(learn, cfg, run_dir, resume=resume, quiet=quiet, say=say, init=init_facts)
            if not main_process:
                finish()  # wait for rank 0 to write the run folder, then leave the group with it
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (the command line turns it into one): it says the rest
            distributed = get_world_size() > 1
            launcher = "torchrun ... -m groundup train" if distributed else "groundup train"
            hints = []
            if isinstance(e, Terminated) and distributed:  # torchrun's agent stops every rank when one fails
                hints.append("under torchrun, a rank is stopped so when another rank failed or torchrun was "
                             "stopped (its report names the rank and exit code)")
            if main_process and (run_dir / "model.pt").is_file():
                hints.append(f"the last finished epoch is saved: continue with {launcher} --resume "
                             f"{run_dir / 'model.pt'}")
            if hints:
                e.resume_hint = "; ".join(hints)
            raise
        except DiskFullError as e:
            resume_hint = (f", then continue the run with: groundup train --resume {run_dir / 'model.pt'}"
                           if main_process and (run_dir / "model.pt").is_file() else "")
            raise DiskFullError(f"{e}{resume_hint}") from e
        except NonFiniteLossError as e:
            raise NonFiniteLossError(f"{e}; {_what_is_kept(learn, run_dir)}: start a new run with a lower "
                                     f"--lr (this one: {cfg.lr:g}; a resumed run keeps its lr)") from e
        except Exception as e:
            if peer_stopped(e):  # another rank died: the survivors say so and how to continue, in one line
                model = run_dir / "model.pt" if main_process or out else None
                saved = (f"the last finished epoch is saved in {model}: " if model is not None and model.is_file()
                         else "")
                how = f"--resume {model}" if model is not None else "--resume RUN/model.pt"
                raise peer_failure(e, f"{saved}continue the run with torchrun ... -m groundup train {how}") from e
            if main_process:
                note_run_dir(e, run_dir)  # an unexpected error's traceback goes into the run folder
            raise
    finally:
        learn.dls.close()  # stop the loader's worker processes, whatever happened
    if not main_process:
        return {}
    facts.update(data_path=data_path, wall_seconds=round(time.perf_counter() - start, 3), started=started,
                 resumed_from=str(resume.path) if resume is not None else None, argv=argv)
    try:
        summary = write_run_folder(learn, cfg, run_dir, facts)
    finally:
        learn.dls.close()  # the interpretation ran the validation loader again
    final, best = summary["final"], summary["best"]
    if final:
        ran = len(learn.history)
        after = (f"after {ran} epochs" if summary["stopped_epoch"] is None
                 else f"after {ran} of {cfg.epochs} epochs (stopped early: {cfg.monitor} had not improved "
                      f"for {cfg.patience} epochs)")
        tta = f" (with flip TTA: {summary['tta_acc']:.4f})" if summary.get("tta_acc") is not None else ""
        f1 = summary.get("metrics", {}).get("valid micro-F1")
        f1 = f", micro-F1 {f1:.4f} (threshold {summary['threshold']:g})" if f1 is not None else ""
        say(f"valid_acc {final.get('valid_acc', float('nan')):.4f}{tta}{f1} {after} "
            f"({summary['wall_seconds']:.1f} s); wrote {run_dir}/: {', '.join(summary['files'])}")
    if best is not None and (run_dir / "best.pt").is_file():
        say(f"best.pt is epoch {best['epoch']}, by {cfg.monitor}: {best[cfg.monitor]:.4f}")
    notes = summary["diagnosis_notes"]
    say(f"{format_diagnosis(summary['diagnosis'], notes['not_checked'])}\n  (the checks took "
        f"{notes['seconds']:.2f} s; groundup doctor {run_dir} prints this again)")
    say(f"open {run_dir / 'report.html'} in a browser for the report")
    finish()  # the other ranks have waited for this; now every rank leaves the group
    return summary


