"""Benchmark of 01_prepare_data.py on a synthetic Leipzig-size corpus.

Writes a Leipzig-format archive NAME.tar.gz (NAME/NAME-sentences.txt with `id<TAB>sentence`
lines, plus a NAME/NAME-words.txt the stage must skip) of --lines Tatar-like Cyrillic
sentences of about 100 characters, built from a word list, with some exact duplicates,
whitespace variants and Latin-only lines. Then runs the stage on it in a child process,
`python 01_prepare_data.py --archive ARCHIVE --data-dir TMP`, so that the peak RSS
(getrusage of the child) counts the stage alone and not this generator.

Reports lines/s (lines read / the stage's own seconds from stats.json; also / the child's
wall time including interpreter start-up, and / its CPU time, which a busy machine inflates
less) and peak RSS (the child's ru_maxrss); prints a table and writes JSON (--out).
Targets: >= 100,000 lines/s, < 500 MB RSS.

    python bench_prepare_data.py                     # 1,000,000 lines
    python bench_prepare_data.py --lines 100000      # quicker
    python bench_prepare_data.py --keep-archive /tmp/synth.tar.gz
    python bench_prepare_data.py --archive /tmp/synth.tar.gz --repeat 3
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tatargpt import cli
from tatargpt.cli import option

ROOT = Path(__file__).resolve().parent
NAME = "tat_synthetic_2024_1M"
TARGET_LINES_PER_S = 100_000
TARGET_RSS_MB = 500

# Everyday Tatar words (with the letters ә ө ү җ ң һ), a few Russian loans and numbers.
WORDS = (
    "мин син ул без сез алар бу шул һәм белән өчен турында соң кадәр инде тагын бик "
    "әни әти бала балалар мәктәп укытучы китап дәрес тел татар теле шәһәр авыл урам йорт "
    "өй бакча агач урман елга күл диңгез тау җир һава көн кич иртә төн ел ай атна вакыт "
    "эш эшче завод фабрика хезмәт акча базар кибет икмәк сөт ит чәй аш бәлеш чәкчәк "
    "яңа зур кечкенә матур яхшы начар озын кыска җылы салкын ак кара кызыл яшел зәңгәр "
    "бара килә әйтә укый яза сөйли тыңлый карый эшли уйный йоклый ашый эчә күрә белә "
    "Казан Татарстан Идел Чулман Алабуга Чаллы Түбән Кама Буа Әлмәт Арча "
    "җәй көз кыш яз кояш яңгыр кар җил болыт йолдыз "
    "университет президент министр компания интернет телефон компьютер программа "
    "хөкүмәт җыелыш утырыш карар закон проект үсеш икътисад мәдәният театр музей "
    "шагыйрь язучы җырчы рәссам галим табиб тәрбияче студент укучы спортчы "
    "беренче икенче өченче соңгы һәр барлык кайбер күп аз ике өч дүрт биш ун йөз мең"
).split()
# Tatar is agglutinative: case and plural endings make the many word forms of real text.
SUFFIXES = ("", "", "", "", "лар", "ләр", "ның", "нең", "да", "дә", "га", "гә", "ны", "не",
            "дан", "дән", "ы", "е", "сы", "се", "ларга", "ләргә", "ында", "ендә", "ым", "ем")
LATIN_WORDS = (
    "the of and to in is was for on that with as by this from at are be it an "
    "new city river school world music people history language year first"
).split()


def make_sentence(rng: random.Random) -> str:
    """A sentence of about 100 characters: Tatar words, a number now and then, punctuation."""
    words = [w + rng.choice(SUFFIXES) for w in rng.choices(WORDS, k=rng.randint(9, 15))]
    if rng.random() < 0.2:
        words.insert(rng.randrange(len(words)), str(rng.randint(1900, 2024)))
    if rng.random() < 0.3:
        words.insert(rng.randrange(1, len(words)), words.pop(0) + ",")
    if rng.random() < 0.25:  # news text quotes names and uses dashes: «» — take the slow path
        i = rng.randrange(len(words) - 1)
        words[i:i + 2] = [f"«{words[i]} {words[i + 1]}»", "—"]
    words[0] = words[0].capitalize()
    return " ".join(words) + rng.choice(".....!?")


def write_corpus(path: Path, lines: int, seed: int = 0) -> dict[str, int]:
    """Write a Leipzig-format NAME-sentences.txt to PATH; return what it contains."""
    rng = random.Random(seed)
    made = {"tatar": 0, "duplicates": 0, "latin": 0}
    recent: list[str] = []
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for i in range(1, lines + 1):
            r = rng.random()
            if r < 0.02:  # Latin-only lines (English fragments), dropped as not_cyrillic
                sentence = " ".join(rng.choices(LATIN_WORDS, k=14)).capitalize() + "."
                made["latin"] += 1
            elif r < 0.07 and recent:  # duplicates, some differing only in whitespace
                sentence = rng.choice(recent)
                if rng.random() < 0.5:
                    sentence = sentence.replace(" ", "  ", 1)
                made["duplicates"] += 1
            else:
                sentence = make_sentence(rng)
                made["tatar"] += 1
                if len(recent) < 10_000:
                    recent.append(sentence)
                else:
                    recent[rng.randrange(len(recent))] = sentence
            f.write(f"{i}\t{sentence}\n")
    return made


def build_archive(workdir: Path, lines: int) -> tuple[Path, dict[str, int]]:
    """NAME.tar.gz with the sentences member and a words member, like a Leipzig download."""
    sentences = workdir / f"{NAME}-sentences.txt"
    made = write_corpus(sentences, lines)
    archive = workdir / f"{NAME}.tar.gz"
    words = "".join(f"{i}\t{w}\t{i}\n" for i, w in enumerate(WORDS, 1)).encode("utf-8")
    with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
        info = tarfile.TarInfo(f"{NAME}/{NAME}-words.txt")
        info.size = len(words)
        tar.addfile(info, io.BytesIO(words))
        tar.add(sentences, arcname=f"{NAME}/{NAME}-sentences.txt")
    sentences.unlink()
    return archive, made


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def run_stage(archive: Path, data_dir: Path) -> dict:
    """Run the stage in a child process; its wall and CPU seconds, peak RSS, and stats.json."""
    command = [sys.executable, str(ROOT / "01_prepare_data.py"), "--archive", str(archive),
               "--data-dir", str(data_dir)]
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        # wait4 gives this child's own resource usage (RUSAGE_CHILDREN would add up runs).
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            log.seek(0)
            raise SystemExit(f"the stage failed (exit {proc.returncode}):\n"
                             f"{log.read().decode(errors='replace')}")
    stats = json.loads((data_dir / "processed" / "stats.json").read_text(encoding="utf-8"))
    return {
        "wall": wall,
        # CPU time is what the stage costs; wall time also counts other programs on a busy
        # machine.
        "cpu": usage.ru_utime + usage.ru_stime,
        # ru_maxrss is in KiB on Linux, in bytes on macOS.
        "rss_mb": usage.ru_maxrss / (1 << 20 if sys.platform == "darwin" else 1 << 10),
        "stats": stats,
    }


@dataclass
class Options:
    lines: int = option(1_000_000, "synthetic corpus size", "N")
    archive: Path | None = option(None, "benchmark this Leipzig archive instead of a synthetic "
                                        "one, e.g. the real data/raw/tat_mixed_2015_1M.tar.gz",
                                  "PATH")
    keep_archive: Path | None = option(None, "also save the synthetic archive here (reuse it "
                                             "with --archive)", "PATH")
    repeat: int = option(1, "run the stage N times and report the fastest", "N")
    out: Path = option(Path("bench_results/prepare_data.json"), "where the JSON results go")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_options(parser, Options)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_prepare_") as tmp:
        workdir = Path(tmp)
        made = None
        archive = args.archive
        if archive is None:
            started = time.perf_counter()
            archive, made = build_archive(workdir, args.lines)
            print(f"wrote {archive.name}: {args.lines:,} lines, {archive.stat().st_size / 1e6:.1f}"
                  f" MB, in {time.perf_counter() - started:.1f} s")
            if args.keep_archive:
                args.keep_archive.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(archive, args.keep_archive)
        archive_mb = archive.stat().st_size / 1e6
        load_before = os.getloadavg()[0]
        runs = [run_stage(archive, workdir / f"data{i}") for i in range(args.repeat)]
        load_after = os.getloadavg()[0]
    best = min(runs, key=lambda r: r["stats"]["seconds"])
    stats, rss_mb = best["stats"], max(r["rss_mb"] for r in runs)
    lines_read = stats["input_lines"]
    command = "python bench_prepare_data.py" + (
        f" --archive {args.archive}" if args.archive else f" --lines {args.lines}") + (
        f" --repeat {args.repeat}" if args.repeat > 1 else "")
    results = {
        "archive": str(args.archive) if args.archive else "synthetic",
        "lines": lines_read,
        "archive_mb": round(archive_mb, 1),
        "made": made,
        "kept": stats["kept_lines"],
        "dropped": stats["dropped"],
        "train_lines": stats["train"]["lines"],
        "val_lines": stats["val"]["lines"],
        "runs": len(runs),
        "stage_seconds": stats["seconds"],
        "stage_seconds_all_runs": [r["stats"]["seconds"] for r in runs],
        "wall_seconds": round(best["wall"], 3),
        "cpu_seconds": round(best["cpu"], 3),
        "lines_per_s": round(lines_read / stats["seconds"]),
        "lines_per_s_wall": round(lines_read / best["wall"]),
        "lines_per_cpu_s": round(lines_read / best["cpu"]),
        "peak_rss_mb": round(rss_mb, 1),
        "targets": {"lines_per_s": TARGET_LINES_PER_S, "peak_rss_mb": TARGET_RSS_MB},
        "meets_targets": lines_read / stats["seconds"] >= TARGET_LINES_PER_S
        and rss_mb < TARGET_RSS_MB,
        # The stage must find exactly what the generator put in.
        "counts_match_generator": None if made is None else (
            made["tatar"] == stats["kept_lines"]
            and made["duplicates"] == stats["dropped"]["duplicate"]
            and made["latin"] == stats["dropped"]["not_cyrillic"]),
        "cpus": os.cpu_count(),
        "load_average_1min": [round(load_before, 2), round(load_after, 2)],
        "python": platform.python_version(),
        "machine": cpu_model(),
        "command": command,
    }
    rows = [
        ("archive", f"{results['archive']} ({archive_mb:.1f} MB)"),
        ("lines read", f"{lines_read:,}"),
        ("kept / train / val", f"{results['kept']:,} / {results['train_lines']:,} / "
                               f"{results['val_lines']:,}"),
        ("dropped", ", ".join(f"{k} {v:,}" for k, v in results["dropped"].items() if v)),
        ("stage seconds", f"{stats['seconds']:.2f}" + (
            f"  (fastest of {len(runs)}: " + ", ".join(
                f"{r['stats']['seconds']:.2f}" for r in runs) + ")" if len(runs) > 1 else "")),
        ("lines/s (stage)", f"{results['lines_per_s']:,}   target >= {TARGET_LINES_PER_S:,}"),
        ("lines/s (wall, incl. start-up)", f"{results['lines_per_s_wall']:,}"),
        ("lines per CPU second", f"{results['lines_per_cpu_s']:,}"),
        ("peak RSS", f"{rss_mb:.0f} MB   target < {TARGET_RSS_MB} MB"),
        ("counts match the generator", str(results["counts_match_generator"])),
        ("machine", f"{results['machine']}, {os.cpu_count()} CPUs, load average "
                    f"{load_before:.1f} -> {load_after:.1f}"),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    from tatargpt import fileio

    fileio.atomic_write_text(args.out, json.dumps(results, ensure_ascii=False, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
