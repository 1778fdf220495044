"""Helpers shared by the training script, quick_test.py, app.py and the notebook.

- files: atomic writes, hashes
- tokenizer: `load_tokenizer`, the check that token files match the tokenizer
- device and precision: `get_device`, `pick_dtype`, `set_seed`
- model: `load_model`, `model_card`, `generate_text`, `stream_text`, `perplexity`, `bits_per_char`
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

import config

DEFAULT_CHECKPOINT = "models/best_model.pt"
DEFAULT_TOKENIZER = "tokenizer"
CHECKPOINT_FORMAT = "tatar-gpt/1"


class UserError(Exception):
    """A problem the user can fix; scripts print the message (no traceback) and exit 2."""


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` through a temp file and a rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------
# Tokenizer and token files
# ---------------------------------------------------------------------------


def tokenizer_hash(tokenizer_dir: str | Path = "tokenizer") -> str:
    """Identity of a trained tokenizer: the SHA-256 of its tokenizer.json."""
    return file_sha256(Path(tokenizer_dir) / "tokenizer.json")


class Tokenizer:
    """A thin, explicit wrapper around a Hugging Face `tokenizers.Tokenizer`.

    `encode` returns the ids of the text only (no <bos>/<eos>); callers add them.
    """

    def __init__(self, path: str | Path):
        from tokenizers import Tokenizer as HFTokenizer

        self.path = Path(path)
        self._tok = HFTokenizer.from_file(str(self.path / "tokenizer.json"))
        # A literal "<eos>" typed in a text is text, not a sentence end: only code inserts the
        # special ids. (tokenizer.json cannot store this setting, so it is set on every load.)
        self._tok.encode_special_tokens = True
        self.vocab_size = self._tok.get_vocab_size()
        self.pad_id = self._tok.token_to_id("<pad>")
        self.unk_id = self._tok.token_to_id("<unk>")
        self.bos_id = self._tok.token_to_id("<bos>")
        self.eos_id = self._tok.token_to_id("<eos>")
        self.hash = tokenizer_hash(self.path)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=True)

    def id_to_token(self, i: int) -> str:
        return self._tok.id_to_token(i)

    def token_strings(self, ids: list[int]) -> list[str]:
        """The readable text of each token (byte-level pieces decoded one by one)."""
        return [self._tok.decode([i], skip_special_tokens=False) for i in ids]


def load_tokenizer(path: str | Path = "tokenizer") -> Tokenizer:
    """Load tokenizer/tokenizer.json, with a clear error when it is missing."""
    path = Path(path)
    if not (path / "tokenizer.json").is_file():
        raise UserError(
            f"no tokenizer at {path}/tokenizer.json. "
            f"Make one with: python 02_train_tokenizer.py --tokenizer-dir {path}"
        )
    return Tokenizer(path)


def read_meta(data_dir: str | Path = "data") -> dict:
    """meta.json of the token files, with a clear error when they are missing."""
    processed = Path(data_dir) / "processed"
    meta_path = processed / "meta.json"
    missing = [p.name for p in (meta_path, processed / "train.bin", processed / "val.bin")
               if not p.is_file()]
    if missing:
        raise UserError(
            f"token files missing in {processed}: {', '.join(missing)}. "
            f"Make them with: python 01_prepare_data.py && python 02_train_tokenizer.py"
        )
    return json.loads(meta_path.read_text(encoding="utf-8"))


def check_token_files(data_dir: str | Path = "data",
                      tokenizer_dir: str | Path = "tokenizer") -> dict:
    """Return meta.json after checking that the token files were made by this tokenizer."""
    meta = read_meta(data_dir)
    tok_hash = load_tokenizer(tokenizer_dir).hash
    if meta.get("tokenizer_hash") != tok_hash:
        raise UserError(
            f"the token files in {Path(data_dir) / 'processed'} were made by a different "
            f"tokenizer than {tokenizer_dir}/tokenizer.json. "
            f"Re-encode them with: python 02_train_tokenizer.py "
            f"--data-dir {data_dir} --tokenizer-dir {tokenizer_dir}"
        )
    return meta




# ---------------------------------------------------------------------------
# Device, precision, seeds
# ---------------------------------------------------------------------------


def mps_available() -> bool:
    return hasattr(torch.backends, "mps") and torch.backends.mps.is_available()


def select_device(name: str = "auto") -> tuple[torch.device, str]:
    """The device to use and a sentence saying why. auto: CUDA, then Apple MPS, then CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda"), f"CUDA GPU found: {torch.cuda.get_device_name(0)}"
        if mps_available():
            return torch.device("mps"), "no CUDA GPU; Apple Silicon GPU (MPS) found"
        return torch.device("cpu"), "no CUDA GPU and no Apple MPS found"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda was asked for, but torch sees no CUDA GPU "
                            f"(torch {torch.__version__}). Use --device auto or --device cpu.")
        return torch.device("cuda"), "asked for with --device cuda"
    if name == "mps":
        if not mps_available():
            raise UserError("--device mps was asked for, but Apple MPS is not available "
                            "(it needs Apple Silicon and macOS 12.3+). Use --device auto.")
        return torch.device("mps"), "asked for with --device mps"
    if name == "cpu":
        return torch.device("cpu"), "asked for with --device cpu"
    raise UserError(f"unknown device {name!r}: choose auto, cpu, cuda or mps")


def get_device(name: str = "auto") -> torch.device:
    return select_device(name)[0]


def cpu_has_native_bf16() -> bool:
    """True when the processor computes bf16 natively (AVX512-BF16 or AMX): autocast pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no cheap way to know, so stay with fp32
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_dtype(device: torch.device, requested: str = "auto") -> tuple[torch.dtype, str]:
    """The autocast precision for `device` and a sentence saying why.

    CUDA: bf16 where supported, else fp16 (with a GradScaler). MPS: fp16 where this torch
    supports autocast on MPS, else fp32. CPU: bf16 when the processor has native bf16, else fp32.
    """
    if requested != "auto":
        if requested not in DTYPES:
            raise UserError(f"unknown dtype {requested!r}: choose auto, {', '.join(DTYPES)}")
        dtype = DTYPES[requested]
        if device.type == "cpu" and dtype == torch.float16:
            raise UserError("float16 autocast is not supported for training on CPU; "
                            "use --dtype bfloat16 or float32")
        return dtype, f"asked for with --dtype {requested}"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, "this GPU supports bf16"
        return torch.float16, "this GPU has no bf16: fp16 with loss scaling"
    if device.type == "mps":
        if torch.amp.is_autocast_available("mps"):
            return torch.float16, "autocast on MPS is supported by this torch"
        return torch.float32, f"notice: torch {torch.__version__} has no autocast on MPS: fp32"
    if cpu_has_native_bf16():
        return torch.bfloat16, "this CPU has native bf16 (AVX512-BF16/AMX)"
    return torch.float32, "this CPU has no native bf16: fp32"


def dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in DTYPES.items()}[dtype]


def set_seed(n: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(n)
    np.random.seed(n)
    torch.manual_seed(n)


def rng_state() -> dict:
    """Every random state, in a form `torch.load(weights_only=True)` accepts."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(x):
    return tuple(_as_tuple(i) for i in x) if isinstance(x, (list, tuple)) else x


# ---------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------


def load_checkpoint(path: str | Path = DEFAULT_CHECKPOINT,
                    device: str | torch.device | None = None) -> dict:
    """Read a checkpoint onto `device` (default CPU), whatever device it was saved from."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}. Train one with: python 03_train.py "
                        f"(or the quick version: bash run_pipeline.sh --quick)")
    try:
        ckpt = torch.load(path, map_location=device or "cpu", weights_only=True)
    except Exception as e:  # a truncated file or a pickle of something else
        raise UserError(f"{path} is not a readable checkpoint ({type(e).__name__}: {e}). "
                        f"Train a new one with: python 03_train.py") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a Tatar-GPT checkpoint (format "
                        f"{ckpt.get('format') if isinstance(ckpt, dict) else type(ckpt)!r}); "
                        f"train one with: python 03_train.py")
    return ckpt


def load_model(path: str | Path = DEFAULT_CHECKPOINT, device: str | torch.device | None = None):
    """Rebuild the model stored in a checkpoint → (model in eval mode, checkpoint dict)."""
    from model import GPT

    device = torch.device(device) if device is not None else torch.device("cpu")
    ckpt = load_checkpoint(path, device)
    try:
        cfg = config.ModelConfig.from_dict(ckpt["model_config"])
        model = GPT(cfg)
        model.load_state_dict(ckpt["model"])
    except (KeyError, ValueError, RuntimeError) as e:
        raise UserError(f"{path} does not match this version of model.py ({e}). "
                        f"Retrain with: python 03_train.py") from e
    model.to(device).eval()
    return model, ckpt


def check_tokenizer_matches(ckpt: dict, tokenizer: Tokenizer, ckpt_path: str | Path = "") -> None:
    """Refuse a tokenizer that is not the one the checkpoint was trained with."""
    if ckpt.get("tokenizer_hash") != tokenizer.hash:
        raise UserError(
            f"the checkpoint {ckpt_path} was trained with a different tokenizer than "
            f"{tokenizer.path}/tokenizer.json. Point --tokenizer at the tokenizer it was "
            f"trained with, or retrain with: python 03_train.py"
        )


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
    """Yield the continuation of `prompt` piece by piece as tokens are generated.

    Byte-level tokens can split a letter's UTF-8 bytes, so the whole continuation is decoded
    each time and only complete new text is yielded.
    """
    device = next(model.parameters()).device
    ids, _ = prompt_ids(tokenizer, prompt, model.config.block_size)
    idx = torch.tensor([ids], dtype=torch.long, device=device)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(int(seed))
    new_ids: list[int] = []
    shown = ""
    for next_id in model.stream(idx, max_new_tokens, temperature=temperature, top_k=top_k,
                                top_p=top_p, repetition_penalty=repetition_penalty,
                                eos_id=tokenizer.eos_id, generator=generator):
        token = int(next_id[0])
        if token == tokenizer.eos_id:
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


@torch.inference_mode()
def token_nll(model, ids: list[int]) -> float:
    """Sum of −log p(token) in nats over ids[1:], each predicted from the tokens before it.

    Text longer than the context is scored in windows of block_size tokens; after the first
    window each one moves by block_size/2 and scores only its new tokens, so every token is
    scored exactly once, with at least block_size/2 tokens of context.
    """
    device = next(model.parameters()).device
    block = model.config.block_size
    stride = max(1, block // 2)
    total, scored = 0.0, 1  # ids[0] (<bos>) is never predicted
    while scored < len(ids):
        end = min(len(ids), block + 1 if scored == 1 else scored + stride)
        start = max(0, end - 1 - block)
        window = torch.tensor([ids[start:end]], dtype=torch.long, device=device)
        logits, _ = model(window[:, :-1], all_logits=True)  # (1, T, V)
        logp = torch.log_softmax(logits[0].float(), dim=-1)  # (T, V)
        nll = -logp.gather(1, window[0, 1:].unsqueeze(1)).squeeze(1)  # (T,)
        total += float(nll[-(end - scored):].sum())
        scored = end
    return total


def score_text(model, tokenizer: Tokenizer, text: str | list[str]) -> dict:
    """Negative log-likelihood of one sentence, or of each line of a list, as <bos> s <eos>."""
    lines = [text] if isinstance(text, str) else list(text)
    nll, tokens, chars = 0.0, 0, 0
    for line in lines:
        ids = [tokenizer.bos_id] + tokenizer.encode(line) + [tokenizer.eos_id]
        nll += token_nll(model, ids)
        tokens += len(ids) - 1
        chars += len(line) + 1  # +1: the sentence boundary, as in meta.json
    return {"nll": nll, "tokens": tokens, "chars": chars}


def _lines(text: str | Path | list[str]) -> str | list[str]:
    if isinstance(text, Path):
        return [line for line in text.read_text(encoding="utf-8").splitlines() if line.strip()]
    return text


def perplexity(model, tokenizer: Tokenizer, text: str | Path | list[str]) -> float:
    """exp(mean nll per token) of a sentence, a list of lines, or a text file (one per line)."""
    s = score_text(model, tokenizer, _lines(text))
    return math.exp(s["nll"] / max(1, s["tokens"]))


def bits_per_char(model, tokenizer: Tokenizer, text: str | Path | list[str]) -> float:
    """Total nll in bits divided by characters: comparable across tokenizers."""
    s = score_text(model, tokenizer, _lines(text))
    return s["nll"] / max(1, s["chars"]) / math.log(2)


# ---------------------------------------------------------------------------
# The model card shown by quick_test.py, app.py and the notebook
# ---------------------------------------------------------------------------


def model_card(ckpt: dict, model) -> dict[str, str]:
    """Readable facts about a trained checkpoint, in display order."""
    cfg = model.config
    metrics = ckpt.get("metrics") or {}
    best = ckpt.get("best_val_loss", float("nan"))
    train_cfg = ckpt.get("train_config", {})
    card = {
        "preset": str(train_cfg.get("preset", "?")),
        "parameters": f"{model.num_params():,} ({model.num_params() / 1e6:.2f}M)",
        "architecture": f"{cfg.n_layer} layers × {cfg.n_head} heads × {cfg.n_embd} dims, "
                        f"{cfg.norm}, {cfg.mlp}, {cfg.pos_encoding} positions",
        "context": f"{cfg.block_size} tokens",
        "vocabulary": f"{cfg.vocab_size:,} BPE tokens",
        "training iterations": f"{ckpt.get('iter', '?'):,}" if isinstance(ckpt.get("iter"), int)
        else "?",
        "tokens seen": f"{ckpt.get('tokens_seen', 0):,}",
        "best val loss": f"{best:.4f}",
        "val perplexity": f"{math.exp(min(best, 50)):.2f}",
        "val bits per char": f"{metrics['val_bpc']:.3f}" if "val_bpc" in metrics else "?",
        "trained on": f"{ckpt.get('device', '?')}, {ckpt.get('dtype', '?')} precision, "
                      f"{ckpt.get('world_size', 1)} process(es), "
                      f"{ckpt.get('train_time_s', 0):.0f} s",
        "initialisation": str(ckpt.get("init", "?")),
    }
    return card
