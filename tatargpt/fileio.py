"""Files that are never half-written: every write goes to `name.tmp`, is flushed to disk and
renamed over the final name, so a crash, a full disk or Ctrl-C leaves the previous file.
Also the readers of our own JSON files and corpus text files, with errors that name the fix.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import torch

from tatargpt.errors import UserError


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

