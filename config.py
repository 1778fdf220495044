"""The one source of truth for sizes and hyper-parameters.

Every script reads its defaults from here and exposes them as command-line flags:

- `DataConfig`      corpus download and cleaning (01_prepare_data.py)
- `TokenizerConfig` BPE training (02_train_tokenizer.py)
- `ModelConfig`     the transformer (model.py); named presets in `PRESETS`
- `TrainConfig`     the training loop (03_train.py); per-preset overrides in `TRAIN_PRESETS`
- `SamplingConfig`  generation defaults (`SAMPLING`) and the Tatar `PROMPTS` that
                    quick_test.py, app.py, the notebook, make_examples.py and the exported
                    model's generation_config.json start from

`python config.py [PRESET ...]` prints the parameter-count breakdown of presets.
"""

from __future__ import annotations

import argparse
import math
import sys
import typing
from dataclasses import asdict, dataclass, fields, replace

from tatargpt.cli import option

# Token files store ids as uint16, so no vocabulary may exceed this.
UINT16_LIMIT = 2**16

SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>")  # ids 0, 1, 2, 3
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
# The chat template's tokens (tatargpt/chat.py), reserved by 02_train_tokenizer.py right after
# the four above, so that ids 0-3 keep their meaning: ids 4, 5, 6. Pretraining text never
# holds them; stage 5 (05_finetune.py) teaches the model what they mean.
CHAT_TOKENS = ("<|user|>", "<|assistant|>", "<|end|>")


# ---------------------------------------------------------------------------
# Data and tokenizer
# ---------------------------------------------------------------------------


# Each field in a *_HELP table is a flag of its script, named after the field (--min-chars for
# min_chars), typed and defaulted from it: (metavar, help).


@dataclass
class DataConfig:
    base_url: str = "https://downloads.wortschatz-leipzig.de/corpora/"
    corpus: tuple[str, ...] = ("tat_mixed_2015_1M",)  # --corpus NAME, repeatable
    connect_timeout: float = 15.0  # seconds to open a connection
    timeout: float = 60.0  # seconds without a byte before giving up
    retries: int = 3
    backoff: float = 1.0
    min_chars: int = 10  # shorter lines are fragments, not sentences
    max_chars: int = 1000  # longer lines are usually lists or tables
    min_cyrillic_share: float = 0.7  # of the letters in a line
    val_fraction: float = 0.01
    min_val_lines: int = 300  # when the corpus allows


DATA_HELP = {
    "base_url": ("URL", "where Leipzig archives live: an archive's URL is URL + NAME + .tar.gz"),
    "min_chars": ("N", "drop shorter lines"),
    "max_chars": ("N", "drop longer lines"),
    "min_cyrillic_share": ("SHARE", "drop lines whose letters are less Cyrillic than this"),
    "val_fraction": ("FRACTION", "share of lines for validation, chosen by a hash of the line"),
    "min_val_lines": ("N", "raise the val share to reach this many val lines, at most 10%% of "
                           "the corpus (0 = off)"),
    "timeout": ("SECONDS", "seconds without data before a download attempt fails"),
    "connect_timeout": ("SECONDS", "seconds to open a connection"),
    "retries": ("N", "extra attempts after a failed download; each resumes where the last "
                     "stopped"),
    "backoff": ("SECONDS", "wait N x SECONDS before attempt N+1"),
}


@dataclass
class TokenizerConfig:
    vocab_size: int = 8192
    min_frequency: int = 2
    special_tokens: tuple[str, ...] = SPECIAL_TOKENS
    batch_lines: int = 10_000
    bpe_dropout: float = 0.0  # while encoding train.txt only
    train_copies: int = 1  # encodings of train.txt in train.bin (> 1 with bpe_dropout)


TOKENIZER_HELP = {
    "vocab_size": ("N", f"tokens in the vocabulary, including the 256 bytes and the "
                        f"{len(SPECIAL_TOKENS) + len(CHAT_TOKENS)} special tokens; at most {UINT16_LIMIT}"),
    "min_frequency": ("N", "learn only merges of pairs seen at least this often"),
    "batch_lines": ("N", "sentences read and encoded at a time; bounds memory use"),
    "bpe_dropout": ("P", "encode train.txt with BPE dropout: skip each merge with probability "
                         "P, so words are split in many ways (val.txt and later stages: never)"),
    "train_copies": ("K", "write train.txt K times into train.bin, each segmented afresh "
                          "(with --bpe-dropout)"),
}


def add_flags(parser, cls, table: dict[str, tuple[str, str]],
              names: tuple[str, ...] | None = None) -> None:
    """Add one flag per field of dataclass `cls` in `table` (or in `names`, in that order):
    --field-name, typed and defaulted from the field, so a flag's name is its field's; the
    same generator as the scripts' own options (tatargpt/cli.py)."""
    from tatargpt.cli import add_flag

    hints, defaults = typing.get_type_hints(cls), cls()
    for name in names or tuple(table):
        metavar, help_text = table[name]
        add_flag(parser, name, hints[name], getattr(defaults, name), help_text, metavar=metavar)


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------

NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "swiglu")
POS_ENCODINGS = ("rope", "learned")
ATTENTIONS = ("sdpa", "math")
OPTIMIZERS = ("adamw", "muon")


@dataclass
class ModelConfig:
    vocab_size: int = 8192
    block_size: int = 256  # context length in tokens
    n_layer: int = 6
    n_head: int = 8
    n_embd: int = 512
    ffn_hidden: int = 2048
    dropout: float = 0.1  # on the embeddings and on what each block adds to the residual stream
    attn_dropout: float = 0.0  # on the attention probabilities (costs the fused kernel on CPUs)
    bias: bool = False
    rope_theta: float = 10000.0
    # Variant switches (see docs/ARCHITECTURE.md).
    norm: str = "layernorm"  # layernorm | rmsnorm
    mlp: str = "gelu"  # gelu | swiglu
    pos_encoding: str = "rope"  # rope | learned
    n_kv_head: int | None = None  # grouped-query attention; None = n_head
    sliding_window: int | None = None  # attend to at most this many past tokens
    attention: str = "sdpa"  # sdpa (fused kernels) | math (plain, for teaching)
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        self.validate()

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    def validate(self) -> None:
        """Raise ValueError with a readable message for an inconsistent config."""
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "ffn_hidden"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if self.vocab_size > UINT16_LIMIT:
            raise ValueError(
                f"vocab_size {self.vocab_size} does not fit the uint16 token files "
                f"(at most {UINT16_LIMIT})"
            )
        if self.n_embd % self.n_head:
            raise ValueError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})"
            )
        if self.pos_encoding == "rope" and self.head_dim % 2:
            raise ValueError(
                f"RoPE rotates pairs of channels, so the head dim must be even; "
                f"n_embd/n_head = {self.head_dim}"
            )
        if self.n_kv_head is not None:
            if self.n_kv_head <= 0 or self.n_head % self.n_kv_head:
                raise ValueError(
                    f"n_head ({self.n_head}) must be a multiple of n_kv_head ({self.n_kv_head})"
                )
        if self.sliding_window is not None and self.sliding_window <= 0:
            raise ValueError(f"sliding_window must be positive or None, got {self.sliding_window}")
        for name in ("dropout", "attn_dropout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        if not isinstance(self.rope_theta, (int, float)) or not self.rope_theta > 0 \
                or math.isinf(self.rope_theta):
            raise ValueError(f"rope_theta must be a positive number, got {self.rope_theta!r}")
        for name, allowed in (
            ("norm", NORMS),
            ("mlp", MLPS),
            ("pos_encoding", POS_ENCODINGS),
            ("attention", ATTENTIONS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"ModelConfig.{name} must be one of {', '.join(allowed)}; "
                    f"got {getattr(self, name)!r}"
                )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


PRESETS: dict[str, ModelConfig] = {
    # The quick run on a CPU (run_pipeline.sh --quick) and the tests; see docs/QUICK_RUN.md.
    # No dropout: on the bundled corpus the quick run reads train.bin about 4 times, too few to
    # overfit, and dropout 0.1 cost 0.02–0.05 bits per character on natural Tatar. RMSNorm and
    # SwiGLU (344: the weights of a GELU MLP of 512) scored 0.005–0.01 bits per character
    # better than LayerNorm and GELU on natural Tatar, in about the same time.
    "tiny": ModelConfig(n_layer=3, n_head=4, n_embd=128, ffn_hidden=344, dropout=0.0,
                        norm="rmsnorm", mlp="swiglu"),
    # The reference Tatar-GPT: ≈23.1M parameters.
    "small": ModelConfig(),
    "medium": ModelConfig(n_layer=8, n_head=10, n_embd=640, ffn_hidden=2560),
    "large": ModelConfig(n_layer=12, n_head=12, n_embd=768, ffn_hidden=3072, block_size=512),
    # Architecture variants of about the size of `small`.
    "gpt2": ModelConfig(pos_encoding="learned"),
    # SwiGLU has three matrices; 1376 keeps the MLP at about 2/3 × 3 × 512 × 2048 weights.
    "llama": ModelConfig(norm="rmsnorm", mlp="swiglu", ffn_hidden=1376),
    # GQA (2 KV heads) frees attention weights; a wider MLP gives them back.
    "mistral": ModelConfig(
        norm="rmsnorm", mlp="swiglu", ffn_hidden=1632, n_kv_head=2, sliding_window=128
    ),
}


# The model flags of 03_train.py: one per ModelConfig field, applied on top of --preset.
# (vocab_size comes from the tokenizer; gradient checkpointing is a training flag.)
MODEL_HELP = {
    "block_size": "context length in tokens",
    "n_layer": "transformer blocks",
    "n_head": "attention heads per block",
    "n_embd": "width of the residual stream (a multiple of --n-head)",
    "ffn_hidden": "hidden width of the MLP",
    "dropout": "dropout on the embeddings and on each block's residual branches",
    "attn_dropout": "dropout on the attention probabilities (on a CPU it costs the fused "
                    "attention kernel)",
    "bias": "biases in the linear layers and LayerNorms",
    "rope_theta": "base θ of the rotary position angles",
    "norm": "layernorm | rmsnorm",
    "mlp": "gelu | swiglu",
    "pos_encoding": "rope | learned",
    "n_kv_head": "key/value heads for grouped-query attention (none = one per query head)",
    "sliding_window": "attend to at most this many past tokens (none = the whole context)",
    "attention": "sdpa (fused kernels) | math (plain, for teaching)",
}


def get_preset(name: str, **overrides) -> ModelConfig:
    """Return a fresh copy of the named preset, with field overrides applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)


# ---------------------------------------------------------------------------
# Parameter count, computed from the config alone (tests check it against the model)
# ---------------------------------------------------------------------------


def param_breakdown(cfg: ModelConfig) -> dict[str, int]:
    """Number of parameters of each part of the model described by `cfg`."""
    c, b = cfg.n_embd, int(cfg.bias)
    norm = c + (c * b if cfg.norm == "layernorm" else 0)  # RMSNorm has no bias
    kv = cfg.kv_heads * cfg.head_dim
    attn = (c * (c + 2 * kv) + (c + 2 * kv) * b) + (c * c + c * b)
    n_up = 2 if cfg.mlp == "swiglu" else 1
    mlp = n_up * (c * cfg.ffn_hidden + cfg.ffn_hidden * b) + (cfg.ffn_hidden * c + c * b)
    block = 2 * norm + attn + mlp
    parts = {
        "token embedding (tied with LM head)": cfg.vocab_size * c,
        "position embedding": cfg.block_size * c if cfg.pos_encoding == "learned" else 0,
        "attention per block": attn,
        "MLP per block": mlp,
        "norms per block": 2 * norm,
        f"all {cfg.n_layer} blocks": cfg.n_layer * block,
        "final norm": norm,
    }
    parts["total"] = (
        parts["token embedding (tied with LM head)"]
        + parts["position embedding"]
        + parts[f"all {cfg.n_layer} blocks"]
        + parts["final norm"]
    )
    return parts


def param_table(names: list[str] | None = None) -> str:
    """A Markdown table of the parameter breakdown of the named presets."""
    names = list(PRESETS) if names is None else names
    rows = [
        "| preset | layers | heads (kv) | dim | FFN | norm / MLP / positions | embedding "
        "| per block | total |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for name in names:
        cfg = get_preset(name)
        p = param_breakdown(cfg)
        per_block = p["attention per block"] + p["MLP per block"] + p["norms per block"]
        rows.append(
            f"| {name} | {cfg.n_layer} | {cfg.n_head} ({cfg.kv_heads}) | {cfg.n_embd} "
            f"| {cfg.ffn_hidden} | {cfg.norm} / {cfg.mlp} / {cfg.pos_encoding} "
            f"| {p['token embedding (tied with LM head)'] + p['position embedding']:,} "
            f"| {per_block:,} | {p['total']:,} |"
        )
    return "\n".join(rows)


def print_param_breakdown(name: str) -> None:
    """Print the parameter count of every part of one preset."""
    cfg = get_preset(name)
    print(f"preset {name}: {cfg.n_layer} layers, {cfg.n_head} heads, {cfg.n_embd} dims, "
          f"head dim {cfg.head_dim}, FFN {cfg.ffn_hidden}, vocab {cfg.vocab_size}, "
          f"context {cfg.block_size}")
    for part, n in param_breakdown(cfg).items():
        print(f"  {part:<38} {n:>12,}")


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


@dataclass
class TrainConfig:
    preset: str = "small"
    data_dir: str = "data"
    tokenizer_dir: str = "tokenizer"
    out_dir: str = "models"
    max_iters: int = 10_000
    eval_interval: int = 250
    eval_iters: int = 50
    log_interval: int = 10
    batch_size: int = 32
    grad_accum: int = 4  # effective batch = batch_size * grad_accum sequences
    lr: float = 3e-4
    min_lr: float = 3e-5
    warmup_iters: int = 100
    lr_decay_iters: int = 0  # the cosine reaches min_lr here; 0 = max_iters
    weight_decay: float = 0.1
    optimizer: str = "adamw"  # adamw | muon
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    patience: int = 0  # evaluations without improvement before stopping; 0 = off
    seed: int = 1337
    device: str = "auto"  # auto | cpu | cuda | mps
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    compile: bool = False
    gradient_checkpointing: bool = False
    sentence_starts: bool = True  # training windows begin at a sentence's <bos>
    shuffle_sentences: bool = True  # a training window's sentences are drawn at random
    isolate_sentences: bool = False  # a token attends only to its own sentence of the window
    ema: float = 0.0  # decay of the weights' moving average, evaluated and saved; 0 = off
    resume: bool = False
    overwrite: bool = False
    time_budget: float = 0.0  # minutes; 0 = train for max_iters
    plot: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


TRAIN_HELP = {
    "preset": "model preset (see config.PRESETS)",
    "data_dir": "folder holding processed/{train,val}.bin and meta.json",
    "tokenizer_dir": "folder holding tokenizer.json",
    "out_dir": "where checkpoints, the log and the loss curve go",
    "max_iters": "optimizer steps to train for",
    "eval_interval": "evaluate on train and val every N steps",
    "eval_iters": "at most N batches of each split per evaluation (the val split is read "
                  "once at most: a small one takes fewer)",
    "log_interval": "update the progress bar every N steps",
    "batch_size": "sequences per micro-batch",
    "grad_accum": "micro-batches per optimizer step",
    "lr": "peak learning rate (after warm-up)",
    "min_lr": "final learning rate of the cosine decay",
    "warmup_iters": "steps of linear warm-up",
    "lr_decay_iters": "step at which the cosine decay reaches min_lr (0 = max_iters)",
    "weight_decay": "AdamW weight decay on 2-D weights",
    "optimizer": "adamw | muon (Muon for the blocks' weight matrices, AdamW for the rest)",
    "beta1": "AdamW beta1",
    "beta2": "AdamW beta2",
    "grad_clip": "clip the gradient norm to this value (0 = off)",
    "patience": "stop after N evaluations without val improvement (0 = off)",
    "seed": "seed for Python, NumPy and torch",
    "device": "auto | cpu | cuda | mps",
    "dtype": "auto | float32 | bfloat16 | float16 (autocast precision)",
    "compile": "compile the model with torch.compile",
    "gradient_checkpointing": "recompute activations in backward to save memory",
    "sentence_starts": "start every training and evaluation window at a sentence's <bos>, as "
                       "the model is used (--no-sentence-starts: at any token)",
    "shuffle_sentences": "fill each training window with whole sentences drawn at random, not "
                         "with the sentences that follow the first one in train.bin: the model "
                         "learns sentences, not the corpus's order (with --sentence-starts; "
                         "--no-shuffle-sentences: in corpus order)",
    "isolate_sentences": "in training and evaluation windows, a token attends only to the "
                         "tokens of its own sentence (from its <bos>): each sentence is learnt "
                         "as it is scored and used, on its own (--no-isolate-sentences: "
                         "attention spans the whole window)",
    "ema": "evaluate and save an exponential moving average of the weights with this decay "
           "(0.99: roughly the last 100 steps; tatargpt/weight_average.py); training goes on "
           "from the weights themselves (0 = off)",
    "resume": "continue from OUT_DIR/last.pt (flags not given keep the checkpoint's values)",
    "overwrite": "train afresh into an OUT_DIR that holds a model; the old files are replaced "
                 "only once the new run has passed its first evaluation",
    "time_budget": "minutes: time the first steps, then set --max-iters (and the cosine) so "
                   "that training ends within this budget; a --max-iters given too is the "
                   "most it may plan (0 = off)",
    "plot": "draw OUT_DIR/loss_curve.png from the log and exit",
}

# Training settings that make sense for a preset, on top of TrainConfig's defaults.
TRAIN_PRESETS: dict[str, dict] = {
    # Chosen by scripts/sweep_quick.py on the bundled corpus (docs/QUICK_RUN.md): 1,500
    # compiled iterations took 17 % longer than 1,200 uncompiled and gained 0.02–0.03 bits
    # per character on natural Tatar; Muon (tatargpt/muon.py) gained another 0.02–0.04.
    # --isolate-sentences gained 0.026 on val but not on natural text, cost 8 % of the speed,
    # and a 200-iteration model of it fell into a loop of one word: not taken (QUICK_RUN.md).
    # Evaluating and saving the weights' moving average (--ema 0.99, tatargpt/weight_average.py)
    # gained 0.010 bits per character on the news text, 0.001-0.003 on val and the everyday
    # sentences (about what a rerun moves), at no measurable cost (QUICK_RUN.md).
    "tiny": dict(
        max_iters=1500, eval_interval=250, eval_iters=10, batch_size=16, grad_accum=1,
        lr=3e-3, min_lr=3e-4, warmup_iters=20, patience=3, optimizer="muon", ema=0.99,
    ),
    "large": dict(batch_size=16, grad_accum=8),
}


# The quick course run (run_pipeline.sh --quick, and the offline fallback): the preset (its
# training settings are its TRAIN_PRESETS entry), the tokenizer's vocabulary size, and
# whether run_pipeline.sh compiles the model (torch.compile; not on MPS, not with
# --time-budget). At the same iterations 4,096 tokens beat 3,072 by 0.03 bits per character on
# natural Tatar with 62,266 sentences, and tied with 70,317 (docs/QUICK_RUN.md).
QUICK_RUN = {"preset": "tiny", "vocab_size": 4096, "compile": True}


# --time-budget without --preset (tatargpt/budget.py, docs/TIME_BUDGET.md): the presets it
# chooses from, smallest first; the largest that sees TOKENS_PER_PARAM training tokens per
# parameter in the budget wins (Hoffmann et al. 2022: ≈20 is compute-optimal).
BUDGET_LADDER = ("tiny", "small", "medium", "large")
TOKENS_PER_PARAM = 20
# The vocabulary of a --time-budget run without --preset (run_pipeline.sh): on a corpus of
# fewer characters than this, QUICK_RUN's. On the bundled corpus (then 1.1M characters) the tiny
# model with 8,192 tokens memorised it by iteration 800 (val 1.878 bits per character, against
# 1.846 with 3,072 tokens); the Leipzig corpus is ~100× larger. The threshold between them is
# a round number, not a measured one.
BUDGET_SMALL_CORPUS_CHARS = 5_000_000
# With an explicit --preset, fewer tokens than this per parameter gets a warning.
MIN_TOKENS_PER_PARAM = 1.0
# A --time-budget run reads train.bin at most this many times, however long the budget: on
# the bundled corpus (340k tokens) val stopped improving after about 27 passes (20-minute run,
# docs/TIME_BUDGET.md), and repeated text loses its value within tens of passes (Muennighoff
# et al. 2023). The time left over is not spent.
BUDGET_MAX_PASSES = 30
# At most this share of the budget goes to evaluations (the plan spaces them out).
BUDGET_EVAL_SHARE = 0.10
# A bigger model keeps the hardware busier (on a GPU a tiny one leaves most of it idle): a
# preset is timed unless even this many times the FLOP rate of the last one timed could not
# give it TOKENS_PER_PARAM. On a CPU it saves timing `small` (half a minute a step).
FLOPS_HEADROOM = 64.0


def get_train_config(preset: str = "small", **overrides) -> TrainConfig:
    """TrainConfig defaults, then the preset's training overrides, then `overrides`."""
    get_preset(preset)  # validates the name
    values = {**TRAIN_PRESETS.get(preset, {}), **overrides, "preset": preset}
    return TrainConfig(**values)


# ---------------------------------------------------------------------------
# Fine-tuning (05_finetune.py)
# ---------------------------------------------------------------------------


@dataclass
class FinetuneConfig:
    """05_finetune.py's settings; each field is a flag (tatargpt/cli.py), its help beside it."""

    checkpoint: str = option("models/best_model.pt", "the pretrained model (03_train.py's "
                                                     "best_model.pt)", "PATH")
    tokenizer_dir: str = option("tokenizer", "the tokenizer it was trained with", "DIR")
    sft_dir: str = option("data/sft", "the conversations: every *.jsonl in it, one "
                                      "{\"messages\": [...]} a line", "DIR")
    data_dir: str = option("data", "folder with processed/val.txt, to measure what the model "
                                   "forgets", "DIR")
    out: str = option("models/chat_model.pt", "the fine-tuned model (a checkpoint like "
                                              "best_model.pt)", "PATH")
    max_iters: int = option(400, "optimizer steps", "N")
    batch_size: int = option(16, "conversations per step", "N")
    lr: float = option(3e-4, "peak learning rate of a full fine-tune", "LR")
    min_lr: float = option(3e-5, "learning rate at the end of the cosine decay", "LR")
    warmup_iters: int = option(20, "linear warm-up steps", "N")
    weight_decay: float = option(0.0, "AdamW weight decay", "WD")
    grad_clip: float = option(1.0, "clip the gradient norm (0 = off)", "NORM")
    eval_interval: int = option(50, "steps between evaluations of the val answer loss (and "
                                    "saves)", "N")
    val_percent: int = option(10, "percent of the conversations held out for val, by a stable "
                                  "hash", "P")
    lora_rank: int = option(0, "train rank-R LoRA adapters on the frozen model and merge them "
                               "into the saved weights (0 = fine-tune every weight)", "R")
    lora_alpha: float = option(16.0, "LoRA scale: the update is (alpha / rank) · B A", "ALPHA")
    lora_targets: str = option("attn,mlp", "layers that get adapters: attn, mlp or attn,mlp",
                               "LIST")
    # Adapters start at zero: they take a larger step than full weights.
    lora_lr: float = option(3e-3, "peak learning rate of the adapters, instead of --lr "
                                  "(--min-lr scales with it)", "LR")
    forget_sentences: int = option(300, "val.txt sentences scored before and after (0 = skip)",
                                   "N")
    check_prompts: int = option(24, "val questions answered (greedy) before and after: how "
                                    "many end their turn, in which letters", "N")
    device: str = option("auto", "auto | cpu | cuda | mps", "NAME")
    dtype: str = option("auto", "auto | float32 | bfloat16 | float16", "NAME")
    seed: int = option(1337, "seed of the batch order and the adapters' initialisation", "N")


# Fine-tuning settings that make sense for the preset of the base model.
FINETUNE_PRESETS: dict[str, dict] = {
    # fp32: on a CPU the short, ragged batches of conversations ran 2.6× slower under bf16
    # autocast than in fp32 (AMD EPYC Zen 4, 2 cores; docs/FINETUNING.md).
    "tiny": dict(max_iters=200, lr=1e-3, min_lr=1e-4, lora_lr=1e-2, eval_interval=50,
                 dtype="float32", check_prompts=16, forget_sentences=200),
}


def get_finetune_config(preset: str | None = None, **overrides) -> FinetuneConfig:
    """FinetuneConfig defaults, then the base model's preset's, then `overrides`."""
    return FinetuneConfig(**{**FINETUNE_PRESETS.get(preset or "", {}), **overrides})


# ---------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------

# The prompts every demo starts from: a city, the republic, the national poet, a phrase, a season.
PROMPTS: tuple[str, ...] = ("Казан шәһәре", "Татарстан", "Габдулла Тукай", "Мин татарча",
                            "Яз көне")

# Questions every chat demo starts from (app.py's Chat tab, quick_test.py, the notebook): a
# place, a dish, grammar, a translation. None of them is in data/sft/.
CHAT_PROMPTS: tuple[str, ...] = ("Казан нинди елга ярында утыра?", "Өчпочмакка нинди ит салалар?",
                                 "«Урман» сүзенең күплеге ничек була?",
                                 "Татарчага тәрҗемә ит: «Я люблю читать.»")


@dataclass(frozen=True)
class SamplingConfig:
    max_new_tokens: int = 40
    temperature: float = 0.8  # 0 = greedy
    top_k: int = 50  # 0 = off
    top_p: float = 0.95  # 1 = off
    repetition_penalty: float = 1.1  # 1 = off
    seed: int = 1234


SAMPLING = SamplingConfig()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the parameter breakdown of presets.")
    parser.add_argument("presets", nargs="*", help=f"presets (default: all): {', '.join(PRESETS)}")
    from tatargpt.cli import add_flag

    add_flag(parser, "markdown", bool, False, "print one Markdown table")
    args = parser.parse_args(argv)
    try:
        names = args.presets or list(PRESETS)
        if args.markdown:
            print(param_table(names))
        else:
            for name in names:
                print_param_breakdown(name)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
