"""Draw docs/images/architecture.png: the data flow of the course and the model.

    python scripts/make_diagram.py                  # writes docs/images/architecture.png
    python scripts/make_diagram.py --out /tmp/a.png

Left: the stages and the files each one writes. Right: the decoder-only transformer of
model.py (preset `small`), with its pre-norm block. Everything is drawn with matplotlib's
bundled DejaVu Sans and no timestamp in the PNG, so the same matplotlib version gives the
same bytes on every run.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the repository's modules
DEFAULT_OUT = ROOT / "docs" / "images" / "architecture.png"

from tatargpt import cli  # noqa: E402
from tatargpt.cli import option  # noqa: E402

# Colours: files are grey, scripts blue, model parts green, attention orange.
FILE = "#eceff1"
SCRIPT = "#d6e6f5"
MODEL = "#dcefdc"
ATTN = "#fbe3c8"
NORM = "#f3f3f3"
EDGE = "#455a64"


def box(ax, x: float, y: float, w: float, h: float, text: str, color: str,
        size: float = 9.0, weight: str = "normal", style: str = "round,pad=0.003,rounding_size=0.012",
        lw: float = 1.0, ls: str = "-") -> None:
    """A rounded box centred on (x, y), in axes units (0…1)."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle=style,
                                facecolor=color, edgecolor=EDGE, linewidth=lw, linestyle=ls))
    ax.text(x, y, text, ha="center", va="center", fontsize=size, weight=weight,
            linespacing=1.3)


def arrow(ax, start: tuple[float, float], end: tuple[float, float], label: str = "",
          style: str = "-|>", ls: str = "-", rad: float = 0.0, label_dx: float = 0.015) -> None:
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=12,
                                 color=EDGE, linewidth=1.1, linestyle=ls,
                                 connectionstyle=f"arc3,rad={rad}", shrinkA=0, shrinkB=0,
                                 zorder=3))
    if label:
        ax.text((start[0] + end[0]) / 2 + label_dx, (start[1] + end[1]) / 2, label,
                ha="left", va="center", fontsize=8.2, color="#263238", linespacing=1.25)


def draw_pipeline(ax) -> None:
    ax.set_title("Data flow", fontsize=12, weight="bold", loc="left")
    x = 0.36
    box(ax, x, 0.94, 0.66, 0.075,
        "Leipzig corpus tat_mixed_2015_1M (.tar.gz)\n"
        "or --archive / --text-file / data/sample/*.txt", FILE)
    arrow(ax, (x, 0.9), (x, 0.81),
          "01_prepare_data.py\nNFC · filters · dedupe · hash split")
    box(ax, x, 0.775, 0.66, 0.06, "data/processed/train.txt, val.txt, stats.json", FILE)
    arrow(ax, (x, 0.745), (x, 0.655), "02_train_tokenizer.py\nbyte-level BPE, 8,192 tokens")
    box(ax, 0.2, 0.615, 0.36, 0.075, "tokenizer/\ntokenizer.json", FILE)
    box(ax, 0.6, 0.615, 0.4, 0.075,
        "data/processed/\ntrain.bin, val.bin (uint16)\nmeta.json (tokenizer hash)", FILE,
        size=8.5)
    for bx in (0.2, 0.6):  # both feed training
        ax.plot([bx, x], [0.5775, 0.54], color=EDGE, lw=1.1)
    arrow(ax, (x, 0.54), (x, 0.4375),
          "03_train.py (model.py, config.py)\nAdamW · warm-up + cosine LR\n"
          "autocast bf16/fp16 · gradient checkpointing\nCUDA / MPS / CPU · torchrun (DDP)")
    box(ax, x, 0.4, 0.66, 0.075,
        "models/best_model.pt, last.pt\ntrain_log.jsonl, loss_curve.png", FILE)
    for bx, label in ((0.12, "04_evaluate.py\nvs a 6-gram\n(eval.json)"),
                      (0.37, "quick_test.py\n--checklist"),
                      (0.62, "demo_inference\n.ipynb"),
                      (0.87, "app.py (Gradio)\nlocalhost:7860")):
        arrow(ax, (x, 0.3625), (bx, 0.285))
        box(ax, bx, 0.2475, 0.23, 0.075, label, SCRIPT, size=8.5)
    ax.text(0.5, 0.185, "each reads models/ and tokenizer/ through utils.py "
            "(tokenizer hash checked); export_hf.py → transformers", ha="center", va="center",
            fontsize=8.2, style="italic", color="#263238")
    box(ax, 0.5, 0.08, 0.8, 0.09,
        "run_pipeline.sh runs 01 → 02 → 03 → 04 → quick_test.py --checklist\n"
        "(--quick: the bundled corpus and the quick settings)", SCRIPT, size=8.5, ls="--")


def draw_model(ax) -> None:
    ax.set_title("Model (preset small, ≈23.1M parameters)", fontsize=12, weight="bold",
                 loc="left")
    x, w = 0.42, 0.5
    box(ax, x, 0.95, w, 0.05, "token ids (B, T), T ≤ 256", FILE)
    arrow(ax, (x, 0.925), (x, 0.895))
    box(ax, x, 0.87, w, 0.05, "token embedding wte  (8192 × 512)", MODEL)
    arrow(ax, (x, 0.845), (x, 0.8))

    # The block: a dashed frame around its two residual branches.
    box(ax, x, 0.545, 0.74, 0.5, "", "#fafafa", ls="--")
    ax.text(x - 0.355, 0.775, "Block × 6 (pre-norm)", fontsize=10, weight="bold",
            ha="left", va="center")
    box(ax, x, 0.72, w, 0.045, "LayerNorm (RMSNorm: llama, mistral)", NORM, size=8.5)
    box(ax, x, 0.625, w, 0.1,
        "causal self-attention, 8 heads × 64\n"
        "q, k, v = x·W_qkv;  RoPE rotates q, k\n"
        "softmax(q·kᵀ/√d + causal mask)·v  (SDPA)\n"
        "KV cache while generating", ATTN, size=8.2)
    box(ax, x, 0.54, 0.06, 0.035, "+", "white", size=10, weight="bold")
    box(ax, x, 0.475, w, 0.045, "LayerNorm (RMSNorm: llama, mistral)", NORM, size=8.5)
    box(ax, x, 0.395, w, 0.06, "MLP  512 → 2048 → 512, GELU\n(SwiGLU: llama, mistral)", MODEL,
        size=8.5)
    box(ax, x, 0.325, 0.06, 0.035, "+", "white", size=10, weight="bold")
    arrow(ax, (x, 0.7975), (x, 0.7425))
    arrow(ax, (x, 0.6975), (x, 0.675))
    arrow(ax, (x, 0.575), (x, 0.5575))
    arrow(ax, (x, 0.5225), (x, 0.4975))
    arrow(ax, (x, 0.4525), (x, 0.425))
    arrow(ax, (x, 0.365), (x, 0.3425))
    # Residual paths: x + attn(norm(x)), x + mlp(norm(x)).
    for top, plus in ((0.77, 0.54), (0.51, 0.325)):
        ax.plot([x, x - 0.31, x - 0.31], [top, top, plus], color=EDGE, lw=1.1)
        arrow(ax, (x - 0.31, plus), (x - 0.03, plus))
    ax.text(x - 0.3, 0.655, "residual", rotation=90, fontsize=8, ha="left", va="center",
            color="#263238")
    ax.text(x - 0.3, 0.42, "residual", rotation=90, fontsize=8, ha="left", va="center",
            color="#263238")

    arrow(ax, (x, 0.3075), (x, 0.235))
    box(ax, x, 0.21, w, 0.045, "final norm", NORM, size=8.5)
    arrow(ax, (x, 0.1875), (x, 0.155))
    box(ax, x, 0.13, w, 0.05, "LM head (weight tied to wte)", MODEL)
    arrow(ax, (x, 0.105), (x, 0.075))
    box(ax, x, 0.05, w, 0.05, "logits (B, T, 8192) → next token", FILE)
    # Weight tying: the LM head is the embedding matrix.
    ax.plot([x + w / 2, x + 0.4, x + 0.4, x + w / 2], [0.87, 0.87, 0.13, 0.13],
            color="#2e7d32", lw=1.2, ls="--")
    ax.text(x + 0.41, 0.5, "same matrix\n(tied)", fontsize=8, color="#2e7d32",
            ha="left", va="center", rotation=90)
    ax.text(x, 0.0, r"RoPE: $\theta_i = \mathrm{base}^{-2i/d}$, angle $m\,\theta_i$"
            " at position m", fontsize=8.2, ha="center", va="center", color="#263238")


def draw(out: Path) -> None:
    plt.rcParams.update({"font.family": "DejaVu Sans", "svg.hashsalt": "tatar-gpt"})
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 7.6), dpi=100,
                                      gridspec_kw={"width_ratios": [1.05, 1.0]})
    for ax in (left, right):
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.01, 1.0)
        ax.axis("off")
    draw_pipeline(left)
    draw_model(right)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    from tatargpt import fileio  # (imports torch: only when a file is written)

    with fileio.atomic_path(out) as tmp:
        # No "Software"/date metadata: the bytes depend only on the drawing and matplotlib.
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)


@dataclass
class Options:
    out: Path = option(DEFAULT_OUT, "where the PNG goes", shown="docs/images/architecture.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Draw docs/images/architecture.png.")
    cli.add_options(parser, Options)
    args = parser.parse_args(argv)
    draw(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
