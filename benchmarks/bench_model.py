"""Benchmark: one training step (forward, backward, SGD step, zero_grad) of groundup models vs torch.nn.

Compares groundup's `simple_cnn` and `resnet` (with `groundup.optim.SGD`) against the same
architectures written with torch.nn modules (with `torch.optim.SGD`), on the same random batch, with
the same weights and the same number of threads. The two are timed in interleaved repeats (A B, B A,
...) so drift in machine speed hits both, and the medians are compared. Target: ratio <= 1.02.

Run:  python benchmarks/bench_model.py [--quick] [--repeats N] [--threads T] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from groundup.nn.models import resnet, simple_cnn
from groundup.optim import SGD

# -- the same architectures in torch.nn -------------------------------------------------------------

def torch_simple_cnn() -> nn.Module:
    layers: list[nn.Module] = []
    for ni, nf in [(3, 16), (16, 32), (32, 64), (64, 128)]:
        layers += [nn.Conv2d(ni, nf, 3, stride=2, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))


def torch_conv_bn(ni: int, nf: int, stride: int = 1, act: bool = True, kernel_size: int = 3) -> nn.Sequential:
    layers = [nn.Conv2d(ni, nf, kernel_size, stride, kernel_size // 2, bias=False), nn.BatchNorm2d(nf)]
    return nn.Sequential(*layers, nn.ReLU()) if act else nn.Sequential(*layers)


class TorchResBlock(nn.Module):
    def __init__(self, ni: int, nf: int, stride: int = 1) -> None:
        super().__init__()
        self.convs = nn.Sequential(torch_conv_bn(ni, nf, stride), torch_conv_bn(nf, nf, act=False))
        self.shortcut = None if (ni == nf and stride == 1) else torch_conv_bn(ni, nf, stride, act=False, kernel_size=1)

    def forward(self, x):
        identity = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.convs(x) + identity)


def torch_resnet(width: int = 16, depth: int = 4) -> nn.Module:
    layers: list[nn.Module] = [torch_conv_bn(3, width)]
    ni = width
    for stage in range(depth):
        nf = width * 2 ** stage
        layers.append(TorchResBlock(ni, nf, stride=2))
        ni = nf
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(ni, 10))


def copy_weights(ours, theirs) -> None:
    """Copy parameters and float buffers in order (both trees are built in the same order)."""
    with torch.no_grad():
        for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
            q.copy_(p)
        their_buffers = [b for b in theirs.buffers() if b.is_floating_point()]  # skip num_batches_tracked
        for b, c in zip(ours.buffers(), their_buffers, strict=True):
            c.copy_(b)


# -- timing ----------------------------------------------------------------------------------------

def train_step(model, opt, x, y) -> None:
    F.cross_entropy(model(x), y).backward()
    opt.step()
    opt.zero_grad()


def timed_step(model, opt, x, y, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    train_step(model, opt, x, y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def compare(name, ours, theirs, x, y, repeats, warmup, device) -> float:
    copy_weights(ours, theirs)
    ours.to(device)
    theirs.to(device)
    with torch.no_grad():  # same architecture, same weights: same outputs
        diff = (ours.eval()(x) - theirs.eval()(x)).abs().max().item()
    ours.train()
    theirs.train()
    runs = {"groundup": (ours, SGD(ours.parameters(), 0.01, momentum=0.9)),
            "torch.nn": (theirs, torch.optim.SGD(theirs.parameters(), 0.01, momentum=0.9))}
    for model, opt in runs.values():
        for _ in range(warmup):
            train_step(model, opt, x, y)
    times: dict[str, list[float]] = {k: [] for k in runs}
    order = list(runs)
    for r in range(repeats):
        for k in (order if r % 2 == 0 else order[::-1]):
            times[k].append(timed_step(*runs[k], x, y, device))
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["groundup"] / med["torch.nn"]
    # On a shared machine other processes only ever add time, so the fastest step of each is the
    # least disturbed estimate of its cost; we print it beside the medians.
    best = min(times["groundup"]) / min(times["torch.nn"])
    print(f"{name:<11} groundup {med['groundup'] * 1e3:8.2f} ms   torch.nn {med['torch.nn'] * 1e3:8.2f} ms   "
          f"ratio {ratio:.3f}   (ratio of fastest steps {best:.3f}; max |out diff| {diff:.1e})")
    return ratio, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per implementation and model")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--size", type=int, default=64, help="image height and width")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    repeats = args.repeats or (5 if args.quick else 24)
    warmup = 2 if args.quick else 3
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, "
          f"batch {args.batch_size} x 3 x {args.size} x {args.size}, {repeats} interleaved repeats, medians")
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, 3, args.size, args.size, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    ratios = [compare("simple_cnn", simple_cnn(), torch_simple_cnn(), x, y, repeats * 2, warmup, device),
              compare("resnet", resnet(), torch_resnet(), x, y, repeats, warmup, device)]
    # A tiny batch makes the step cheap, so per-module Python overhead (calls, hooks checks, attribute
    # reads, the optimizer loop) is a large share of the time: the strictest test of "no overhead".
    print("tiny batch (4 x 3 x 16 x 16): framework overhead dominates")
    x_small, y_small = x[:4, :, :16, :16].contiguous(), y[:4]
    ratios += [compare("simple_cnn", simple_cnn(), torch_simple_cnn(), x_small, y_small, repeats * 10, warmup * 4, device),
               compare("resnet", resnet(), torch_resnet(), x_small, y_small, repeats * 10, warmup * 4, device)]
    worst_median, worst_best = max(r for r, _ in ratios), max(b for _, b in ratios)
    verdict = "OK" if worst_median <= 1.02 else "ABOVE TARGET"
    print(f"worst ratio groundup/torch.nn: medians {worst_median:.3f} (target <= 1.02: {verdict}); "
          f"fastest steps {worst_best:.3f} (the minimum of a noisy sample: shown, not judged)")


if __name__ == "__main__":
    main()
