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
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert available_devices()[:2] == ["auto", "cpu"]


@needs_no_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_a_device_this_machine_lacks_is_an_error_listing_what_it_has(name):
    with pytest.raises(ValueError, match=rf"^--device {name} is not available on this machine; available: auto, cpu$"):
        resolve_device(name)


def test_a_misspelled_device_is_refused_by_the_config():
    with pytest.raises(ValueError, match=r"--device 'gpu' is not a device; use auto, cpu, cuda or cuda:N"):
        TrainConfig(device="gpu")


@needs_no_cuda
@pytest.mark.parametrize("command", [["train", "--epochs", "1"], ["lr-find"]])
def test_train_and_lr_find_refuse_a_missing_device_in_one_line(image_folder, tmp_path, capsys, command):
    out = tmp_path / "out"
    assert main([*command, "--data", str(image_folder), "--device", "cuda:0", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"groundup: error: --device cuda:0 is not available on this machine; "
                        r"available: auto, cpu\n", err), err
    assert not out.exists()


def test_train_on_the_device_asked_for(image_folder, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--data", str(image_folder), "--size", "16", "--bs", "8", "--num-workers", "0", "--epochs",
                 "1", "--quiet", "--device", "cpu", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["device"] == "cpu" and summary["config"]["device"] == "cpu"
