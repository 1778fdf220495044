#!/usr/bin/env bash
# What a CPU cannot show, checked on a GPU in one run (about 5 minutes on one GPU):
#   1 the quick pipeline on --device cuda (bf16 where the GPU computes it natively)
#   2 a forced --dtype float16 run (fp16 autocast with a GradScaler)
#   3 Ctrl-C during training, then --resume from the iteration that was saved
#   4 torchrun --standalone --nproc_per_node=N with NCCL (N = the GPUs present)
#   5 bench.py --device cuda
#   6 the CUDA-trained checkpoint in quick_test.py and app.py on the CPU
# One ✅/❌ line per check; exit status 1 when one fails. Without a GPU it says so and exits 0.
#
#   bash scripts/gpu_check.sh                          # uses python3 (a GPU image's Python)
#   TATARGPT_PYTHON=.venv/bin/python bash scripts/gpu_check.sh
#   bash scripts/gpu_check.sh --device cpu --iters 30 --finetune-iters 10
#                                                      # the same checks on a CPU, shortened
#
# Logs go to GPU_CHECK_OUT (default: a temporary folder), bench.json among them.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${TATARGPT_PYTHON:-python3}
case "$PY" in  # an absolute path: the checks run in other folders (not resolving links: a venv)
    */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;;
    *) PY=$(command -v "$PY" || echo "$PY") ;;
esac
device=cuda
iters=""  # training iterations of check 1 (default: the quick settings)
finetune_iters=""  # its fine-tuning steps (default: 05_finetune.py's)
while [ $# -gt 0 ]; do
    case "$1" in
        --device) device="$2"; shift ;;
        --iters) iters="$2"; shift ;;
        --finetune-iters) finetune_iters="$2"; shift ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "error: unknown flag $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ "$device" = cuda ] && ! "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
    echo "No CUDA GPU is visible to $PY here: nothing to check. Run this on a machine with a GPU."
    exit 0
fi
out=${GPU_CHECK_OUT:-$(mktemp -d)}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export TATARGPT_PYTHON="$PY" PYTHONUNBUFFERED=1
failed=0

"$PY" - "$device" <<'PYEOF'
import sys

import torch

from tatargpt import devices

device = torch.device(sys.argv[1])
print(f"torch {torch.__version__}", end="")
if device.type == "cuda":
    n = torch.cuda.device_count()
    cap = ".".join(map(str, torch.cuda.get_device_capability()))
    print(f", {n} × {torch.cuda.get_device_name()} (sm {cap})", end="")
dtype, why = devices.pick_dtype(device)
print(f"; --dtype auto picks {devices.dtype_name(dtype)}: {why}")
PYEOF

SKIP=3  # a check returns this when it does not apply to the device
check() {  # $1 name, $2 log name, then the command
    local name=$1 log="$out/$2.log" code
    shift 2
    local start=$SECONDS
    ( "$@" ) >"$log" 2>&1  # a subshell: a check's cd or variables stay its own
    code=$?
    if [ "$code" = 0 ]; then
        echo "✅ $name ($((SECONDS - start)) s)"
    elif [ "$code" = "$SKIP" ]; then
        echo "–  $name: skipped ($(tail -n 1 "$log"))"
    else
        echo "❌ $name ($((SECONDS - start)) s) — the end of $log:"
        tail -n 15 "$log" | sed 's/^/     /'
        failed=1
    fi
}

# A copy of the repository to run the pipeline in (the files a fresh clone has).
repo="$work/repo"
mkdir -p "$repo"
git ls-files -co --exclude-standard | while read -r f; do
    [ -f "$f" ] && mkdir -p "$repo/$(dirname "$f")" && cp "$f" "$repo/$f"
done
data="$repo/data" tok="$repo/tokenizer"
# Checks 3 and 4 test Ctrl-C/--resume and DDP, not learning: on a CPU they train on small
# batches with short evaluations (a GPU takes the preset's sizes in seconds).
small=()
[ "$device" = cpu ] && small=(--batch-size 4 --eval-iters 2)

pipeline() {
    cd "$repo" || return 1
    local args=(--quick --device "$device") extra=()
    [ -n "$iters" ] && args+=(--max-iters "$iters") && extra+=(--eval-interval "$iters")
    [ -n "$finetune_iters" ] && args+=(--finetune-iters "$finetune_iters")
    # The quick run compiles the model; on a CPU this script checks its own logic, and
    # tests/test_pipeline.py covers the compiled run there.
    [ "$device" = cpu ] && extra+=(--no-compile)
    [ ${#extra[@]} -gt 0 ] && args+=(-- "${extra[@]}")
    bash run_pipeline.sh "${args[@]}" || return 1
    "$PY" - "$device" <<'PYEOF'
import sys

import torch

ckpt = torch.load("models/best_model.pt", map_location="cpu", weights_only=True)
print("checkpoint:", ckpt["device"], ckpt["dtype"], "| auto chose:", ckpt.get("dtype_reason"))
assert ckpt["device"].startswith(sys.argv[1]), ckpt["device"]
if sys.argv[1] == "cuda":
    native = torch.cuda.is_bf16_supported(including_emulation=False)
    assert ckpt["dtype"] == ("bfloat16" if native else "float16"), ckpt["dtype"]
PYEOF
}
check "1 quick pipeline on $device" pipeline pipeline

fp16() {
    [ "$device" = cpu ] && { echo "fp16 autocast is for GPUs, not the CPU"; return $SKIP; }
    "$PY" 03_train.py --data-dir "$data" --tokenizer-dir "$tok" --out-dir "$work/fp16" \
        --preset tiny --device "$device" --dtype float16 --max-iters 60 --eval-interval 30 || return 1
    "$PY" - "$work/fp16" <<'PYEOF'
import json
import sys
from pathlib import Path

import torch

out = Path(sys.argv[1])
ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
evals = [json.loads(r) for r in (out / "train_log.jsonl").read_text().splitlines()
         if '"eval"' in r]
print("dtype", ckpt["dtype"], "| scaler", ckpt["scaler"], "| val", [e["val_loss"] for e in evals])
assert ckpt["dtype"] == "float16" and ckpt["scaler"] and ckpt["scaler"]["scale"] > 0
assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 1.0
PYEOF
}
check "2 fp16 autocast with GradScaler" fp16 fp16

resume() {
    local dir="$work/resume"
    "$PY" 03_train.py --data-dir "$data" --tokenizer-dir "$tok" --out-dir "$dir" --preset tiny \
        --device "$device" --max-iters 100000 --eval-interval 25 --log-interval 5 \
        ${small[@]+"${small[@]}"} &
    local pid=$! waited=0
    until [ -f "$dir/train_log.jsonl" ] && [ "$(grep -c '"train"' "$dir/train_log.jsonl")" -ge 12 ]; do
        kill -0 "$pid" 2>/dev/null || { echo "training ended before it was interrupted"; return 1; }
        sleep 0.5; waited=$((waited + 1))
        [ "$waited" -gt 600 ] && { kill "$pid"; echo "training never logged"; return 1; }
    done
    kill -INT "$pid"
    wait "$pid"
    local code=$?
    [ "$code" = 130 ] || { echo "exit status $code after Ctrl-C, not 130"; return 1; }
    local saved
    saved=$("$PY" -c "import torch; print(torch.load('$dir/last.pt', map_location='cpu', weights_only=True)['iter'])")
    echo "saved at iteration $saved"
    "$PY" 03_train.py --data-dir "$data" --tokenizer-dir "$tok" --out-dir "$dir" --device "$device" \
        --resume --max-iters $((saved + 20)) | tee "$work/resume.out" || return 1
    grep -q "resuming from $dir/last.pt at iteration $saved" "$work/resume.out" || return 1
    "$PY" -c "import torch; c = torch.load('$dir/last.pt', map_location='cpu', weights_only=True); assert c['iter'] == $((saved + 20)), c['iter']; assert c['device'].startswith('$device')"
}
check "3 Ctrl-C, then --resume from the saved iteration" resume resume

ddp() {
    local n=2
    [ "$device" = cuda ] && n=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
    "$PY" -m torch.distributed.run --standalone --nproc_per_node="$n" 03_train.py \
        --data-dir "$data" --tokenizer-dir "$tok" --out-dir "$work/ddp" --preset tiny \
        --device "$device" --max-iters 20 --eval-interval 10 --batch-size 8 \
        ${small[@]+"${small[@]}"} || return 1
    "$PY" -c "import torch; c = torch.load('$work/ddp/last.pt', map_location='cpu', weights_only=True); print('world size', c['world_size'], 'ranks saved', len(c['rng_ranks'])); assert c['world_size'] == $n and c['iter'] == 20 and len(c['rng_ranks']) == $n"
}
check "4 torchrun DDP ($([ "$device" = cuda ] && echo NCCL || echo gloo))" ddp ddp

bench() {
    local extra=()
    [ "$device" = cpu ] && extra=(--quick --repeats 1)
    "$PY" bench.py --device "$device" --out "$out/bench.json" ${extra[@]+"${extra[@]}"}
}
check "5 bench.py --device $device" bench bench

on_cpu() {
    cd "$repo" || return 1
    "$PY" quick_test.py --device cpu --checklist || return 1
    "$PY" -c 'import gradio, gradio_client' 2>/dev/null \
        || { echo "gradio / gradio_client are not installed for $PY: pip install -r requirements-dev.txt"; return 1; }
    local port
    port=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$PY" app.py --device cpu --port "$port" > "$work/app.log" 2>&1 &
    local pid=$!
    "$PY" - "$port" <<'PYEOF'
import sys
import time
import urllib.request

from gradio_client import Client

url = f"http://127.0.0.1:{sys.argv[1]}/"
for _ in range(240):
    try:
        urllib.request.urlopen(url, timeout=2)
        break
    except OSError:
        time.sleep(0.5)
text, note = Client(url, verbose=False).predict("Казан шәһәре", 20, 0.0, 0, 1.0, 1.0, 0,
                                                api_name="/generate")
print(text, "|", note)
assert text.startswith("Казан шәһәре") and "on cpu" in note
PYEOF
    local code=$?
    kill "$pid"
    return $code
}
check "6 the $device checkpoint in quick_test.py and app.py on the CPU" on_cpu on_cpu

echo "logs: $out"
exit $failed
