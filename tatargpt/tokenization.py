"""The tokenizer and the token files: the boundary between text and the model.

`Tokenizer` wraps the Hugging Face tokenizer that 02_train_tokenizer.py trains; the token
files (data/processed/train.bin, val.bin and meta.json) are checked to belong to it before
training reads them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import config
from tatargpt.errors import UserError
from tatargpt.fileio import file_sha256, read_json


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
        # The chat template's tokens; None in a tokenizer trained before they were reserved.
        chat = [self._tok.token_to_id(name) for name in config.CHAT_TOKENS]
        self.user_id, self.assistant_id, self.end_id = chat if None not in chat else (None,) * 3
        self.hash = file_sha256(json_path)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(clean_text(text), add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        texts = [clean_text(t) for t in texts]
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    @property
    def has_chat_tokens(self) -> bool:
        return self.end_id is not None

    def set_bpe_dropout(self, p: float) -> None:
        """Skip each merge with probability p while encoding (0 = the one fixed segmentation);
        02_train_tokenizer.py --bpe-dropout encodes train.txt this way."""
        self._tok.model.dropout = p or None

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

