#!/usr/bin/env bash
# First contact with a GPU: install groundup, run the gpu test suite and a few commands on CUDA.
#
#     bash scripts/gpu_smoke.sh            # from the repository, on any machine with a CUDA GPU
#
# Prints one line per check, `PASS name (N s)` or `FAIL name (log: FILE)`, then a summary; exits 1
# if any check failed. Each check's output is kept in a log folder (printed at the end). Meant to
# finish in under 5 minutes. The install never replaces an installed torch: with one present,
# groundup is installed without dependencies, and its other dependencies (none of which needs
# torch) are added by name; only where there is no torch does pip choose one (PyPI's default for
# the platform, a CUDA build on Linux).
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOG=$(mktemp -d "${TMPDIR:-/tmp}/groundup-gpu-smoke.XXXXXX")
WORK="$LOG/work"
mkdir -p "$WORK"
export GROUNDUP_HOME="$WORK/home" PYTHONWARNINGS=ignore
unset GROUNDUP_DEVICE  # "auto" means the GPU here
failed=0

check() {  # check NAME COMMAND...: run COMMAND, print PASS/FAIL with its wall time
    local name=$1 start=$SECONDS
    shift
    if "$@" >"$LOG/$name.log" 2>&1; then
        echo "PASS $name ($((SECONDS - start)) s)"
    else
        echo "FAIL $name (log: $LOG/$name.log)"
        failed=$((failed + 1))
    fi
}

install() {
    # An installed setuptools >= 68 builds groundup in place (--no-build-isolation): a GPU machine
    # that cannot reach PyPI installs it all the same.
    local build
    build=$("$PY" -c "import setuptools; print('--no-build-isolation' if int(setuptools.__version__.split('.')[0]) >= 68 else '')" 2>/dev/null)
    if "$PY" -c "import torch" 2>/dev/null; then
        "$PY" -m pip install --no-deps $build -e . &&
            "$PY" -m pip install "numpy>=1.24" "pillow>=10" "matplotlib>=3.7" "tqdm>=4.60" "filelock>=3.0" "pytest>=7"
    else
        "$PY" -m pip install -e ".[test]"
    fi
}

groundup() { "$PY" -m groundup "$@"; }

expect_error() {  # expect_error TEXT COMMAND...: a failure whose output says TEXT (torchrun adds its own report)
    local text=$1 out
    shift
    out=$("$@" 2>&1)
    local status=$?
    echo "$out"
    [ "$status" -ne 0 ] && printf '%s' "$out" | grep -q "groundup: error: .*$text"
}

expect_one_line_error() {  # expect_one_line_error TEXT COMMAND...: exit status 2 and TEXT in one stderr line
    local text=$1 err
    shift
    err=$("$@" 2>&1 >/dev/null)
    local status=$?
    echo "$err"
    [ "$status" -eq 2 ] && [ "$(printf '%s\n' "$err" | grep -c .)" -eq 1 ] && printf '%s' "$err" | grep -q "$text"
}

check install install
check cuda-visible "$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA'; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0), torch.cuda.device_count(), 'GPU(s)')"
check gpu-tests "$PY" -m pytest -q -rs -m gpu tests/ -p no:cacheprovider
check train-amp-sgd groundup train --device cuda --amp --opt sgd --epochs 2 --bs 64 --out "$WORK/run" --quiet
check train-cut-adam groundup train --device cuda --amp --opt adam --schedule constant --epochs 1 --out "$WORK/cut" --quiet
check resume-amp-adam groundup train --resume "$WORK/cut/model.pt" --epochs 2 --quiet
check recipe-fast-amp groundup train --recipe fast --amp --epochs 3 --out "$WORK/fast" --quiet
check train-deterministic groundup train --device cuda --deterministic --epochs 1 --out "$WORK/det" --quiet
check lr-find-fp16 groundup lr-find --device cuda --amp --out "$WORK/lr"
check predict groundup predict "$WORK/run/model.pt" "$("$PY" -c 'from groundup.run.build import shipped_dataset; print(shipped_dataset() / "val")')" --device cuda --top 2
check evaluate groundup evaluate "$WORK/run/model.pt" --data imagenette-mini --device cuda --out "$WORK/eval"
check export-loads-on-cpu sh -c "$PY -m groundup export '$WORK/run/model.pt' --out '$WORK/model.pt2' && $PY -c \"import torch; p = torch.export.load('$WORK/model.pt2'); print(p.module()(torch.zeros(2, 64, 64, 3, dtype=torch.uint8)).sum(1))\""
check torchrun-cpu-gloo-on-a-gpu-machine "$PY" -m torch.distributed.run --nproc_per_node=2 --master_port=29531 -m groundup train --device cpu --epochs 1 --num-workers 0 --out "$WORK/ddp-cpu" --quiet
N_GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
check torchrun-nccl-every-gpu "$PY" -m torch.distributed.run --nproc_per_node="$N_GPUS" --master_port=29532 -m groundup train --device cuda --amp --epochs 1 --out "$WORK/ddp-gpu" --quiet
check more-ranks-than-gpus-is-a-clear-error expect_error "each process needs its own" "$PY" -m torch.distributed.run --nproc_per_node=$((N_GPUS + 1)) --master_port=29533 -m groundup train --device cuda --epochs 1 --out "$WORK/ddp-too-many" --quiet
check no-such-gpu-is-one-line expect_one_line_error "is not available on this machine" groundup evaluate "$WORK/run/model.pt" --data imagenette-mini --device "cuda:$N_GPUS"

echo "$((failed)) failed; logs in $LOG"
[ "$failed" -eq 0 ]
