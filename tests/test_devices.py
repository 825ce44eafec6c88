"""--device: auto, cpu, cuda, cuda:N, checked against what this machine has (on `train` and `lr-find`)."""

import json
import re

import pytest
import torch

from groundup.cli import main
from groundup.run.config import TrainConfig
from groundup.utils.devices import available_devices, resolve_device

needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")


def test_auto_and_cpu_resolve_on_any_machine():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == "cpu"  # the suite pins auto to the CPU (conftest: GROUNDUP_DEVICE)
    assert available_devices()[:2] == ["auto", "cpu"]


@needs_no_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_a_device_this_machine_lacks_is_an_error_listing_what_it_has(name):
    with pytest.raises(ValueError, match=rf"^--device {name} is not available on this machine( \(.*\))?; available: auto, cpu$"):
        resolve_device(name)


def test_a_misspelled_device_is_refused_by_the_config():
    with pytest.raises(ValueError, match=r"--device 'gpu' is not a device \(a GPU is 'cuda'\); use auto, cpu, cuda, cuda:N or mps"):
        TrainConfig(device="gpu")


@needs_no_cuda
@pytest.mark.parametrize("command", [["train", "--epochs", "1"], ["lr-find"]])
def test_train_and_lr_find_refuse_a_missing_device_in_one_line(image_folder, tmp_path, capsys, command):
    out = tmp_path / "out"
    assert main([*command, "--data", str(image_folder), "--device", "cuda:0", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"groundup: error: --device cuda:0 is not available on this machine \([^)]*\); "
                        r"available: auto, cpu\n", err), err
    assert not out.exists()


def test_train_on_the_device_asked_for(image_folder, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--data", str(image_folder), "--size", "16", "--bs", "8", "--num-workers", "0", "--epochs",
                 "1", "--quiet", "--device", "cpu", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["device"] == "cpu" and summary["config"]["device"] == "cpu"


# -- one device check, one default rule; torchrun's rank -> device and backend (issue 26, points 2, 3, 9) ----
def _fake_gpus(monkeypatch, n: int) -> None:
    """Make torch report `n` CUDA GPUs (0: none), so the device rules can be checked on a CPU machine."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: n)


def _torchrun(monkeypatch, local_rank: int | None, n_local: int = 2) -> None:
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    if local_rank is not None:
        for var, v in (("WORLD_SIZE", n_local), ("RANK", local_rank), ("LOCAL_RANK", local_rank),
                       ("LOCAL_WORLD_SIZE", n_local)):
            monkeypatch.setenv(var, str(v))


def test_the_suite_is_pinned_to_the_cpu_even_where_cuda_is_available(monkeypatch):
    _fake_gpus(monkeypatch, 1)
    assert resolve_device("auto") == torch.device("cpu")  # conftest sets GROUNDUP_DEVICE=cpu
    assert resolve_device(None) == torch.device("cpu")
    monkeypatch.delenv("GROUNDUP_DEVICE")
    assert resolve_device("auto") == torch.device("cuda")  # what auto means on a GPU machine


def test_a_bad_groundup_device_variable_is_an_error_naming_it(monkeypatch):
    monkeypatch.setenv("GROUNDUP_DEVICE", "gpu")
    with pytest.raises(ValueError, match=r"^GROUNDUP_DEVICE='gpu': device 'gpu' is not a device \(a GPU is 'cuda'\)"):
        resolve_device("auto")


# name, LOCAL_RANK (None: no torchrun), processes on this machine, visible GPUs -> device or error
RANK_DEVICES = [
    ("auto", None, 1, 0, "cpu"),
    ("auto", None, 1, 2, "cuda"),
    ("cuda", None, 1, 2, "cuda"),
    ("cuda:1", None, 1, 2, "cuda:1"),
    ("auto", 1, 2, 0, "cpu"),
    ("cpu", 1, 2, 4, "cpu"),  # --device cpu under torchrun on a GPU machine: the CPU (and gloo)
    ("auto", 0, 2, 2, "cuda:0"),
    ("auto", 1, 2, 2, "cuda:1"),  # each rank its own GPU
    ("cuda", 3, 4, 4, "cuda:3"),
    ("cuda:0", 0, 1, 4, "cuda:0"),  # one process per machine: told otherwise
    ("cuda:0", 1, 2, 1, "cuda:0"),  # one visible GPU per process (CUDA_VISIBLE_DEVICES set per process)
    ("auto", 1, 2, 1, "sees only 1 GPU, and each process needs its own; start at most 1 per machine "
                      r"\(torchrun --nproc_per_node=1\), or train on the CPU with --device cpu"),
    ("cuda", 2, 4, 2, "LOCAL_RANK=2, but it sees only 2 GPUs"),
    ("cuda:1", 0, 2, 2, "all 2 processes torchrun started on this machine would train on that one GPU"),
]


@pytest.mark.parametrize("name, local_rank, n_local, n_gpus, expected", RANK_DEVICES)
def test_each_rank_owns_its_gpu_and_more_ranks_than_gpus_is_a_one_line_error(name, local_rank, n_local, n_gpus,
                                                                            expected):
    from groundup.utils.process_group import rank_device

    if " " in expected:
        with pytest.raises(ValueError, match=expected) as e:
            rank_device(name, local_rank, n_local, n_gpus)
        assert "\n" not in str(e.value)
    else:
        assert rank_device(name, local_rank, n_local, n_gpus) == torch.device(expected)


@pytest.mark.parametrize("name, local_rank, n_local, n_gpus, expected",
                         [r for r in RANK_DEVICES if " " not in r[4] and (r[3] == 0 or r[0] != "cpu")])
def test_resolve_device_applies_the_rank_rule_under_torchrun(monkeypatch, name, local_rank, n_local, n_gpus,
                                                             expected):
    monkeypatch.delenv("GROUNDUP_DEVICE")
    _fake_gpus(monkeypatch, n_gpus)
    _torchrun(monkeypatch, local_rank, n_local)
    if name.startswith("cuda:") and int(name[5:]) >= n_gpus:
        pytest.skip("not a device of this fake machine")
    assert resolve_device(name) == torch.device(expected)


def test_under_torchrun_with_one_gpu_the_second_rank_gets_a_clear_error_not_nccls(monkeypatch, image_folder,
                                                                                   tmp_path, capsys):
    monkeypatch.delenv("GROUNDUP_DEVICE")
    _fake_gpus(monkeypatch, 1)
    _torchrun(monkeypatch, 1, 2)
    assert main(["train", "--data", str(image_folder), "--device", "cuda", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("groundup: error: --device cuda: torchrun started this process as LOCAL_RANK=1, but "
                          "it sees only 1 GPU") and err.count("\n") == 1, err


@pytest.mark.parametrize("device, backend", [("cpu", "gloo"), ("cuda:1", "nccl"), ("meta", "gloo")])
def test_the_backend_follows_the_training_device_not_the_machine(monkeypatch, device, backend):
    from groundup.utils.process_group import backend_for

    _fake_gpus(monkeypatch, 2)  # a GPU machine: still gloo for a model on the CPU
    assert backend_for(torch.device(device)) == backend


def test_init_from_env_joins_with_gloo_for_a_cpu_model_on_a_gpu_machine(monkeypatch):
    import torch.distributed as dist

    from groundup.utils import process_group

    _fake_gpus(monkeypatch, 2)
    _torchrun(monkeypatch, 0, 2)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    joined = []
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: joined.append(backend))
    monkeypatch.setattr(dist, "is_initialized", lambda: bool(joined))
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: pytest.fail(f"set_device({d}) for a CPU model"))
    monkeypatch.setattr(process_group.atexit, "register", lambda fn: None)
    assert process_group.init_from_env(device=torch.device("cpu")) is True
    assert joined == ["gloo"]


@pytest.mark.parametrize("device, ids", [("cpu", None), ("cuda:0", [0]), ("cuda:3", [3])])
def test_ddp_device_ids_name_this_ranks_gpu(device, ids):
    from groundup.callbacks.distributed import ddp_device_ids

    assert ddp_device_ids(torch.device(device)) == ids


# -- every subcommand and class checks --device the same way (issue 26 point 9; issue 19) ---------------------
@pytest.mark.parametrize("name, message", [
    ("gpu", r"--device 'gpu' is not a device \(a GPU is 'cuda'\); use auto, cpu, cuda, cuda:N or mps"),
    ("cuda:7", r"--device cuda:7 is not available on this machine"),
])
@pytest.mark.parametrize("command", ["train", "lr-find", "evaluate", "predict"])
def test_every_subcommand_refuses_a_bad_device_in_one_line(request, image_folder, capsys, tmp_path, command, name,
                                                           message):
    run = request.getfixturevalue("run") if command in ("evaluate", "predict") else None  # a checkpoint to read
    argv = {"train": ["train", "--data", str(image_folder), "--out", str(tmp_path / "o")],
            "lr-find": ["lr-find", "--data", str(image_folder), "--out", str(tmp_path / "o")],
            "evaluate": ["evaluate", f"{run}/model.pt", "--data", str(image_folder), "--out", str(tmp_path / "o")],
            "predict": ["predict", f"{run}/model.pt", str(image_folder)]}[command]
    assert main([*argv, "--device", name]) == 2
    out, err = capsys.readouterr()
    assert re.match(rf"groundup: error: {message}", err) and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists() and out == ""


@needs_no_cuda
@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_cuda_on_a_machine_without_it_says_why_in_one_line(run, image_folder, capsys, command):
    argv = [command, str(run / "model.pt"), *(["--data"] if command == "evaluate" else []), str(image_folder)]
    assert main([*argv, "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"groundup: error: --device cuda is not available on this machine \((this torch build has "
                        r"no CUDA support|no CUDA GPU is visible[^)]*)\); available: auto, cpu\n", err), err


@pytest.mark.parametrize("make", ["SetupLearnerCB", "Predictor", "Interpretation"])
def test_the_classes_check_the_device_name_like_the_commands(run, image_folder, make):
    from groundup.callbacks.setup import SetupLearnerCB
    from groundup.run.interpret import Interpretation
    from groundup.run.predictor import Predictor

    build = {"SetupLearnerCB": lambda: SetupLearnerCB(device="gpu"),
             "Predictor": lambda: Predictor.from_checkpoint(run / "model.pt", device="gpu"),
             "Interpretation": lambda: Interpretation.from_checkpoint(run / "model.pt", image_folder, device="gpu")}
    with pytest.raises(ValueError, match=rf"^{make}: device 'gpu' is not a device \(a GPU is 'cuda'\)"):
        build[make]()


def test_the_device_option_reads_the_same_in_every_subcommand():
    from groundup.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    helps = {}
    for name in ("train", "lr-find", "evaluate", "predict"):
        action = next(a for a in sub.choices[name]._actions if a.dest == "device")
        helps[name] = (action.default, action.metavar, action.help.split(":", 1)[1])
    assert len(set(helps.values())) == 1, helps
    assert helps["train"][0] == "auto"
