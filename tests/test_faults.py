"""The fault suite: full disks, hostile files, NaN losses and dying workers.

groundup promises, under each of these, a one-line error that names the problem and the fix
(exit status 2 on the command line; a `GroundupError` in Python), or a warning and a run that
goes on, and never lost or half-written data. Each test below builds its fault itself:

- a full disk is a small tmpfs the test mounts (as root on Linux), or, where it cannot mount
  one, an injected ENOSPC at the same call;
- hostile images and checkpoints are made in the test (a decompression bomb, a pickled
  `os.system` call, random bytes, truncated files);
- a dying worker is a DataLoader worker the test kills with a signal.
"""

from __future__ import annotations

import re
from pathlib import Path

import groundup.losses
import groundup.run
from groundup.cli import main


# -- helpers --------------------------------------------------------------------------------------------------
def tiny(folder, *extra, epochs=2, size=16):
    """Arguments for a fast `groundup train` on the tiny image folder."""
    return ["train", "--data", str(folder), "--size", str(size), "--bs", "4", "--workers", "0",
            "--epochs", str(epochs), "--quiet", *map(str, extra)]


def one_line_error(capsys, pattern: str) -> str:
    """stderr is exactly one line, `groundup: error: ...`, matching `pattern`; return it."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("groundup: error:"), err
    assert re.search(pattern, err), err
    return err


# -- the command line: one line for every error ---------------------------------------------------------------
def test_an_unexpected_error_prints_one_line_and_writes_its_traceback_into_the_run_folder(
        image_folder, tmp_path, capsys, monkeypatch):
    def broken_fit(*args, **kwargs):
        raise AssertionError("an invariant broke")

    monkeypatch.setattr(groundup.run, "fit_run", broken_fit)
    out = tmp_path / "run"
    assert main(tiny(image_folder, "--out", out)) == 1
    err = one_line_error(capsys, r"unexpected AssertionError: an invariant broke")
    assert f"the full traceback is in {out / 'traceback.txt'}" in err
    assert "AssertionError: an invariant broke" in (out / "traceback.txt").read_text()


def test_an_unexpected_error_without_a_run_folder_writes_its_traceback_under_groundup_home(
        tmp_path, capsys, monkeypatch, groundup_home):
    import groundup.commands.predict as predict_command

    def broken(*args, **kwargs):
        raise EOFError("ran out of input")

    monkeypatch.setattr(predict_command.Predictor, "from_checkpoint", broken)
    assert main(["predict", str(tmp_path / "model.pt"), str(tmp_path)]) == 1
    err = one_line_error(capsys, r"unexpected EOFError: ran out of input")
    written = re.search(r"the full traceback is in (\S+\.txt)", err).group(1)
    assert Path(written).parent == groundup_home / "tmp" and "EOFError" in Path(written).read_text()


def test_errors_a_user_can_fix_derive_from_groundup_error_and_keep_their_bases():
    from groundup.checkpoint import CheckpointError
    from groundup.data.download import ChecksumError, DownloadError, UnsafeArchiveError
    from groundup.data.images import CorruptImageError
    from groundup.data.loader import WorkerError
    from groundup.errors import GroundupError

    for cls, base in ((CheckpointError, ValueError), (CorruptImageError, ValueError), (WorkerError, RuntimeError),
                      (DownloadError, OSError), (ChecksumError, OSError), (UnsafeArchiveError, ValueError)):
        assert issubclass(cls, GroundupError) and issubclass(cls, base), cls


def test_a_groundup_error_that_is_no_value_error_still_prints_one_line(image_folder, tmp_path, capsys,
                                                                       monkeypatch):
    from groundup.data.loader import WorkerError

    def dead_worker(*args, **kwargs):
        raise WorkerError("DataLoader worker 1 (pid 4242) was killed by signal 9 (SIGKILL)")

    monkeypatch.setattr(groundup.run, "fit_run", dead_worker)
    assert main(tiny(image_folder, "--out", tmp_path / "run")) == 2
    one_line_error(capsys, r"worker 1 \(pid 4242\) was killed by signal 9 \(SIGKILL\)")
