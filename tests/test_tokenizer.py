"""Tests of 02_train_tokenizer.py: exact round trips, special ids, token files, meta.json,
mismatch detection, argument checks and atomic writes.

One small tokenizer (vocab 512) is trained once on a corpus generated here, so these tests
depend on no other stage's output and take a few seconds.
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import random
import shutil
import subprocess
import sys
import unicodedata
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import config  # noqa: E402
import utils  # noqa: E402
from tatargpt import tokenization  # noqa: E402

SCRIPT = ROOT / "02_train_tokenizer.py"
VOCAB = 512


def load_script():
    spec = importlib.util.spec_from_file_location("train_tokenizer", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


train_tokenizer = load_script()

# ---------------------------------------------------------------------------
# A small, varied Tatar corpus
# ---------------------------------------------------------------------------

SUBJECTS = ["Әни", "Әти", "Бабам", "Әбием", "Укытучы", "Балалар", "Мин", "Без", "Алар",
            "Дустым", "Җитәкче", "Өлкәннәр", "Үсмерләр", "Һөнәрче", "Галимнәр", "Шагыйрь"]
TIMES = ["бүген", "иртән", "кичен", "җәен", "кышын", "һәр көнне", "2024 елда", "быел",
         "еш", "кайчак", "ял көнне", "XX гасырда"]
PLACES = ["Казанда", "авылда", "мәктәптә", "бакчада", "Идел буенда", "урманда", "шәһәрдә",
          "Чаллыда", "Әлмәттә", "өйдә", "китапханәдә", "университетта"]
ADJECTIVES = ["яңа", "матур", "зур", "кечкенә", "кызыклы", "тәмле", "җылы", "иске", "яхшы",
              "күңелле", "озын", "якты"]
OBJECTS = ["китап", "хат", "җыр", "бәрәңге", "алма", "чәй", "өй", "газета", "шигырь", "рәсем",
           "мәкалә", "бәйрәм"]
VERBS = ["укый", "яза", "җырлый", "утырта", "ашый", "эчә", "төзи", "сатып ала", "ясый",
         "күрә", "өйрәнә", "сөйли"]
EXTRAS = ["как говорится", "Wi-Fi", "IT-парк", "ТАССР", "КФУ", "3,5 %", "№ 7", "🙂", "(2023)"]


def make_sentence(rng: random.Random) -> str:
    s, t, p = rng.choice(SUBJECTS), rng.choice(TIMES), rng.choice(PLACES)
    a, o, v = rng.choice(ADJECTIVES), rng.choice(OBJECTS), rng.choice(VERBS)
    n, x = rng.randint(2, 1999), rng.choice(EXTRAS)
    template = rng.randrange(6)
    if template == 0:
        return f"{s} {t} {p} {a} {o} {v}."
    if template == 1:
        return f"{s} {p} {o} {v}?"
    if template == 2:
        return f"«{a.capitalize()} {o}», — диде {s.lower()}."
    if template == 3:
        return f"{t.capitalize()} {p} {n} {o} бар!"
    if template == 4:
        return f"{s}: {a} {o}, {rng.choice(ADJECTIVES)} {rng.choice(OBJECTS)} — {x}."
    return f"{p.capitalize()} {s.lower()} {v}, ә {rng.choice(SUBJECTS).lower()} {x} {v}."


def write_corpus(data_dir: Path, n_train: int, n_val: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    processed = data_dir / "processed"
    processed.mkdir(parents=True, exist_ok=True)
    for name, n in (("train.txt", n_train), ("val.txt", n_val)):
        lines = [make_sentence(rng) for _ in range(n)]
        (processed / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def copy_corpus(src_data_dir: Path, dst_data_dir: Path) -> Path:
    (dst_data_dir / "processed").mkdir(parents=True)
    for name in ("train.txt", "val.txt"):
        shutil.copy(src_data_dir / "processed" / name, dst_data_dir / "processed" / name)
    return dst_data_dir


def sentences(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


@dataclass
class Trained:
    data_dir: Path
    tok_dir: Path
    stdout: str

    @property
    def processed(self) -> Path:
        return self.data_dir / "processed"

    def meta(self) -> dict:
        return json.loads((self.processed / "meta.json").read_text(encoding="utf-8"))

    def tok_config(self) -> dict:
        return json.loads((self.tok_dir / "tokenizer_config.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    root = tmp_path_factory.mktemp("stage2")
    data_dir, tok_dir = root / "data", root / "tokenizer"
    write_corpus(data_dir, n_train=400, n_val=120)
    out = io.StringIO()
    with redirect_stdout(out):
        rc = train_tokenizer.main(["--data-dir", str(data_dir), "--tokenizer-dir", str(tok_dir),
                                   "--vocab-size", str(VOCAB)])
    assert rc == 0
    return Trained(data_dir, tok_dir, out.getvalue())


def run_main(*args: str | Path) -> int:
    return train_tokenizer.main([str(a) for a in args])


# ---------------------------------------------------------------------------
# The tokenizer
# ---------------------------------------------------------------------------

TRICKY = [
    "Әни белән әти өйдә.",
    "ӘӨҮҖҢҺ әөүҗңһ ЕЛГА",
    "Һава бүген җылы, Ңгы ӨЙ Үрдәк Җир!",
    "Привет, как дела? Ёлка и щётка.",
    "Hello, World! The quick brown fox.",
    "0123456789 3,14 -42 1 000 000 № 5 § 2 ½",
    "«Татарстан» — (җөмһүрият) [1] {x}; «“цитата”» … ‘а’",
    "Мин 🙂 сине 😀 яратам 👍🏽 🇹🇷",
    " башта бер буш урын",
    "ахырда буш урын ",
    "ике  буш   урын",
    "беренче юл\nикенче юл\n",
    "\tтабуляция\tбелән",
    "    ",
    "",
    "文字 عربى ελληνικά",
    "a <eos> b <unk> c <bos><pad>",
    "<|user|> сорау <|end|><|assistant|> җавап",
]


def test_round_trip_is_exact_and_never_unknown(trained):
    tok = utils.load_tokenizer(trained.tok_dir)
    for text in TRICKY:
        assert unicodedata.is_normalized("NFC", text)
        ids = tok.encode(text)
        assert tok.decode(ids) == text, text
        # Byte-level BPE has an id for every byte, and a typed "<eos>" is just text.
        assert not set(ids) & {0, 1, 2, 3}, text
        assert all(0 <= i < tok.vocab_size for i in ids)
    batch = tok.encode_batch(TRICKY)
    assert batch == [tok.encode(t) for t in TRICKY]


def test_input_is_normalized_to_nfc(trained):
    tok = utils.load_tokenizer(trained.tok_dir)
    nfc = "Мин йокладым, ә ул ёлка бизәде."
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfd != nfc
    assert tok.encode(nfd) == tok.encode(nfc)
    assert tok.decode(tok.encode(nfd)) == nfc


def test_special_ids_and_sizes(trained):
    tok = utils.load_tokenizer(trained.tok_dir)
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    assert (config.PAD_ID, config.UNK_ID, config.BOS_ID, config.EOS_ID) == (0, 1, 2, 3)
    assert [tok.id_to_token(i) for i in range(4)] == list(config.SPECIAL_TOKENS)
    assert tok.vocab_size == VOCAB
    cfg = trained.tok_config()
    assert cfg["vocab_size"] == cfg["requested_vocab_size"] == VOCAB
    assert cfg["special_tokens"] == {"<pad>": 0, "<unk>": 1, "<bos>": 2, "<eos>": 3,
                                     "<|user|>": 4, "<|assistant|>": 5, "<|end|>": 6}
    assert (tok.user_id, tok.assistant_id, tok.end_id) == (4, 5, 6) and tok.has_chat_tokens
    assert cfg["normalization"] == "NFC" and cfg["model"] == "ByteLevel BPE"
    assert cfg["min_frequency"] == config.TokenizerConfig().min_frequency
    assert cfg["tokenizer_hash"] == tok.hash == tokenization.tokenizer_hash(trained.tok_dir)
    # No post-processor: the stage adds <bos>/<eos> itself.
    raw = json.loads((trained.tok_dir / "tokenizer.json").read_text(encoding="utf-8"))
    assert raw["post_processor"] is None
    assert raw["model"]["unk_token"] is None


def test_trained_on_train_only(trained):
    cfg = trained.tok_config()
    train_lines = sentences(trained.processed / "train.txt")
    assert cfg["training_corpus"]["lines"] == len(train_lines)
    assert cfg["training_corpus"]["chars"] == sum(len(s) + 1 for s in train_lines)


# ---------------------------------------------------------------------------
# Token files and meta.json
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "val"])
def test_bin_equals_encoded_text(trained, split):
    tok = utils.load_tokenizer(trained.tok_dir)
    lines = sentences(trained.processed / f"{split}.txt")
    expected = [i for line in lines for i in [tok.bos_id, *tok.encode(line), tok.eos_id]]
    got = np.fromfile(trained.processed / f"{split}.bin", dtype=np.uint16)
    assert got.tolist() == expected
    assert tok.unk_id not in set(got.tolist())
    assert int((got == tok.bos_id).sum()) == int((got == tok.eos_id).sum()) == len(lines)


def test_meta_counts(trained):
    meta = trained.meta()
    tok = utils.load_tokenizer(trained.tok_dir)
    assert meta["dtype"] == "uint16"
    assert (meta["pad_id"], meta["bos_id"], meta["eos_id"]) == (0, 2, 3)
    assert meta["vocab_size"] == tok.vocab_size == VOCAB
    assert meta["tokenizer_hash"] == tokenization.tokenizer_hash(trained.tok_dir)
    for split in ("train", "val"):
        lines = sentences(trained.processed / f"{split}.txt")
        tokens = np.fromfile(trained.processed / f"{split}.bin", dtype=np.uint16)
        assert meta[f"{split}_lines"] == len(lines)
        assert meta[f"{split}_tokens"] == len(tokens)
        # Characters: each sentence's characters plus one for the boundary <eos> stands for.
        assert meta[f"{split}_chars"] == sum(len(line) + 1 for line in lines)
    assert tokenization.check_token_files(trained.data_dir, trained.tok_dir) == meta


def test_bpe_dropout_segments_each_train_copy_afresh_and_never_val(trained, tmp_path):
    data_dir = tmp_path / "data"
    shutil.copytree(trained.data_dir, data_dir)
    assert run_main("--data-dir", data_dir, "--tokenizer-dir", tmp_path / "tok", "--vocab-size",
                    VOCAB, "--bpe-dropout", "0.2", "--train-copies", "3") == 0
    tok = utils.load_tokenizer(tmp_path / "tok")
    processed = data_dir / "processed"
    meta = json.loads((processed / "meta.json").read_text(encoding="utf-8"))
    lines = sentences(processed / "train.txt")
    fixed = [i for line in lines for i in [tok.bos_id, *tok.encode(line), tok.eos_id]]
    got = np.fromfile(processed / "train.bin", dtype=np.uint16)
    assert meta["train_copies"] == 3 and meta["bpe_dropout"] == 0.2
    assert meta["train_lines"] == 3 * len(lines) and len(got) == meta["train_tokens"]
    assert int((got == tok.bos_id).sum()) == 3 * len(lines)
    assert len(got) > 3 * len(fixed)  # skipped merges: more, shorter tokens
    copies = np.split(got, np.flatnonzero(got == tok.bos_id)[::len(lines)][1:])
    assert len(copies) == 3 and all(tok.decode(c.tolist()) == tok.decode(fixed) for c in copies)
    assert not np.array_equal(copies[0], copies[1])
    val = [i for line in sentences(processed / "val.txt")
           for i in [tok.bos_id, *tok.encode(line), tok.eos_id]]
    assert np.fromfile(processed / "val.bin", dtype=np.uint16).tolist() == val
    raw = json.loads((tmp_path / "tok" / "tokenizer.json").read_text(encoding="utf-8"))
    assert raw["model"]["dropout"] is None  # every later stage: the one segmentation


@pytest.mark.parametrize("flags, message", [
    (["--bpe-dropout", "1"], "--bpe-dropout must be at least 0 and below 1"),
    (["--train-copies", "2"], "more than 1 only with --bpe-dropout"),
])
def test_bpe_dropout_flags_are_checked(trained, tmp_path, capsys, flags, message):
    assert run_main("--data-dir", trained.data_dir, "--tokenizer-dir", tmp_path / "t",
                    *flags) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "t").exists()


def test_quality_figures(trained):
    quality = trained.tok_config()["quality"]
    tok = utils.load_tokenizer(trained.tok_dir)
    lines = sentences(trained.processed / "val.txt")
    # Recompute independently: each word as it occurs in running text.
    word_lengths = []
    for line in lines:
        words = line.split()
        word_lengths += [len(tok.encode(w)) for w in words[:1]]
        word_lengths += [len(tok.encode(" " + w)) for w in words[1:]]
    assert quality["words"] == len(word_lengths)
    assert quality["tokens_per_word"] == pytest.approx(
        sum(word_lengths) / len(word_lengths), abs=1e-3)
    assert quality["one_token_word_share"] == pytest.approx(
        word_lengths.count(1) / len(word_lengths), abs=1e-4)
    chars = sum(len(line) for line in lines)
    tokens = sum(len(tok.encode(line)) for line in lines)
    assert quality["chars_per_token"] == pytest.approx(chars / tokens, abs=1e-3)
    assert 1.0 < quality["chars_per_token"] < 10.0

    merges = quality["longest_merges"]
    assert len(merges) == 20
    assert [len(m) for m in merges] == sorted((len(m) for m in merges), reverse=True)
    assert len(merges[0]) >= 5
    for merge in merges:
        # Readable text, not byte-level symbols such as "Ġ" or "Ó™".
        assert not set(merge) & set("ĠĊÐÑÓ�"), merge
        assert len(tok.encode(merge)) == 1, merge  # each is one token of the vocabulary


def test_summary_names_next_commands(trained):
    assert "tokens per word" in trained.stdout
    assert "python 03_train.py --preset tiny" in trained.stdout
    assert "python 03_train.py " in trained.stdout


def test_mismatched_tokenizer_is_detected(trained, tmp_path):
    other_data = copy_corpus(trained.data_dir, tmp_path / "data")
    other_tok = tmp_path / "tokenizer"
    assert run_main("--data-dir", other_data, "--tokenizer-dir", other_tok,
                    "--vocab-size", 400) == 0
    assert tokenization.tokenizer_hash(other_tok) != tokenization.tokenizer_hash(trained.tok_dir)
    with pytest.raises(utils.UserError, match="Re-encode"):
        tokenization.check_token_files(trained.data_dir, other_tok)
    assert tokenization.check_token_files(trained.data_dir, trained.tok_dir)["vocab_size"] == VOCAB
    assert tokenization.check_token_files(other_data, other_tok)["vocab_size"] == 400


# ---------------------------------------------------------------------------
# Arguments and inputs
# ---------------------------------------------------------------------------


def test_defaults_come_from_config():
    args = train_tokenizer.build_parser().parse_args([])
    defaults = config.TokenizerConfig()
    assert args.vocab_size == defaults.vocab_size == 8192
    assert args.min_frequency == defaults.min_frequency
    assert args.batch_lines == defaults.batch_lines
    assert (args.data_dir, args.tokenizer_dir) == (Path("data"), Path("tokenizer"))


@pytest.mark.parametrize("size, message", [
    (70000, "does not fit uint16 token files"),
    (100, "the minimum is 300"),
])
def test_vocab_size_is_validated(trained, tmp_path, capsys, size, message):
    rc = run_main("--data-dir", trained.data_dir, "--tokenizer-dir", tmp_path / "tok",
                  "--vocab-size", size)
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and "--vocab-size" in err
    assert err.startswith("error: ") and "Traceback" not in err
    assert not (tmp_path / "tok").exists()


def test_small_corpus_records_actual_size(tmp_path, capsys):
    data_dir, tok_dir = tmp_path / "data", tmp_path / "tok"
    write_corpus(data_dir, n_train=30, n_val=10, seed=1)
    assert run_main("--data-dir", data_dir, "--tokenizer-dir", tok_dir,
                    "--vocab-size", 5000) == 0
    out = capsys.readouterr().out
    actual = utils.load_tokenizer(tok_dir).vocab_size
    assert 300 < actual < 5000
    assert "5,000" in out and f"{actual:,}" in out
    cfg = json.loads((tok_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    meta = tokenization.read_meta(data_dir)
    assert cfg["vocab_size"] == meta["vocab_size"] == actual
    assert cfg["requested_vocab_size"] == 5000
    tokens = np.fromfile(data_dir / "processed" / "train.bin", dtype=np.uint16)
    assert int(tokens.max()) < actual


@pytest.mark.parametrize("missing", ["train.txt", "val.txt", "all"])
def test_missing_inputs(trained, tmp_path, capsys, missing):
    data_dir = tmp_path / "data"
    if missing != "all":
        copy_corpus(trained.data_dir, data_dir)
        (data_dir / "processed" / missing).unlink()
    rc = run_main("--data-dir", data_dir, "--tokenizer-dir", tmp_path / "tok")
    err = capsys.readouterr().err
    assert rc == 2
    assert "01_prepare_data.py" in err and ("val.txt" if missing == "val.txt" else "train.txt") in err
    assert "Traceback" not in err


def test_empty_train_text(tmp_path, capsys):
    processed = tmp_path / "data" / "processed"
    processed.mkdir(parents=True)
    (processed / "train.txt").write_text("\n  \n", encoding="utf-8")
    (processed / "val.txt").write_text("Әни өйдә.\n", encoding="utf-8")
    assert run_main("--data-dir", tmp_path / "data", "--tokenizer-dir", tmp_path / "tok") == 2
    err = capsys.readouterr().err
    assert "no sentences" in err and "01_prepare_data.py" in err


def test_cli_help_lists_the_flags():
    run = subprocess.run([sys.executable, str(SCRIPT), "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    for flag in ("--data-dir", "--tokenizer-dir", "--vocab-size", "--min-frequency"):
        assert flag in run.stdout


def test_default_paths_are_relative_to_the_working_folder(trained, tmp_path, monkeypatch):
    copy_corpus(trained.data_dir, tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    assert run_main("--vocab-size", 400) == 0
    assert tokenization.check_token_files("data", "tokenizer")["vocab_size"] == 400


# ---------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("fail_in", ["train", "val"])
def test_failed_encoding_keeps_previous_files(trained, tmp_path, monkeypatch, fail_in):
    data_dir, tok_dir = copy_corpus(trained.data_dir, tmp_path / "data"), tmp_path / "tok"
    args = ("--data-dir", data_dir, "--tokenizer-dir", tok_dir, "--vocab-size", VOCAB,
            "--batch-lines", 50)
    assert run_main(*args) == 0
    processed = data_dir / "processed"
    outputs = [processed / n for n in ("train.bin", "val.bin", "meta.json")] + [
        tok_dir / n for n in ("tokenizer.json", "tokenizer_config.json")]
    before = {p: p.read_bytes() for p in outputs}
    meta_before = json.loads(before[processed / "meta.json"])
    # Another corpus: a new tokenizer would differ, so keeping the old one is visible.
    with open(processed / "train.txt", "a", encoding="utf-8") as f:
        f.write("Яңа җөмләләр өстәлде, шуңа күрә токенизатор да үзгәрер иде.\n" * 1)

    train_batches = math.ceil((meta_before["train_lines"] + 1) / 50)
    fail_at = 2 if fail_in == "train" else train_batches + 1
    calls = 0
    real = train_tokenizer.batch_to_array

    def failing(*a, **kw):
        nonlocal calls
        calls += 1
        if calls == fail_at:
            raise RuntimeError("disk full")
        return real(*a, **kw)

    monkeypatch.setattr(train_tokenizer, "batch_to_array", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        run_main(*args)
    assert calls == fail_at
    assert {p: p.read_bytes() for p in outputs} == before  # the tokenizer too
    assert not list(processed.glob("*.tmp")) and not list(tok_dir.glob("*.tmp"))
    assert tokenization.check_token_files(data_dir, tok_dir)["vocab_size"] == VOCAB


def test_full_disk_is_one_message_and_changes_nothing(trained, tmp_path, capsys):
    data_dir, tok_dir = copy_corpus(trained.data_dir, tmp_path / "data"), tmp_path / "tok"
    args = ("--data-dir", data_dir, "--tokenizer-dir", tok_dir, "--vocab-size", VOCAB)
    assert run_main(*args) == 0
    before = {p: p.read_bytes() for p in [*tok_dir.iterdir(), *(data_dir / "processed").iterdir()]}
    (tok_dir / "tokenizer.json.tmp").symlink_to("/dev/full")
    capsys.readouterr()
    assert run_main(*args) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err
    after = {p: p.read_bytes() for p in [*tok_dir.iterdir(), *(data_dir / "processed").iterdir()]}
    assert after == before
