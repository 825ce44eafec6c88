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
from conftest import one_line_error, tiny

from groundup.cli import main


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


# -- cases 1 and 5: the run folder is a transaction -------------------------------------------------------------------
class Killed(BaseException):
    """A kill -9 injected at one write: nothing catches it (a BaseException, as SystemExit is)."""


def published_writes(monkeypatch, run_dir: Path, kill_at: int | None = None) -> list[str]:
    """Record the files published into `run_dir` (each atomic write ends in one `os.replace`); with `kill_at`,
    raise `Killed` instead of the write of that number (0-based), so the file keeps its old contents."""
    import os

    names: list[str] = []
    replace = os.replace

    def counting_replace(src, dst, *args, **kwargs):
        if Path(dst).parent.resolve() == run_dir.resolve():
            if kill_at is not None and len(names) == kill_at:
                raise Killed(f"killed before writing {Path(dst).name}")
            names.append(Path(dst).name)
        return replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", counting_replace)
    return names


def epoch_of(path: Path) -> int:
    from groundup.utils.checkpoint_file import read_checkpoint

    return int(read_checkpoint(path)["epoch"])


@pytest.fixture(scope="module")
def clean_writes(tmp_path_factory):
    """The writes of a clean two-epoch run, in order, and its summary (the second epoch is the best)."""
    import json

    from conftest import make_image_folder

    tmp = tmp_path_factory.mktemp("clean")
    data = make_image_folder(tmp / "data")
    run_dir = tmp / "run"
    with pytest.MonkeyPatch.context() as mp:
        names = published_writes(mp, run_dir)
        assert main(tiny(data, "--out", run_dir, "--lr", "0.01")) == 0
    return names, json.loads((run_dir / "summary.json").read_text())


def test_the_clean_run_writes_model_pt_then_best_pt_each_epoch_and_the_report_last(clean_writes):
    names, summary = clean_writes
    checkpoints = [n for n in names if n.endswith(".pt")]
    assert checkpoints == ["model.pt", "best.pt", "model.pt", "best.pt"]  # epoch 2 is the best: both are written
    assert summary["best"]["epoch"] == 1 and names.index("summary.json") > len(names) - 4


@pytest.mark.slow
def test_a_kill_between_any_two_writes_of_the_last_epoch_or_the_report_is_repaired_by_resume(
        clean_writes, image_folder, tmp_path, monkeypatch, capsys):
    import json

    from groundup.utils.checkpoint_file import read_checkpoint

    names, clean = clean_writes
    first = [i for i, n in enumerate(names) if n == "model.pt"][-1]  # the last epoch's writes: model.pt, best.pt, ...
    report = names.index("metrics.csv", first + 3)  # ... metrics.csv; then the report stage
    cuts = [first, first + 1, first + 2, report, report + 1, names.index("summary.json"), names.index("report.html")]
    for kill_at in cuts:
        run_dir = tmp_path / f"kill{kill_at}"
        with monkeypatch.context() as mp:
            published_writes(mp, run_dir, kill_at=kill_at)
            with pytest.raises(Killed):
                main(tiny(image_folder, "--out", run_dir, "--lr", "0.01"))
        capsys.readouterr()
        assert main(["train", "--resume", str(run_dir / "model.pt")]) == 0, names[kill_at]
        said = capsys.readouterr()
        said = said.out + said.err
        summary = json.loads((run_dir / "summary.json").read_text())
        best_epoch = read_checkpoint(run_dir / "model.pt")["callbacks"]["checkpoint"]["best_epoch"]
        assert epoch_of(run_dir / "model.pt") == 1, names[kill_at]
        assert epoch_of(run_dir / "best.pt") == best_epoch == summary["best"]["epoch"] == 1, names[kill_at]
        assert summary["final"]["valid_loss"] == clean["final"]["valid_loss"], names[kill_at]  # the same run
        for name in ("metrics.csv", "per_class.csv", "confusion_matrix.png", "losses.png", "schedule.png",
                     "report.html"):
            assert (run_dir / name).is_file(), (names[kill_at], name)
        if kill_at == first + 1:  # between model.pt and best.pt: best.pt is repaired, and it says so
            assert "best.pt holds epoch 0 while model.pt records epoch 1 as the best" in said
        if kill_at > first + 1:  # every checkpoint was written: the run folder is finished, and it says what it wrote
            assert re.search(r"has finished all 2 epochs, but .* lacks .*; finishing its run folder", said), said
            assert re.search(r"wrote .*: best.pt, config.toml, confusion_matrix.png, losses.png, metrics.csv", said)


def test_resume_of_a_finished_and_complete_run_still_does_nothing(trained, capsys):
    before = {p.name: p.stat().st_mtime_ns for p in trained.iterdir()}
    capsys.readouterr()
    assert main(["train", "--resume", str(trained / "model.pt")]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in trained.iterdir()} == before


# -- case 2: photos with an EXIF orientation tag ----------------------------------------------------------------------
def tagged_photo(path: Path, orientation: int) -> Path:
    """A 24 x 16 photo whose every pixel differs from its turned or mirrored self, saved with an orientation tag."""
    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[0:16, 0:24]
    pixels = np.stack([xx * 10, yy * 15, (xx * 7 + yy * 3) % 256], axis=-1).astype(np.uint8)  # (16, 24, 3)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, exif=exif, **({"quality": 95} if path.suffix == ".jpg" else {}))
    return path


def camera_view(path: Path, size: int):
    """What the camera meant, as Pillow says it: `ImageOps.exif_transpose`, then RGB and the square squash."""
    import numpy as np
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB").resize((size, size), Image.BILINEAR))


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_open_image_turns_a_photo_as_its_exif_orientation_says(tmp_path, suffix, orientation):
    import numpy as np
    from PIL import Image

    from groundup.data.images import image_pixels, open_image

    path = tagged_photo(tmp_path / f"photo{suffix}", orientation)
    np.testing.assert_array_equal(open_image(path, 20), camera_view(path, 20))
    np.testing.assert_array_equal(image_pixels(path, 20), camera_view(path, 20))
    with Image.open(path) as im:
        np.testing.assert_array_equal(image_pixels(im, 20), camera_view(path, 20))
        as_stored = np.asarray(im.convert("RGB").resize((20, 20), Image.BILINEAR))
    np.testing.assert_array_equal(open_image(path, 20, exif_orientation=False), as_stored)
    if orientation != 1:
        assert not np.array_equal(as_stored, camera_view(path, 20))  # the test image shows a turn


def test_training_and_its_decode_cache_see_photos_upright_and_the_option_turns_it_off(tmp_path):
    import numpy as np

    from groundup.data.images import Dataset

    files = [tagged_photo(tmp_path / f"{k}.png", k) for k in (1, 6, 8)]
    for epoch in range(2):  # the second reads the decode cache
        ds = Dataset(files, size=12)
        assert ds.cache is not None
        for i, f in enumerate(files):
            np.testing.assert_array_equal(ds[i][0].numpy(), camera_view(f, 12))
    stored = Dataset(files, size=12, exif_orientation=False)
    assert stored.cache.path != ds.cache.path  # other pixels, another cache file
    assert not np.array_equal(stored[1][0].numpy(), camera_view(files[1], 12))


def test_a_run_records_its_exif_setting_and_prediction_follows_it(image_folder, tmp_path):
    from groundup.run.predictor import Predictor
    from groundup.utils.checkpoint_file import read_checkpoint

    assert main(tiny(image_folder, "--out", tmp_path / "off", "--no-exif-orientation", epochs=1)) == 0
    assert read_checkpoint(tmp_path / "off" / "model.pt")["preprocessing"]["exif_orientation"] is False
    assert Predictor.from_checkpoint(tmp_path / "off" / "model.pt").preprocessing.exif_orientation is False
    assert main(tiny(image_folder, "--out", tmp_path / "on", epochs=1)) == 0
    assert Predictor.from_checkpoint(tmp_path / "on" / "model.pt").preprocessing.exif_orientation is True


# -- case 4 and 13: the decode cache ------------------------------------------------------------------------------------
def test_damaged_pixels_in_the_decode_cache_are_decoded_again_with_one_warning(image_folder, tmp_path):
    import warnings

    import numpy as np

    from groundup.data.files import get_image_files
    from groundup.data.images import Dataset

    files = get_image_files(image_folder)
    ds = Dataset(files, size=8)
    good = ds.get_batch(np.arange(len(files)))[0].numpy().copy()  # decodes and fills the cache
    c = ds.cache
    with open(c.path, "r+b") as f:  # flip 100 pixel bytes of images 2 and 5
        for i in (2, 5):
            at = c.nbytes - (c.n - i) * c.size * c.size * 3 + 10  # the pixels are last in the file
            f.seek(at)
            flipped = bytes(b ^ 0xFF for b in f.read(100))
            f.seek(at)
            f.write(flipped)
    again = Dataset(files, size=8)
    assert not np.array_equal(again.cache.read([2, 5]), good[[2, 5]])  # the damage is there
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        xb, _ = again.get_batch(np.arange(len(files)))
        x5, _ = again[5]
    np.testing.assert_array_equal(xb.numpy(), good)
    np.testing.assert_array_equal(x5.numpy(), good[5])
    said = [str(w.message) for w in caught]
    assert len(said) == 1 and re.search(r"the decode cache .* is damaged \(the pixels of .* do not match their "
                                        r"checksum, and maybe of others\); groundup made it", said[0]), said
    np.testing.assert_array_equal(again.cache.read([2, 5]), good[[2, 5]])  # stored again, whole


def test_a_temporary_cache_file_left_by_a_killed_maker_is_removed(image_folder, groundup_home):
    from groundup.data.files import get_image_files
    from groundup.data.images import Dataset

    folder = groundup_home / "cache"
    folder.mkdir(parents=True, exist_ok=True)
    orphan = folder / ".decoded-0123456789abcdef0123-6x8.u8.999999999.tmp"  # no such process
    orphan.write_bytes(b"half made")
    Dataset(get_image_files(image_folder), size=8)
    assert not orphan.exists()


# -- case 8: a file name that is not UTF-8 -------------------------------------------------------------------------------
def test_a_file_name_that_is_not_utf8_trains(image_folder, tmp_path):
    import os
    import shutil

    cat = image_folder / "train" / "cat"
    first = next(cat.iterdir())
    odd = os.fsdecode(bytes(cat) + b"/caf\xe9" + first.suffix.encode())  # Latin-1 bytes: a surrogate in str
    shutil.copy(first, odd)
    assert main(tiny(image_folder, "--out", tmp_path / "run", epochs=1)) == 0


# -- the medium and low cases: one line naming the file, value or rank, and the fix ------------------------------------
def test_nested_class_folders_are_refused_naming_the_folder(image_folder, tmp_path, capsys):
    cat = image_folder / "train" / "cat"
    (cat / "sub").mkdir()
    for f in list(cat.iterdir()):
        if f.is_file():
            f.rename(cat / "sub" / f.name)
    assert main(tiny(image_folder, "--out", tmp_path / "run")) == 2
    one_line_error(capsys, r"class folder .*train/cat has 6 images in subfolders \(e.g. .*train/cat/sub/.*\); a class "
                           r"folder holds its images directly .*: move them up into .*train/cat, or make each "
                           r"subfolder a class folder of .*train$")


def test_resume_of_a_checkpoint_with_nan_weights_says_it_cannot_be_resumed_not_blame_the_lr(trained, capsys):
    import torch

    from groundup.utils.checkpoint_file import read_checkpoint

    ckpt = read_checkpoint(trained / "model.pt")
    next(iter(ckpt["model"].values())).fill_(float("nan"))  # what an older groundup saved after a diverged epoch
    torch.save(ckpt, trained / "model.pt")
    capsys.readouterr()
    assert main(["train", "--resume", str(trained / "model.pt"), "--epochs", "3", "--quiet"]) == 2
    err = one_line_error(capsys, r"model.pt holds NaN or infinite weights \(1 tensors, e.g. \S+\): training had diverged "
                                 r"when it was saved, so it cannot be resumed; resume from .*best.pt or an earlier copy, "
                                 r"or start a new run with a lower --lr$")
    assert "keeps the last good epoch" not in err


@pytest.mark.parametrize("flag", ["--size", "--train-size"])
def test_a_size_beyond_the_limit_is_refused_before_any_work(image_folder, tmp_path, capsys, flag):
    extra = ["--augment"] if flag == "--train-size" else []
    assert main(tiny(image_folder, "--out", tmp_path / "run", flag, 100000, *extra)) == 2
    one_line_error(capsys, rf"{flag} 100000 is too large: the largest is 2048 \(every image becomes 100000 x 100000 "
                           r"pixels, 27.9 GiB each, .*\); .*64 to 512 is usual$")
    assert not (tmp_path / "run").exists()


def test_a_url_given_as_data_is_named_with_where_urls_are_taken(capsys, tmp_path):
    assert main(tiny("http://127.0.0.1:8000/data.tgz", "--out", tmp_path / "run")) == 2
    one_line_error(capsys, r"--data http://127.0.0.1:8000/data.tgz is a URL; --data takes a folder or a registry name. "
                           r"Download and extract it first \(in Python: untar_data\('http://127.0.0.1:8000/data.tgz'\)")


def test_a_single_class_data_set_warns_that_nothing_can_be_learned(image_folder, tmp_path, capsys):
    import shutil

    for split in ("train", "val"):
        for label in ("dog", "emu"):
            shutil.rmtree(image_folder / split / label)
    assert main(tiny(image_folder, "--out", tmp_path / "run", epochs=1)) == 0
    err = capsys.readouterr().err
    assert re.search(r"groundup: warning: .*train has one class only \(cat\): a classifier trained on it learns "
                     r"nothing .*; add a folder for each other class", err), err


def test_a_config_file_that_is_not_utf8_is_named(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_bytes(b'arch = "caf\xe9"\n')
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    one_line_error(capsys, r"config file .*run.toml is not UTF-8 text \(byte b'\\xe9' at position 11\); save it as "
                           r"UTF-8$")


def test_predict_skip_corrupt_leaves_out_a_bad_image_and_predicts_the_rest(trained, image_folder, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    good = next((image_folder / "val" / "cat").iterdir())
    (folder / "a.png").write_bytes(good.read_bytes())
    (folder / "b.png").write_bytes(b"not an image")
    capsys.readouterr()
    assert main(["predict", str(trained / "model.pt"), str(folder)]) == 2
    one_line_error(capsys, r"cannot decode image file .*b.png: .*; or skip unreadable images with --skip-corrupt")
    assert main(["predict", str(trained / "model.pt"), str(folder), "--skip-corrupt"]) == 0
    said = capsys.readouterr()
    assert [line.split("\t")[0] for line in said.out.splitlines()] == [str(folder / "a.png")]
    assert re.search(r"groundup: warning: skipping cannot decode image file .*b.png", said.err), said.err


def test_extracting_onto_a_full_disk_names_the_archive_the_size_and_the_fix(tmp_path, monkeypatch):
    import errno
    import shutil
    import zipfile

    from groundup.data.download import extract_archive
    from groundup.utils.disk import DiskFullError

    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("data/train/cat/a.txt", "x" * 5000)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfileobj", full)
    with pytest.raises(DiskFullError, match=r"no room to extract .*data.zip into .*out: it unpacks to 4.9 KiB, .* free "
                                            r"\(the partial folder was removed\); free some space there, or extract "
                                            r"elsewhere") as err:
        extract_archive(archive, tmp_path / "out")
    assert "[Errno" not in str(err.value) and not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["data.zip"]


def test_a_plain_zip_and_a_folder_given_as_a_checkpoint_are_called_what_they_are(trained, tmp_path, capsys,
                                                                                 image_folder):
    import zipfile

    image = next((image_folder / "val" / "cat").iterdir())
    plain = tmp_path / "photos.zip"
    with zipfile.ZipFile(plain, "w") as zf:
        zf.writestr("a.txt", "hello")
    assert main(["predict", str(plain), str(image)]) == 2
    one_line_error(capsys, r"photos.zip: it is a zip archive but not a torch file \(no data.pkl inside; it holds a.txt\): "
                           r"check the path$")
    assert main(["predict", str(trained), str(image)]) == 2
    one_line_error(capsys, r"checkpoint .*trained is a folder, not a checkpoint file; give the file inside it: "
                           r".*trained/model.pt$")


def test_resume_with_other_data_names_the_labels_that_differ(image_folder, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    assert main(tiny(image_folder, "--out", run, "--schedule", "constant", epochs=1)) == 0

    other = tmp_path / "other"
    shutil.copytree(image_folder, other)
    for split in ("train", "val"):
        (other / split / "emu").rename(other / split / "owl")
    capsys.readouterr()
    assert main(["train", "--resume", str(run / "model.pt"), "--epochs", "2", "--data", str(other),
                 "--quiet"]) == 2
    one_line_error(capsys, r"the labels in .*other differ from those the checkpoint .*model.pt was trained on \(only in "
                           r"the data: owl; only in the checkpoint: emu\); resume with the same --data$")


@pytest.mark.slow
@pytest.mark.parametrize("sig, said, status", [("SIGINT", "interrupted", 130), ("SIGTERM", r"terminated \(SIGTERM\)", 143)])
def test_ctrl_c_and_sigterm_stop_a_run_with_one_line_saying_how_to_continue(image_folder, tmp_path, sig, said, status):
    import os
    import signal
    import subprocess
    import sys
    import time

    import groundup

    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(groundup.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "groundup", *tiny(image_folder, "--out", run_dir, "--schedule",
                                                                    "constant", epochs=500)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run_dir / "model.pt").is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(getattr(signal, sig))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.fullmatch(rf"groundup: {said}; the last finished epoch is saved: continue with groundup train --resume "
                        rf".*run/model.pt", lines[0]), err


# -- case 7: a rank that dies -------------------------------------------------------------------------------------------
def rank_pid(port: int, rank: int) -> int | None:
    """The pid of the torchrun worker of `rank` whose group listens on `port` (read from /proc)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = dict(item.split("=", 1) for item in (entry / "environ").read_bytes().decode(errors="replace")
                       .split("\0") if "=" in item)
        except OSError:
            continue
        if env.get("MASTER_PORT") == str(port) and env.get("RANK") == str(rank) and "TORCHELASTIC_RUN_ID" in env:
            return int(entry.name)
    return None


def _torchrun_stopped(image_folder, tmp_path, stop) -> str:
    """Start a 2-rank torchrun run, wait for its first checkpoint, call `stop(port, agent_pid)`; return what it said."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    import groundup

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo",
           "PYTHONPATH": os.pathsep.join([str(Path(groundup.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1", "--master_addr=127.0.0.1",
           f"--master_port={port}", "-m", "groundup",
           *tiny(image_folder, "--out", run_dir, "--schedule", "constant", epochs=500)]
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        try:
            deadline = time.monotonic() + 150
            while not (run_dir / "model.pt").is_file() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert proc.poll() is None, "torchrun ended before its first checkpoint"
            stop(port, proc.pid)
            out, err = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    return out + err


# Rank 0's line when torchrun's agent stops it with SIGTERM (as it stops every rank once one has failed).
TORCHRUN_TERMINATED = (r"groundup: terminated \(SIGTERM\); under torchrun, a rank is stopped so when another rank "
                       r"failed or torchrun was stopped \(its report names the rank and exit code\); the last "
                       r"finished epoch is saved: continue with torchrun \.\.\. -m groundup train --resume .*run/model.pt")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the rank's process through /proc")
def test_when_one_rank_is_killed_the_other_names_it_and_says_how_to_resume(image_folder, tmp_path):
    import os
    import signal

    def kill_rank_1(port, agent):
        pid = rank_pid(port, 1)
        assert pid is not None, "rank 1 not found"
        os.kill(pid, signal.SIGKILL)

    said = _torchrun_stopped(image_folder, tmp_path, kill_rank_1)
    # Rank 0 names rank 1 when its next collective fails first. When torchrun's agent, which saw rank 1 die,
    # sends rank 0 SIGTERM first (a race the machine's load decides), rank 0 says that instead. Both say how
    # to resume with torchrun.
    named = (r"groundup: error: rank 0: rank 1 stopped during training \(killed, or failed: torchrun's summary "
             r"names its exit code\), so rank 0 stops too \(it saw: .*\); the last finished epoch is saved in "
             r".*run/model.pt: continue the run with torchrun \.\.\. -m groundup train --resume .*run/model.pt")
    assert re.search(named, said) or re.search(TORCHRUN_TERMINATED, said), said[-3000:]
    assert "unexpected" not in said and "GLHF" not in said.split("groundup: error:")[-1], said[-3000:]


@pytest.mark.slow
def test_when_torchrun_is_stopped_rank_0_says_how_to_resume_with_torchrun(image_folder, tmp_path):
    import os
    import signal

    said = _torchrun_stopped(image_folder, tmp_path, lambda port, agent: os.kill(agent, signal.SIGTERM))
    assert re.search(TORCHRUN_TERMINATED, said), said[-3000:]
    assert "unexpected" not in said and "Traceback" not in said.split("groundup: terminated")[0][-2000:], said[-3000:]


# -- case 6: the end of a distributed run -------------------------------------------------------------------------------
SLOW_RANK_0 = '''
import atexit, os, time
if os.environ.get("TORCHELASTIC_RUN_ID") and os.environ.get("RANK"):  # a torchrun worker, not the launcher
    rank, log = os.environ["RANK"], os.environ["EXIT_LOG"]
    atexit.register(lambda: open(f"{log}.{rank}", "w").write(repr(time.time())))  # runs last: at the very end
    if rank == "0":  # rank 0 takes 3 s longer to write its run folder
        import groundup.run.train as train
        write = train.write_run_folder
        def slow_write(*args, **kwargs):
            time.sleep(3)
            return write(*args, **kwargs)
        train.write_run_folder = slow_write
'''


@pytest.mark.slow
def test_the_other_ranks_wait_for_rank_0_to_write_the_run_folder_and_leave_with_it(image_folder, tmp_path):
    import os
    import socket
    import subprocess
    import sys

    import groundup

    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SLOW_RANK_0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run_dir, exit_log = tmp_path / "run", tmp_path / "exit"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", "EXIT_LOG": str(exit_log),
           "PYTHONPATH": os.pathsep.join([str(hooks), str(Path(groundup.__file__).parents[1]),
                                          os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1", "--master_addr=127.0.0.1",
           f"--master_port={port}", "-m", "groundup",
           *tiny(image_folder, "--out", run_dir, "--schedule", "constant", epochs=1)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    written = (run_dir / "summary.json").stat().st_mtime
    assert (run_dir / "report.html").is_file()
    ends = {rank: float(Path(f"{exit_log}.{rank}").read_text()) for rank in (0, 1)}
    assert ends[1] >= written, f"rank 1 ended {written - ends[1]:.1f} s before rank 0 wrote summary.json"
