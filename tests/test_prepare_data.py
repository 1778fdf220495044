"""Tests of 01_prepare_data.py: download, reading, cleaning, the split, atomic outputs.

No network: downloads come from a stdlib HTTP server on 127.0.0.1 in a fixture thread.
"""

from __future__ import annotations

import hashlib
import http.server
import importlib.util
import io
import json
import random
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the script imports config.py from the repository root


def load_script():
    # The file name starts with a digit, so it cannot be imported by name.
    spec = importlib.util.spec_from_file_location("prepare_data", ROOT / "01_prepare_data.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while it executes
    spec.loader.exec_module(module)
    return module


prep = load_script()

NAME = "tat_test_2020_10K"
WORDS = (
    "мин син ул без сез алар китап мәктәп бала әни әти шәһәр авыл урам йорт өй бакча агач "
    "урман елга күл җир һава көн кич иртә яңа зур матур яхшы җылы салкын бара килә укый яза "
    "сөйли тыңлый эшли уйный белән өчен турында һәм инде тагын бик"
).split()
WORDS_MEMBER_LINE = "Бу юл сүзлек файлыннан, аны беркайчан да укырга ярамый."


def tatar_lines(n: int, seed: int = 0, start: int = 0) -> list[str]:
    """N distinct clean Tatar-like sentences (the number makes each one unique)."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=7)).capitalize() + f" {i}."
            for i in range(start, start + n)]


def leipzig_archive(sentences: list[str], name: str = NAME, sentences_member: str | None = None,
                    raw_lines: list[str] = ()) -> bytes:
    """A .tar.gz laid out like a Leipzig download; the words member must never be read."""
    body = "".join(f"{i}\t{s}\n" for i, s in enumerate(sentences, 1)) + "".join(raw_lines)
    members = [
        (f"{name}/{name}-words.txt", f"1\t{WORDS_MEMBER_LINE}\t7\n"),
        (sentences_member or f"{name}/{name}-sentences.txt", body),
        (f"{name}/{name}-sources.txt", "1\thttp://example.org/tt\t2020-01-01\n"),
    ]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for member, text in members:
            data = text.encode("utf-8")
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def read_split(data_dir: Path) -> tuple[list[str], list[str]]:
    processed = data_dir / "processed"
    return tuple((processed / f).read_text(encoding="utf-8").splitlines()
                 for f in ("train.txt", "val.txt"))


def read_stats(data_dir: Path) -> dict:
    return json.loads((data_dir / "processed" / "stats.json").read_text(encoding="utf-8"))


def digest(line: str) -> bytes:
    return hashlib.blake2b(line.encode("utf-8"), digest_size=8).digest()


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------
# A local HTTP server
# ---------------------------------------------------------------------------


@dataclass
class Server:
    """Routes: URL path -> (kind, payload). Kinds: file (with Range support), no-range,
    drop-once (the first answer stops half-way), status (code, body, content type), stall."""

    url: str = ""
    routes: dict[str, tuple] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range)

    def base_url(self) -> str:
        return self.url + "/corpora/"

    def path(self, name: str = NAME) -> str:
        return f"/corpora/{name}.tar.gz"


def make_handler(server: Server) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            range_header = self.headers.get("Range")
            server.requests.append((self.path, range_header))
            kind, payload = server.routes.get(self.path, ("status", (404, "<h1>404</h1>", "")))
            try:
                if kind == "status":
                    code, body, content_type = payload
                    self.send_body(code, body.encode(), content_type or "text/html")
                elif kind == "stall":
                    self.send_response(200)
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    time.sleep(payload)
                elif kind == "drop-once" and len(server.requests) == 1:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/gzip")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                else:
                    self.send_file(payload, range_header if kind != "no-range" else None)
            except ConnectionError:
                pass  # the client gave up early, as it should on a bad answer

        def send_body(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def send_file(self, data: bytes, range_header: str | None) -> None:
            match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
            if not match:
                self.send_body(200, data, "application/gzip")
                return
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Type", "application/gzip")
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            self.wfile.write(data[start:])

    return Handler


@pytest.fixture
def server():
    state = Server()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    # A short poll interval: shutdown() waits for it, twice per test otherwise 0.5 s.
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def dead_url() -> str:
    """A URL on a free port where nothing listens: connection refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/corpora/"


@pytest.fixture
def sample_dir(tmp_path: Path) -> Path:
    """A tiny stand-in for data/sample (the README must not be read)."""
    d = tmp_path / "sample"
    d.mkdir()
    write_lines(d / "a.txt", tatar_lines(40, seed=1))
    write_lines(d / "b.txt", tatar_lines(40, seed=2, start=40))
    (d / "README.md").write_text("# Sample\nReadme text, not a corpus line at all.\n")
    return d


@pytest.fixture
def corpus() -> tuple[list[str], bytes]:
    sentences = tatar_lines(3000)
    return sentences, leipzig_archive(sentences)


def download_args(server: Server, data_dir: Path, *extra: str) -> list[str]:
    return ["--corpus", NAME, "--base-url", server.base_url(), "--data-dir", str(data_dir),
            "--backoff", "0", *extra]


def assert_outputs_are(data_dir: Path, sentences: list[str]) -> None:
    train, val = read_split(data_dir)
    assert sorted(train + val) == sorted(sentences)
    assert WORDS_MEMBER_LINE not in train + val


# ---------------------------------------------------------------------------
# Download
# ---------------------------------------------------------------------------


def test_download_reads_only_the_sentences_member(server, corpus, tmp_path):
    sentences, archive = corpus
    server.routes[server.path()] = ("file", archive)
    assert prep.main(download_args(server, tmp_path, "--no-fallback")) == 0
    raw = tmp_path / "raw"
    assert (raw / f"{NAME}.tar.gz").read_bytes() == archive
    assert sorted(p.name for p in raw.iterdir()) == [f"{NAME}.tar.gz"]  # no .part left
    assert_outputs_are(tmp_path, sentences)
    stats = read_stats(tmp_path)
    assert stats["sources"][0]["url"] == server.url + server.path()
    assert stats["sources"][0]["kind"] == "leipzig"
    assert stats["input_lines"] == stats["kept_lines"] == len(sentences)
    assert not stats["fallback"]
    # Nothing from the archive was extracted to disk.
    assert sorted(p.name for p in (tmp_path / "processed").iterdir()) == [
        "stats.json", "train.txt", "val.txt"]


def test_resume_partial_download_with_range(server, corpus, tmp_path):
    sentences, archive = corpus
    server.routes[server.path()] = ("file", archive)
    (tmp_path / "raw").mkdir()
    n = len(archive) // 3
    (tmp_path / "raw" / f"{NAME}.tar.gz.part").write_bytes(archive[:n])
    assert prep.main(download_args(server, tmp_path, "--no-fallback")) == 0
    assert server.requests == [(server.path(), f"bytes={n}-")]
    assert (tmp_path / "raw" / f"{NAME}.tar.gz").read_bytes() == archive
    assert not (tmp_path / "raw" / f"{NAME}.tar.gz.part").exists()
    assert_outputs_are(tmp_path, sentences)


def test_retry_after_dropped_connection_resumes(server, corpus, tmp_path, capsys):
    sentences, archive = corpus
    server.routes[server.path()] = ("drop-once", archive)
    assert prep.main(download_args(server, tmp_path, "--no-fallback")) == 0
    assert server.requests == [(server.path(), None),
                               (server.path(), f"bytes={len(archive) // 2}-")]
    assert (tmp_path / "raw" / f"{NAME}.tar.gz").read_bytes() == archive
    assert "Retrying" in capsys.readouterr().err
    assert_outputs_are(tmp_path, sentences)


def test_server_that_ignores_range_restarts_from_zero(server, corpus, tmp_path):
    _, archive = corpus
    server.routes[server.path()] = ("no-range", archive)
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / f"{NAME}.tar.gz.part").write_bytes(b"stale bytes of another file")
    assert prep.main(download_args(server, tmp_path, "--no-fallback")) == 0
    assert server.requests[0][1] == "bytes=27-"  # asked to resume, got a 200 with everything
    assert (tmp_path / "raw" / f"{NAME}.tar.gz").read_bytes() == archive


def test_416_on_a_complete_part_keeps_it(server, corpus, tmp_path):
    _, archive = corpus
    server.routes[server.path()] = ("file", archive)
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / f"{NAME}.tar.gz.part").write_bytes(archive)
    assert prep.main(download_args(server, tmp_path, "--no-fallback")) == 0
    assert server.requests == [(server.path(), f"bytes={len(archive)}-")]
    assert (tmp_path / "raw" / f"{NAME}.tar.gz").read_bytes() == archive


def test_valid_archive_already_present_is_reused(server, corpus, tmp_path, capsys):
    _, archive = corpus
    server.routes[server.path()] = ("file", archive)
    assert prep.main(download_args(server, tmp_path, "--no-fallback")) == 0
    assert len(server.requests) == 1
    first_train = (tmp_path / "processed" / "train.txt").read_bytes()
    capsys.readouterr()
    assert prep.main(download_args(server, tmp_path, "--no-fallback")) == 0
    assert len(server.requests) == 1  # not downloaded again
    assert "Reusing" in capsys.readouterr().out
    assert (tmp_path / "processed" / "train.txt").read_bytes() == first_train


def test_damaged_archive_present_is_downloaded_again(server, corpus, tmp_path):
    _, archive = corpus
    server.routes[server.path()] = ("file", archive)
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / f"{NAME}.tar.gz").write_bytes(archive[:100])
    assert prep.main(download_args(server, tmp_path, "--no-fallback")) == 0
    assert len(server.requests) == 1
    assert (tmp_path / "raw" / f"{NAME}.tar.gz").read_bytes() == archive


@pytest.mark.parametrize("route, reason", [
    (("status", (404, "<!DOCTYPE html><h1>Not Found</h1>", "text/html")), "HTTP 404"),
    (("status", (200, "<!DOCTYPE html><h1>Error</h1>", "text/html; charset=utf-8")),
     "HTML page"),
    (("status", (200, "<!DOCTYPE html><h1>Error</h1>", "application/gzip")), "HTML page"),
])
def test_html_error_page_is_refused(server, tmp_path, capsys, route, reason):
    server.routes[server.path()] = route
    assert prep.main(download_args(server, tmp_path, "--no-fallback")) == 1
    err = capsys.readouterr().err
    assert reason in err
    assert server.url + server.path() in err
    assert len(server.requests) == 1  # what a retry cannot fix is not retried
    assert list((tmp_path / "raw").iterdir()) == []
    assert not (tmp_path / "processed").exists()


def test_one_corpus_failing_of_two_goes_on_with_the_other(server, corpus, tmp_path, capsys):
    sentences, archive = corpus
    server.routes[server.path()] = ("file", archive)
    args = ["--corpus", "tat_missing_2000_1K", "--corpus", NAME, "--base-url", server.base_url(),
            "--data-dir", str(tmp_path), "--backoff", "0"]
    assert prep.main(args) == 0
    assert "Going on without the 1 corpus(es) that failed" in capsys.readouterr().err
    stats = read_stats(tmp_path)
    assert [s["name"] for s in stats["sources"]] == [NAME]
    assert stats["fallback"] is False and len(stats["download_failures"]) == 1
    assert_outputs_are(tmp_path, sentences)


def test_truncated_archive_is_refused_and_removed(server, corpus, tmp_path, capsys):
    _, archive = corpus
    server.routes[server.path()] = ("file", archive[: len(archive) // 2])
    assert prep.main(download_args(server, tmp_path, "--no-fallback")) == 1
    err = capsys.readouterr().err
    assert "not a valid archive" in err
    assert "Traceback" not in err
    assert list((tmp_path / "raw").iterdir()) == []


def help_paragraph_checks(err: str, url: str, tmp_path: Path) -> None:
    paragraph = " ".join(err.split())  # the paragraph is wrapped at 100 columns
    assert f"Could not download the Leipzig corpus {NAME} from {url}{NAME}.tar.gz" in paragraph
    assert "refused" in paragraph.lower()
    assert f"save it as {tmp_path / 'raw' / NAME}.tar.gz" in paragraph
    assert "--archive PATH" in paragraph
    assert "--source sample" in paragraph
    assert "Traceback" not in err


def test_server_down_falls_back_to_sample(dead_url, sample_dir, tmp_path, capsys):
    data_dir = tmp_path / "data"
    args = ["--corpus", NAME, "--base-url", dead_url, "--data-dir", str(data_dir),
            "--backoff", "0", "--sample-dir", str(sample_dir)]
    assert prep.main(args) == 0
    err = capsys.readouterr().err
    help_paragraph_checks(err, dead_url, data_dir)
    assert "Falling back to the bundled sample corpus" in err
    stats = read_stats(data_dir)
    assert stats["fallback"] is True
    assert stats["sources"][0]["kind"] == "sample"
    assert stats["sources"][0]["paths"] == [str(sample_dir / "a.txt"), str(sample_dir / "b.txt")]
    assert stats["download_failures"][0].startswith(dead_url + NAME)
    assert_outputs_are(data_dir, tatar_lines(40, seed=1) + tatar_lines(40, seed=2, start=40))


def test_server_down_without_fallback_exits_1(dead_url, sample_dir, tmp_path, capsys):
    data_dir = tmp_path / "data"
    args = ["--corpus", NAME, "--base-url", dead_url, "--data-dir", str(data_dir),
            "--backoff", "0", "--sample-dir", str(sample_dir), "--no-fallback", "--retries", "1"]
    assert prep.main(args) == 1
    err = capsys.readouterr().err
    help_paragraph_checks(err, dead_url, data_dir)
    assert "--no-fallback" in err
    assert "Falling back" not in err
    assert not (data_dir / "processed").exists()


def test_read_timeout_is_a_download_failure(server, sample_dir, tmp_path, capsys):
    server.routes[server.path()] = ("stall", 1.0)
    args = download_args(server, tmp_path, "--timeout", "0.2", "--retries", "0",
                         "--sample-dir", str(sample_dir))
    started = time.perf_counter()
    assert prep.main(args) == 0
    assert time.perf_counter() - started < 0.9
    err = " ".join(capsys.readouterr().err.split())
    assert "timed out" in err
    assert "Falling back" in err


# ---------------------------------------------------------------------------
# --archive and --text-file
# ---------------------------------------------------------------------------


def test_archive_with_path_traversal_member_writes_nothing_outside(tmp_path, monkeypatch):
    sentences = tatar_lines(50)
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(leipzig_archive(sentences, sentences_member="../../evil-sentences.txt"))
    workdir = tmp_path / "a" / "b"
    workdir.mkdir(parents=True)
    monkeypatch.chdir(workdir)
    before = {p for p in tmp_path.rglob("*")}
    assert prep.main(["--archive", str(archive), "--data-dir", "data"]) == 0
    created = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")} - {
        p.relative_to(tmp_path).as_posix() for p in before}
    assert created == {"a/b/data", "a/b/data/processed", "a/b/data/processed/train.txt",
                       "a/b/data/processed/val.txt", "a/b/data/processed/stats.json"}
    assert not list(tmp_path.parent.glob("evil*"))
    assert_outputs_are(workdir / "data", sentences)


def test_several_sources_are_deduplicated_across_sources(tmp_path, capsys):
    first, second = tatar_lines(100), tatar_lines(50, seed=5, start=100)
    archive = tmp_path / f"{NAME}.tar.gz"
    archive.write_bytes(leipzig_archive(first))
    text = write_lines(tmp_path / "extra.txt", first[:30] + second)
    assert prep.main(["--archive", str(archive), "--text-file", str(text),
                      "--data-dir", str(tmp_path)]) == 0
    stats = read_stats(tmp_path)
    assert [(s["kind"], s["kept"], s["dropped"]["duplicate"]) for s in stats["sources"]] == [
        ("archive", 100, 0), ("text-file", 50, 30)]
    assert_outputs_are(tmp_path, first + second)
    out = capsys.readouterr().out
    assert re.search(r"^total\s+180\s+150\s", out, re.MULTILINE)


def test_malformed_leipzig_lines_are_counted(tmp_path):
    sentences = tatar_lines(20)
    archive = tmp_path / f"{NAME}.tar.gz"
    archive.write_bytes(leipzig_archive(sentences, raw_lines=["Бу юлда табуляция юк, бу хата.\n",
                                                              "Тагын бер шундый юл монда.\n"]))
    assert prep.main(["--archive", str(archive), "--data-dir", str(tmp_path)]) == 0
    stats = read_stats(tmp_path)
    assert stats["dropped"]["malformed"] == 2
    assert stats["sources"][0] | {"dropped": None, "tatar_letter_share": None} == {
        "kind": "archive", "name": NAME, "url": None, "paths": [str(archive)],
        "lines_read": 22, "kept": 20, "dropped": None, "tatar_letter_share": None}


@pytest.mark.parametrize("content, message", [
    (b"<!DOCTYPE html><html>Not found</html>", "not a valid .tar.gz archive"),
    (None, "has no *-sentences.txt member"),
    ("truncated", "not a valid .tar.gz archive"),
])
def test_invalid_archive_exits_2(tmp_path, capsys, content, message):
    path = tmp_path / "bad.tar.gz"
    if content is None:  # a real .tar.gz, but not a Leipzig one
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            info = tarfile.TarInfo("notes.txt")
            tar.addfile(info, io.BytesIO(b""))
        content = buf.getvalue()
    elif content == "truncated":
        archive = leipzig_archive(tatar_lines(3000))
        content = archive[: len(archive) // 2]
    path.write_bytes(content)
    assert prep.main(["--archive", str(path), "--data-dir", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert "error: " in err and message in err
    assert "Traceback" not in err
    assert not list((tmp_path / "data").rglob("*.tmp"))


def test_missing_inputs_exit_2(tmp_path, capsys):
    assert prep.main(["--text-file", str(tmp_path / "nope.txt"),
                      "--data-dir", str(tmp_path)]) == 2
    assert "text file not found" in capsys.readouterr().err
    assert prep.main(["--archive", str(tmp_path / "nope.tar.gz"),
                      "--data-dir", str(tmp_path)]) == 2
    assert "archive not found" in capsys.readouterr().err
    assert prep.main(["--source", "sample", "--sample-dir", str(tmp_path / "empty"),
                      "--data-dir", str(tmp_path)]) == 2
    assert "sample corpus is missing" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        prep.main(["--source", "sample", "--archive", "x.tar.gz"])
    assert exc.value.code == 2


# ---------------------------------------------------------------------------
# Cleaning
# ---------------------------------------------------------------------------

DECOMPOSED = "Мин өйдә китап укы\u0438\u0306м."  # й written as и + combining breve
COMPOSED = "Мин өйдә китап укыйм."


def test_cleaning_rules_and_exact_drop_counts(tmp_path):
    assert DECOMPOSED != COMPOSED and unicodedata.normalize("NFC", DECOMPOSED) == COMPOSED
    kept = {
        "\ufeffБу\x00 җөмлә\u200b тулы\tсүзләр белән.": "Бу җөмлә тулы сүзләр белән.",
        "   Казан \u00a0 — Татарстанның   башкаласы.  ": "Казан — Татарстанның башкаласы.",
        DECOMPOSED: COMPOSED,
        "Ул миңа әйтте: «Я не знаю, где он живёт»." : "Ул миңа әйтте: «Я не знаю, где он живёт».",
        "Мин яңа iPhone телефонын кибеттән сатып алдым.":
            "Мин яңа iPhone телефонын кибеттән сатып алдым.",
        "Бүген 2024 елның 5 маенда Казанда яңгыр яуды.":
            "Бүген 2024 елның 5 маенда Казанда яңгыр яуды.",
    }
    dropped = [
        ("Әйе.", "too_short"),
        ("", "too_short"),
        ("  \t \x0b ", "too_short"),
        ("Бу бик озын җөмлә. " * 4, "too_long"),  # 75 chars > --max-chars 70
        ("1234567890 2024", "no_letters"),
        ("!!! ??? ... --- ***", "no_letters"),
        ("This sentence is written in English only.", "not_cyrillic"),
        ("Kazan is the capital of the Republic of Tatarstan, Казан.", "not_cyrillic"),
        (COMPOSED, "duplicate"),  # the same after NFC
        ("Мин  өйдә   китап укыйм. ", "duplicate"),  # the same after whitespace collapse
        ("Бу җөмлә тулы сүзләр белән.", "duplicate"),
    ]
    lines = [*kept, *(line for line, _ in dropped)]
    path = tmp_path / "input.txt"
    path.write_bytes("\n".join(lines).encode("utf-8"))  # no newline after the last line
    assert prep.main(["--text-file", str(path), "--data-dir", str(tmp_path),
                      "--max-chars", "70"]) == 0
    train, val = read_split(tmp_path)
    assert sorted(train + val) == sorted(kept.values())
    stats = read_stats(tmp_path)
    expected = dict.fromkeys(prep.DROP_REASONS, 0)
    for _, reason in dropped:
        expected[reason] += 1
    assert stats["dropped"] == expected
    assert stats["input_lines"] == len(lines)
    assert stats["kept_lines"] == len(kept)
    assert stats["train"]["chars"] + stats["val"]["chars"] == sum(map(len, kept.values()))


def reason(line: str, **limits) -> str | None:
    return prep.drop_reason(line, line.encode("utf-8"), prep.DataConfig(**limits))


def test_cyrillic_share_threshold():
    assert reason("Татарча Tatarça.") == "not_cyrillic"  # 7 of 14 letters < 0.7
    assert reason("Татарча Tatarça.", min_cyrillic_share=0.5) is None
    line = "Мин Apple Google Microsoft компанияләре турында укыдым."  # 28 of 48 letters
    assert reason(line) == "not_cyrillic"
    assert reason("Ҡаҙан ҡалаһы Ԥ Ԧ ԧ.") is None  # Cyrillic Supplement letters are Cyrillic
    assert reason("Ελληνικά γράμματα.") == "not_cyrillic"
    assert reason("12:30 — 14:45, № 7 «…»") == "no_letters"


def test_invisible_pattern_is_exactly_unicode_cc_and_cf():
    if unicodedata.unidata_version != "14.0.0":
        pytest.skip(f"INVISIBLE lists Unicode 14.0; this Python has {unicodedata.unidata_version}")
    expected = {c for c in map(chr, range(sys.maxunicode + 1))
                if unicodedata.category(c) in ("Cc", "Cf") and not c.isspace()}
    matched = {c for c in map(chr, range(sys.maxunicode + 1)) if prep.INVISIBLE.match(c)}
    assert matched == expected


# ---------------------------------------------------------------------------
# The train/val split
# ---------------------------------------------------------------------------


def split_sets(data_dir: Path) -> tuple[set[str], set[str]]:
    train, val = read_split(data_dir)
    return set(train), set(val)


def test_split_ignores_line_order_and_adding_lines_moves_none(tmp_path):
    lines = tatar_lines(5000)
    shuffled = lines[:]
    random.Random(1).shuffle(shuffled)
    added = lines + tatar_lines(2000, seed=7, start=5000)
    results = []
    for i, corpus in enumerate((lines, shuffled, added)):
        path = write_lines(tmp_path / f"in{i}.txt", corpus)
        data_dir = tmp_path / f"d{i}"
        assert prep.main(["--text-file", str(path), "--data-dir", str(data_dir),
                          "--val-fraction", "0.1"]) == 0
        assert not read_stats(data_dir)["val_rule"]["raised"]
        results.append(split_sets(data_dir))
    (train, val), (train_shuffled, val_shuffled), (train_added, val_added) = results
    assert 400 < len(val) < 600
    assert (train, val) == (train_shuffled, val_shuffled)
    assert train <= train_added and val <= val_added


def test_val_is_about_one_percent_of_a_large_corpus(tmp_path):
    lines = tatar_lines(50_000)
    path = write_lines(tmp_path / "big.txt", lines)
    assert prep.main(["--text-file", str(path), "--data-dir", str(tmp_path)]) == 0
    train, val = split_sets(tmp_path)
    assert len(train) + len(val) == 50_000
    assert 350 <= len(val) <= 650  # 0.7 % .. 1.3 %
    cut = (2**64) * 0.01
    assert all(int.from_bytes(digest(line), "big") < cut for line in val)
    assert all(int.from_bytes(digest(line), "big") >= cut for line in train)
    rule = read_stats(tmp_path)["val_rule"]
    assert rule["threshold"] == 0.01 and not rule["raised"]


def test_small_corpus_gets_min_val_lines_by_hash(tmp_path):
    lines = tatar_lines(2000)
    shuffled = lines[::-1]
    smallest = set(sorted(lines, key=digest)[:200])  # min(300, 10 % of 2,000)
    for i, corpus in enumerate((lines, shuffled)):
        path = write_lines(tmp_path / f"in{i}.txt", corpus)
        data_dir = tmp_path / f"d{i}"
        assert prep.main(["--text-file", str(path), "--data-dir", str(data_dir)]) == 0
        train, val = split_sets(data_dir)
        assert val == smallest
        assert train == set(lines) - smallest
        stats = read_stats(data_dir)
        assert stats["val"]["lines"] == 200 and stats["train"]["lines"] == 1800
        assert stats["val"]["chars"] == sum(map(len, smallest))
        assert stats["val_rule"]["raised"] and stats["val_rule"]["threshold"] > 0.01


# ---------------------------------------------------------------------------
# The bundled sample corpus (the real data/sample/)
# ---------------------------------------------------------------------------


def test_bundled_sample_corpus(tmp_path):
    sample = ROOT / "data" / "sample"
    readme = sample / "README.md"
    assert readme.is_file()
    assert "CC0" in readme.read_text(encoding="utf-8")
    assert prep.main(["--source", "sample", "--data-dir", str(tmp_path)]) == 0
    train, val = read_split(tmp_path)
    lines = train + val
    assert len(set(lines)) == len(lines) >= 1500
    text = "".join(lines)
    for letter in "әөүҗңһ":
        assert letter in text
    assert not [line for line in lines if not prep.CYRILLIC_LETTERS.search(line)]
    stats = read_stats(tmp_path)
    assert stats["sources"][0]["paths"] == [str(p) for p in sorted(sample.glob("*.txt"))]
    assert len(val) >= 100


# ---------------------------------------------------------------------------
# Atomic outputs
# ---------------------------------------------------------------------------


def snapshot(processed: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in processed.iterdir()}


def test_failed_run_keeps_previous_outputs(tmp_path, capsys):
    good = write_lines(tmp_path / "good.txt", tatar_lines(500))
    assert prep.main(["--text-file", str(good), "--data-dir", str(tmp_path)]) == 0
    before = snapshot(tmp_path / "processed")
    bad = tmp_path / "bad.txt"
    bad.write_bytes("Бу юл дөрес UTF-8 текст.\n".encode() * 3 + b"\xd2 cp1251 \xff\n")
    capsys.readouterr()
    assert prep.main(["--text-file", str(bad), "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is not UTF-8 text (line 4" in err and "iconv" in err
    assert snapshot(tmp_path / "processed") == before  # no *.tmp left, nothing replaced


def test_crash_midway_keeps_previous_outputs(tmp_path, monkeypatch):
    good = write_lines(tmp_path / "good.txt", tatar_lines(500))
    assert prep.main(["--text-file", str(good), "--data-dir", str(tmp_path)]) == 0
    before = snapshot(tmp_path / "processed")

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash after the text was written")

    monkeypatch.setattr(prep, "build_stats", crash)
    other = write_lines(tmp_path / "other.txt", tatar_lines(700, seed=3))
    with pytest.raises(RuntimeError, match="simulated crash"):
        prep.main(["--text-file", str(other), "--data-dir", str(tmp_path)])
    assert snapshot(tmp_path / "processed") == before


# ---------------------------------------------------------------------------
# The command line, as a user runs it
# ---------------------------------------------------------------------------


def test_cli_help_and_run(tmp_path):
    script = str(ROOT / "01_prepare_data.py")
    result = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60)
    assert result.returncode == 0
    for flag in ("--source", "--corpus", "--base-url", "--archive", "--text-file", "--data-dir",
                 "--sample-dir", "--no-fallback", "--val-fraction", "--min-val-lines",
                 "--min-chars", "--max-chars", "--min-cyrillic-share", "--timeout",
                 "--connect-timeout", "--retries", "--backoff"):
        assert flag in result.stdout
    assert "tat_mixed_2015_1M" in result.stdout and "{leipzig,sample}" in result.stdout

    text = write_lines(tmp_path / "in.txt", tatar_lines(300))
    result = subprocess.run([sys.executable, script, "--text-file", str(text)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("Next: python 02_train_tokenizer.py")
    assert "too_short" in result.stdout and "in.txt" in result.stdout
    assert (tmp_path / "data" / "processed" / "train.txt").is_file()


# ---------------------------------------------------------------------------
# Nothing lost, every bad input answered
# ---------------------------------------------------------------------------


def test_failed_download_keeps_a_corpus_prepared_earlier(server, corpus, dead_url, sample_dir,
                                                         tmp_path, capsys):
    server.routes[server.path()] = ("ok", corpus[1])
    assert prep.main(download_args(server, tmp_path)) == 0
    before = snapshot(tmp_path / "processed")
    shutil.rmtree(tmp_path / "raw")  # so that the archive must be downloaded again
    capsys.readouterr()
    offline = ["--corpus", NAME, "--base-url", dead_url, "--data-dir", str(tmp_path),
               "--backoff", "0", "--retries", "0", "--sample-dir", str(sample_dir)]
    assert prep.main(offline) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert f"already holds a prepared corpus ({NAME}, 3,000 lines), so it is kept" in err
    assert "--source sample" in err
    assert snapshot(tmp_path / "processed") == before


def test_failed_download_may_replace_an_earlier_sample_fallback(dead_url, sample_dir, tmp_path):
    offline = ["--corpus", NAME, "--base-url", dead_url, "--data-dir", str(tmp_path),
               "--backoff", "0", "--retries", "0", "--sample-dir", str(sample_dir)]
    assert prep.main(offline) == 0
    assert prep.main(offline) == 0  # the sample replaces the sample: nothing is downgraded
    assert read_stats(tmp_path)["fallback"] is True


RUSSIAN = ("Сегодня в городе прошёл большой праздник, и на улицах было много людей.",
           "Он сказал, что завтра они поедут на дачу к бабушке.",
           "Это очень интересная книга о жизни в деревне.")


def test_text_that_is_not_tatar_is_refused_unless_allowed(tmp_path, capsys):
    russian = write_lines(tmp_path / "russian.txt",
                          [f"{s} Номер {i}." for i in range(200) for s in RUSSIAN])
    assert prep.main(["--text-file", str(russian), "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "does not look like Tatar" in err and "--allow-non-tatar" in err
    assert not (tmp_path / "processed" / "train.txt").exists()
    assert prep.main(["--text-file", str(russian), "--data-dir", str(tmp_path),
                      "--allow-non-tatar"]) == 0
    assert "WARNING" in capsys.readouterr().err
    assert read_stats(tmp_path)["tatar_letter_share"] == 0.0

    tatar = write_lines(tmp_path / "tatar.txt", tatar_lines(300))
    assert prep.main(["--text-file", str(tatar), "--data-dir", str(tmp_path)]) == 0
    stats = read_stats(tmp_path)
    text = "".join(tatar_lines(300))
    tatar_count = sum(text.lower().count(c) for c in "әөүҗңһ")
    cyrillic = sum(1 for c in text if "\u0400" <= c <= "\u04ff")
    assert stats["tatar_letter_share"] == pytest.approx(tatar_count / cyrillic, abs=1e-4)
    assert stats["sources"][0]["tatar_letter_share"] == stats["tatar_letter_share"]


def test_full_disk_leaves_no_temporary_file_and_the_old_outputs(tmp_path, capsys):
    good = write_lines(tmp_path / "good.txt", tatar_lines(500))
    assert prep.main(["--text-file", str(good), "--data-dir", str(tmp_path)]) == 0
    processed = tmp_path / "processed"
    before = snapshot(processed)
    (processed / "train.txt.tmp").symlink_to("/dev/full")  # every write: ENOSPC
    other = write_lines(tmp_path / "other.txt", tatar_lines(700, seed=3))
    capsys.readouterr()
    assert prep.main(["--text-file", str(other), "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "free some space" in err
    assert "Traceback" not in err
    assert snapshot(processed) == before  # the symlink is gone, nothing else changed


def test_an_output_folder_that_is_a_file_is_one_message(tmp_path, capsys):
    good = write_lines(tmp_path / "good.txt", tatar_lines(100))
    (tmp_path / "processed").write_text("not a folder")
    assert prep.main(["--text-file", str(good), "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot use") and "Traceback" not in err
