#!/usr/bin/env bash
# Tatar-GPT, the whole course in one command:
#   1 prepare the corpus → 2 train the tokenizer → 3 train the model → 4 evaluate
#   → 5 fine-tune it to answer (chat) → 6 check it
#
# A stage whose outputs exist and are up to date is skipped; training resumes from
# models/last.pt. Nothing trained is replaced without --force. Run with --help for the flags.
# (Written for bash 3.2+, macOS included.)
set -euo pipefail
cd "$(dirname "$0")"

usage() {
    cat <<'EOF'
Usage: bash run_pipeline.sh [flags] [-- extra 03_train.py flags]

Default: the reference course run — the Leipzig corpus tat_mixed_2015_1M, the `small`
23M-parameter preset, 10,000 iterations, on the best device found (CUDA, Apple MPS, CPU).
Offline, stage 1 falls back to the bundled sample corpus and the quick settings.

Flags:
  --quick            the quick settings (config.QUICK_RUN: a small preset and vocabulary),
                     minutes on a CPU; on the bundled sample corpus unless --text-file
  --text-file PATH   your own Tatar text, one sentence per line (repeatable): every stage runs
                     on it, with the full settings or, with --quick, the quick ones
  --preset NAME      model preset: tiny small medium large gpt2 llama mistral
  --corpus NAME      Leipzig corpus to download (repeatable), e.g. tat_news_2015_1M
  --device NAME      auto | cpu | cuda | mps (default: auto)
  --max-iters N      training iterations (default: the preset's)
  --time-budget MIN  finish in about MIN minutes: training gets what the other stages leave;
                     without --preset it times this machine and trains the model size that
                     the time affords (docs/TIME_BUDGET.md)
  --from-stage N     start at stage N (1 data, 2 tokenizer, 3 training, 4 evaluation,
                     5 fine-tuning, 6 checklist)
  --finetune-iters N fine-tuning steps of stage 5 (default: 05_finetune.py's for the preset)
  --only-stage N     run only stage N
  --force            redo stages even when their outputs are up to date, and replace a
                     trained model (it is kept until the new one has passed an evaluation)
  -h, --help         show this help
  -- ARGS            pass the remaining arguments to 03_train.py (e.g. -- --batch-size 16)

Environment: LEIPZIG_BASE_URL overrides the Leipzig download address (a mirror);
TATARGPT_PYTHON=/path/to/python runs everything with that Python as it is (no .venv, no
installs), e.g. Colab's own Python with its CUDA torch.
EOF
}

die_usage() {
    echo "error: $1" >&2
    echo >&2
    usage >&2
    exit 2
}
die() {
    echo "error: $1" >&2
    exit 2
}

# --- flags ----------------------------------------------------------------------------------
original_args=("$@")
quick=0
preset=""
corpora=()
text_files=()
device="auto"
max_iters=""
finetune_iters=""
time_budget=""
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
        --text-file) need_value "$1" $#; text_files+=("$2"); shift ;;
        --device) need_value "$1" $#; device="$2"; shift ;;
        --max-iters) need_value "$1" $#; max_iters="$2"; shift ;;
        --finetune-iters) need_value "$1" $#; finetune_iters="$2"; shift ;;
        --time-budget) need_value "$1" $#; time_budget="$2"; shift ;;
        --from-stage) need_value "$1" $#; from_stage="$2"; shift ;;
        --only-stage) need_value "$1" $#; only_stage="$2"; shift ;;
        --force) force=1 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; train_extra=("$@"); break ;;
        *) die_usage "unknown flag: $1" ;;
    esac
    shift
done

user_preset="$preset"  # before the defaults below fill it in
user_quick="$quick"

# --- everything checked before any stage runs -------------------------------------------------
for n in "$from_stage" ${only_stage:+"$only_stage"}; do
    case "$n" in 1|2|3|4|5|6) ;; *) die_usage "stages are numbered 1 to 6, got '$n'" ;; esac
done
if [ -n "$max_iters" ] && ! [[ "$max_iters" =~ ^[1-9][0-9]*$ ]]; then
    die_usage "--max-iters needs a positive whole number, got '$max_iters'"
fi
if [ -n "$finetune_iters" ] && ! [[ "$finetune_iters" =~ ^[1-9][0-9]*$ ]]; then
    die_usage "--finetune-iters needs a positive whole number, got '$finetune_iters'"
fi
if [ -n "$time_budget" ] && ! [[ "$time_budget" =~ ^([0-9]+\.?[0-9]*|\.[0-9]+)$ && ! "$time_budget" =~ ^0*\.?0*$ ]]; then
    die_usage "--time-budget needs a positive number of minutes, got '$time_budget'"
fi
case "$device" in auto|cpu|cuda|mps) ;; *) die_usage "--device must be auto, cpu, cuda or mps, got '$device'" ;; esac
if [ ${#corpora[@]} -gt 0 ]; then
    if [ "$quick" = 1 ]; then
        die_usage "--quick trains on the bundled sample corpus (or your --text-file); drop --corpus or --quick"
    fi
    for c in "${corpora[@]}"; do
        if ! [[ "$c" =~ ^[a-z]{3}_[a-z]+_[0-9]{4}(_[0-9]+[KM])?$ ]]; then
            die_usage "'$c' is not a Leipzig corpus name (like tat_mixed_2015_1M: language_kind_year_size)"
        fi
    done
fi
if [ ${#text_files[@]} -gt 0 ]; then
    for f in "${text_files[@]}"; do
        if [ ! -f "$f" ]; then die "--text-file $f: no such file. Give the path of a UTF-8 text file, one sentence per line."; fi
    done
fi

# --- environment ----------------------------------------------------------------------------
source scripts/ensure_venv.sh requirements.txt  # sets PY

# The preset and the quick settings come from config.py, the one source of truth.
read -r quick_preset quick_vocab quick_compile <<<"$("$PY" -c 'import config; q = config.QUICK_RUN; print(q["preset"], q["vocab_size"], int(q["compile"]))')"
if [ -n "$preset" ] && ! "$PY" -c 'import sys, config; sys.exit(sys.argv[1] not in config.PRESETS)' "$preset"; then
    die_usage "unknown preset '$preset'; choose one of: $("$PY" -c 'import config; print(" ".join(config.PRESETS))')"
fi

stage="set-up"
on_interrupt() {
    echo >&2
    if [ "$stage" = 3 ] && [ "$force" = 1 ]; then
        local again=()
        for a in ${original_args[@]+"${original_args[@]}"}; do [ "$a" = "--force" ] || again+=("$a"); done
        echo "Stopped. To continue this training, run the command again WITHOUT --force:" >&2
        echo "  bash run_pipeline.sh ${again[*]-}" >&2
        echo "(it resumes from models/last.pt, or starts the new model again if it had not yet reached its first evaluation)" >&2
    elif [ "$stage" = 3 ]; then
        echo "Stopped. Run the same command again to continue (training resumes from models/last.pt)." >&2
    else
        echo "Stopped during stage $stage; its earlier outputs are unchanged. Run the same command again to go on." >&2
    fi
    exit 130
}
trap on_interrupt INT

run_stage() {  # $1 number; true when the stage should run
    if [ -n "$only_stage" ]; then [ "$1" = "$only_stage" ]; else [ "$1" -ge "$from_stage" ]; fi
}
header() {
    stage=$1
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

# --- what stage 1 would make, and whether stages 1-2 are up to date -------------------------
prep_args=()
if [ ${#text_files[@]} -gt 0 ]; then
    for f in "${text_files[@]}"; do prep_args+=(--text-file "$f"); done
elif [ "$quick" = 1 ]; then
    prep_args=(--source sample)
fi
for c in ${corpora[@]+"${corpora[@]}"}; do prep_args+=(--corpus "$c"); done
# What stage 1 made, recorded in its stamp: the arguments and the text files' contents.
source_key="${prep_args[*]-} $(cat ${text_files[@]+"${text_files[@]}"} /dev/null | sha256sum | cut -c1-16)"
# A mirror of the Leipzig download server (the tests point it at a closed port: offline).
if [ ${#text_files[@]} -eq 0 ] && [ "$quick" = 0 ] && [ -n "${LEIPZIG_BASE_URL:-}" ]; then
    prep_args+=(--base-url "$LEIPZIG_BASE_URL")
fi
stamp1="data/processed/.pipeline-stage1"
stage1_current=0
if [ -f data/processed/train.txt ] && [ -f data/processed/val.txt ] && [ -f "$stamp1" ] \
    && [ "$(cat "$stamp1")" = "$source_key" ]; then
    stage1_current=1
fi
text_hash() { cat data/processed/train.txt data/processed/val.txt 2>/dev/null | sha256sum | cut -c1-32; }
tok_stamp() {  # what stage 2 was made from: the text and the vocabulary size
    echo "$(text_hash) $1"
}
stamp2="tokenizer/.pipeline-stage2"

# A trained model whose tokenizer is still here would lose it if stage 1 or 2 ran again:
# stop before that, unless --force says to replace it.
guard_model() {  # $1 what is about to be redone
    if [ "$force" = 1 ] || [ ! -f models/best_model.pt ] || [ ! -f tokenizer/tokenizer.json ]; then
        return 0
    fi
    local held
    held=$("$PY" 03_train.py --status | cut -f2)
    if [ -n "$held" ]; then
        die "models/ holds a trained model ($held), and this run would redo $1, leaving that model without its tokenizer. To keep it, move the folders away first (mv models models_old; mv tokenizer tokenizer_old; mv data/processed data/processed_old), or add --force to replace them."
    fi
}

# --- stage 1: corpus --------------------------------------------------------------------------
if run_stage 1; then
    header 1 "prepare the corpus (01_prepare_data.py)"
    if [ "$force" = 0 ] && [ "$stage1_current" = 1 ]; then
        echo "up to date: data/processed/{train,val}.txt (use --force to redo)"
    else
        guard_model "the corpus (stage 1)"
        "$PY" 01_prepare_data.py ${prep_args[@]+"${prep_args[@]}"}
        echo "$source_key" > "$stamp1"
    fi
    footer 1 "data"
fi

fell_back=0
if [ -f data/processed/stats.json ] && "$PY" -c \
    'import json,sys; sys.exit(0 if json.load(open("data/processed/stats.json")).get("fallback") else 1)' 2>/dev/null; then
    fell_back=1
fi
if [ "$fell_back" = 1 ] && [ "$quick" = 0 ]; then
    echo
    echo "The Leipzig corpus could not be downloaded, so this run uses the bundled sample"
    if [ -n "$time_budget" ] && [ -z "$user_preset" ]; then
        echo "corpus with the quick vocabulary (the model size: chosen for --time-budget). For the full course run, download the"
    else
        echo "corpus with the quick settings (preset $quick_preset). For the full course run, download the"
    fi
    echo "archive (see docs/TROUBLESHOOTING.md) and run: bash run_pipeline.sh --force"
    quick=1
fi
if [ -z "$preset" ]; then
    if [ "$quick" = 1 ]; then preset="$quick_preset"; else preset="small"; fi
fi
if [ "$quick" = 1 ]; then vocab_size="$quick_vocab"; else vocab_size=""; fi
# --time-budget without --preset or --quick: 03_train.py times this machine and chooses the
# model size the budget affords (docs/TIME_BUDGET.md).
auto_preset=0
if [ -n "$time_budget" ] && [ -z "$user_preset" ] && [ "$user_quick" = 0 ]; then auto_preset=1; fi
# ... and a corpus too small for the full vocabulary gets the quick one: a model that fits a
# short time memorises a small corpus's rare tokens.
if [ "$auto_preset" = 1 ] && [ "$quick" = 0 ] && [ -f data/processed/train.txt ]; then
    read -r corpus_chars small_corpus <<<"$("$PY" -c 'import config
print(len(open("data/processed/train.txt", encoding="utf-8").read()), config.BUDGET_SMALL_CORPUS_CHARS)')"
    if [ "$corpus_chars" -lt "$small_corpus" ]; then
        vocab_size="$quick_vocab"
        echo "time budget: train.txt holds $corpus_chars characters (under $small_corpus), so the tokenizer gets the quick vocabulary of $quick_vocab tokens (docs/TIME_BUDGET.md)"
    fi
fi
preset_args=(--preset "$preset")
if [ "$auto_preset" = 1 ]; then preset_args=(); fi

# --- stage 2: tokenizer -----------------------------------------------------------------------
if run_stage 2; then
    header 2 "train the BPE tokenizer and encode the corpus (02_train_tokenizer.py)"
    want2="$(tok_stamp "${vocab_size:-default}")"
    if [ "$force" = 0 ] && [ -f tokenizer/tokenizer.json ] && [ -f data/processed/meta.json ] \
        && [ -f data/processed/train.bin ] && [ -f "$stamp2" ] && [ "$(cat "$stamp2")" = "$want2" ]; then
        echo "up to date: tokenizer/ and data/processed/*.bin (use --force to redo)"
    else
        guard_model "the tokenizer (stage 2)"
        "$PY" 02_train_tokenizer.py ${vocab_size:+--vocab-size "$vocab_size"}
        echo "$want2" > "$stamp2"
    fi
    footer 2 "tokenizer"
fi

# --- stage 3: training ------------------------------------------------------------------------
train_args=(${preset_args[@]+"${preset_args[@]}"} --device "$device")
# The quick run compiles the model (config.QUICK_RUN): after a first compile of about half a
# minute its steps run 1.2–1.6× as fast on a CPU, and 03_train.py trains without it if compiling
# fails. Not on MPS (docs/TROUBLESHOOTING.md), and not under --time-budget, which plans from
# uncompiled timings. `-- --no-compile` turns it off.
if [ "$quick" = 1 ] && [ "$quick_compile" = 1 ] && [ -z "$time_budget" ] \
    && [ "$("$PY" -c "import utils; print(utils.get_device('$device').type)" 2>/dev/null)" != "mps" ]; then
    train_args+=(--compile)
fi
if [ -n "$max_iters" ]; then train_args+=(--max-iters "$max_iters"); fi
if [ -n "$time_budget" ] && run_stage 3; then
    # The budget is for the whole pipeline: training gets what stages 1-2 left of it, less a
    # reserve for stages 4-6 (a tenth of the budget, at least a minute).
    read -r train_budget reserve <<<"$("$PY" -c 'import sys
budget, spent = float(sys.argv[1]), int(sys.argv[2]) / 60
reserve = max(1.0, budget / 10)
print(f"{max(0.1, budget - spent - reserve):.2f} {reserve:.1f}")' "$time_budget" "$SECONDS")"
    echo "time budget $time_budget min for the whole pipeline: ${SECONDS} s spent so far, ${reserve} min kept for stages 4-6, ${train_budget} min for training"
    train_args+=(--time-budget "$train_budget")
fi
train_args+=(${train_extra[@]+"${train_extra[@]}"})
if run_stage 3; then
    header 3 "train the model (03_train.py ${train_args[*]})"
    # What is in models/ already: nothing, done, resumable, or a model of other settings.
    state=$("$PY" 03_train.py --status ${preset_args[@]+"${preset_args[@]}"} ${max_iters:+--max-iters "$max_iters"} | cut -f1)
    if [ "$force" = 1 ] && [ "$state" != "fresh" ]; then state="replace"; fi
    if [ "$state" = "other" ]; then
        die "models/ holds a trained model of another preset. To keep it, move it away first (mv models models_old), or add --force to replace it with a new $preset model."
    fi
    if [ "$state" = "done" ]; then
        echo "up to date: models/best_model.pt has finished training (use --force to retrain)"
    elif [ "$state" = "resume" ]; then
        echo "resuming from models/last.pt"
        "$PY" 03_train.py "${train_args[@]}" --resume
    else
        if [ -z "$time_budget" ] && [ "$preset" != "$quick_preset" ] \
            && [ "$("$PY" -c "import utils; print(utils.get_device('$device').type)" 2>/dev/null)" = "cpu" ]; then
            "$PY" 03_train.py "${train_args[@]}" --estimate | grep "expected training time" || true
            echo "Training the $preset preset on a CPU is slow; for a first run try: bash run_pipeline.sh --quick"
            echo "(or give it the time you have: --time-budget MINUTES)"
        fi
        overwrite=()
        if [ "$state" = "stale" ] || [ "$state" = "replace" ]; then
            echo "models/ holds an earlier model; the new one replaces it once it has passed its first evaluation."
            overwrite=(--overwrite)
        fi
        "$PY" 03_train.py "${train_args[@]}" ${overwrite[@]+"${overwrite[@]}"}
    fi
    footer 3 "training"
fi

# --- stage 4: evaluation ----------------------------------------------------------------------
if run_stage 4; then
    header 4 "evaluate against a character n-gram baseline (04_evaluate.py)"
    "$PY" 04_evaluate.py --device "$device"
    footer 4 "evaluation"
fi

# --- stage 5: fine-tuning ---------------------------------------------------------------------
if run_stage 5; then
    header 5 "fine-tune it to answer questions (05_finetune.py)"
    if [ "$force" = 0 ] && [ -f models/chat_model.pt ] && [ models/chat_model.pt -nt models/best_model.pt ]; then
        echo "up to date: models/chat_model.pt was fine-tuned from this model (use --force to redo)"
    else
        # A chat model of an earlier base model is stale: the new one replaces it when done.
        "$PY" 05_finetune.py --device "$device" --overwrite ${finetune_iters:+--max-iters "$finetune_iters"}
    fi
    footer 5 "fine-tuning"
fi

# --- stage 6: checklist -----------------------------------------------------------------------
if run_stage 6; then
    header 6 "check the model (quick_test.py --checklist)"
    status=0
    "$PY" quick_test.py --checklist --device "$device" || status=$?
    footer 6 "checklist"
    if [ "$status" != 0 ]; then
        echo "error: the checklist failed (exit $status); see the table above." >&2
        exit "$status"
    fi
fi
stage="summary"

# --- summary ----------------------------------------------------------------------------------
echo
echo "════════ summary ════════"
for t in ${timings[@]+"${timings[@]}"}; do echo "  $t"; done
echo "  total: $((SECONDS - pipeline_start)) s"
if [ -f models/best_model.pt ]; then
    "$PY" 03_train.py --summary
fi
cat <<'EOF'

Next:
  notebook:  .venv/bin/jupyter notebook demo_inference.ipynb
  web demo:  .venv/bin/python app.py     then open http://localhost:7860 (the Chat tab talks
             to models/chat_model.pt)
EOF
