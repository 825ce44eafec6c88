"""The second fault suite (issue 21): nothing silently wrong.

Each test builds one fault that used to give a wrong answer, or an unhelpful one, without a word:
damaged checkpoints and decode caches, a run killed between the writes of an epoch, rotated
photos, and inputs a user gets wrong. Each expects one line naming the file, rank or value and the
fix (exit status 2 on the command line), or a warning and a run that goes on, and nothing lost.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest

from groundup.cli import main


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


@pytest.fixture
def trained(image_folder, tmp_path) -> Path:
    """A finished two-epoch run on the tiny folder; returns its folder."""
    assert main(tiny(image_folder, "--out", tmp_path / "trained")) == 0
    return tmp_path / "trained"


def flip_weight_bytes(path: Path, n: int = 64) -> None:
    """Flip `n` bytes in the middle of the largest tensor stored in the checkpoint `path` (its data only)."""
    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size)
    data = bytearray(path.read_bytes())
    name_len, extra_len = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len + info.file_size // 2 - n // 2
    data[start:start + n] = bytes(b ^ 0xFF for b in data[start:start + n])
    path.write_bytes(bytes(data))


# -- case 3: damage inside a checkpoint ------------------------------------------------------------------------------
def test_flipped_bytes_inside_the_weights_are_refused_by_evaluate_with_one_line(trained, image_folder, tmp_path,
                                                                              capsys):
    flip_weight_bytes(trained / "model.pt")
    capsys.readouterr()
    assert main(["evaluate", str(trained / "model.pt"), "--data", str(image_folder),
                 "--out", str(tmp_path / "eval")]) == 2
    one_line_error(capsys, r"cannot read checkpoint .*model.pt: the file is damaged \(its entry \S+/data/\d+ fails "
                           r"its CRC-32 check\): its bytes changed after it was written .*; use another copy "
                           r"\(best.pt beside it")
    assert not (tmp_path / "eval").exists()


def test_a_damaged_checkpoint_is_refused_by_resume_predict_and_learner_load(trained, image_folder, capsys):
    from groundup.utils.checkpoint_file import CheckpointError, read_checkpoint

    flip_weight_bytes(trained / "best.pt")
    with pytest.raises(CheckpointError, match="fails its CRC-32 check"):
        read_checkpoint(trained / "best.pt")
    image = next((image_folder / "val" / "cat").iterdir())
    capsys.readouterr()
    assert main(["predict", str(trained / "best.pt"), str(image)]) == 2
    one_line_error(capsys, "best.pt: the file is damaged")
    assert main(["train", "--resume", str(trained / "best.pt"), "--quiet"]) == 2
    one_line_error(capsys, "best.pt: the file is damaged")
    read_checkpoint(trained / "model.pt")  # the undamaged copy beside it still loads
