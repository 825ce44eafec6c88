import csv
import json
import re
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import make_image_folder

from groundup.callbacks.checkpoint import Checkpoint
from groundup.callbacks.tracking import COLUMNS
from groundup.utils.checkpoint_file import read_checkpoint
from groundup.cli import main
from groundup.run.config import TrainConfig
from groundup.run.build import resolve_data, shipped_dataset

RUN_FILES = {"metrics.csv", "summary.json", "model.pt", "best.pt", "losses.png", "schedule.png",
             "report.html", "confusion_matrix.png", "top_losses.png", "per_class.csv"}


def tiny(folder, *extra, epochs=2):
    """Arguments for a fast run on the tiny image folder."""
    return ["train", "--data", str(folder), "--size", "16", "--bs", "4", "--num-workers", "0",
            "--epochs", str(epochs), "--quiet", *extra]


def run_module(*args, cwd):
    return subprocess.run([sys.executable, "-m", "groundup", *map(str, args)], check=False, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def assert_one_line_error(capsys, pattern):
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("groundup: error:"), err
    assert re.search(pattern, err), err


def weights(path):
    return read_checkpoint(path)["model"]


# -- train --------------------------------------------------------------------------------------------
def test_train_writes_every_run_file(image_folder, tmp_path):
    out = tmp_path / "run"
    assert main(tiny(image_folder, "--out", str(out), epochs=3)) == 0
    assert RUN_FILES <= {p.name for p in out.iterdir()}
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert list(rows[0]) == [*COLUMNS, "lr", "data_seconds"]
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final"]["valid_acc"] == pytest.approx(float(rows[-1]["valid_acc"]))
    assert summary["n_images"] == 27 and summary["vocab"] == ["cat", "dog", "emu"]
    config = summary["config"]  # the settings live there only
    assert config["arch"] == "simple_cnn" and config["epochs"] == 3 and config["schedule"] == "one-cycle"
    assert not {"arch", "lr", "schedule", "epochs", "seed"} & set(summary)
    assert {"torch", "numpy", "groundup", "python"} <= set(summary["versions"])
    assert summary["wall_seconds"] > 0 and summary["data_path"] == str(image_folder.resolve())
    ckpt = read_checkpoint(out / "model.pt")
    assert ckpt["epoch"] == 2 and ckpt["config"]["arch"] == "simple_cnn" and ckpt["config"]["size"] == 16
    per_class = list(csv.DictReader((out / "per_class.csv").open()))
    assert [r["label"] for r in per_class] == ["cat", "dog", "emu"]
    assert sum(int(r["support"]) for r in per_class) == 9


def test_the_summary_and_report_name_the_run_its_machine_and_its_best_epoch(image_folder, tmp_path):
    out = tmp_path / "run"
    args = tiny(image_folder, "--out", str(out), "--arch", "resnet", epochs=3)
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["command"] == "groundup " + " ".join(args)  # as typed
    weights_and_buffers = read_checkpoint(out / "model.pt")["model"].values()
    n_params = sum(t.numel() for t in weights_and_buffers if t.is_floating_point())
    assert 0 < summary["n_params"] <= n_params  # parameters, not buffers
    machine = summary["machine"]
    assert machine["cpu"] and machine["cpu_cores"] >= 1 and machine["gpu"] is None
    assert summary["world_size"] == 1 and summary["global_batch"] == 4 and summary["lr_finder"] is None
    assert len(summary["epoch_seconds"]) == 3
    best_epoch = read_checkpoint(out / "best.pt")["epoch"]
    assert summary["best"]["epoch"] == best_epoch and summary["best_by"] == "valid_loss"
    assert summary["settings"]["num_workers"] == "0" and summary["settings"]["seed"] == "42 (default)"
    assert not any(str(v).startswith("None") for v in summary["settings"].values())  # every default spelled out
    assert summary["settings"]["wd"] == "adam's default, 0.01 (default)"
    assert [r["name"] for r in summary["per_class"]] == ["cat", "dog", "emu"]
    page = (out / "report.html").read_text()
    for text in (f"{summary['n_params']:,}", "world size", "not run (--lr 0.01 given)", "per epoch",
                 f"{best_epoch} (valid_loss", "best.pt holds the epoch with the lowest valid_loss",
                 'id="per-class"', "Confusion matrix", "Top losses", "one process; global batch 4"):
        assert text in page, text


def test_train_prints_the_table_and_where_it_wrote(image_folder, tmp_path, capsys):
    args = [a for a in tiny(image_folder, "--out", str(tmp_path / "run")) if a != "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert re.search(r"epoch\s+train_loss\s+train_acc\s+valid_loss\s+valid_acc\s+seconds", out)
    assert re.search(r"^\s+1\s+\d\.\d{4}", out, re.MULTILINE)
    assert "report.html" in out


def test_quiet_prints_nothing(image_folder, tmp_path, capsys):
    assert main(tiny(image_folder, "--out", str(tmp_path / "run"))) == 0
    assert capsys.readouterr() == ("", "")


@pytest.mark.slow  # a groundup subprocess
def test_python_dash_m_groundup_train_end_to_end(image_folder, tmp_path):
    args = [a for a in tiny(image_folder, "--out", tmp_path / "run", epochs=1) if a != "--quiet"]
    r = run_module(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "valid_acc" in r.stdout
    assert RUN_FILES <= {p.name for p in (tmp_path / "run").iterdir()}
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["command"].startswith(f"python -m groundup train --data {image_folder} --size 16")


def test_the_command_line_of_a_torchrun_run_names_torchrun(monkeypatch):
    from groundup.run.folder import command_line

    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    expected = "torchrun --nnodes=2 --nproc_per_node=2 -m groundup train --data 'my data'"
    assert command_line(["train", "--data", "my data"]) == expected


def test_train_without_data_uses_the_shipped_data_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--epochs", "1", "--size", "16", "--num-workers", "0", "--quiet"]) == 0
    (run,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["n_train"] == 600 and summary["n_valid"] == 200 and len(summary["vocab"]) == 10
    assert summary["data_path"] == str(shipped_dataset().resolve())


def test_default_out_folders_never_collide(image_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(tiny(image_folder, epochs=1)) == 0
    assert main(tiny(image_folder, epochs=1)) == 0
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all(re.fullmatch(r"\d{8}-\d{6}(-\d+)?", r.name) for r in runs)


def test_an_out_folder_with_files_is_refused_and_left_alone(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    assert main(tiny(image_folder, "--out", str(out))) == 2
    assert_one_line_error(capsys, r"--out .*run already exists and is not empty \(notes.txt\)")
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "precious"


@pytest.mark.parametrize("options", [
    ["--arch", "resnet", "--opt", "sgd", "--schedule", "constant", "--lr", "0.05"],
    ["--amp", "--bs", "8"],
])
def test_train_options_reach_the_run(image_folder, tmp_path, options):
    out = tmp_path / "run"
    assert main(tiny(image_folder, "--out", str(out), *options)) == 0
    config = json.loads((out / "summary.json").read_text())["config"]
    given = dict(zip(options[::2], options[1::2])) if "--amp" not in options else {"--bs": "8"}
    for flag, value in given.items():
        assert str(config[flag[2:]]) == value
    if "--amp" in options:
        assert config["amp"] is True


def test_constant_schedule_keeps_the_lr(image_folder, tmp_path):
    out = tmp_path / "run"
    assert main(tiny(image_folder, "--out", str(out), "--schedule", "constant", "--lr", "0.02")) == 0
    lrs = read_checkpoint(out / "model.pt")["callbacks"]["recorder"]["lrs"]
    assert set(lrs) == {0.02}


def test_lr_auto_runs_the_finder_first_and_trains_with_its_suggestion(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert main([a for a in tiny(image_folder, "--out", str(out), "--lr", "auto") if a != "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    lr = summary["config"]["lr"]
    assert lr > 0 and set(summary["lr_finder"]) == {"method", "how"}  # lr: in config only
    # AdamW (the default optimizer): the default lr, lowered only if the curve rises before half of it
    assert summary["lr_finder"]["method"] == "rise" and lr <= 0.01
    assert read_checkpoint(out / "model.pt")["run"]["lr_finder"] == summary["lr_finder"]
    assert (out / "lr_find.png").is_file()
    assert "lr finder suggests" in capsys.readouterr().out
    found = f"suggested lr {lr:.3g} ({summary['lr_finder']['how']}), used for training"
    assert found in (out / "report.html").read_text()  # the report's header names the suggestion
    assert max(read_checkpoint(out / "model.pt")["callbacks"]["recorder"]["lrs"]) <= lr


@pytest.mark.parametrize("opt, method", [("adam", "rise"), ("sgd", None)])
def test_lr_find_suggests_the_lr_that_train_lr_auto_trains_with(image_folder, tmp_path, capsys, opt, method):
    # one rule for each optimizer, read in one place (auto_lr_rule): lr-find prints what train would use
    common = ["--data", str(image_folder), "--size", "16", "--bs", "4", "--num-workers", "0", "--opt", opt]
    assert main(["lr-find", *common, "--out", str(tmp_path / "lr")]) == 0
    found = json.loads((tmp_path / "lr" / "lr_find.json").read_text())
    assert main(tiny(image_folder, "--opt", opt, "--lr", "auto", "--out", str(tmp_path / "run"), epochs=1)) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["config"]["lr"] == found["suggestion"]
    assert summary["lr_finder"] == {"method": found["method"], "how": found["how"]}
    if method == "rise":  # AdamW: never above the default
        assert found["method"] == "rise" and found["cap"] == 0.01 and found["suggestion"] <= 0.01
    else:  # SGD: slide (or the next rule that applies), no cap
        assert found["method"] != "rise" and found["cap"] is None and found["how"] == found["method"]


def test_lr_auto_with_adamw_is_the_default_run_bit_for_bit_when_the_curve_does_not_rise_early(image_folder, tmp_path):
    # the finder puts back everything it touched, so a held lr trains exactly as `--lr 0.01` does
    assert main(tiny(image_folder, "--lr", "auto", "--out", str(tmp_path / "auto"))) == 0
    assert main(tiny(image_folder, "--out", str(tmp_path / "default"))) == 0
    auto, default = (read_checkpoint(tmp_path / name / "model.pt") for name in ("auto", "default"))
    assert auto["run"]["lr_finder"] == {"method": "rise", "how": "rise; held to the cap 0.01"}
    assert auto["config"]["lr"] == default["config"]["lr"] == 0.01
    assert auto["model"].keys() == default["model"].keys()
    assert all(torch.equal(auto["model"][k], default["model"][k]) for k in auto["model"])


# -- resume ---------------------------------------------------------------------------------------------
def interrupt_after_epoch(monkeypatch, epoch):
    """Make the run stop like a Ctrl-C right after the checkpoint of `epoch` was written."""
    save = Checkpoint.after_epoch

    def after_epoch(self):
        save(self)
        if self.learn.epoch == epoch:
            raise KeyboardInterrupt
    monkeypatch.setattr(Checkpoint, "after_epoch", after_epoch)


@pytest.mark.slow  # a groundup subprocess
@pytest.mark.parametrize("crop", ["resize", "pad"])
def test_resume_via_the_cli_equals_an_uninterrupted_run_bit_for_bit(image_folder, tmp_path, monkeypatch, capsys, crop):
    # With augmentation: the crops and flips are seeded by (seed, epoch, batch), so they repeat too. With
    # the fast recipe's ingredients: its model (two-layer stem, avg shortcuts, torch init), either crop, and
    # progressive resizing (epochs 0 and 1 at 8 px, the resumed epoch 2 at 16), validation every second epoch
    # (epoch 0 not validated), Nesterov momentum and a moving average of the weights.
    options = ["--arch", "resnet_fast" if crop == "pad" else "resnet", "--opt", "sgd", "--lr", "0.05", "--augment",
               "--crop", crop, "--label-smoothing", "0.1", "--no-wd-norms", "--anneal", "cos"]
    if crop == "pad":
        options += ["--start-size", "8", "--valid-every", "2", "--nesterov", "--ema", "0.9"]
    assert main(tiny(image_folder, "--out", str(tmp_path / "full"), *options, epochs=3)) == 0

    with monkeypatch.context() as m:
        interrupt_after_epoch(m, 1)
        assert main(tiny(image_folder, "--out", str(tmp_path / "cut"), *options, epochs=3)) == 130
    assert "--resume" in capsys.readouterr().err
    assert read_checkpoint(tmp_path / "cut" / "model.pt")["epoch"] == 1
    # The resumed run takes every setting from the checkpoint: no --arch, --lr, --epochs ... needed.
    r = run_module("train", "--resume", tmp_path / "cut" / "model.pt", "--num-workers", "0", cwd=tmp_path)
    assert r.returncode == 0, r.stderr

    full, resumed = weights(tmp_path / "full" / "model.pt"), weights(tmp_path / "cut" / "model.pt")
    assert full.keys() == resumed.keys()
    for key in full:
        assert torch.equal(full[key], resumed[key]), key
    def drop_seconds(path):
        return [{k: v for k, v in row.items() if k not in ("seconds", "data_seconds")} for row in csv.DictReader(path.open())]
    assert drop_seconds(tmp_path / "full" / "metrics.csv") == drop_seconds(tmp_path / "cut" / "metrics.csv")
    summary = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert summary["start_epoch"] == 2 and summary["config"]["arch"] == options[1] and summary["config"]["opt"] == "sgd"
    assert summary["config"]["augment"] is True


def test_resuming_a_finished_run_says_so_and_changes_nothing(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(tiny(image_folder, "--out", str(out))) == 0
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()}
    assert main(["train", "--resume", str(out / "model.pt")]) == 0
    assert "has finished all 2 epochs already; nothing to do" in capsys.readouterr().out
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()}
    assert after == before  # summary.json keeps its wall time and start time; no file is rewritten


def test_resume_refuses_a_setting_that_differs_from_the_run(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(tiny(image_folder, "--out", str(out), epochs=1)) == 0
    assert main(["train", "--resume", str(out / "model.pt"), "--arch", "resnet"]) == 2
    assert_one_line_error(capsys, r"--arch resnet differs from the resumed run's arch='simple_cnn'")


def test_resume_into_another_non_empty_folder_is_refused(image_folder, tmp_path, capsys):
    assert main(tiny(image_folder, "--out", str(tmp_path / "a"), epochs=1)) == 0
    assert main(tiny(image_folder, "--out", str(tmp_path / "b"), epochs=1)) == 0
    assert main(["train", "--resume", str(tmp_path / "a" / "model.pt"), "--out", str(tmp_path / "b")]) == 2
    assert_one_line_error(capsys, "already exists and is not empty")


def test_truncated_checkpoint_for_resume_is_a_one_line_error(image_folder, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(tiny(image_folder, "--out", str(out), epochs=1)) == 0
    data = (out / "model.pt").read_bytes()
    (out / "model.pt").write_bytes(data[: len(data) // 2])
    assert main(["train", "--resume", str(out / "model.pt")]) == 2
    assert_one_line_error(capsys, r"cannot read checkpoint .*model.pt: the file is truncated")


# -- bad input -----------------------------------------------------------------------------------------------
def _empty_class(tmp_path):
    root = make_image_folder(tmp_path / "data")
    (root / "train" / "fox").mkdir()
    return root


def _no_train(tmp_path):
    root = make_image_folder(tmp_path / "data")
    shutil.rmtree(root / "train")
    return root


@pytest.mark.parametrize("make_data, options, pattern", [
    (lambda t: t / "nowhere", [], r"data folder not found: .*nowhere"),
    (lambda t: (t / "flat").mkdir() or t / "flat", [], r"has no train/ subfolder and no class folders"),
    (_no_train, [], r"has val/ but no train/ subfolder"),
    (_empty_class, [], r"class folder .*train/fox is empty"),
    (None, ["--arch", "resnt"], r"unknown --arch 'resnt' \(did you mean 'resnet'\?\)"),
    (None, ["--schedule", "cosine"], r"unknown --schedule 'cosine'; choose from: one-cycle, constant"),
    (None, ["--opt", "rmsprop"], r"unknown --opt 'rmsprop'"),
    (None, ["--lr", "0"], r"--lr must be a positive number or 'auto', got 0.0"),
    (None, ["--lr", "-1"], r"--lr must be a positive number"),
    (None, ["--lr", "fast"], r"--lr must be a number or 'auto', got 'fast'"),
    (None, ["--bs", "0"], r"argument -b/--bs: must be a positive integer, got 0"),
    (None, ["--epochs", "-2"], r"argument -e/--epochs: must be a positive integer, got -2"),
    (None, ["--size", "x"], r"argument --size: must be a positive integer, got 'x'"),
    (None, ["--num-workers", "-1"], r"argument -j/--num-workers: must be an integer >= 0"),
])
def test_bad_train_input_is_a_one_line_error_with_status_2(image_folder, tmp_path, capsys, make_data, options,
                                                           pattern):
    data = make_data(tmp_path) if make_data else image_folder
    out = tmp_path / "out"
    assert main(tiny(data, "--out", str(out), *options)) == 2
    assert_one_line_error(capsys, pattern)
    assert not out.exists()  # a refused run leaves nothing behind


@pytest.mark.slow  # a groundup subprocess
def test_an_error_in_a_subprocess_has_no_traceback(tmp_path):
    r = run_module("train", "--data", tmp_path / "missing", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith("groundup: error: data folder not found") and "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists()


# -- lr-find ------------------------------------------------------------------------------------------------
def test_lr_find_writes_the_plot_and_json_and_prints_the_suggestion(image_folder, tmp_path, capsys):
    out = tmp_path / "lr"
    assert main(["lr-find", "--data", str(image_folder), "--size", "16", "--bs", "8", "--num-workers", "0",
                 "--max-lr", "1", "--out", str(out)]) == 0
    result = json.loads((out / "lr_find.json").read_text())
    assert {"lrs", "losses", "suggestion", "method", "cap", "how"} <= set(result)
    assert len(result["lrs"]) == len(result["losses"]) > 3 and max(result["lrs"]) <= 1
    assert (out / "lr_find.png").is_file()
    printed = capsys.readouterr().out
    assert f"suggested lr: {result['suggestion']:.3g} (method: {result['how']})" in printed


def test_lr_find_amp_runs_the_finder_under_mixed_precision(image_folder, tmp_path, monkeypatch):
    # as `train --amp --lr auto` does: the finder measures the precision training will use
    import groundup.commands.lr_find as lr_find_command
    from groundup.callbacks.mixed_precision import MixedPrecision
    built = []
    build = lr_find_command.build_learner
    monkeypatch.setattr(lr_find_command, "build_learner", lambda cfg: built.append(build(cfg)) or built[-1])
    out = tmp_path / "lr"
    assert main(["lr-find", "--data", str(image_folder), "--size", "16", "--bs", "8", "--num-workers", "0",
                 "--max-lr", "1", "--amp", "--out", str(out)]) == 0
    assert any(isinstance(cb, MixedPrecision) for cb in built[0].cbs)
    assert json.loads((out / "lr_find.json").read_text())["amp"] is True


def test_lr_find_checks_its_range(image_folder, tmp_path, capsys):
    assert main(["lr-find", "--data", str(image_folder), "--start-lr", "1", "--max-lr", "0.1",
                 "--out", str(tmp_path / "lr")]) == 2
    assert_one_line_error(capsys, r"--start-lr \(1\) must be below --max-lr \(0.1\)")


# -- download -----------------------------------------------------------------------------------------------
def test_download_list_prints_the_registry(capsys):
    from groundup.data.download import DATASETS

    assert main(["download", "--list"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()] == ["imagenette-mini", *sorted(DATASETS)]
    assert "https://" in out


def test_download_fetches_by_name_into_dest(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr("groundup.commands.download.untar_data",
                        lambda name, dest=None: calls.append((name, dest)) or tmp_path / "x" / name)
    assert main(["download", "imagenette-160", "--dest", str(tmp_path / "x")]) == 0
    assert calls == [("imagenette-160", str(tmp_path / "x"))]
    assert capsys.readouterr().out.strip() == str(tmp_path / "x" / "imagenette-160")


@pytest.mark.parametrize("args, pattern", [
    (["download"], r"download needs a NAME \(one of: imagenette-160"),
    (["download", "imagenette-16"], r"unknown data set 'imagenette-16' \(did you mean"),
])
def test_download_argument_errors(capsys, args, pattern):
    assert main(args) == 2
    assert_one_line_error(capsys, pattern)


def test_a_registry_name_as_data_is_downloaded_through_untar_data(image_folder, tmp_path, monkeypatch):
    monkeypatch.setattr("groundup.run.build.untar_data", lambda name: image_folder)
    assert resolve_data("imagenette-160") == image_folder


# -- help ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command, options", [
    ([], ["train", "lr-find", "download", "predict"]),
    (["train"], ["--data", "--epochs", "--lr", "--bs", "--size", "--arch", "--schedule", "--opt", "--num-workers",
                 "--seed", "--out", "--resume", "--quiet", "--amp"]),
    (["lr-find"], ["--data", "--arch", "--bs", "--size", "--start-lr", "--max-lr", "--out"]),
    (["download"], ["NAME", "--dest", "--list"]),
    (["predict"], ["CHECKPOINT", "IMAGE_OR_FOLDER", "--top", "--json"]),
])
def test_help_explains_every_option_with_its_default(capsys, command, options):
    assert main([*command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for opt in options:
        assert opt in text
    if command == ["train"]:
        d = TrainConfig()
        for default in (f"(default: {d.epochs})", f"(default: {d.lr})", f"(default: {d.arch})",
                        f"(default: {d.schedule})", f"(default: {d.opt})", "(default: runs/<date-time>)",
                        "(default: imagenette-mini, shipped in the package)"):
            assert default in text


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "train" in capsys.readouterr().out


def test_unknown_command_is_a_one_line_error(capsys):
    assert main(["trian"]) == 2
    assert_one_line_error(capsys, r"invalid choice: 'trian'")


@pytest.mark.slow  # a groundup subprocess
def test_output_piped_into_a_reader_that_leaves_early_is_not_an_error(tmp_path):
    script = tmp_path / "long_output.py"
    script.write_text(
        "import sys\n"
        "import groundup.cli as cli\n"
        "import groundup.commands.download as download\n"
        "def flood(args, argv):\n"
        "    for _ in range(200_000):\n"
        "        print('x' * 100)\n"
        "    return 0\n"
        "download.run = flood\n"
        "sys.exit(cli.main(['download', '--list']))\n")
    r = subprocess.run(f'"{sys.executable}" "{script}" | head -c 1', shell=True, check=False,
                       capture_output=True, text=True, timeout=60)
    assert r.stdout == "x" and r.stderr == ""


def test_a_resume_reads_its_checkpoint_once(image_folder, tmp_path, monkeypatch):
    import groundup.utils.checkpoint_file as checkpoint_file

    with monkeypatch.context() as m:
        interrupt_after_epoch(m, 0)
        assert main(tiny(image_folder, "--out", str(tmp_path / "cut"), epochs=2)) == 130
    reads = []
    real_load = torch.load

    def counting_load(f, *args, **kwargs):
        reads.append(str(f))
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(checkpoint_file.torch, "load", counting_load)
    model_pt = tmp_path / "cut" / "model.pt"
    assert main(["train", "--resume", str(model_pt), "--num-workers", "0", "--quiet"]) == 0
    assert reads.count(str(model_pt)) == 1, reads  # commands/train -> run.resume.open_resume, and no one else


def test_the_shipped_data_set_is_reached_by_name_by_train_lr_find_and_evaluate(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", "imagenette-mini", "--epochs", "1", "--size", "16", "--num-workers", "0",
                 "--quiet", "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["data_path"] == str(shipped_dataset().resolve())
    assert main(["evaluate", str(out / "model.pt"), "--out", str(tmp_path / "e")]) == 0
    assert "on 200 images of" in capsys.readouterr().out
    assert main(["lr-find", "--data", "imagenette-mini", "--size", "16", "--num-workers", "0", "--max-lr", "1",
                 "--out", str(tmp_path / "lr")]) == 0
    assert json.loads((tmp_path / "lr" / "lr_find.json").read_text())["data_path"] == str(shipped_dataset().resolve())
