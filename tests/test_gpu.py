"""The GPU suite: what only a CUDA device can show (`pytest -m gpu`; deselected by default, see pyproject.toml).

Each test compares the GPU against the CPU or torch on the same inputs, or runs a path that the CPU
suite can only prove by construction (issue 26): groundup's optimizers and layers on CUDA, the
augmentation and normalization there, resuming after float16 training (the optimizer state loaded
on the CPU must follow the model to the GPU), the LR finder under float16, torch.compile,
predict/evaluate/export, and torchrun with one process on NCCL. `scripts/gpu_smoke.sh` runs them.

`GROUNDUP_GPU_SUITE_DEVICE=cpu pytest -m gpu tests/test_gpu.py` runs the suite's own code on a
machine without a GPU (the CUDA-only tests skip): a check of the tests, not of the GPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import Points, groundup_mlp

from groundup.callbacks.core import Callback
from groundup.callbacks.mixed_precision import MixedPrecision
from groundup.callbacks.setup import SetupLearnerCB
from groundup.callbacks.tracking import TrackResults
from groundup.cli import main
from groundup.data.augment import BatchAugment
from groundup.data.transforms import Normalize
from groundup.learner import Learner
from groundup.losses import cross_entropy
from groundup.nn.bridge import to_torch
from groundup.nn.layers import BatchNorm, ConvLayer
from groundup.optim import SGD, Adam

DEVICE = torch.device(os.environ.get("GROUNDUP_GPU_SUITE_DEVICE", "cuda"))
ON_CUDA = DEVICE.type == "cuda"

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(ON_CUDA and not torch.cuda.is_available(), reason="needs a CUDA device")]
cuda_only = pytest.mark.skipif(not ON_CUDA, reason="only a CUDA device can show this")


def _close(a, b, **kw):
    torch.testing.assert_close(a.detach().cpu(), b.detach().cpu(), **kw)


# -- groundup's own pieces on the device, against torch or the CPU -----------------------------------------------
@pytest.mark.parametrize("ours, theirs", [
    (lambda p: SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01)),
    (lambda p: Adam(p, lr=0.01, weight_decay=0.01), lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.01,
                                                                               betas=(0.9, 0.99), eps=1e-5)),
], ids=["SGD", "Adam"])
def test_groundup_optimizers_match_torch_on_the_device(ours, theirs):
    torch.manual_seed(0)
    a = [torch.randn(5, 3, device=DEVICE, requires_grad=True), torch.randn(3, device=DEVICE, requires_grad=True)]
    b = [p.detach().clone().requires_grad_() for p in a]
    opt_a, opt_b = ours(a), theirs(b)
    for step in range(3):
        grads = [torch.randn_like(p) for p in a]
        for p, q, g in zip(a, b, grads):
            p.grad, q.grad = g.clone(), g.clone()
        opt_a.step()
        opt_b.step()
    for p, q in zip(a, b):
        assert p.device.type == DEVICE.type
        _close(p, q)


def test_conv_and_batchnorm_on_the_device_match_the_cpu():
    torch.manual_seed(0)
    model = torch.nn.Sequential(to_torch(ConvLayer(3, 8, stride=2, bias=False)), to_torch(BatchNorm(8)))
    x = torch.randn(4, 3, 16, 16)
    on_device = __import__("copy").deepcopy(model).to(DEVICE)
    y_cpu, y_dev = model(x), on_device(x.to(DEVICE))
    y_cpu.square().mean().backward()
    y_dev.square().mean().backward()
    _close(y_dev, y_cpu, atol=1e-4, rtol=1e-4)
    for p, q in zip(on_device.parameters(), model.parameters()):
        _close(p.grad, q.grad, atol=1e-4, rtol=1e-3)
    for b, c in zip(on_device.buffers(), model.buffers()):  # BatchNorm's running statistics
        _close(b.float(), c.float(), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("crop", ["resize", "pad"])
def test_augmentation_and_normalize_on_the_device_match_the_cpu(crop):
    xb = torch.randint(0, 256, (6, 20, 20, 3), dtype=torch.uint8)
    aug = BatchAugment(16, seed=3, crop=crop)
    crops_cpu = aug(xb, epoch=1, batch=2)
    crops_dev = aug(xb.to(DEVICE), epoch=1, batch=2)
    assert crops_dev.device.type == DEVICE.type
    _close(crops_dev.float(), crops_cpu.float(), atol=1.0, rtol=0)  # the same crops and flips (rounding aside)
    norm = Normalize([0.5, 0.4, 0.3], [0.2, 0.25, 0.3])
    _close(norm(xb.to(DEVICE)), norm(xb), atol=1e-5, rtol=1e-5)


# -- resume, the LR finder and compile under the device's float16 --------------------------------------------------
def _learner(opt_func, amp=True):
    torch.manual_seed(0)
    cbs = [SetupLearnerCB(device=DEVICE), TrackResults(print_table=False)]
    if amp:
        cbs.append(MixedPrecision(dtype=torch.float16))
    return Learner(groundup_mlp(), Points(), cross_entropy, lr=0.05, opt_func=opt_func, cbs=cbs)


@pytest.mark.parametrize("opt_func", [lambda p, lr: SGD(p, lr, momentum=0.9), Adam], ids=["SGD", "Adam"])
def test_resume_after_float16_training_continues_on_the_device(opt_func, tmp_path):
    """The optimizer state is loaded on the CPU and must follow the model to the GPU (issue 26, point 1)."""
    full = _learner(opt_func)
    full.fit(3)
    cut = _learner(opt_func)
    cut.fit(3, cbs=[_StopAfterEpoch(1)])
    cut.save(tmp_path / "model.pt")
    resumed = _learner(opt_func)
    ckpt = resumed.load(tmp_path / "model.pt")
    resumed.fit(3, start_epoch=ckpt["epoch"] + 1)
    devices = {v.device.type for s in resumed.opt.state.values() for v in s.values() if isinstance(v, torch.Tensor)}
    assert devices == {DEVICE.type}
    for key, value in full.model.state_dict().items():
        _close(resumed.model.state_dict()[key], value, atol=1e-5, rtol=1e-4)


class _StopAfterEpoch(Callback):
    def __init__(self, epoch):
        self.epoch = epoch

    def after_epoch(self):
        if self.learn.epoch == self.epoch:
            from groundup.callbacks.core import CancelFitException
            raise CancelFitException


def test_lr_find_under_float16_puts_model_optimizer_and_scaler_back():
    learn = _learner(lambda p, lr: SGD(p, lr, momentum=0.9))
    learn.fit(1)
    scaler = learn.get_cb(MixedPrecision).scaler
    before = ({k: v.clone() for k, v in learn.model.state_dict().items()}, scaler.state_dict())
    suggestion = learn.lr_find(max_lr=100.0, path=None)
    assert suggestion.lr > 0
    for k, v in before[0].items():
        assert torch.equal(learn.model.state_dict()[k], v), k
    assert scaler.state_dict() == before[1]


@cuda_only
def test_torch_compile_trains_on_the_gpu():
    learn = _learner(lambda p, lr: SGD(p, lr, momentum=0.9), amp=False).compile()
    learn.fit(2)
    history = learn.get_cb(TrackResults).history
    assert history[1]["train_loss"] < history[0]["train_loss"]


# -- the commands on the device ---------------------------------------------------------------------------------
@pytest.fixture
def gpu_run(image_folder, tmp_path) -> Path:
    out = tmp_path / "run"
    assert main(["train", "--data", str(image_folder), "--size", "16", "--bs", "4", "--num-workers", "0", "--epochs", "2",
                 "--amp", "--opt", "sgd", "--quiet", "--device", str(DEVICE), "--out", str(out)]) == 0
    return out


def test_train_resume_predict_evaluate_and_export_on_the_device(gpu_run, image_folder, tmp_path, capsys):
    summary = json.loads((gpu_run / "summary.json").read_text())
    assert summary["device"].startswith(DEVICE.type)
    # --resume of a run cut after epoch 1 (the checkpoint's state loads on the CPU first)
    out = tmp_path / "cut"
    assert main(["train", "--data", str(image_folder), "--size", "16", "--bs", "4", "--num-workers", "0", "--epochs", "1",
                 "--schedule", "constant", "--amp", "--opt", "adam", "--quiet", "--device", str(DEVICE),
                 "--out", str(out)]) == 0
    assert main(["train", "--resume", str(out / "model.pt"), "--epochs", "2", "--quiet", "--num-workers", "0"]) == 0
    capsys.readouterr()
    assert main(["predict", str(gpu_run / "model.pt"), str(image_folder / "val"), "--device", str(DEVICE),
                 "--json"]) == 0
    preds = json.loads(capsys.readouterr().out)
    assert len(preds) == 9
    assert main(["evaluate", str(gpu_run / "model.pt"), "--data", str(image_folder), "--device", str(DEVICE),
                 "--out", str(tmp_path / "eval")]) == 0
    from groundup.run.export import export_model
    from groundup.run.predictor import load_trained_model

    model, pre = load_trained_model(gpu_run / "model.pt")
    model.to(DEVICE).eval()
    export_model(model, pre, tmp_path / "model.pt2")  # traced on the device ...
    program = torch.export.load(tmp_path / "model.pt2")  # ... and runs on the CPU
    images = torch.randint(0, 256, (3, 16, 16, 3), dtype=torch.uint8)
    with torch.no_grad():
        expected = torch.softmax(model(((images.to(DEVICE).float() / 255 - pre.mean.to(DEVICE)) / pre.std.to(DEVICE))
                                       .permute(0, 3, 1, 2)).float(), dim=1)
    _close(program.module()(images), expected, atol=1e-4, rtol=1e-3)


# -- torchrun with one process on NCCL ----------------------------------------------------------------------------
RANK_SCRIPT = textwrap.dedent("""
    import torch, torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from groundup.callbacks.distributed import _SyncState, _weighted_sum_hook, ddp_device_ids
    from groundup.utils.devices import resolve_device
    from groundup.utils.process_group import backend_for
    device = resolve_device("auto")
    assert device == torch.device("cuda", 0), device  # LOCAL_RANK 0 owns cuda:0
    torch.cuda.set_device(device)
    dist.init_process_group(backend_for(device))
    assert dist.get_backend() == "nccl"
    model = torch.nn.Linear(4, 2).to(device)
    ref = torch.nn.Linear(4, 2).to(device)
    ref.load_state_dict(model.state_dict())
    ddp = DistributedDataParallel(model, device_ids=ddp_device_ids(device))
    state = _SyncState()
    ddp.register_comm_hook(state, _weighted_sum_hook)
    x = torch.randn(8, 4, device=device)
    state.n_local = 8.0
    ddp(x).square().mean().backward()
    ref(x).square().mean().backward()
    assert state.header is not None and state.header[0].item() == 8.0  # the global batch size, via NCCL
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad / state.header[0], q.grad)
    dist.destroy_process_group()
    print("NCCL OK")
""")


@cuda_only
def test_torchrun_with_one_process_on_nccl(tmp_path):
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(Path(__file__).parents[1] / "src"),
                                                                   os.environ.get("PYTHONPATH")) if p)}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1", "--nnodes=1",
                        "--master_addr=127.0.0.1", "--master_port=29533", str(script)],
                       capture_output=True, text=True, timeout=240, env=env, check=False)
    assert r.returncode == 0 and "NCCL OK" in r.stdout, r.stderr[-4000:]
