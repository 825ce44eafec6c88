"""Benchmark: training speed of candidate architectures for the `fast` recipe, at 64 px on this CPU.

For each candidate (groundup `resnet` shapes: stem stride, width, depth, blocks per stage), one
training step (forward, label-smoothed cross-entropy, backward, AdamW step, zero_grad) on a batch of
64 random images (channels-last weights and input, as the recipe runs) is timed eager and, with
`--compile`, also `torch.compile`d. Reported: parameters, multiply-adds per image, the median step
time, images/s, and for compiled steps the compile time (first step minus a warm one).

Measured on the 2-core CPU this was written on (torch 2.13.0, 56 px), groundup 0.2's resnet_fast (a
one-conv stem): eager 193 ms per step (332 images/s), compiled 204 ms (314/s) after 26.5 s of compiling;
under bfloat16 autocast (`--amp`) 2,260 ms either way, 11x slower (no AMX or AVX-512-BF16 on that CPU).
The README's Benchmarks table has today's resnet_fast at 64 px.

Run:  python benchmarks/bench_arch.py [--steps 15] [--size 56] [--compile] [--bf16] [--only NAME ...]
      (--bf16 also times the step under bfloat16 autocast, as `--amp` would run it)
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch

from groundup.losses import cross_entropy
from groundup.nn.bridge import to_torch
from groundup.nn.models import resnet
from groundup.optim import Adam, decay_groups

CANDIDATES = {
    "resnet (groundup's default: width 16, stem stride 1)": {"width": 16, "depth": 4},
    "resnet_fast (stem 3-16-32, stride 2; avg shortcuts)": {"width": 32, "depth": 4, "stem_stride": 2,
                                                             "first_stride": 1, "stem": (16, 32), "shortcut": "avg",
                                                             "init": "torch"},
    "0.2's resnet_fast (width 32, stem 2, first stage 1)": {"width": 32, "depth": 4, "stem_stride": 2,
                                                          "first_stride": 1},
    "width 48, stem 2, first stage 1": {"width": 48, "depth": 4, "stem_stride": 2, "first_stride": 1},
    "width 32, stem 2, first stage 1, 2 blocks/stage": {"width": 32, "depth": 4, "stem_stride": 2,
                                                         "first_stride": 1, "blocks_per_stage": 2},
}


def macs_per_image(model, size: int) -> float:
    """Multiply-adds of one image's forward pass (half the FLOPs torch's FlopCounterMode counts)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(torch.zeros(1, 3, size, size))
    model.train()
    return counter.get_total_flops() / 2


def time_steps(model, steps: int, compiled: bool, bf16: bool = False, bs: int = 64, size: int = 64):
    model = model.to(memory_format=torch.channels_last)
    net = torch.compile(to_torch(model)) if compiled else model
    opt = Adam(decay_groups(model.parameters(), 0.05), lr=1e-3)
    loss_func = functools.partial(cross_entropy, label_smoothing=0.1)
    x = torch.randn(bs, size, size, 3).permute(0, 3, 1, 2)  # NHWC in memory, as groundup's batches
    y = torch.randint(0, 10, (bs,))
    times = []
    for _ in range(steps + 1):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_func(net(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t)
    warm = statistics.median(times[1:])
    return warm, times[0] - warm


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--compile", action="store_true", help="also time each candidate torch.compile'd")
    p.add_argument("--bf16", action="store_true", help="also time each step under bfloat16 autocast")
    p.add_argument("--only", nargs="*", default=None, help="candidate names containing these words")
    p.add_argument("--size", type=int, default=56, help="image side (the recipe trains at 56)")
    args = p.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, bs 64, {args.size} px, AdamW, channels-last")
    head = f"{'candidate':52} {'params':>8} {'MMAC/img':>9} {'mode':>13} {'step ms':>8} {'img/s':>7} {'compile s':>9}"
    print(head)
    for name, kwargs in CANDIDATES.items():
        if args.only and not any(w in name for w in args.only):
            continue
        model = resnet(n_classes=10, **kwargs)
        n_params = sum(p.numel() for p in model.parameters())
        macs = macs_per_image(model, args.size) / 1e6
        modes = [("eager", False, False)] + ([("compiled", True, False)] if args.compile else [])
        if args.bf16:
            modes += [("eager+bf16", False, True)] + ([("compiled+bf16", True, True)] if args.compile else [])
        for mode, compiled, bf16 in modes:
            torch._dynamo.reset()
            step, compile_s = time_steps(resnet(n_classes=10, **kwargs), args.steps, compiled, bf16, size=args.size)
            comp = f"{compile_s:9.1f}" if compiled else f"{'-':>9}"
            print(f"{name:52} {n_params / 1e6:7.2f}M {macs:9.1f} {mode:>13} {step * 1e3:8.1f} {64 / step:7.0f} {comp}",
                  flush=True)


if __name__ == "__main__":
    main()
