"""The fault suite: full disks, hostile files, NaN losses and dying workers.

groundup promises, under each of these, a one-line error that names the problem and the fix
(exit status 2 on the command line; a `GroundupError` in Python), or a warning and a run that
goes on, and never lost or half-written data. Each test below builds its fault itself:

- a full disk is a small tmpfs the test mounts (as root on Linux), or, where it cannot mount
  one, an injected ENOSPC at the same call (GROUNDUP_TEST_NO_MOUNT=1 takes that path anywhere);
- hostile images and checkpoints are made in the test (a decompression bomb, a pickled
  `os.system` call, random bytes, truncated files);
- a dying worker is a DataLoader worker the test kills with a signal.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_image_folder, one_line_error, tiny
from PIL import Image

import groundup.losses
import groundup.run.build
import groundup.run.fit
import groundup.run.train
from groundup.cli import main
from groundup.utils.checkpoint_file import read_checkpoint


# -- helpers --------------------------------------------------------------------------------------------------
def run_cli(*args, cwd, env=None) -> subprocess.CompletedProcess:
    """`python -m groundup ARGS` in a fresh process (for faults that kill a process, such as SIGBUS)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join([str(Path(groundup.run.__file__).parents[2]),
                                              full_env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "groundup", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture
def small_fs(tmp_path):
    """`small_fs(kib, readonly=False)`: a folder on a tmpfs of that size, or None where none can be mounted."""
    mounted: list[Path] = []

    def mount(kib: int, readonly: bool = False) -> Path | None:
        if not sys.platform.startswith("linux") or os.geteuid() != 0 or os.environ.get("GROUNDUP_TEST_NO_MOUNT"):
            return None
        folder = tmp_path / f"fs{len(mounted)}"
        folder.mkdir()
        opts = f"size={kib}k,mode=0777" + (",ro" if readonly else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(folder)], capture_output=True,
                           check=False)
        if r.returncode != 0:
            return None
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


def fill(folder: Path) -> Path:
    """Fill the file system of `folder` to the last byte with one file; return it."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)
    return filler


def finite_weights(path) -> bool:
    return all(torch.isfinite(t).all() for t in read_checkpoint(path)["model"].values() if t.is_floating_point())


def metrics_epochs(run: Path) -> list[int]:
    return [int(r["epoch"]) for r in csv.DictReader((run / "metrics.csv").open())]


# -- the command line: one line for every error ---------------------------------------------------------------
def test_an_unexpected_error_prints_one_line_and_writes_its_traceback_into_the_run_folder(
        image_folder, tmp_path, capsys, monkeypatch):
    def broken_fit(*args, **kwargs):
        raise AssertionError("an invariant broke")

    monkeypatch.setattr(groundup.run.train, "fit_run", broken_fit)
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
    from groundup.data.download import ChecksumError, DownloadError, UnsafeArchiveError
    from groundup.data.images import CorruptImageError
    from groundup.data.loader import WorkerError
    from groundup.utils.checkpoint_file import CheckpointError
    from groundup.utils.errors import GroundupError

    for cls, base in ((CheckpointError, ValueError), (CorruptImageError, ValueError), (WorkerError, RuntimeError),
                      (DownloadError, OSError), (ChecksumError, OSError), (UnsafeArchiveError, ValueError)):
        assert issubclass(cls, GroundupError) and issubclass(cls, base), cls


def test_a_groundup_error_that_is_no_value_error_still_prints_one_line(image_folder, tmp_path, capsys,
                                                                       monkeypatch):
    from groundup.data.loader import WorkerError

    def dead_worker(*args, **kwargs):
        raise WorkerError("DataLoader worker 1 (pid 4242) was killed by signal 9 (SIGKILL)")

    monkeypatch.setattr(groundup.run.train, "fit_run", dead_worker)
    assert main(tiny(image_folder, "--out", tmp_path / "run")) == 2
    one_line_error(capsys, r"worker 1 \(pid 4242\) was killed by signal 9 \(SIGKILL\)")


# -- options are checked before anything is created -------------------------------------------------------------
@pytest.mark.parametrize("seed", ["-1", str(2**70)])
def test_a_bad_seed_is_refused_by_name_and_leaves_no_out_folder(image_folder, tmp_path, capsys, seed):
    out = tmp_path / "run"
    assert main(tiny(image_folder, "--seed", seed, "--out", out)) == 2
    one_line_error(capsys, rf"--seed must be an integer from 0 to 4294967295 \(2\*\*32 - 1\), got {seed}")
    assert not out.exists()


def test_a_full_out_folder_is_refused_before_the_decode_cache_is_made(image_folder, tmp_path, capsys,
                                                                      groundup_home):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(tiny(image_folder, "--out", out)) == 2
    one_line_error(capsys, r"--out .*run already exists and is not empty \(notes.txt\)")
    assert not (groundup_home / "cache").exists()


# -- a full disk, permissions, temporary files --------------------------------------------------------------------
def test_a_full_disk_while_saving_a_checkpoint_keeps_the_last_epoch_and_says_where_and_how_much(
        image_folder, tmp_path, capsys, monkeypatch, small_fs):
    disk = small_fs(4096)
    out = (disk or tmp_path) / "run"
    real_after_epoch = groundup.run.fit.MetricsFile.after_epoch

    def after_epoch_then_the_disk_fills(cb):  # the disk fills up once epoch 0 is safely written
        real_after_epoch(cb)
        if cb.learn.epoch != 0:
            return
        if disk is not None:
            fill(disk)
        else:  # no tmpfs here: make torch's writer fail as it does on a full disk
            def save(obj, f, *a, **k):
                f.write(b"\0" * 1000)
                try:
                    raise OSError(errno.ENOSPC, "No space left on device")
                except OSError:  # torch's zip writer raises while handling the OSError
                    raise RuntimeError("[enforce fail at inline_container.cc] . unexpected pos")
            monkeypatch.setattr("groundup.utils.checkpoint_file.torch.save", save)

    monkeypatch.setattr(groundup.run.fit.MetricsFile, "after_epoch", after_epoch_then_the_disk_fills)
    assert main(tiny(image_folder, "--out", out, epochs=3)) == 2
    one_line_error(capsys, rf"no space left in {re.escape(str(out))} to write model.pt: .* free, it needs "
                           rf"about [\d.]+ \w+ .*the previous model.pt is intact.*--resume .*model.pt")
    assert read_checkpoint(out / "model.pt")["epoch"] == 0 and read_checkpoint(out / "best.pt")["epoch"] == 0
    assert metrics_epochs(out) == [0]  # never an epoch whose checkpoint was not written
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_files_groundup_writes_follow_the_umask(image_folder, tmp_path):
    old = os.umask(0o022)
    try:
        assert main(tiny(image_folder, "--out", tmp_path / "run", epochs=1)) == 0
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "run").iterdir()}
    assert modes and set(modes.values()) == {0o644}, modes


def test_temp_files_left_by_a_kill_mid_write_are_removed_when_the_run_resumes(image_folder, tmp_path):
    out = tmp_path / "run"
    assert main(tiny(image_folder, "--out", out, epochs=1)) == 0
    stale = [out / ".model.pt.Ab3dE5gh.tmp", out / ".best.pt.x_Y-12zz.tmp", out / ".metrics.csv.q1w2e3r4.tmp"]
    for p in stale:
        p.write_bytes(b"half a file")
    (out / "notes.tmp").write_text("not ours")
    assert main(["train", "--resume", str(out / "model.pt"), "--quiet", "--num-workers", "0"]) == 0
    assert not any(p.exists() for p in stale) and (out / "notes.tmp").exists()


def test_the_checkpoint_callback_removes_its_stale_temp_files(tmp_path):
    from conftest import Points, groundup_mlp

    from groundup.callbacks.checkpoint import Checkpoint
    from groundup.callbacks.tracking import TrackResults
    from groundup.learner import Learner
    from groundup.losses import cross_entropy

    stale = tmp_path / ".model.pt.abcdefgh.tmp"
    stale.write_bytes(b"x")
    learn = Learner(groundup_mlp(), Points(), cross_entropy, cbs=[TrackResults(print_table=False),
                                                                  Checkpoint(tmp_path)])
    learn.fit(1)
    assert not stale.exists() and (tmp_path / "model.pt").is_file()


# -- training that goes wrong: NaN losses ------------------------------------------------------------------------
def test_a_nan_loss_stops_the_run_with_one_line_and_keeps_the_last_good_checkpoint(image_folder, tmp_path, capsys,
                                                                                   monkeypatch):
    calls = []

    def loss_that_turns_nan(preds, yb):  # NaN from the 8th training batch on: epoch 1 (5 batches each), batch 2
        loss = groundup.losses.cross_entropy(preds, yb)
        if torch.is_grad_enabled():
            calls.append(1)
            if len(calls) >= 8:
                loss = loss * float("nan")
        return loss

    monkeypatch.setattr(groundup.run.build, "cross_entropy", loss_that_turns_nan)
    out = tmp_path / "run"
    assert main(tiny(image_folder, "--lr", "0.01", "--out", out, epochs=4)) == 2
    one_line_error(capsys, r"the training loss became nan at epoch 1, batch 2 \(of 5\); training stopped before the "
                           r"weights of epoch 1 were saved.*try a lower one; .*model.pt keeps the last good epoch \(0\), "
                           r"best.pt the best one: start a new run with a lower --lr \(this one: 0.01")
    assert metrics_epochs(out) == [0] and read_checkpoint(out / "model.pt")["epoch"] == 0
    assert finite_weights(out / "model.pt") and finite_weights(out / "best.pt")


def test_an_exploding_lr_ends_the_run_with_exit_status_2_and_no_nan_weights_on_disk(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(tiny(image_folder, "--lr", "1e6", "--out", out, epochs=4)) == 2
    one_line_error(capsys, r"(loss became (nan|inf|-inf)|the weights became NaN or infinite) .*--lr")
    for name in ("model.pt", "best.pt"):
        assert not (out / name).exists() or finite_weights(out / name)


def nan_at(epoch: int, batch: int):
    """cross_entropy, except NaN at one training batch (the learner is read through a closure)."""
    from groundup.losses import cross_entropy

    state = {}

    def loss_func(preds, yb):
        loss = cross_entropy(preds, yb)
        learn = state["learn"]
        if learn.training and (learn.epoch, learn.iter) == (epoch, batch):
            loss = loss * float("nan")
        return loss
    return loss_func, state


@pytest.mark.parametrize("every_epoch", [True, False])
def test_terminate_on_nan_names_the_first_bad_batch_and_no_checkpoint_holds_its_weights(tmp_path, every_epoch):
    from conftest import Points, groundup_mlp

    from groundup.callbacks.checkpoint import Checkpoint
    from groundup.callbacks.terminate_on_nan import NonFiniteLossError, TerminateOnNaN
    from groundup.callbacks.tracking import TrackResults
    from groundup.learner import Learner

    loss_func, state = nan_at(epoch=1, batch=2)
    learn = Learner(groundup_mlp(), Points(), loss_func, lr=0.1,
                    cbs=[TerminateOnNaN(), TrackResults(print_table=False),
                         Checkpoint(tmp_path, every_epoch=every_epoch)])
    state["learn"] = learn
    with pytest.raises(NonFiniteLossError, match=r"the training loss became nan at epoch 1, batch 2 \(of 6\); "
                                                 r"training stopped .* try a lower one"):
        learn.fit(3)
    assert [r["epoch"] for r in learn.history] == [0]
    if every_epoch:
        assert read_checkpoint(tmp_path / "model.pt")["epoch"] == 0 and finite_weights(tmp_path / "model.pt")
    else:
        assert not (tmp_path / "model.pt").exists()  # the half-trained, NaN weights of epoch 1 are not saved


def test_terminate_on_nan_looks_at_the_host_only_every_n_batches(monkeypatch):
    from conftest import Points, groundup_mlp

    from groundup.callbacks.terminate_on_nan import NonFiniteLossError, TerminateOnNaN
    from groundup.learner import Learner

    loss_func, state = nan_at(epoch=0, batch=1)
    cb = TerminateOnNaN(check_every=4)
    checks = []
    real_check = TerminateOnNaN._check
    monkeypatch.setattr(TerminateOnNaN, "_check", lambda self: (checks.append(self.learn.iter), real_check(self)))
    learn = Learner(groundup_mlp(), Points(), loss_func, lr=0.1, cbs=[cb])
    state["learn"] = learn
    with pytest.raises(NonFiniteLossError, match="batch 1 "):
        learn.fit(1)
    assert checks == [3]  # one look at batch 3 (the 4th), not one per batch; it still names batch 1


# -- GROUNDUP_HOME: a full disk, a read-only one, a damaged cache ---------------------------------------------
def warnings_in(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("groundup: warning:")]


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.slow  # a groundup subprocess
def test_a_full_groundup_home_trains_without_the_cache_with_one_warning_and_leaves_the_disk_free(
        image_folder, tmp_path, small_fs, monkeypatch, capsys, workers):
    home = small_fs(512)  # the two caches need 1.3 MiB at 128 px
    mounted = home is not None
    args = tiny(image_folder, "--out", tmp_path / "run", epochs=1, size=128)
    args[args.index("--num-workers") + 1] = str(workers)
    if home is not None:  # in a fresh process: before the fix, this died of SIGBUS (exit 135, nothing printed)
        r = run_cli(*args, cwd=tmp_path, env={"GROUNDUP_HOME": str(home)})
        code, err = r.returncode, r.stderr
    else:  # no tmpfs here: the reservation fails as it does on a full disk
        def no_space(fd, offset, length):
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr("groundup.data.cache.os.posix_fallocate", no_space)
        code, err = main(args), capsys.readouterr().err
        home = Path(os.environ["GROUNDUP_HOME"])
    assert code == 0, err
    assert "Traceback" not in err and len(warnings_in(err)) == 1, err
    assert re.search(rf"no room for the decode cache in GROUNDUP_HOME={re.escape(str(home))}: it needs [\d.]+ KiB "
                     rf"\(18 images of 128x128 pixels\), [\d.]+ \w+ free; going on without the decode cache", err), err
    assert not [p for p in (home / "cache").iterdir()]  # the partial file is removed
    if mounted:
        from groundup.utils.disk import free_space
        assert free_space(home) > 400 * 1024  # the disk is not left full
    assert (tmp_path / "run" / "model.pt").is_file()


def test_a_read_only_groundup_home_trains_without_the_cache_and_says_why_once(image_folder, tmp_path, small_fs,
                                                                               monkeypatch, capsys):
    home = small_fs(64, readonly=True)
    if home is None and os.geteuid() != 0:
        home = tmp_path / "home"
        home.mkdir()
        home.chmod(0o555)
    if home is None:  # root without a mount: creating anything in GROUNDUP_HOME fails as on a read-only disk
        home, real_mkdir = tmp_path / "home", os.mkdir

        def mkdir(path, *args, **kwargs):
            if str(path).startswith(str(home)):
                raise OSError(errno.EROFS, "Read-only file system", str(path))
            return real_mkdir(path, *args, **kwargs)
        monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setenv("GROUNDUP_HOME", str(home))
    assert main(tiny(image_folder, "--out", tmp_path / "run", epochs=1)) == 0
    err = capsys.readouterr().err
    assert len(warnings_in(err)) == 1, err
    assert re.search(rf"cannot (create|write) .*GROUNDUP_HOME={re.escape(str(home))}.*(Read-only file system|"
                     rf"Permission denied).*going on without the decode cache", err), err


def test_a_damaged_decode_cache_is_made_again_with_one_warning_not_an_error(image_folder, tmp_path, capsys,
                                                                             groundup_home):
    assert main(tiny(image_folder, "--out", tmp_path / "a", epochs=1)) == 0
    caches = sorted((groundup_home / "cache").iterdir())
    assert len(caches) == 2
    caches[0].write_bytes(b"not a cache" * 10)  # a bad header and the wrong size
    assert main(tiny(image_folder, "--out", tmp_path / "b", epochs=1)) == 0
    err = capsys.readouterr().err
    assert len(warnings_in(err)) == 1 and "is damaged" in err and "makes it again" in err, err
    assert caches[0].read_bytes().startswith(b"GROUNDUP-DECODE-CACHE")


# -- dying workers --------------------------------------------------------------------------------------------
class Slowish:
    """64 tensors; each worker sleeps a little per item, so batches are in flight when one is killed."""

    def __len__(self):
        return 64

    def __getitem__(self, i):
        import time
        time.sleep(0.01)
        return torch.full((32,), float(i)), i


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])  # (SIGBUS would make pytest's faulthandler print)
def test_a_worker_killed_mid_epoch_is_named_with_its_signal(sig):
    import multiprocessing as mp
    import signal
    import time

    from groundup.data.loader import DataLoader, WorkerError

    before = {p.pid for p in mp.active_children()}
    dl = DataLoader(Slowish(), 4, num_workers=2, prefetch=4, timeout=1.0)
    it = iter(dl)
    next(it)
    time.sleep(0.3)  # both workers have handed batches over (tensors travel through their sender)
    victim = next(p for p in mp.active_children() if p.pid not in before and p.name == "groundup-worker-1")
    os.kill(victim.pid, getattr(signal, sig))
    with pytest.raises(WorkerError, match=rf"DataLoader worker 1 \(pid {victim.pid}\) was killed by signal "
                                          rf"{getattr(signal, sig).value} \({sig}\); "):
        for _ in it:
            pass
    assert not [p for p in mp.active_children() if p.pid not in before]  # the other worker was stopped too


# -- hostile or unusual images --------------------------------------------------------------------------------
def gradient(side=8):
    return np.arange(side * side).reshape(side, side) / (side * side - 1)  # 0 .. 1, square: no resizing


def reference_rgb(mode: str, im: Image.Image) -> np.ndarray:
    """What a careful conversion to 8-bit RGB gives: the wide modes scaled to 0..255, the 8-bit ones as Pillow."""
    if mode in ("I;16", "I"):
        v = np.asarray(im).astype(np.float64)
        gray = np.rint(np.clip(v, 0, 65535) / 65535 * 255)
    elif mode == "F":
        gray = np.rint(np.clip(np.asarray(im, np.float64), 0, 1) * 255)
    else:
        return np.asarray(im.convert("RGB"))
    return np.repeat(gray.astype(np.uint8)[..., None], 3, axis=2)


def image_in_mode(mode: str) -> Image.Image:
    g = gradient()
    if mode == "I;16":
        return Image.fromarray((g * 65535).astype(np.uint16))  # mode I;16
    if mode == "I":
        return Image.fromarray((g * 65535).astype(np.int32))  # mode I
    if mode == "F":
        return Image.fromarray(g.astype(np.float32))  # mode F
    rgb = np.stack([g * 255, (1 - g) * 255, np.full_like(g, 100)], -1).astype(np.uint8)
    return Image.fromarray(rgb).convert(mode)


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F", "LA", "PA", "YCbCr"])
def test_every_mode_pillow_writes_becomes_the_reference_rgb(tmp_path, mode):
    from groundup.data.images import open_image

    im = image_in_mode(mode)
    path = tmp_path / ("x.png" if mode in ("1", "L", "P", "RGB", "RGBA", "I;16", "LA") else "x.tiff")
    im.save(path)
    with Image.open(path) as saved:
        assert saved.mode == mode
        want = reference_rgb(mode, saved)
    got = open_image(path, size=im.width)
    if mode in ("I;16", "I", "F"):  # not clipped to white: the full range survives
        assert got.min() == 0 and got.max() == 255 and len(np.unique(got)) > 20
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_a_16_bit_png_is_scaled_not_clipped_to_white(tmp_path):
    from groundup.data.images import open_image

    v = np.full((8, 8), 32896, np.uint16)  # the middle of the 16-bit range
    Image.fromarray(v).save(tmp_path / "x.png")  # mode I;16
    assert (open_image(tmp_path / "x.png", 8) == 128).all()  # was 255 everywhere


def bomb_png(path: Path, side: int = 20000) -> Path:
    """A real 1-bit PNG of side x side black pixels: about 48 KB on disk, side**2 pixels decoded."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z, row = zlib.compressobj(9), b"\0" * (1 + side // 8)
    idat = b"".join(z.compress(row * 500) for _ in range(side // 500)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    return bomb_png(tmp_path_factory.mktemp("bomb") / "bomb.png")


def test_a_decompression_bomb_in_val_is_one_line_before_training_naming_file_and_limit(
        image_folder, tmp_path, capsys, bomb):
    target = image_folder / "val" / "cat" / "bomb.png"
    target.write_bytes(bomb.read_bytes())
    assert bomb.stat().st_size < 100_000
    out = tmp_path / "run"
    assert main(tiny(image_folder, "--out", out)) == 2
    one_line_error(capsys, rf"image file {re.escape(str(target))} is too large to decode: 400,000,000 pixels, "
                           r"more than the limit of 89,478,485 \(max_pixels\); it may be a decompression bomb: "
                           r"remove it, or shrink it .*; or skip unreadable images with --skip-corrupt")
    assert not out.exists()  # found before training, not after an epoch


def test_skip_corrupt_skips_a_bomb_and_a_broken_image_with_a_warning_each(image_folder, tmp_path, capsys, bomb):
    (image_folder / "val" / "cat" / "bomb.png").write_bytes(bomb.read_bytes())
    (image_folder / "train" / "dog" / "broken.jpg").write_bytes(b"not a jpeg at all")
    assert main(tiny(image_folder, "--out", tmp_path / "run", "--skip-corrupt", epochs=1)) == 0
    err = capsys.readouterr().err
    assert "groundup: warning: skipping image file" in err and "bomb.png is too large" in err
    assert "groundup: warning: skipping cannot decode image file" in err and "broken.jpg" in err
    assert "Traceback" not in err


def test_a_decompression_bomb_given_to_predict_is_one_line(image_folder, tmp_path, capsys, bomb):
    assert main(tiny(image_folder, "--out", tmp_path / "run", epochs=1)) == 0
    assert main(["predict", str(tmp_path / "run" / "model.pt"), str(bomb)]) == 2
    one_line_error(capsys, rf"{re.escape(str(bomb))} is too large to decode: .* more than the limit of "
                           r"89,478,485 \(max_pixels\)")


def test_the_pixel_limit_is_an_option_of_the_loader(tmp_path):
    from groundup.data.folder import ImageDataLoaders
    from groundup.data.images import CorruptImageError, open_image

    big = make_image_folder(tmp_path / "data", size=32)
    with pytest.raises(CorruptImageError, match=r"32 x 32 = 1,024 pixels, more than the limit of 1,000"):
        ImageDataLoaders.from_folder(big, size=8, bs=4, num_workers=0, max_pixels=1000)
    assert open_image(next((big / "train" / "cat").iterdir()), 8, max_pixels=1024).shape == (8, 8, 3)


def test_a_broken_training_image_says_what_to_do(image_folder, tmp_path, capsys):
    bad = image_folder / "train" / "emu" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    assert main(tiny(image_folder, "--out", tmp_path / "run")) == 2
    one_line_error(capsys, rf"cannot decode image file {re.escape(str(bad))}: not an image format Pillow knows .*; "
                           r"remove it or convert it \(to PNG or JPEG\); or skip unreadable images with --skip-corrupt "
                           r"\(skip_corrupt=True in Python\)$")


def test_a_label_with_a_tab_or_newline_cannot_break_the_tab_separated_output(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", classes=("plain", "tab\there", "new\nline"))
    assert main(tiny(data, "--out", tmp_path / "run", epochs=1)) == 0
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "run" / "model.pt"), str(data / "val"), "--top", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 9  # one line per image, whatever the labels hold
    for line in lines:  # the path, then a name and a probability per class, each its own field
        fields = line.split("\t")
        assert len(fields) == 7 and set(fields[1::2]) == {"plain", "tab\\there", "new\\nline"}


# -- devices ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", ["tpu", "cuda:7"])
def test_predict_on_a_device_this_machine_lacks_lists_the_ones_it_has(image_folder, tmp_path, capsys, device):
    assert main(tiny(image_folder, "--out", tmp_path / "run", epochs=1)) == 0
    image = next((image_folder / "val" / "cat").iterdir())
    assert main(["predict", str(tmp_path / "run" / "model.pt"), str(image), "--device", device]) == 2
    one_line_error(capsys, rf"--device '?{device}'? .*available(?: here)?: auto, cpu")  # one wording: utils.devices


# -- hostile checkpoints --------------------------------------------------------------------------------------------
@pytest.fixture
def trained(image_folder, tmp_path) -> Path:
    """A checkpoint of a one-epoch run on the tiny folder."""
    assert main(tiny(image_folder, "--out", tmp_path / "trained", epochs=1)) == 0
    return tmp_path / "trained" / "model.pt"


class RunsCode:
    """Pickles to a call of os.system: what a malicious checkpoint holds."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def hostile_checkpoint(kind: str, good: Path, tmp_path: Path) -> Path:
    path = tmp_path / f"{kind}.pt"
    data = good.read_bytes()
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(5000))
    elif kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "runs code":
        torch.save({"format": "groundup-checkpoint", "payload": RunsCode(tmp_path / "pwned")}, path)
    elif kind in ("newer version", "other architecture"):
        ckpt = read_checkpoint(good)
        if kind == "newer version":
            ckpt["version"] = 99
        else:
            ckpt["arch"] = {"name": "resnet", "kwargs": {"n_classes": 3}}
        torch.save(ckpt, path)
    return path


CHECKPOINT_FAULTS = {
    "empty": r"the file is empty \(0 bytes\): its write or copy was cut off; use another copy",
    "random bytes": r"it is not a torch file \(it starts with b'.*'; torch.save writes a zip archive, starting with "
                    r"b'PK\\x03\\x04'\): check the path$",
    "truncated": r"the file is truncated \([\d,]+ bytes, and the end of its zip archive is missing\): its write or copy "
                 r"was cut off; use another copy",
    "runs code": r"it holds objects that safe loading refuses to create \(it asks for (posix|nt).system\); a checkpoint "
                 r"that runs code when loaded may be malicious, so groundup will not load it\. Use a checkpoint "
                 r"written by groundup \(Learner.save, groundup train\) that you trust$",
    "newer version": r"has checkpoint version 99, this groundup \(.*\) reads up to 2; upgrade groundup$",
    "other architecture": r"its weights do not fit the architecture 'resnet' \(\d+ of the model's weights are not in it "
                          r"\(e.g. [\w.]+\); it holds \d+ the model has no place for \(e.g. [\w.]+\)",
}


@pytest.mark.parametrize("kind", list(CHECKPOINT_FAULTS))
def test_each_way_a_checkpoint_can_fail_has_its_own_complete_message(trained, tmp_path, capsys, kind,
                                                                     image_folder):
    path = hostile_checkpoint(kind, trained, tmp_path)
    image = next((image_folder / "val" / "cat").iterdir())
    assert main(["predict", str(path), str(image)]) == 2
    err = one_line_error(capsys, CHECKPOINT_FAULTS[kind])
    assert "weights_only" not in err and "arbitrary code" not in err
    assert not (tmp_path / "pwned").exists()  # nothing in the file ran


def test_a_checkpoint_that_runs_code_is_refused_by_resume_and_load_too(trained, tmp_path, capsys, image_folder):
    from groundup.utils.checkpoint_file import CheckpointError, read_checkpoint

    path = hostile_checkpoint("runs code", trained, tmp_path)
    with pytest.raises(CheckpointError, match="may be malicious, so groundup will not load it") as err:
        read_checkpoint(path)
    assert err.value.__cause__ is None and err.value.__suppress_context__  # torch's advice is not chained in
    assert main(["train", "--resume", str(path), "--quiet"]) == 2
    one_line_error(capsys, "may be malicious, so groundup will not load it")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("flags", [["--arch", "simple_cnn"], ["--ar", "simple_cnn"], ["--lr", "0.01"],
                                   ["--seed", "42"]])
def test_resume_refuses_a_flag_that_conflicts_with_the_checkpoint_even_when_it_is_the_default(
        image_folder, tmp_path, capsys, flags):
    out = tmp_path / "other"
    assert main(tiny(image_folder, "--out", out, "--arch", "resnet", "--lr", "0.05", "--seed", "7",
                     epochs=1)) == 0
    assert main(["train", "--resume", str(out / "model.pt"), "--quiet", *flags]) == 2
    name = {"--ar": "arch"}.get(flags[0], flags[0][2:])
    one_line_error(capsys, rf"--{name} {flags[1]} differs from the resumed run's {name}=.*leave --{name} out")


def test_resume_accepts_flags_that_agree_with_the_checkpoint(image_folder, tmp_path):
    out = tmp_path / "run"
    assert main(tiny(image_folder, "--out", out, "--arch", "resnet", epochs=1)) == 0
    assert main(["train", "--resume", str(out / "model.pt"), "--quiet", "--arch", "resnet", "--size", "16",
                 "--num-workers", "0"]) == 0


# -- downloads ------------------------------------------------------------------------------------------------------
@pytest.fixture
def http(monkeypatch):
    """The test HTTP server of test_download.py, on 127.0.0.1."""
    from test_download import FileServer

    monkeypatch.setenv("no_proxy", "*")
    with FileServer() as srv:
        yield srv


def test_two_urls_with_the_same_file_name_are_two_archives_and_a_given_checksum_is_checked(http, groundup_home):
    import hashlib

    from test_download import make_tgz

    from groundup.data.download import ChecksumError, untar_data

    v1, v2 = make_tgz({"data/version.txt": b"one"}), make_tgz({"data/version.txt": b"two"})
    http.files.update({"/v1/data.tar.gz": v1, "/v2/data.tar.gz": v2})
    one = untar_data(http.url("/v1/data.tar.gz"), progress=False, timeout=5)
    two = untar_data(http.url("/v2/data.tar.gz"), sha256=hashlib.sha256(v2).hexdigest(), progress=False, timeout=5)
    assert (one / "version.txt").read_bytes() == b"one" and (two / "version.txt").read_bytes() == b"two"
    assert len(http.requests) == 2  # v2 was downloaded, not taken from v1's cache
    # The same url again with a checksum it does not have: checked against the cache, then the server; refused.
    with pytest.raises(ChecksumError, match="sha256 expected"):
        untar_data(http.url("/v1/data.tar.gz"), sha256=hashlib.sha256(v2).hexdigest(), progress=False, timeout=5)
    assert (one / "version.txt").read_bytes() == b"one"  # what was cached is left as it was
    assert untar_data(http.url("/v1/data.tar.gz"), sha256=hashlib.sha256(v1).hexdigest(), progress=False,
                      timeout=5) == one and len(http.requests) == 3  # a matching checksum needs no download


def test_a_truncated_archive_from_a_server_that_sends_no_length_is_not_kept(http, groundup_home):
    from test_download import TGZ, assert_tiny_extracted

    from groundup.data.download import DownloadError, untar_data

    http.files["/tiny.tgz"] = TGZ
    http.send_length, http.cut_after = False, len(TGZ) * 2 // 3
    with pytest.raises(DownloadError, match=r"the archive downloaded from .*tiny.tgz is incomplete or damaged "
                                            r"\(2.\d KiB arrived; it ends early .*\); it was deleted \(.*tiny-\w+\.tgz.part\)"):
        untar_data(http.url("/tiny.tgz"), progress=False, timeout=5)
    kept = [p.name for p in (groundup_home / "archives").iterdir() if not p.name.endswith(".lock")]
    assert kept == [] and not list((groundup_home / "data").glob("*"))
    assert_tiny_extracted(untar_data(http.url("/tiny.tgz"), progress=False, timeout=5))  # the next try works


def test_a_damaged_archive_kept_by_an_older_groundup_is_deleted_and_named_not_a_bare_eof_error(http, groundup_home):
    from test_download import TGZ, assert_tiny_extracted, cached_archive

    from groundup.data.download import DownloadError, untar_data

    http.files["/tiny.tgz"] = TGZ
    archive = cached_archive(groundup_home, http.url("/tiny.tgz"))
    archive.parent.mkdir(parents=True)
    archive.write_bytes(TGZ[: len(TGZ) // 2])  # what an older groundup cached from a cut-off transfer
    with pytest.raises(DownloadError, match=rf"the archive {re.escape(str(archive))} downloaded from .* is damaged "
                                            r"\(EOFError: .*\); it was deleted: run again"):
        untar_data(http.url("/tiny.tgz"), progress=False, timeout=5)
    assert not archive.exists()
    assert_tiny_extracted(untar_data(http.url("/tiny.tgz"), progress=False, timeout=5))


def test_a_server_that_ignores_range_and_cuts_every_transfer_is_reported_as_such(http, groundup_home):
    from test_download import TGZ

    from groundup.data.download import DownloadError, untar_data

    http.files["/tiny.tgz"] = TGZ
    http.ignore_range, http.cut_after, http.cut_always = True, 1000, True
    with pytest.raises(DownloadError, match=rf"the transfer was cut off after 1,000 of {len(TGZ):,} bytes, and the "
                                            r"server does not resume \(it ignored the request to continue from byte "
                                            r"1,000 and started again from the beginning\)") as err:
        untar_data(http.url("/tiny.tgz"), progress=False, timeout=5)
    assert "before any data arrived" not in str(err.value) and "a partial download is resumed" not in str(err.value)


def test_predict_refuses_a_checkpoint_with_nan_weights_instead_of_printing_nan(trained, tmp_path, capsys,
                                                                               image_folder):
    ckpt = read_checkpoint(trained)
    name = next(k for k, t in ckpt["model"].items() if t.is_floating_point())
    ckpt["model"][name] = torch.full_like(ckpt["model"][name], float("nan"))
    torch.save(ckpt, tmp_path / "diverged.pt")  # what groundup train wrote before it stopped on NaN
    image = next((image_folder / "val" / "cat").iterdir())
    assert main(["predict", str(tmp_path / "diverged.pt"), str(image)]) == 2
    one_line_error(capsys, rf"holds NaN or infinite weights \(1 tensors, e.g. {re.escape(name)}\): training had "
                           r"diverged when it was saved; use best.pt")
