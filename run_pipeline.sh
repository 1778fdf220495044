#!/usr/bin/env bash
# Tatar-GPT, the whole course in one command:
#   1 prepare the corpus  →  2 train the tokenizer  →  3 train the model  →  4 check it
#
# A stage whose outputs exist and are up to date is skipped; training resumes from
# models/last.pt. Run with --help for the flags. (Written for bash 3.2+, macOS included.)
set -euo pipefail
cd "$(dirname "$0")"

usage() {
    cat <<'EOF'
Usage: bash run_pipeline.sh [flags] [-- extra 03_train.py flags]

Default: the reference course run — the Leipzig corpus tat_mixed_2015_1M, the `small`
23M-parameter preset, 10,000 iterations, on the best device found (CUDA, Apple MPS, CPU).
Offline, stage 1 falls back to the bundled sample corpus and the quick settings.

Flags:
  --quick            bundled sample corpus, `tiny` preset, 300 iterations (minutes on a CPU)
  --preset NAME      model preset: tiny small medium large gpt2 llama mistral
  --corpus NAME      Leipzig corpus to download (repeatable), e.g. tat_wikipedia_2021_300K
  --device NAME      auto | cpu | cuda | mps (default: auto)
  --max-iters N      training iterations (default: the preset's)
  --from-stage N     start at stage N (1 data, 2 tokenizer, 3 training, 4 checklist)
  --only-stage N     run only stage N
  --force            redo stages even when their outputs are up to date (fresh training)
  -h, --help         show this help
  -- ARGS            pass the remaining arguments to 03_train.py (e.g. -- --batch-size 16)

Environment: LEIPZIG_BASE_URL overrides the Leipzig download address (a mirror).
EOF
}

die_usage() {
    echo "error: $1" >&2
    echo >&2
    usage >&2
    exit 2
}

# --- flags ----------------------------------------------------------------------------------
quick=0
preset=""
corpora=()
device="auto"
max_iters=""
from_stage=1
only_stage=""
force=0
train_extra=()

need_value() {  # $1 flag, $2 number of remaining args
    if [ "$2" -lt 2 ]; then die_usage "$1 needs a value"; fi
}
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --preset) need_value "$1" $#; preset="$2"; shift ;;
        --corpus) need_value "$1" $#; corpora+=("$2"); shift ;;
        --device) need_value "$1" $#; device="$2"; shift ;;
        --max-iters) need_value "$1" $#; max_iters="$2"; shift ;;
        --from-stage) need_value "$1" $#; from_stage="$2"; shift ;;
        --only-stage) need_value "$1" $#; only_stage="$2"; shift ;;
        --force) force=1 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; train_extra=("$@"); break ;;
        *) die_usage "unknown flag: $1" ;;
    esac
    shift
done
for n in "$from_stage" ${only_stage:+"$only_stage"}; do
    case "$n" in 1|2|3|4) ;; *) die_usage "stages are numbered 1 to 4, got '$n'" ;; esac
done
if [ -n "$max_iters" ] && ! [[ "$max_iters" =~ ^[1-9][0-9]*$ ]]; then
    die_usage "--max-iters needs a positive whole number, got '$max_iters'"
fi
if [ "$quick" = 1 ] && [ ${#corpora[@]} -gt 0 ]; then
    die_usage "--quick uses the bundled sample corpus; drop --corpus or --quick"
fi

# --- environment ----------------------------------------------------------------------------
source scripts/ensure_venv.sh requirements.txt
PY=.venv/bin/python

trap 'echo; echo "Stopped. Run the same command again to continue (training resumes from models/last.pt)." >&2; exit 130' INT

run_stage() {  # $1 number; true when the stage should run
    if [ -n "$only_stage" ]; then [ "$1" = "$only_stage" ]; else [ "$1" -ge "$from_stage" ]; fi
}
header() {
    echo
    echo "════════ stage $1: $2 ════════"
    stage_start=$SECONDS
}
footer() {
    local took=$((SECONDS - stage_start))
    timings+=("stage $1 ($2): ${took} s")
    echo "──────── stage $1 done in ${took} s"
}
timings=()
pipeline_start=$SECONDS

# --- stage 1: corpus --------------------------------------------------------------------------
if [ "$quick" = 1 ]; then
    prep_args=(--source sample)
elif [ ${#corpora[@]} -gt 0 ]; then
    prep_args=()
    for c in "${corpora[@]}"; do prep_args+=(--corpus "$c"); done
else
    prep_args=()  # 01_prepare_data.py's default: tat_mixed_2015_1M
fi
source_key="${prep_args[*]-} "  # what stage 1 made, recorded in its stamp
# A mirror of the Leipzig download server (the tests point it at a closed port: offline).
if [ "$quick" = 0 ] && [ -n "${LEIPZIG_BASE_URL:-}" ]; then
    prep_args+=(--base-url "$LEIPZIG_BASE_URL")
fi
stamp1="data/processed/.pipeline-stage1"
if run_stage 1; then
    header 1 "prepare the corpus (01_prepare_data.py)"
    if [ "$force" = 0 ] && [ -f data/processed/train.txt ] && [ -f data/processed/val.txt ] \
        && [ -f "$stamp1" ] && [ "$(cat "$stamp1")" = "$source_key" ]; then
        echo "up to date: data/processed/{train,val}.txt (use --force to redo)"
    else
        "$PY" 01_prepare_data.py ${prep_args[@]+"${prep_args[@]}"}
        echo "$source_key" > "$stamp1"
    fi
    footer 1 "data"
fi

fell_back=0
if [ -f data/processed/stats.json ] && "$PY" -c \
    'import json,sys; sys.exit(0 if json.load(open("data/processed/stats.json")).get("fallback") else 1)'; then
    fell_back=1
fi
if [ "$fell_back" = 1 ] && [ "$quick" = 0 ]; then
    echo
    echo "The Leipzig corpus could not be downloaded, so this run uses the bundled sample"
    echo "corpus with the quick settings (tiny preset). For the full course run, download the"
    echo "archive (see docs/TROUBLESHOOTING.md) and run: bash run_pipeline.sh --force"
    quick=1
fi
if [ -z "$preset" ]; then
    if [ "$quick" = 1 ]; then preset="tiny"; else preset="small"; fi
fi

# --- stage 2: tokenizer -----------------------------------------------------------------------
stamp2="tokenizer/.pipeline-stage2"
if run_stage 2; then
    header 2 "train the BPE tokenizer and encode the corpus (02_train_tokenizer.py)"
    # Up to date when made from exactly the current train.txt/val.txt.
    want2="$(cat data/processed/train.txt data/processed/val.txt 2>/dev/null | sha256sum | cut -c1-32)"
    if [ "$force" = 0 ] && [ -f tokenizer/tokenizer.json ] && [ -f data/processed/meta.json ] \
        && [ -f data/processed/train.bin ] && [ -f "$stamp2" ] && [ "$(cat "$stamp2")" = "$want2" ]; then
        echo "up to date: tokenizer/ and data/processed/*.bin (use --force to redo)"
    else
        "$PY" 02_train_tokenizer.py
        echo "$want2" > "$stamp2"
    fi
    footer 2 "tokenizer"
fi

# --- stage 3: training ------------------------------------------------------------------------
train_args=(--preset "$preset" --device "$device")
if [ -n "$max_iters" ]; then train_args+=(--max-iters "$max_iters"); fi
train_args+=(${train_extra[@]+"${train_extra[@]}"})
if run_stage 3; then
    header 3 "train the model (03_train.py ${train_args[*]})"
    # What is in models/ already: done (same tokenizer, preset, iterations), resumable, or stale.
    state=$("$PY" - "$preset" "${max_iters:-0}" <<'PYEOF'
import sys
from pathlib import Path

import torch

import config
import utils

preset, max_iters = sys.argv[1], int(sys.argv[2]) or config.get_train_config(sys.argv[1]).max_iters
last = Path("models/last.pt")
if not last.is_file() or not Path("tokenizer/tokenizer.json").is_file():
    print("fresh")
    sys.exit()
try:
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
except Exception:
    print("fresh")
    sys.exit()
same = (ckpt.get("tokenizer_hash") == utils.tokenizer_hash("tokenizer")
        and ckpt.get("train_config", {}).get("preset") == preset)
if not same:
    print("fresh")
elif ckpt.get("iter", 0) >= max_iters and Path("models/best_model.pt").is_file():
    print("done")
else:
    print("resume")
PYEOF
)
    if [ "$force" = 1 ]; then state="fresh"; fi
    dev_type=$("$PY" -c "import utils; print(utils.get_device('$device').type)" 2>/dev/null || echo "?")
    if [ "$state" = "done" ]; then
        echo "up to date: models/best_model.pt has finished training (use --force to retrain)"
    else
        if [ "$dev_type" = "cpu" ] && [ "$state" = "fresh" ]; then
            "$PY" 03_train.py "${train_args[@]}" --estimate | grep "expected training time" || true
            if [ "$preset" != "tiny" ]; then
                echo "Training the $preset preset on a CPU is slow; for a first run try: bash run_pipeline.sh --quick"
            fi
        fi
        if [ "$state" = "resume" ]; then
            echo "resuming from models/last.pt"
            "$PY" 03_train.py "${train_args[@]}" --resume
        else
            "$PY" 03_train.py "${train_args[@]}"
        fi
    fi
    footer 3 "training"
fi

# --- stage 4: checklist -----------------------------------------------------------------------
if run_stage 4; then
    header 4 "check the model (quick_test.py --checklist)"
    status=0
    "$PY" quick_test.py --checklist --device "$device" || status=$?
    footer 4 "checklist"
    if [ "$status" != 0 ]; then
        echo "error: the checklist failed (exit $status); see the table above." >&2
        exit "$status"
    fi
fi

# --- summary ----------------------------------------------------------------------------------
echo
echo "════════ summary ════════"
for t in ${timings[@]+"${timings[@]}"}; do echo "  $t"; done
echo "  total: $((SECONDS - pipeline_start)) s"
if [ -f models/best_model.pt ]; then
    "$PY" - <<'PYEOF'
import math

import torch

ckpt = torch.load("models/best_model.pt", map_location="cpu", weights_only=True)
m = ckpt.get("metrics") or {}
print(f"  checkpoint: models/best_model.pt (preset {ckpt['train_config']['preset']}, "
      f"iteration {ckpt['iter']})")
if m:
    print(f"  val loss {m['val_loss']:.4f} | perplexity {math.exp(min(m['val_loss'], 50)):.2f} "
          f"| bits per char {m['val_bpc']:.3f}")
PYEOF
fi
cat <<'EOF'

Next:
  notebook:  .venv/bin/jupyter notebook demo_inference.ipynb
  web demo:  .venv/bin/python app.py     then open http://localhost:7860
EOF
