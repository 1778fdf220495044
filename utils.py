"""The course's public API: load a trained model and its tokenizer, generate text, score it.

    from utils import load_model, load_tokenizer, generate_text, perplexity, get_device

This is what the notebook, app.py, quick_test.py and the stages use to run a model, and what
a student reads after model.py and the loop of 03_train.py. The machinery it stands on lives
in the `tatargpt` package, one module per job (docs/ARCHITECTURE.md lists them):

- tatargpt/fileio.py        atomic writes, our JSON and text readers
- tatargpt/tokenization.py  the tokenizer and the token files
- tatargpt/devices.py       CUDA / MPS / CPU, precision, seeds
- tatargpt/checkpoints.py   reading checkpoints and exported folders, the model card
- tatargpt/scoring.py       log-likelihoods, perplexity, bits per character
- tatargpt/cli.py           the flags of the scripts that load a model
- tatargpt/errors.py        `UserError`: one way to fail, with the fix in the message
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

import config
from tatargpt import chat as chat_template
from tatargpt.checkpoints import (  # noqa: F401  (re-exported: the notebook uses them)
    DEFAULT_CHECKPOINT,
    DEFAULT_TOKENIZER,
    check_tokenizer_matches,
    download_from_hub,
    is_hub_id,
    load_checkpoint,
    load_exported,
    model_card,
)
from tatargpt.devices import select_device
from tatargpt.errors import UserError, describe_os_error, run_cli  # noqa: F401  (re-exported)
from tatargpt.scoring import (  # noqa: F401  (re-exported: the notebook uses them)
    nats_to_bpc,
    nats_to_ppl,
    score_text,
    sentence_nlls,
)
from tatargpt.tokenization import Tokenizer, clean_text, load_tokenizer  # noqa: F401

# ---------------------------------------------------------------------------
# Loading a trained model
# ---------------------------------------------------------------------------


def get_device(name: str = "auto") -> torch.device:
    """auto: CUDA, then Apple MPS, then the CPU (tatargpt/devices.py says why it chose)."""
    return select_device(name)[0]


def load_model(path: str | Path = DEFAULT_CHECKPOINT, device: str | torch.device | None = None):
    """Rebuild a trained model → (model in eval mode, checkpoint dict).

    `path` is a checkpoint of 03_train.py, a folder written by export_hf.py, or the id of
    such a folder on the Hugging Face Hub (user/name; downloaded once, needs internet).
    The weights are read into CPU memory and only the model moves to `device`; the returned
    dict keeps the metadata but not the weights or the optimizer state (AdamW's two moments
    are twice the model's size and are needed only to resume training).
    """
    from model import GPT

    device = torch.device(device) if device is not None else torch.device("cpu")
    path = Path(path)
    if not path.exists() and is_hub_id(str(path)):
        path = download_from_hub(str(path))
    if path.is_dir():
        ckpt, state = load_exported(path)
    else:
        ckpt = load_checkpoint(path)
        ckpt.pop("optimizer", None)
        ckpt.pop("trained_weights", None)  # --ema: "model" is the average, the one to use
        state = ckpt.pop("model", None)
    try:
        cfg = config.ModelConfig.from_dict(ckpt["model_config"])
        model = GPT(cfg)
        model.load_state_dict(state)
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise UserError(f"{path} does not match this version of model.py "
                        f"({type(e).__name__}: {str(e)[:200]}). Retrain with: "
                        f"python 03_train.py") from e
    model.to(device).eval()
    return model, ckpt


def load_model_and_tokenizer(checkpoint: str | Path, tokenizer_dir: str | Path | None,
                             device: str | torch.device | None = None):
    """(model, checkpoint dict, tokenizer), checked to belong together.

    An exported folder brings its own tokenizer, which is the one used with it.
    """
    model, ckpt = load_model(checkpoint, device)
    if ckpt.get("tokenizer_dir"):
        tokenizer_dir = ckpt["tokenizer_dir"]
    tokenizer = load_tokenizer(tokenizer_dir or DEFAULT_TOKENIZER)
    check_tokenizer_matches(ckpt, tokenizer, checkpoint)
    return model, ckpt, tokenizer


# ---------------------------------------------------------------------------
# Text in, text out
# ---------------------------------------------------------------------------


def prompt_ids(tokenizer: Tokenizer, prompt: str, block_size: int) -> tuple[list[int], bool]:
    """<bos> + the prompt's ids, cropped to the last block_size ids; also whether it was cropped."""
    ids = [tokenizer.bos_id] + tokenizer.encode(prompt)
    return ids[-block_size:], len(ids) > block_size


def stream_text(model, tokenizer: Tokenizer, prompt: str, max_new_tokens: int = 50,
                temperature: float = 0.8, top_k: int | None = None, top_p: float | None = None,
                repetition_penalty: float = 1.0, seed: int | None = None) -> Iterator[str]:
    """Yield the continuation of `prompt` piece by piece as tokens are generated."""
    device = next(model.parameters()).device
    ids, _ = prompt_ids(tokenizer, prompt, model.config.block_size)
    idx = torch.tensor([ids], dtype=torch.long, device=device)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(int(seed))
    tokens = (int(next_id[0]) for next_id in model.stream(
        idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
        repetition_penalty=repetition_penalty, eos_id=tokenizer.eos_id, generator=generator))
    yield from _text_pieces(tokenizer, tokens, {tokenizer.eos_id})


def _text_pieces(tokenizer: Tokenizer, tokens: Iterator[int], stops: set[int]) -> Iterator[str]:
    """The text of `tokens` (up to a stop token) as it grows. Byte-level tokens can split a
    letter's UTF-8 bytes, so the whole text is decoded each time and only complete new text
    is yielded."""
    new_ids: list[int] = []
    shown = ""
    for token in tokens:
        if token in stops:
            break
        new_ids.append(token)
        text = tokenizer.decode(new_ids)
        if not text.endswith("\ufffd") and len(text) > len(shown):
            yield text[len(shown):]
            shown = text
    text = tokenizer.decode(new_ids)
    if len(text) > len(shown):
        yield text[len(shown):]


def generate_text(model, tokenizer: Tokenizer, prompt: str, max_new_tokens: int = 50,
                  temperature: float = 0.8, top_k: int | None = None, top_p: float | None = None,
                  repetition_penalty: float = 1.0, seed: int | None = None) -> str:
    """The prompt followed by its generated continuation."""
    pieces = stream_text(model, tokenizer, prompt, max_new_tokens, temperature, top_k, top_p,
                         repetition_penalty, seed)
    return prompt + "".join(pieces)


def _lines(text: str | Path | list[str]) -> str | list[str]:
    if isinstance(text, Path):
        return [line for line in text.read_text(encoding="utf-8").splitlines() if line.strip()]
    return text


def perplexity(model, tokenizer: Tokenizer, text: str | Path | list[str]) -> float:
    """exp(mean nll per token) of a sentence, a list of lines, or a text file (one per line)."""
    s = score_text(model, tokenizer, _lines(text))
    return nats_to_ppl(s["nll"], s["tokens"])


def bits_per_char(model, tokenizer: Tokenizer, text: str | Path | list[str]) -> float:
    """Total nll in bits divided by characters: comparable across tokenizers."""
    s = score_text(model, tokenizer, _lines(text))
    return nats_to_bpc(s["nll"], s["chars"])



# ---------------------------------------------------------------------------
# Chat: a fine-tuned model (05_finetune.py) answers in the template of tatargpt/chat.py
# ---------------------------------------------------------------------------


def as_messages(conversation: str | list[dict]) -> list[dict]:
    """A conversation to answer: a list of {"role": "user" | "assistant", "content": str}
    that takes turns, the user first and last; a string is one user message."""
    if isinstance(conversation, str):
        conversation = [{"role": "user", "content": conversation}]
    roles = [m.get("role") if isinstance(m, dict) else None for m in conversation]
    if not roles or roles != [("user", "assistant")[i % 2] for i in range(len(roles))] \
            or roles[-1] != "user":
        raise ValueError("a conversation takes turns, user first, and ends with the user's "
                         f"message; got roles {roles}")
    return [{"role": m["role"], "content": clean_text(str(m["content"]))} for m in conversation]


def stream_chat(model, tokenizer: Tokenizer, conversation: str | list[dict],
                max_new_tokens: int = 80, temperature: float = 0.8, top_k: int | None = None,
                top_p: float | None = None, repetition_penalty: float = 1.0,
                seed: int | None = None) -> Iterator[str]:
    """Yield the assistant's answer to `conversation` piece by piece; it ends where the model
    writes <|end|> (or at max_new_tokens)."""
    tokens = chat_template.stream_reply(model, tokenizer, as_messages(conversation), max_new_tokens,
                               temperature, top_k, top_p, repetition_penalty, seed)
    yield from _text_pieces(tokenizer, tokens, chat_template.stop_ids(tokenizer))


def chat(model, tokenizer: Tokenizer, conversation: str | list[dict], max_new_tokens: int = 80,
         temperature: float = 0.8, top_k: int | None = None, top_p: float | None = None,
         repetition_penalty: float = 1.0, seed: int | None = None,
         stream: bool = False) -> str | Iterator[str]:
    """The assistant's answer to `conversation`: a question, or the messages so far as
    [{"role": "user", "content": …}, {"role": "assistant", …}, …, {"role": "user", …}].
    With stream=True, an iterator of its pieces as they are generated (app.py's Chat tab).

        model, ckpt, tok = load_model_and_tokenizer("models/chat_model.pt", "tokenizer")
        chat(model, tok, "Казан кайсы елга буенда?")
    """
    pieces = stream_chat(model, tokenizer, conversation, max_new_tokens, temperature, top_k,
                         top_p, repetition_penalty, seed)
    return pieces if stream else "".join(pieces).strip()
