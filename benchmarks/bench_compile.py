"""Benchmark: torch.compile'd vs eager training steps, groundup vs torch.nn, NCHW and channels_last.

For each architecture (simple_cnn, resnet; bs 128, 64 px) there are up to eight variants: groundup or
the same architecture in torch.nn (from bench_model.py, same weights), eager or `torch.compile`d (the
default backend, inductor), in the default layout or channels_last (model and batch). A step is
forward, cross-entropy, backward, SGD step (momentum 0.9; groundup's SGD for groundup, torch.optim's
for torch.nn, as in bench_model.py) and zero_grad; only the model is compiled.

Reported per variant: the median step time; for compiled ones the compile time (the first step
minus a warm step: tracing, AOTAutograd and inductor's code generation for forward and backward) and
the break-even point (compile time / time saved per step against the same variant in eager mode).
Then the ratios groundup/torch.nn of step times. Target: compiled groundup at least 0.95x the speed of
compiled torch.nn on the same architecture, i.e. a step-time ratio <= 1/0.95 = 1.053.

Steps of all variants of one architecture are interleaved (round robin, direction alternating every
repeat), so drift in machine speed hits all of them alike; medians are compared. Each compile runs
in a fresh, empty inductor cache (`torch._inductor.utils.fresh_cache`), so every compile time is a
cold one and the groundup and torch.nn graphs (nearly the same graph) cannot reuse each other's
kernels; a throwaway compile of a tiny conv net first pays inductor's one-time start-up, which no
variant should carry. (Compiling a second instance of an already compiled class reuses Dynamo's
graph, so each variant here is the first of its kind: its code or its layout differs.)

On a machine shared with other work, `--threads 1` gives steadier ratios: with 2 threads each op waits
for the slower thread, and other processes make that wait erratic. A full run took 7 minutes on a
loaded 2-core CPU machine, 5 of them compiling (the 4 resnet compiles); `--archs simple_cnn` takes 1.5.

Run:  python benchmarks/bench_compile.py [--quick] [--repeats N] [--archs simple_cnn resnet]
                                         [--no-channels-last] [--threads T] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from bench_model import copy_weights, torch_resnet, torch_simple_cnn

from groundup.nn.models import resnet, simple_cnn
from groundup.optim import SGD

ARCHS = {"simple_cnn": (simple_cnn, torch_simple_cnn), "resnet": (resnet, torch_resnet)}


def cold_cache():
    """A fresh, empty inductor cache for one compile (a private torch helper; none if it is gone)."""
    import torch._inductor.utils as inductor_utils

    fresh = getattr(inductor_utils, "fresh_cache", None) or getattr(inductor_utils, "fresh_inductor_cache", None)
    return fresh() if fresh is not None else contextlib.nullcontext()


def warm_up_inductor(device) -> float:
    """Compile a tiny conv net (forward and backward) once, so that no variant pays inductor's start-up
    (imports, compiler checks, first lowerings of conv and batch norm); return the seconds it took."""
    start = time.perf_counter()
    tiny = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2)).to(device)
    with cold_cache():
        torch.compile(tiny)(torch.randn(2, 3, 8, 8, device=device)).sum().backward()
    torch._dynamo.reset()  # forget the tiny graphs: the real models must not be taken for a recompile
    return time.perf_counter() - start


class Variant:
    """One model copy with its optimizer and input layout; `call` is the model or its compiled form."""

    def __init__(self, impl, model, compiled, channels_last, x, y):
        self.impl, self.compiled = impl, compiled
        self.layout = "channels_last" if channels_last else "NCHW"
        if channels_last:
            model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        self.model, self.x, self.y = model, x, y
        self.call = torch.compile(model) if compiled else model
        params = list(model.parameters())
        self.opt = SGD(params, 0.01, momentum=0.9) if impl == "groundup" else torch.optim.SGD(params, 0.01, momentum=0.9)
        self.times: list[float] = []
        self.first = 0.0

    @property
    def name(self) -> tuple[str, str, str]:
        return self.impl, "compiled" if self.compiled else "eager", self.layout

    def step(self, device) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        F.cross_entropy(self.call(self.x), self.y).backward()
        self.opt.step()
        self.opt.zero_grad()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start


def run_arch(arch, x, y, repeats, warmup, layouts, device) -> dict:
    ours, theirs = ARCHS[arch][0](), ARCHS[arch][1]()
    copy_weights(ours, theirs)
    ours.to(device)
    theirs.to(device)
    variants = [Variant(impl, copy.deepcopy(base), compiled, channels_last, x, y)
                for channels_last in layouts
                for impl, base in (("groundup", ours), ("torch.nn", theirs))
                for compiled in (False, True)]
    for v in variants:  # the first step of a compiled variant compiles forward and backward
        with cold_cache() if v.compiled else contextlib.nullcontext():
            v.first = v.step(device)
        for _ in range(warmup):
            v.step(device)
    for r in range(repeats):
        for v in (variants if r % 2 == 0 else variants[::-1]):
            v.times.append(v.step(device))
    return {v.name: v for v in variants}


def report(arch, results, layouts) -> list[float]:
    med = {k: statistics.median(v.times) for k, v in results.items()}
    print(f"\n{arch}: median step (ms), compile time (s), break-even (steps after which compiling has paid off)")
    print(f"  {'impl':<9} {'layout':<14} {'eager':>9} {'compiled':>9} {'speed-up':>9} {'compile s':>10} {'break-even':>11}")
    for layout in ("NCHW", "channels_last"):
        if (layout == "channels_last") not in layouts:
            continue
        for impl in ("groundup", "torch.nn"):
            eager, compiled = med[impl, "eager", layout], med[impl, "compiled", layout]
            compile_s = results[impl, "compiled", layout].first - compiled
            saved = eager - compiled
            even = f"{compile_s / saved:11.0f}" if saved > 0 else f"{'never':>11}"
            print(f"  {impl:<9} {layout:<14} {eager * 1e3:9.1f} {compiled * 1e3:9.1f} {eager / compiled:8.2f}x "
                  f"{compile_s:10.1f} {even}")
    print("  groundup / torch.nn step-time ratio (<= 1.053 means at least 0.95x the speed):")
    compiled_ratios = []
    for layout in ("NCHW", "channels_last"):
        if (layout == "channels_last") not in layouts:
            continue
        ratios = {mode: med["groundup", mode, layout] / med["torch.nn", mode, layout] for mode in ("eager", "compiled")}
        compiled_ratios.append(ratios["compiled"])
        print(f"    {layout:<14} eager {ratios['eager']:.3f}   compiled {ratios['compiled']:.3f}   "
              f"(compiled groundup at {1 / ratios['compiled']:.2f}x the speed of compiled torch.nn)")
    return compiled_ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed steps per resnet variant (simple_cnn, 6x cheaper, gets 3x as many)")
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    parser.add_argument("--no-channels-last", action="store_true", help="skip the channels_last variants")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--size", type=int, default=64, help="image height and width")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    repeats = args.repeats or (3 if args.quick else 8)
    warmup = 1 if args.quick else 2
    layouts = (False,) if args.no_channels_last else (False, True)
    print(f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, "
          f"batch {args.batch_size} x 3 x {args.size} x {args.size}, {repeats} interleaved repeats per variant "
          f"({repeats * 3} for simple_cnn), medians")
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, 3, args.size, args.size, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    start = time.perf_counter()
    print(f"inductor start-up (a throwaway compile, not counted below): {warm_up_inductor(device):.1f} s")
    worst = []
    for arch in args.archs:
        n = repeats * 3 if arch == "simple_cnn" else repeats
        worst += report(arch, run_arch(arch, x, y, n, warmup, layouts, device), layouts)
    verdict = "OK" if max(worst) <= 1 / 0.95 else "BELOW TARGET"
    print(f"\nworst compiled ratio groundup/torch.nn: {max(worst):.3f} (target <= 1.053, i.e. >= 0.95x the speed: "
          f"{verdict}); {time.perf_counter() - start:.0f} s in all. On a shared machine treat differences of a "
          f"few percent as noise.")


if __name__ == "__main__":
    main()
