"""Helpers shared by the stage scripts, quick_test.py, app.py and the notebook.

- errors: `UserError`, `describe_os_error`, `run_cli` (one way to fail, in every script;
  defined in tatargpt/errors.py)
- files: `atomic_path` and the atomic writers built on it, hashes
- tokenizer: `load_tokenizer`, the checks that token files match the tokenizer
- device and precision: `select_device`, `pick_dtype`, `sync`, seeds and random states
- model: `load_model`, `model_card`, `generate_text`, `stream_text`, `perplexity`, `bits_per_char`
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import math
import os
import pickle
import random
import re
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

import config
from tatargpt import hf_format
from tatargpt.errors import UserError, describe_os_error, run_cli  # noqa: F401  (utils.UserError etc.)

DEFAULT_CHECKPOINT = "models/best_model.pt"
DEFAULT_TOKENIZER = "tokenizer"
CHECKPOINT_FORMAT = "tatar-gpt/1"


# ---------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_paths(paths: list[str | Path]) -> Iterator[list[Path]]:
    """Temporary paths (`name.tmp`) for several files that must change together.

    Write each temporary file inside the `with`; when the block ends without an error, every
    one is flushed to disk and renamed over its final name, in the order given (put the file
    that marks a complete set last). On any error, Ctrl-C included, the temporary files are
    removed and the previous files stay as they were.
    """
    finals = [Path(p) for p in paths]
    tmps = [p.with_name(p.name + ".tmp") for p in finals]
    for p in finals:
        p.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield tmps
        for tmp in tmps:
            _fsync(tmp)
        for tmp, final in zip(tmps, finals, strict=True):
            os.replace(tmp, final)
    finally:
        for tmp in tmps:
            with contextlib.suppress(OSError):  # cleaning up must not hide the first error
                tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """One file written through `name.tmp` and a rename: never half a file (see atomic_paths)."""
    with atomic_paths([path]) as (tmp,):
        yield tmp


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def atomic_save(obj, path: str | Path) -> None:
    """torch.save through a temp file: a crash or a full disk never leaves half a checkpoint."""
    with atomic_path(path) as tmp:
        # Through a Python file: a full disk is then an OSError (ENOSPC) like any other write,
        # where torch's own file writer raises a RuntimeError that says nothing of the disk.
        with open(tmp, "wb") as f:
            torch.save(obj, f)


def read_json(path: str | Path, remedy: str) -> dict:
    """A JSON object written by one of our stages; a damaged one is a UserError naming `remedy`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path} is damaged ({type(e).__name__}: {e}). Re-create it with: "
                        f"{remedy}") from e
    if not isinstance(data, dict):
        raise UserError(f"{path} does not hold a JSON object. Re-create it with: {remedy}")
    return data


def read_sentences(path: str | Path, data_dir: str | Path = "data", limit: int | None = None,
                   required: bool = True) -> list[str]:
    """The non-empty lines of a corpus text file (val.txt, train.txt), stripped; at most
    `limit` of them. A missing file is an error naming the command that makes it (or no
    lines when `required` is False); so is a file that is not UTF-8."""
    path = Path(path)
    remedy = f"python 01_prepare_data.py --data-dir {data_dir}"
    if not path.is_file():
        if not required:
            return []
        raise UserError(f"no {path}. Make it with: {remedy}")
    lines: list[str] = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if limit is not None and len(lines) >= limit:
                    break
                if line.strip():
                    lines.append(line.strip())
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text ({e.reason}). Re-create it with: "
                        f"{remedy}") from e
    return lines


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


def clean_text(text: str) -> str:
    """`text` with lone UTF-16 surrogates (which no encoding can write) replaced by U+FFFD.

    They cannot come from a file, but a web client can send them ("\\ud800" in JSON).
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


class Tokenizer:
    """A thin, explicit wrapper around a Hugging Face `tokenizers.Tokenizer`.

    `encode` returns the ids of the text only (no <bos>/<eos>); callers add them.
    `json_path` reads tokenizer.json from another file than `path`/tokenizer.json (02 checks a
    tokenizer under its temporary name before it replaces the old one).
    """

    def __init__(self, path: str | Path, json_path: str | Path | None = None):
        from tokenizers import Tokenizer as HFTokenizer

        self.path = Path(path)
        json_path = Path(json_path) if json_path is not None else self.path / "tokenizer.json"
        remedy = f"python 02_train_tokenizer.py --tokenizer-dir {self.path}"
        try:
            self._tok = HFTokenizer.from_file(str(json_path))
        except Exception as e:  # the Rust parser raises a bare Exception for bad JSON
            if isinstance(e, OSError):
                raise
            raise UserError(f"{self.path}/tokenizer.json is damaged or not a tokenizer "
                            f"({str(e).splitlines()[0][:120]}). Re-create it with: {remedy}") from e
        # A literal "<eos>" typed in a text is text, not a sentence end: only code inserts the
        # special ids. (tokenizer.json cannot store this setting, so it is set on every load.)
        self._tok.encode_special_tokens = True
        self.vocab_size = self._tok.get_vocab_size()
        ids = {name: self._tok.token_to_id(name) for name in config.SPECIAL_TOKENS}
        if None in ids.values():
            missing = ", ".join(name for name, i in ids.items() if i is None)
            raise UserError(f"{self.path}/tokenizer.json has no {missing} token, so it was not "
                            f"made by 02_train_tokenizer.py. Re-create it with: {remedy}")
        self.pad_id, self.unk_id = ids["<pad>"], ids["<unk>"]
        self.bos_id, self.eos_id = ids["<bos>"], ids["<eos>"]
        self.hash = file_sha256(json_path)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(clean_text(text), add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        texts = [clean_text(t) for t in texts]
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=True)

    def id_to_token(self, i: int) -> str:
        return self._tok.id_to_token(i)

    def token_strings(self, ids: list[int]) -> list[str]:
        """The readable text of each token (byte-level pieces decoded one by one)."""
        return [self._tok.decode([i], skip_special_tokens=False) for i in ids]


def load_tokenizer(path: str | Path = "tokenizer") -> Tokenizer:
    """Load tokenizer/tokenizer.json, with a clear error when it is missing or damaged."""
    path = Path(path)
    if not (path / "tokenizer.json").is_file():
        raise UserError(
            f"no tokenizer at {path}/tokenizer.json. "
            f"Make one with: python 02_train_tokenizer.py --tokenizer-dir {path}"
        )
    return Tokenizer(path)


def _rebuild_hint(data_dir: str | Path) -> str:
    flag = f" --data-dir {data_dir}" if Path(data_dir) != Path("data") else ""
    return f"python 02_train_tokenizer.py{flag}"


META_KEYS = ("vocab_size", "tokenizer_hash", "train_tokens", "val_tokens", "val_chars")


def read_meta(data_dir: str | Path = "data") -> dict:
    """meta.json of the token files, with a clear error when they are missing or damaged."""
    processed = Path(data_dir) / "processed"
    meta_path = processed / "meta.json"
    missing = [p.name for p in (meta_path, processed / "train.bin", processed / "val.bin")
               if not p.is_file()]
    if missing:
        raise UserError(
            f"token files missing in {processed}: {', '.join(missing)}. "
            f"Make them with: python 01_prepare_data.py && {_rebuild_hint(data_dir)}"
        )
    meta = read_json(meta_path, _rebuild_hint(data_dir))
    lacking = [k for k in META_KEYS if not isinstance(meta.get(k), (int, str))]
    if lacking:
        raise UserError(f"{meta_path} lacks {', '.join(lacking)}: it was not written by this "
                        f"version of 02_train_tokenizer.py. Re-create it with: "
                        f"{_rebuild_hint(data_dir)}")
    return meta


def check_token_files(data_dir: str | Path = "data",
                      tokenizer_dir: str | Path = "tokenizer") -> dict:
    """Return meta.json after checking that the token files belong to this tokenizer.

    The stage boundary of training: meta.json names the tokenizer (its hash) and the number
    of tokens of each file; each .bin must hold exactly that many uint16 ids, all below the
    vocabulary size. A file cut by a full disk or made by another tokenizer is refused here,
    with the command that rebuilds it, rather than failing in the middle of training.
    """
    meta = read_meta(data_dir)
    tokenizer = load_tokenizer(tokenizer_dir)
    processed = Path(data_dir) / "processed"
    hint = f"{_rebuild_hint(data_dir)} --tokenizer-dir {tokenizer_dir}"
    if meta["tokenizer_hash"] != tokenizer.hash:
        raise UserError(
            f"the token files in {processed} were made by a different tokenizer than "
            f"{tokenizer_dir}/tokenizer.json. Re-encode them with: {hint}"
        )
    if meta["vocab_size"] != tokenizer.vocab_size:
        raise UserError(f"meta.json says vocab_size {meta['vocab_size']} but the tokenizer has "
                        f"{tokenizer.vocab_size}. Re-encode with: {hint}")
    for split in ("train", "val"):
        path = processed / f"{split}.bin"
        size = path.stat().st_size
        expected = meta[f"{split}_tokens"]
        if size % 2 or size // 2 != expected:
            raise UserError(f"{path} holds {size:,} bytes, but meta.json expects {expected:,} "
                            f"uint16 tokens ({2 * expected:,} bytes): the file is cut or from "
                            f"another run. Re-encode with: {hint}")
        if size == 0:
            raise UserError(f"{path} is empty: there is nothing to train on. Check "
                            f"{processed}/{split}.txt, then re-encode with: {hint}")
        top = int(np.memmap(path, dtype=np.uint16, mode="r").max())
        if top >= tokenizer.vocab_size:
            raise UserError(f"{path} holds token id {top}, but the tokenizer has only "
                            f"{tokenizer.vocab_size} ids: it was made by another tokenizer. "
                            f"Re-encode with: {hint}")
    return meta


# ---------------------------------------------------------------------------
# Device, precision, seeds
# ---------------------------------------------------------------------------


def mps_available() -> bool:
    return hasattr(torch.backends, "mps") and torch.backends.mps.is_available()


def add_model_args(parser: argparse.ArgumentParser, what: str = "the model",
                   device: bool = True, seed: int | None = None,
                   seed_help: str = "sampling seed") -> None:
    """The flags of every script that loads a trained model, with one spelling, one default
    and one help text: --checkpoint, --tokenizer, --device (unless `device` is False) and
    --seed (when a default `seed` is given)."""
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT,
                        help=f"{what}: a checkpoint, a folder written by export_hf.py, or its "
                             f"Hugging Face Hub id (default: %(default)s)")
    parser.add_argument("--tokenizer", default=DEFAULT_TOKENIZER,
                        help="the tokenizer folder it was trained with; an exported folder "
                             "brings its own (default: %(default)s)")
    if device:
        parser.add_argument("--device", default="auto",
                            help="auto (CUDA, then MPS, then CPU) | cpu | cuda | mps "
                                 "(default: %(default)s)")
    if seed is not None:
        parser.add_argument("--seed", type=int, default=seed,
                            help=f"{seed_help} (default: %(default)s)")


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


def sync(device: torch.device) -> None:
    """Wait for the device's queued work: an accelerator runs behind the Python that feeds it,
    so a clock read without this measures only how fast the work was queued."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# bf16 autocast on a CPU pays off only when its matmuls are clearly faster than fp32: autocast
# also casts every input and weight, and the elementwise work stays in fp32.
BF16_MIN_SPEEDUP = 1.5


@functools.cache
def cpu_bf16_speedup(n_embd: int = 512, ffn_hidden: int = 2048, rows: int = 1024) -> float:
    """How many times faster the matmuls of one transformer block run under bf16 autocast
    than in fp32 on this CPU, well under a second. Five interleaved rounds; the fastest time
    of each precision counts, as other processes can only make a round slower. Where bf16 is
    only emulated (≈0.1× fp32) one round settles it: the other four would take seconds.

    Processors differ: with AMX (Sapphire Rapids and later) bf16 is several times faster; with
    AVX512-BF16 alone it can be half as fast as fp32. The flag names do not tell, a
    measurement does. Measured once per process and shape.
    """
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, n_embd, generator=g)
    h = torch.randn(rows, ffn_hidden, generator=g)
    weights = [(x, torch.randn(3 * n_embd, n_embd, generator=g)),  # q, k, v
               (x, torch.randn(n_embd, n_embd, generator=g)),  # attention output
               (x, torch.randn(ffn_hidden, n_embd, generator=g)),  # MLP up
               (h, torch.randn(n_embd, ffn_hidden, generator=g))]  # MLP down

    def block(bf16: bool) -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for _ in range(3):
                for a, w in weights:
                    torch.nn.functional.linear(a, w)
        return time.perf_counter() - start

    block(False), block(True)  # warm-up: thread pool, kernel choice
    times = {False: [], True: []}
    for _ in range(5):
        for bf16 in (False, True):
            times[bf16].append(block(bf16))
        if min(times[False]) / min(times[True]) < 1 / 3:
            break  # bf16 emulated: clear at once, and every further round costs seconds
    return min(times[False]) / min(times[True])


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_dtype(device: torch.device, requested: str = "auto",
               model_config: config.ModelConfig | None = None) -> tuple[torch.dtype, str]:
    """The autocast precision for `device` and a sentence saying why.

    CUDA: bf16 where the GPU computes it natively (Ampere and later), else fp16 with a
    GradScaler (a T4 reports bf16 support, but only through slow emulation). MPS: fp16 where
    this torch has autocast on MPS, else fp32. CPU: bf16 only when a short measurement at the
    model's shapes shows its matmuls at least BF16_MIN_SPEEDUP× faster than fp32.
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
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return torch.bfloat16, "this GPU computes bf16 natively"
        return torch.float16, "this GPU has no native bf16: fp16 with loss scaling"
    if device.type == "mps":
        if torch.amp.is_autocast_available("mps"):
            return torch.float16, "autocast on MPS is supported by this torch"
        return torch.float32, f"notice: torch {torch.__version__} has no autocast on MPS: fp32"
    cfg = model_config or config.ModelConfig()
    speedup = cpu_bf16_speedup(cfg.n_embd, cfg.ffn_hidden)
    measured = (f"bf16 matmuls of this model's shapes ran {speedup:.2f}× as fast as fp32 "
                f"on this CPU (measured just now)")
    if speedup >= BF16_MIN_SPEEDUP:
        return torch.bfloat16, measured
    return torch.float32, f"{measured}; bf16 pays off from {BF16_MIN_SPEEDUP}×, so fp32"


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
    """Restore `rng_state()`, whatever device the checkpoint was saved or loaded on.

    The generators want CPU ByteTensors; a checkpoint saved on a machine with more GPUs than
    this one has more CUDA states than there are GPUs: only the first ones are restored.
    """
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"].cpu())
    cuda = [s.cpu() for s in state.get("cuda") or []]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


def _as_tuple(x):
    return tuple(_as_tuple(i) for i in x) if isinstance(x, (list, tuple)) else x


# ---------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------


def load_checkpoint(path: str | Path = DEFAULT_CHECKPOINT) -> dict:
    """Read a checkpoint into CPU memory, whatever device it was saved from.

    Only tensors and plain values are read (`weights_only=True`): a file holding other Python
    objects is refused, as unpickling them could run code hidden in it.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}. Train one with: python 03_train.py "
                        f"(or the quick version: bash run_pipeline.sh --quick)")
    retrain = "Train a new one with: python 03_train.py, or copy the file again."
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e) or "This file can still be loaded" in str(e):
            raise UserError(f"{path} holds Python objects that a Tatar-GPT checkpoint never "
                            f"contains, so it was not loaded: unpickling them could run code "
                            f"hidden in the file. Use a checkpoint written by 03_train.py.") from e
        raise UserError(f"{path} is damaged or not a checkpoint (it cannot be unpickled). "
                        f"{retrain}") from e
    except (RuntimeError, EOFError, ValueError, zipfile.BadZipFile, KeyError) as e:
        raise UserError(f"{path} is damaged or truncated: it cannot be read as a checkpoint "
                        f"({type(e).__name__}). {retrain}") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a Tatar-GPT checkpoint (format "
                        f"{ckpt.get('format') if isinstance(ckpt, dict) else type(ckpt)!r}); "
                        f"train one with: python 03_train.py")
    return ckpt


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


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


def is_hub_id(text: str) -> bool:
    """True for `user/name` that is not a local path (and not a checkpoint file's name)."""
    return (HUB_ID.fullmatch(text) is not None
            and Path(text).suffix not in (".pt", ".pth", ".bin", ".safetensors")
            and not Path(text.split("/")[0]).exists())


def load_exported(folder: Path) -> tuple[dict, dict]:
    """(checkpoint-like dict, our state_dict) of a folder written by export_hf.py.

    Needs safetensors only, not transformers: the weights are renamed back to ours.
    """
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise UserError(f"{folder} is a folder but holds no config.json: give a checkpoint "
                        f"file (models/best_model.pt) or a folder written by export_hf.py")
    hf_config = read_json(config_path, "python export_hf.py")
    meta = hf_config.get(hf_format.METADATA_KEY)
    if not isinstance(meta, dict) or "model_config" not in meta:
        raise UserError(f"{folder} is a transformers model, but not one exported by "
                        f"export_hf.py (its config.json has no {hf_format.METADATA_KEY!r} "
                        f"section), so this course cannot rebuild it")
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise UserError(f"{folder} has no model.safetensors: export it again with "
                        f"python export_hf.py --out {folder}")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        hf_state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{weights} is damaged ({e}); export or download it again") from e
    cfg = config.ModelConfig.from_dict(meta["model_config"])
    state = hf_format.from_hf(hf_state, hf_format.family_of(cfg), cfg)
    ckpt = {"format": CHECKPOINT_FORMAT, **meta, "exported_from": meta.get("checkpoint"),
            "tokenizer_dir": str(folder)}
    return ckpt, state


def download_from_hub(repo_id: str) -> Path:
    """The local copy of a Hub model folder (downloaded once; needs internet the first time)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id))
    except Exception as e:  # no network, no such repository, a proxy: all end the same way
        reason = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise UserError(
            f"cannot get {repo_id} from the Hugging Face Hub ({reason}). Without internet, "
            f"download it elsewhere (huggingface-cli download {repo_id} --local-dir "
            f"hf_model), copy the folder here, and pass its path instead") from e


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


def read_train_log(path: str | Path) -> list[dict]:
    """The rows of a train_log.jsonl; lines that are not log rows (a last line cut by a crash
    or a full disk) are skipped with a notice on stderr."""
    path = Path(path)
    if not path.is_file():
        return []
    rows, bad = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if isinstance(row, dict) and row.get("type") in ("train", "eval") \
                and isinstance(row.get("iter"), int):
            rows.append(row)
        else:
            bad += 1
    if bad:
        print(f"notice: skipped {bad} damaged line(s) of {path}", file=sys.stderr)
    return rows


def checkpoint_fingerprint(ckpt: dict) -> dict:
    """What identifies a trained state without hashing its weights: files derived from a
    checkpoint (04_evaluate.py's eval.json) record it, and are stale when it differs."""
    return {key: ckpt.get(key) for key in ("iter", "best_val_loss", "tokens_seen",
                                             "tokenizer_hash", "train_time_s")}


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


@torch.inference_mode()
def sentence_nlls(model, tokenizer: Tokenizer, sentences: list[str],
                  batch_size: int = 32) -> list[float]:
    """−log p(<bos> sentence <eos>) in nats of each sentence, as score_text computes it, but
    sentences that fit the context go through the model in padded batches (much faster)."""
    device = next(model.parameters()).device
    block = model.config.block_size
    encoded = [[tokenizer.bos_id] + ids + [tokenizer.eos_id]
               for ids in tokenizer.encode_batch(list(sentences))]
    out = [0.0] * len(encoded)
    short = sorted((i for i, ids in enumerate(encoded) if len(ids) <= block + 1),
                   key=lambda i: len(encoded[i]))  # similar lengths: little padding
    for i in (i for i, ids in enumerate(encoded) if len(ids) > block + 1):
        out[i] = token_nll(model, encoded[i])
    for start in range(0, len(short), batch_size):
        rows = short[start:start + batch_size]
        width = max(len(encoded[i]) for i in rows)
        ids = torch.full((len(rows), width), tokenizer.pad_id, dtype=torch.long)
        for r, i in enumerate(rows):
            ids[r, : len(encoded[i])] = torch.tensor(encoded[i])
        ids = ids.to(device)
        # Right padding: causal attention keeps the pads from changing the real positions.
        logits, _ = model(ids[:, :-1], all_logits=True)  # (B, T, V)
        logp = torch.log_softmax(logits.float(), dim=-1)
        nll = -logp.gather(2, ids[:, 1:].unsqueeze(2)).squeeze(2)  # (B, T)
        lengths = torch.tensor([len(encoded[i]) - 1 for i in rows], device=device)
        mask = torch.arange(width - 1, device=device).unsqueeze(0) < lengths.unsqueeze(1)
        for r, value in zip(rows, (nll * mask).sum(dim=1).tolist(), strict=True):
            out[r] = value
    return out


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


def nats_to_ppl(nats: float, tokens: int = 1) -> float:
    """Perplexity from a total negative log-likelihood in nats over `tokens` tokens (a mean
    loss per token with the default tokens=1). Capped at e^50: beyond that it says nothing."""
    return math.exp(min(nats / max(1, tokens), 50.0))


def nats_to_bpc(nats: float, chars: int) -> float:
    """Bits per character from a total negative log-likelihood in nats over `chars`
    characters: the one formula of the course, comparable across tokenizers."""
    return nats / max(1, chars) / math.log(2)


def perplexity(model, tokenizer: Tokenizer, text: str | Path | list[str]) -> float:
    """exp(mean nll per token) of a sentence, a list of lines, or a text file (one per line)."""
    s = score_text(model, tokenizer, _lines(text))
    return nats_to_ppl(s["nll"], s["tokens"])


def bits_per_char(model, tokenizer: Tokenizer, text: str | Path | list[str]) -> float:
    """Total nll in bits divided by characters: comparable across tokenizers."""
    s = score_text(model, tokenizer, _lines(text))
    return nats_to_bpc(s["nll"], s["chars"])


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
        "val perplexity": f"{nats_to_ppl(best):.2f}",
        "val bits per char": f"{metrics['val_bpc']:.3f}" if "val_bpc" in metrics else "?",
        "trained on": f"{ckpt.get('device', '?')}, {ckpt.get('dtype', '?')} precision, "
                      f"{ckpt.get('world_size', 1)} process(es), "
                      f"{ckpt.get('train_time_s', 0):.0f} s",
        "initialisation": str(ckpt.get("init", "?")),
    }
    return card
