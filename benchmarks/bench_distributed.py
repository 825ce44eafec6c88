"""Benchmark: data-parallel training with 2 processes (torchrun, gloo, CPU) vs 1 process, same data.

Both runs train the same MLP on the same synthetic data with the same global batch (128), for the
same number of epochs, once with a groundup Module and once with a torch.nn model, both through DistributedDataParallel
with DistributedTraining's comm hook (the groundup one via `groundup.nn.to_torch`). Each configuration is
a fresh subprocess and reports its median epoch time (training and validation pass) after a warm-up
epoch: process start-up, imports and DistributedDataParallel's one-time set-up are not counted, and
the median shrugs off an epoch slowed by other work on the machine.

    1 process   x 1 thread     the plain run
    2 processes x 1 thread     torchrun --nproc_per_node=2, gloo over 127.0.0.1

On a machine with 2 CPU cores this measures the overhead of going distributed (sharding, gradient
all-reduce, metric reduction, cancel agreement), not a speed-up: the real gain comes from N GPUs
or N machines, where each rank has its own compute. (Ideal on 2 idle cores: ratio 0.5 plus the
all-reduce; anything else running on the machine competes with the two ranks for the cores.)

Run:  python benchmarks/bench_distributed.py [--epochs 2] [--n 8192]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

BS_GLOBAL = 128


def worker(kind: str, epochs: int, n: int, world: int) -> None:
    """Train and print one RESULT line (rank 0). Runs alone or under torchrun."""
    import torch
    from torch import nn

    from groundup.callbacks.distributed import DistributedTraining
    from groundup.callbacks.tracking import TrackResults
    from groundup.data.loader import DataLoader, DataLoaders
    from groundup.learner import Learner
    from groundup.losses import cross_entropy
    from groundup.nn.layers import Linear, ReLU, Sequential
    from groundup.optim import SGD
    from groundup.utils.process_group import cleanup, get_rank, init_from_env, is_distributed

    init_from_env()
    torch.manual_seed(0)
    x = torch.randn(n, 784)
    y = (x[:, :10].argmax(1)).long()
    train = [(x[i], int(y[i])) for i in range(n)]
    valid = train[: n // 8]
    bs = BS_GLOBAL // world
    dls = DataLoaders(DataLoader(train, bs, shuffle=True, seed=0), DataLoader(valid, 2 * bs))
    if kind == "groundup":
        model, opt_func = Sequential(Linear(784, 512), ReLU(), Linear(512, 512), ReLU(), Linear(512, 10)), SGD
    else:
        model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
        opt_func = torch.optim.SGD
    track = TrackResults(print_table=False)
    learn = Learner(model, dls, cross_entropy, lr=0.05, cbs=[track, DistributedTraining()], opt_func=opt_func,
                    progress=False)
    learn.fit(1)  # warm-up: first-touch allocations, DistributedDataParallel's imports and set-up
    if is_distributed():
        torch.distributed.barrier()
    learn.fit(epochs)
    seconds = statistics.median(row["seconds"] for row in track.history)
    allreduce_ms = 0.0
    if is_distributed():  # what one step's gradient all-reduce costs alone
        flat = torch.cat([p.detach().reshape(-1) for p in learn.model.parameters()])
        for _ in range(3):
            torch.distributed.all_reduce(flat)
        start = time.perf_counter()
        for _ in range(20):
            torch.distributed.all_reduce(flat)
        allreduce_ms = (time.perf_counter() - start) / 20 * 1e3
    if get_rank() == 0:
        print("RESULT " + json.dumps({"seconds": seconds, "valid_loss": track.history[-1]["valid_loss"],
                                      "steps": len(dls.train), "allreduce_ms": allreduce_ms}), flush=True)
    cleanup()  # leave the process group before exit, as groundup train does


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(kind: str, procs: int, threads: int, epochs: int, n: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    args = [__file__, "worker", kind, str(epochs), str(n), str(procs)]  # positional: torchrun parses --options
    if procs == 1:
        cmd = [sys.executable, *args]
    else:
        if sys.platform.startswith("linux"):
            env["GLOO_SOCKET_IFNAME"] = "lo"
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs}", "--nnodes=1",
               "--master_addr=127.0.0.1", f"--master_port={free_port()}", *args]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=300)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-8000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    if sys.argv[1:2] == ["worker"]:  # a subprocess started by launch()
        kind, epochs, n, world = sys.argv[2], *map(int, sys.argv[3:6])
        worker(kind, epochs, n, world)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (the median is reported)")
    parser.add_argument("--n", type=int, default=8192, help="training samples")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"MLP 784-512-512-10 (0.67 M parameters), {args.n} samples, global batch {BS_GLOBAL}; median of "
          f"{args.epochs} epochs; {cores} CPU cores")
    print(f"NOTE: on {cores} CPU cores (shared with whatever else runs) this measures the overhead of "
          f"distributed training, not its speed-up, which needs N GPUs or N machines.")
    print(f"load average before: {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "")
    print("seconds per epoch (median):")
    print(f"{'model':>9}  {'1 process':>10}  {'2 processes':>11}  {'ratio 2p/1p':>11}  {'all-reduces':>11}  "
          f"valid_loss 1p / 2p")
    for kind in ("groundup", "torch"):
        one = launch(kind, 1, 1, args.epochs, args.n)
        two = launch(kind, 2, 1, args.epochs, args.n)
        comm = two["allreduce_ms"] * two["steps"] / 1e3
        print(f"{kind:>9}  {one['seconds']:>9.2f}s  {two['seconds']:>10.2f}s  {two['seconds'] / one['seconds']:>11.2f}  "
              f"{comm:>10.2f}s  {one['valid_loss']:.4f} / {two['valid_loss']:.4f}")
    print("ratio = time of the 2-process run / time of the 1-process run (lower is better; 0.5 would be "
          "a perfect 2x speed-up). all-reduces = the epoch's gradient all-reduces timed alone (gloo, "
          "loopback): the floor of the overhead on CPU. The valid losses agree: both runs compute the "
          "same training.")


if __name__ == "__main__":
    main()
