"""Tatar-GPT web demo: talk to the trained model in a browser (Gradio).

    python app.py                        # models/best_model.pt + tokenizer/, http://localhost:7860
    python app.py --checkpoint models/last.pt --port 7861
    python app.py --share                # also a public *.gradio.live link (needs internet)

Inputs: a checkpoint of 03_train.py and the tokenizer of 02_train_tokenizer.py. The page has
five tabs, each also an API endpoint (`gradio_client.Client(url).predict(..., api_name="/…")`):

- Text generation (`/generate`): the output streams token by token; Stop cancels it.
  Returns (text, note): the prompt followed by its continuation, and a Markdown note that
  reports adjusted settings, a cropped prompt and the speed.
- Tokenizer (`/tokenize`): how BPE splits a text. Returns (HTML view, Markdown counts,
  a JSON list of {"id", "text"}). The texts join to the input exactly (after the tokenizer's
  NFC normalisation): a token that holds only part of a letter's UTF-8 bytes has text "", and
  the token that completes the letter carries it.
- Perplexity (`/perplexity`): scores one or two texts (each line a sentence, as in training).
  Returns (Markdown table, JSON {"a": {...}, "b": {...} | null}).
- Chat (`/chat`, arguments: message, then the sampling settings): the fine-tuned model of
  05_finetune.py (models/chat_model.pt, or --checkpoint itself when it is one) answers,
  streaming; in the page the conversation so far goes into the template with each message.
  Without a fine-tuned model the tab says how to make one.
- Model card: the figures of the checkpoint (utils.model_card) and its loss curve.

Bad input never shows a stack trace:
- an empty prompt or text → a clear message (gr.Error; a client gets it as an AppError);
- generation settings outside the slider ranges (possible through the API) are clamped into
  them, and the note says so: max_new_tokens 1–500, temperature 0–2 (0 = greedy),
  top_p 0.05–1 (1 = off), repetition_penalty 1–2 (1 = off); top_k ≤ 0 or ≥ the vocabulary
  means off; the seed is taken modulo 2**32; a non-finite value takes the default;
  a value that is not a number → a clear message;
- a prompt longer than the context is cropped to its last block_size tokens (with a note);
- no checkpoint, no tokenizer, or a tokenizer the checkpoint was not trained with → the server
  still starts and the page explains how to train a model.

One model is loaded at start and shared: generation is stateless (each call has its own KV
cache and its own seeded torch.Generator), and the queue runs at most CONCURRENCY calls at once.
Gradio applies that limit per event, so a generation and a perplexity request can still
arrive together: every use of the model takes `Loaded.lock`, one token step at a time, so two
generations interleave instead of running on the model at once (concurrent work on one model
aborts the process on Apple MPS). Lone UTF-16 surrogates in a text ("\\ud800" through the API)
become U+FFFD.
"""

from __future__ import annotations

import argparse
import codecs
import functools
import html
import math
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import torch

import config
import utils
from tatargpt import cli, devices, scoring, tokenization
from tatargpt.cli import option

CONCURRENCY = 2  # generations at once; more only slow each other down on a CPU

# Generation controls: (minimum, maximum, default). The sliders use these ranges and values
# sent through the API are clamped into them.
# The defaults are config.SAMPLING's, except a longer text: a page has room for it.
MAX_NEW_TOKENS = (1, 500, 100)
TEMPERATURE = (0.0, 2.0, config.SAMPLING.temperature)
TOP_P = (0.05, 1.0, config.SAMPLING.top_p)
REPETITION_PENALTY = (1.0, 2.0, config.SAMPLING.repetition_penalty)
TOP_K_SLIDER = (0, 200, config.SAMPLING.top_k)  # 0 = off; via the API any k ≥ vocabulary too
DEFAULT_SEED = config.SAMPLING.seed

CHAT_CHECKPOINT_NAME = "chat_model.pt"  # 05_finetune.py's, beside the base model
CHAT_MAX_NEW_TOKENS = (1, 300, 80)  # an answer is one to three sentences
CHAT_TEMPERATURE = 0.7  # the Chat tab's default: a little surer than free text

MAX_TEXT_CHARS = 20_000  # tokenizer and perplexity inputs
MAX_TOKENS_SHOWN = 2_000  # tokens drawn in the tokenizer view (the JSON has all of them)

EXAMPLE_PROMPTS = list(config.PROMPTS)
EMPTY_PROMPT = "Башлангыч текст языгыз — enter a prompt first."
EMPTY_TEXT = "Җөмлә языгыз — enter a sentence to score."
TOKEN_COLOURS = ("#fde2e4", "#dbe7f7", "#fff1c1", "#d8f3dc", "#e8dff5", "#fbe3cf")

SETUP_COMMANDS = """```bash
bash run_pipeline.sh --quick
```
or step by step:
```bash
python 01_prepare_data.py --source sample
python 02_train_tokenizer.py
python 03_train.py --preset tiny
```"""


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


@dataclass
class Loaded:
    """Everything the page serves from, loaded once at start."""

    model: torch.nn.Module
    tokenizer: utils.Tokenizer
    ckpt: dict
    checkpoint: Path
    device: torch.device
    lock: threading.Lock = field(default_factory=threading.Lock)  # one model call at a time
    chat_model: torch.nn.Module | None = None  # the fine-tuned model of the Chat tab
    chat_why: str = ""  # why there is none, and how to make one


def load(checkpoint: str | Path, tokenizer_dir: str | Path, device: torch.device,
         chat_checkpoint: str | Path | None = None) -> Loaded:
    """Model, tokenizer and checkpoint; UserError when one is missing or they do not match.
    The Chat tab talks to the checkpoint itself when it is a fine-tuned one, else to
    `chat_checkpoint` (by default chat_model.pt beside the checkpoint) when that exists."""
    model, ckpt, tokenizer = utils.load_model_and_tokenizer(checkpoint, tokenizer_dir, device)
    loaded = Loaded(model, tokenizer, ckpt, Path(checkpoint), device)
    chat_checkpoint = chat_checkpoint or Path(checkpoint).parent / CHAT_CHECKPOINT_NAME
    if ckpt.get("finetune"):
        loaded.chat_model = model
    elif not Path(chat_checkpoint).is_file():
        loaded.chat_why = (f"No fine-tuned model at {chat_checkpoint} yet. Make one from this "
                           f"model (about a minute for the quick model on a CPU):\n\n"
                           f"```bash\npython 05_finetune.py\n```\n\nthen start the demo again.")
    else:
        try:
            loaded.chat_model, _, _ = utils.load_model_and_tokenizer(
                chat_checkpoint, ckpt.get("tokenizer_dir") or tokenizer_dir, device)
        except utils.UserError as e:
            loaded.chat_why = f"The Chat tab is off: {e}"
    return loaded


# ---------------------------------------------------------------------------
# Text generation
# ---------------------------------------------------------------------------


def _user_error(message: str) -> gr.Error:
    """A message for the page (a client gets it as AppError); no traceback in the server log."""
    return gr.Error(message, print_exception=False)


def _number(name: str, value, default: float, notes: list[str]) -> float:
    """A control's value as a finite float: an error for text, the default for NaN/inf/empty."""
    if value is None or value == "":
        return default
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise _user_error(f"{name} must be a number, got {value!r}.") from None
    if not math.isfinite(x):
        notes.append(f"{name} {value} → {default:g} (the default)")
        return default
    return x


def _show(x: float) -> str:
    return str(int(x)) if x == int(x) and abs(x) < 1e15 else f"{x:g}"


def _clamp(name: str, x: float, lo: float, hi: float, notes: list[str]) -> float:
    y = min(max(x, lo), hi)
    if y != x:
        notes.append(f"{name} {_show(x)} → {_show(y)} (allowed {_show(lo)}–{_show(hi)})")
    return y


def generation_settings(max_new_tokens, temperature, top_k, top_p, repetition_penalty, seed,
                        vocab_size: int) -> tuple[dict, list[str]]:
    """Keyword arguments for utils.stream_text from raw control values, and what was adjusted."""
    notes: list[str] = []
    n = _number("max_new_tokens", max_new_tokens, MAX_NEW_TOKENS[2], notes)
    n = int(round(_clamp("max_new_tokens", n, *MAX_NEW_TOKENS[:2], notes)))
    t = _number("temperature", temperature, TEMPERATURE[2], notes)
    t = _clamp("temperature", t, *TEMPERATURE[:2], notes)
    k = int(_number("top_k", top_k, 0, notes))
    if k < 0:
        notes.append(f"top_k {k} → 0 (off)")
    p = _number("top_p", top_p, 1.0, notes)
    p = _clamp("top_p", p, *TOP_P[:2], notes)
    r = _number("repetition_penalty", repetition_penalty, 1.0, notes)
    r = _clamp("repetition_penalty", r, *REPETITION_PENALTY[:2], notes)
    s = int(_number("seed", seed, DEFAULT_SEED, notes))
    if not 0 <= s < 2**32:
        notes.append(f"seed {s} → {s % 2**32}")
        s %= 2**32
    settings = {
        "max_new_tokens": n,
        "temperature": t,
        "top_k": k if 0 < k < vocab_size else None,
        "top_p": p if p < 1.0 else None,
        "repetition_penalty": r,
        "seed": s,
    }
    return settings, notes


def generate(loaded: Loaded, prompt, max_new_tokens, temperature, top_k, top_p,
             repetition_penalty, seed):
    """Stream (prompt + continuation so far, note) as the model writes."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise _user_error(EMPTY_PROMPT)
    prompt = tokenization.clean_text(prompt)
    tokenizer, block = loaded.tokenizer, loaded.model.config.block_size
    settings, adjusted = generation_settings(max_new_tokens, temperature, top_k, top_p,
                                             repetition_penalty, seed, tokenizer.vocab_size)
    notes = []
    if adjusted:
        notes.append("⚠️ Adjusted to the allowed ranges: " + "; ".join(adjusted) + ".")
        gr.Warning("Some settings were out of range and were adjusted (see the note).")
    _, cropped = utils.prompt_ids(tokenizer, prompt, block)
    if cropped:
        n_prompt = 1 + len(tokenizer.encode(prompt))  # <bos> + the prompt, as prompt_ids has it
        notes.append(f"✂️ The prompt is {n_prompt} tokens long (with <bos>); the model sees "
                     f"only its last {block} tokens, its context. Озын текстның соңгы "
                     f"{block} токены гына кулланыла.")
    note = "\n\n".join(notes)
    text = prompt
    yield text, note
    start = time.perf_counter()
    pieces = utils.stream_text(loaded.model, tokenizer, prompt, **settings)
    while True:
        with loaded.lock:  # the next token; another request may use the model in between
            piece = next(pieces, None)
        if piece is None:
            break
        text += piece
        yield text, note
    seconds = time.perf_counter() - start
    done = (f"Generated {len(text) - len(prompt)} characters in {seconds:.1f} s on "
            f"{loaded.device.type} (seed {settings['seed']}).")
    yield text, "\n\n".join([*notes, done])


# ---------------------------------------------------------------------------
# Chat
# ---------------------------------------------------------------------------


def _history(history) -> list[dict]:
    """Gradio's chat history as our messages: text content, user and assistant turns."""
    messages = []
    for m in history or []:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):  # [{"type": "text", "text": …}, …]
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        if m.get("role") in ("user", "assistant") and isinstance(content, str) and content.strip():
            if messages and messages[-1]["role"] == m["role"]:  # keep the turns alternating
                messages[-1]["content"] += "\n" + content
            else:
                messages.append({"role": m["role"], "content": content})
    while messages and messages[0]["role"] != "user":
        messages.pop(0)
    return messages


def chat(loaded: Loaded, message, history, max_new_tokens, temperature, top_k, top_p,
         repetition_penalty, seed):
    """Stream the fine-tuned model's answer to `message`, the conversation so far included
    (in the chat template, tatargpt/chat.py)."""
    if loaded.chat_model is None:
        raise _user_error("No fine-tuned model: run python 05_finetune.py, then restart the demo.")
    if isinstance(message, dict):  # a multimodal textbox sends {"text": …}
        message = message.get("text")
    if not isinstance(message, str) or not message.strip():
        raise _user_error("Сорау языгыз — write a message first.")
    settings, _ = generation_settings(max_new_tokens, temperature, top_k, top_p,
                                      repetition_penalty, seed, loaded.tokenizer.vocab_size)
    settings["max_new_tokens"] = min(settings["max_new_tokens"], CHAT_MAX_NEW_TOKENS[1])
    messages = [*_history(history), {"role": "user", "content": message}]
    if len(messages) > 1 and messages[-2]["role"] == "user":  # an answer went missing
        messages = messages[-1:]
    pieces = utils.chat(loaded.chat_model, loaded.tokenizer, messages, stream=True, **settings)
    answer = ""
    while True:
        with loaded.lock:
            piece = next(pieces, None)
        if piece is None:
            break
        answer += piece
        yield answer.lstrip()
    yield answer.strip() or "…"  # (a model may end its turn at once)


# ---------------------------------------------------------------------------
# Tokenizer view
# ---------------------------------------------------------------------------


@functools.cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the printable character that stands for each byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    table = {chr(b): b for b in printable}
    # The other bytes (space, control bytes…) are moved past the first 256 code points, in order.
    others = [b for b in range(256) if b not in table.values()]
    table.update({chr(256 + n): b for n, b in enumerate(others)})
    return table


def token_bytes(tokenizer: utils.Tokenizer, token_id: int) -> bytes:
    """The raw bytes a byte-level BPE token stands for."""
    piece = tokenizer.id_to_token(token_id)
    table = _byte_decoder()
    if piece and all(c in table for c in piece):
        return bytes(table[c] for c in piece)
    return tokenizer.decode([token_id]).encode("utf-8")


def split_tokens(tokenizer: utils.Tokenizer, text: str) -> list[dict]:
    """[{"id", "text"}] for each token of `text`; the texts join to the (NFC) input exactly.

    Decoding the bytes incrementally gives every letter to the token that completes it, so a
    token holding only the first bytes of a letter (an emoji, a rare letter) has text "".
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    tokens = [{"id": i, "text": decoder.decode(token_bytes(tokenizer, i))}
              for i in tokenizer.encode(text)]
    rest = decoder.decode(b"", final=True)
    if rest and tokens:
        tokens[-1]["text"] += rest
    return tokens


def _token_html(tokenizer: utils.Tokenizer, tokens: list[dict]) -> str:
    spans = []
    for k, tok in enumerate(tokens[:MAX_TOKENS_SHOWN]):
        shown = tok["text"] or "‹" + token_bytes(tokenizer, tok["id"]).hex(" ") + "›"
        shown = shown.replace(" ", "·").replace("\n", "↵").replace("\t", "→")
        spans.append(
            f'<span style="display:inline-flex;flex-direction:column;align-items:center;'
            f'margin:2px 1px;padding:1px 3px;border-radius:4px;color:#111;'
            f'background:{TOKEN_COLOURS[k % len(TOKEN_COLOURS)]}" title="id {tok["id"]}">'
            f'<span style="font-family:monospace;white-space:pre">{html.escape(shown)}</span>'
            f'<span style="font-size:0.7em;color:#555">{tok["id"]}</span></span>'
            + ("<br>" if "\n" in tok["text"] else ""))
    more = len(tokens) - MAX_TOKENS_SHOWN
    tail = f"<p>… and {more} more tokens (all are in the JSON below).</p>" if more > 0 else ""
    return f'<div style="line-height:1.2">{"".join(spans)}</div>{tail}'


def tokenize(loaded: Loaded, text) -> tuple[str, str, list[dict]]:
    """(coloured HTML view, Markdown counts, [{"id", "text"}]) of how BPE splits `text`."""
    text = tokenization.clean_text(text) if isinstance(text, str) else ""
    if len(text) > MAX_TEXT_CHARS:
        raise _user_error(f"The text has {len(text):,} characters; paste at most "
                          f"{MAX_TEXT_CHARS:,}.")
    tokens = split_tokens(loaded.tokenizer, text)
    joined = "".join(t["text"] for t in tokens)
    stats = (f"**{len(tokens)} tokens** · {len(joined)} characters · "
             f"{len(joined) / len(tokens) if tokens else 0:.2f} characters per token · "
             f"vocabulary {loaded.tokenizer.vocab_size:,}")
    if joined != text:
        stats += ("\n\nThe tokenizer first normalises the text to Unicode NFC, so some "
                  "letters written as two code points became one.")
    return _token_html(loaded.tokenizer, tokens), stats, tokens


# ---------------------------------------------------------------------------
# Perplexity
# ---------------------------------------------------------------------------


def score(loaded: Loaded, text: str) -> dict:
    """Perplexity, bits per char, tokens and characters of a text, each line a sentence."""
    lines = [line for line in text.splitlines() if line.strip()]
    with loaded.lock:
        s = utils.score_text(loaded.model, loaded.tokenizer, lines)
    return {"perplexity": scoring.nats_to_ppl(s["nll"], s["tokens"]),
            "bits_per_char": scoring.nats_to_bpc(s["nll"], s["chars"]),
            "tokens": s["tokens"], "chars": s["chars"], "sentences": len(lines)}


def perplexity(loaded: Loaded, text_a, text_b) -> tuple[str, dict]:
    """(Markdown table, {"a": scores, "b": scores or None}) for one or two texts."""
    texts = [tokenization.clean_text(t) if isinstance(t, str) else "" for t in (text_a, text_b)]
    if not texts[0].strip():
        raise _user_error(EMPTY_TEXT)
    for t in texts:
        if len(t) > MAX_TEXT_CHARS:
            raise _user_error(f"A text has {len(t):,} characters; score at most "
                              f"{MAX_TEXT_CHARS:,} at once.")
    a = score(loaded, texts[0])
    b = score(loaded, texts[1]) if texts[1].strip() else None
    cols = [("A", a)] + ([("B", b)] if b else [])
    rows = [
        "| | " + " | ".join(name for name, _ in cols) + " |",
        "|---|" + "---:|" * len(cols),
        "| perplexity | " + " | ".join(f"{s['perplexity']:.2f}" for _, s in cols) + " |",
        "| bits per character | " + " | ".join(f"{s['bits_per_char']:.3f}" for _, s in cols)
        + " |",
        "| tokens scored | " + " | ".join(str(s["tokens"]) for _, s in cols) + " |",
        "| characters | " + " | ".join(str(s["chars"]) for _, s in cols) + " |",
    ]
    text = "\n".join(rows)
    text += ("\n\nLower is better: the model finds the text more likely. Each line is scored "
             "as a sentence, `<bos> line <eos>`; the sentence end counts as a token and a "
             "character.")
    if b:
        better = "A" if a["perplexity"] < b["perplexity"] else "B"
        text += f"\n\n**{better}** reads more like the training corpus to this model."
    return text, {"a": a, "b": b}


# ---------------------------------------------------------------------------
# Model card
# ---------------------------------------------------------------------------


def model_card_markdown(loaded: Loaded) -> str:
    """utils.model_card (the figures quick_test.py prints) and where the data came from."""
    card = utils.model_card(loaded.ckpt, loaded.model)
    sources = (loaded.ckpt.get("data_stats") or {}).get("sources") or []
    if sources:
        card["corpus"] = ", ".join(str(s.get("name")) for s in sources)
    card["checkpoint"] = f"`{loaded.checkpoint}`"
    card["running on"] = f"{loaded.device} (this server)"
    return "| Model card | |\n|---|---|\n" + "\n".join(
        f"| {key[0].upper() + key[1:]} | {value} |" for key, value in card.items())


def summary_line(loaded: Loaded) -> str:
    card = utils.model_card(loaded.ckpt, loaded.model)
    return (f"Preset **{card['preset']}** · {card['parameters']} parameters · context "
            f"{card['context']} · {card['training iterations']} training iterations · "
            f"validation perplexity {card['val perplexity']} · running on {loaded.device.type}")


# ---------------------------------------------------------------------------
# Pages
# ---------------------------------------------------------------------------


def build_demo(loaded: Loaded) -> gr.Blocks:
    """The demo page for a loaded model."""
    with gr.Blocks(title="Tatar-GPT", analytics_enabled=False) as demo:
        gr.Markdown("# Tatar-GPT\nТатарча текстларда өйрәтелгән кечкенә GPT — a small GPT "
                    "trained from scratch on Tatar.\n\n" + summary_line(loaded))

        with gr.Tab("Текст (Generate)"):
            with gr.Row():
                with gr.Column(scale=3):
                    prompt = gr.Textbox(label="Prompt", lines=3,
                                        placeholder="Башлангыч текст… (start of a text)")
                    with gr.Row():
                        generate_btn = gr.Button("Generate", variant="primary")
                        stop_btn = gr.Button("Stop")
                    output = gr.Textbox(label="Output", lines=10, interactive=False,
                                        buttons=["copy"], elem_id="output")
                    note = gr.Markdown(elem_id="note")
                with gr.Column(scale=2):
                    max_new = gr.Slider(*MAX_NEW_TOKENS[:2], value=MAX_NEW_TOKENS[2], step=1,
                                        label="Max new tokens")
                    temperature = gr.Slider(*TEMPERATURE[:2], value=TEMPERATURE[2], step=0.05,
                                            label="Temperature (0 = greedy)")
                    top_k = gr.Slider(*TOP_K_SLIDER[:2], value=TOP_K_SLIDER[2], step=1,
                                      label="Top-k (0 = off)")
                    top_p = gr.Slider(*TOP_P[:2], value=TOP_P[2], step=0.05,
                                      label="Top-p (1 = off)")
                    repetition = gr.Slider(*REPETITION_PENALTY[:2], value=REPETITION_PENALTY[2],
                                           step=0.05, label="Repetition penalty (1 = off)")
                    seed = gr.Number(value=DEFAULT_SEED, precision=0, label="Seed")
            gr.Examples([[p] for p in EXAMPLE_PROMPTS], inputs=[prompt],
                        label="Мисаллар (examples)")
            # preprocess=False: the function checks the raw values itself, so an absurd value
            # sent through the API is clamped with a note naming the setting, instead of
            # Gradio's generic "Value -5 is less than minimum value 1."
            generation = generate_btn.click(
                functools.partial(generate, loaded),
                inputs=[prompt, max_new, temperature, top_k, top_p, repetition, seed],
                outputs=[output, note], api_name="generate", preprocess=False)
            stop_btn.click(None, cancels=[generation], queue=False)

        with gr.Tab("Сөйләшү (Chat)"):
            chat_tab(loaded)

        with gr.Tab("Токенизатор (Tokenizer)"):
            tok_text = gr.Textbox(label="Text", lines=3, value="Казан — Татарстанның башкаласы.")
            tok_btn = gr.Button("Tokenize")
            tok_stats = gr.Markdown()
            tok_view = gr.HTML()
            with gr.Accordion("Token ids (JSON)", open=False):
                tok_json = gr.JSON()
            gr.on([demo.load, tok_btn.click, tok_text.submit, tok_text.change],
                  functools.partial(tokenize, loaded), inputs=[tok_text],
                  outputs=[tok_view, tok_stats, tok_json], api_name="tokenize",
                  preprocess=False, trigger_mode="always_last", concurrency_limit=None)

        with gr.Tab("Перплексия (Perplexity)"):
            gr.Markdown("How surprised is the model by a text? Compare two phrasings.")
            with gr.Row():
                text_a = gr.Textbox(label="Text A", lines=3)
                text_b = gr.Textbox(label="Text B (optional)", lines=3)
            score_btn = gr.Button("Score", variant="primary")
            result = gr.Markdown()
            with gr.Accordion("Scores (JSON)", open=False):
                result_json = gr.JSON()
            gr.Examples([["Казан — Татарстанның башкаласы.", "башкаласы Татарстанның — Казан."],
                         ["Мин татарча сөйләшәм.", "Мин сөйләшәм татарча."]],
                        inputs=[text_a, text_b], label="Мисаллар (examples)")
            score_btn.click(functools.partial(perplexity, loaded), inputs=[text_a, text_b],
                            outputs=[result, result_json], api_name="perplexity",
                            preprocess=False)

        with gr.Tab("Модель (Model card)"):
            gr.Markdown(model_card_markdown(loaded))
            curve = loaded.checkpoint.parent / "loss_curve.png"
            if curve.is_file():
                gr.Image(str(curve), label="Loss curve", interactive=False)
            else:
                gr.Markdown(f"No loss curve next to the checkpoint ({curve}).")
    return demo


def chat_tab(loaded: Loaded) -> None:
    """The Chat tab: the fine-tuned model (05_finetune.py), or how to make one."""
    if loaded.chat_model is None:
        gr.Markdown("## Сөйләшү — chat with a fine-tuned model\n\n" + loaded.chat_why)
        return
    gr.Markdown("A model fine-tuned on questions and answers (05_finetune.py). It has learnt "
                "the form of an answer in Tatar, not facts: check what it says.")
    with gr.Accordion("Sampling", open=False):
        with gr.Row():
            controls = [
                gr.Slider(*CHAT_MAX_NEW_TOKENS[:2], value=CHAT_MAX_NEW_TOKENS[2], step=1,
                          label="Max new tokens"),
                gr.Slider(*TEMPERATURE[:2], value=CHAT_TEMPERATURE, step=0.05,
                          label="Temperature (0 = greedy)", elem_id="chat-temperature"),
                gr.Slider(*TOP_K_SLIDER[:2], value=TOP_K_SLIDER[2], step=1,
                          label="Top-k (0 = off)"),
                gr.Slider(*TOP_P[:2], value=TOP_P[2], step=0.05, label="Top-p (1 = off)"),
                gr.Slider(*REPETITION_PENALTY[:2], value=REPETITION_PENALTY[2], step=0.05,
                          label="Repetition penalty (1 = off)"),
                gr.Number(value=DEFAULT_SEED, precision=0, label="Seed"),
            ]
    gr.ChatInterface(functools.partial(chat, loaded), additional_inputs=controls,
                     examples=[[e] for e in config.CHAT_PROMPTS], api_name="chat",
                     chatbot=gr.Chatbot(elem_id="chatbot", height=360),
                     textbox=gr.Textbox(placeholder="Сорау языгыз… (write a question)",
                                        elem_id="chat-input"))


def build_setup_demo(reason: str) -> gr.Blocks:
    """The page shown when there is no usable model: what went wrong and how to train one."""
    with gr.Blocks(title="Tatar-GPT: no model", analytics_enabled=False) as demo:
        gr.Markdown(
            "# Tatar-GPT\n## Модель әзер түгел — no usable trained model\n\n"
            f"⚠️ {reason[:1].upper() + reason[1:]}\n\n"
            "Train a small model on the bundled sample corpus (a few minutes on a CPU):\n\n"
            f"{SETUP_COMMANDS}\n\n"
            "Then start the demo again: `python app.py` (add `--checkpoint PATH` and "
            "`--tokenizer DIR` if your files are elsewhere).")
    return demo


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


@dataclass
class Options:
    chat_checkpoint: str | None = option(
        None, f"the fine-tuned model of the Chat tab, when --checkpoint is not one (default: "
              f"{CHAT_CHECKPOINT_NAME} beside --checkpoint)", "PATH")
    host: str = option("127.0.0.1", "address to listen on; 0.0.0.0 for the whole network")
    port: int = option(7860, "the port of the page", "N")
    share: bool = option(False, "also create a public gradio.live link (needs internet)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Tatar-GPT web demo (Gradio).")
    cli.add_model_args(parser, "the model to demo")
    cli.add_options(parser, Options)
    args = parser.parse_args(argv)
    if not 1 <= args.port <= 65535:
        parser.error(f"--port must be between 1 and 65535, got {args.port} "
                     f"(the default is 7860)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        device, why = devices.select_device(args.device)
    except utils.UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        loaded = load(args.checkpoint, args.tokenizer, device, args.chat_checkpoint)
    except (utils.UserError, OSError) as e:
        reason = utils.describe_os_error(e) if isinstance(e, OSError) else str(e)
        print(f"notice: {reason}\nThe page will explain how to train a model.", file=sys.stderr)
        demo = build_setup_demo(reason)
    else:
        print(f"model: {args.checkpoint} on {device} ({why})")
        demo = build_demo(loaded)
    try:
        demo.queue(default_concurrency_limit=CONCURRENCY).launch(
            server_name=args.host, server_port=args.port, share=args.share,
            prevent_thread_lock=True, quiet=True)
    except OSError:  # Gradio's message names its own setting (GRADIO_SERVER_PORT), not our flag
        print(f"error: cannot serve on {args.host}:{args.port}: the port is in use or the address "
              f"is not available.\nStop the other server (another app.py?), or choose a free "
              f"port: python app.py --port {args.port + 1}", file=sys.stderr)
        return 2
    print(f"Tatar-GPT demo: {demo.local_url}  (Ctrl+C to stop)", flush=True)
    if demo.share_url:
        print(f"public link: {demo.share_url}", flush=True)
    demo.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
