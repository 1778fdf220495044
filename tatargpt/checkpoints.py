"""Checkpoints: reading them safely (`weights_only`), exported and Hub folders, the training
log, and the checks that a checkpoint and a tokenizer belong together.

03_train.py writes checkpoints (tatargpt/training_run.py holds what goes in them);
utils.load_model rebuilds a model from any of the forms read here.
"""

from __future__ import annotations

import json
import pickle
import re
import sys
import zipfile
from pathlib import Path

import torch

import config
from tatargpt import hf_format
from tatargpt.errors import UserError
from tatargpt.fileio import read_json
from tatargpt.scoring import nats_to_ppl
from tatargpt.tokenization import Tokenizer

DEFAULT_CHECKPOINT = "models/best_model.pt"
DEFAULT_TOKENIZER = "tokenizer"
CHECKPOINT_FORMAT = "tatar-gpt/1"







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
    ft = ckpt.get("finetune")
    if ft:  # a chat model (05_finetune.py): its loss is on answers, not on running text
        for key in ("best val loss", "val perplexity", "val bits per char"):
            card.pop(key)
        card["fine-tuned"] = (f"{ft['method']}, {ft['iter']:,} steps on the conversations of "
                              f"{ft['config']['sft_dir']}")
        card["val answer loss"] = (f"{ft['val_answer_loss']:.3f} nats per answer token (base "
                                   f"model: {ft['before']['answer_loss']:.3f})")
    return card

