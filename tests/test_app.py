"""app.py as a user meets it: a server started as a subprocess, called through gradio_client
and driven in a real browser (Playwright + Debian's Chromium).

One server with the session's tiny checkpoint serves every test but the one that starts
without a checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from gradio_client import Client
from gradio_client.exceptions import AppError

import config
import utils
from conftest import ARTIFACTS, ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
START_TIMEOUT_S = 90  # import torch + gradio, load the model, start uvicorn; slow on 2 busy cores
BLOCK_SIZE = config.get_preset("tiny").block_size

# (max_new_tokens, temperature, top_k, top_p, repetition_penalty, seed): the /generate order.
GREEDY = (30, 0.0, 0, 1.0, 1.0, 0)


def sampled(seed: int, max_new_tokens: int = 30) -> tuple:
    return (max_new_tokens, 1.0, 0, 1.0, 1.0, seed)


# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    log: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_app(args: list[str], log: Path) -> Server:
    """Start `python app.py ARGS` on a free port (without waiting for it)."""
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port),
             *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Server(f"http://127.0.0.1:{port}/", proc, log)


def wait_until_up(server: Server) -> None:
    """Poll the page until it answers; fail with the server's output if it never does."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(f"app.py exited with {server.proc.returncode}:\n{server.log.read_text()}")
        try:
            with urllib.request.urlopen(server.url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"app.py did not answer within {START_TIMEOUT_S} s:\n{server.log.read_text()}")


def stop_app(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read().decode("utf-8")


@pytest.fixture(scope="module")
def server(tiny_chat, tmp_path_factory):
    """The tiny model, with its fine-tuned chat_model.pt beside it for the Chat tab."""
    tiny_checkpoint = tiny_chat
    log = tmp_path_factory.mktemp("app") / "app.log"
    server = launch_app(["--checkpoint", str(tiny_checkpoint.checkpoint),
                         "--tokenizer", str(tiny_checkpoint.tokenizer_dir), "--device", "cpu"], log)
    try:
        wait_until_up(server)
        yield server
    finally:
        stop_app(server)


@pytest.fixture(scope="module")
def client(server) -> Client:
    return Client(server.url, verbose=False)


@pytest.fixture(scope="module")
def tokenizer(tiny_checkpoint) -> utils.Tokenizer:
    return utils.load_tokenizer(tiny_checkpoint.tokenizer_dir)


def generate(client: Client, prompt: str, settings: tuple = GREEDY) -> tuple[str, str]:
    """(text, note) of the /generate endpoint."""
    return client.predict(prompt, *settings, api_name="/generate")


# ---------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------


def test_generate_is_reproducible(client):
    prompt = "Казан шәһәре"
    text, note = generate(client, prompt)
    assert text.startswith(prompt) and len(text) > len(prompt)
    assert "Generated" in note
    assert generate(client, prompt)[0] == text  # greedy: deterministic
    a = generate(client, prompt, sampled(seed=7))[0]
    assert a.startswith(prompt)
    assert generate(client, prompt, sampled(seed=7))[0] == a  # same seed, same sample
    others = {generate(client, prompt, sampled(seed=s))[0] for s in (1, 2, 3)}
    assert len(others | {a}) > 1, "four seeds gave the same sample"


def test_generation_streams(client):
    prompt = "Татарстан"
    for seed in range(10):  # the tiny model may end its sentence at once: find a longer one
        job = client.submit(prompt, *sampled(seed, max_new_tokens=40), api_name="/generate")
        final = job.result(timeout=60)
        texts = [text for text, _ in job.outputs()]
        if len(set(texts)) >= 4:
            break
    assert len(set(texts)) >= 4, f"no streamed generation of 4+ pieces: {texts}"
    assert texts[0] == prompt
    for before, after in zip(texts, texts[1:], strict=False):
        assert after.startswith(before)
    assert texts[-1] == final[0]
    assert generate(client, prompt, sampled(seed, max_new_tokens=40))[0] == final[0]


def test_concurrent_generations_do_not_mix(client):
    cases = [("Казан шәһәре", GREEDY), ("Габдулла Тукай", GREEDY),
             ("Мин татарча", sampled(seed=5)), ("Яз көне", sampled(seed=6))]
    alone = [generate(client, prompt, settings)[0] for prompt, settings in cases]
    jobs = [client.submit(prompt, *settings, api_name="/generate") for prompt, settings in cases]
    together = [job.result(timeout=90)[0] for job in jobs]
    assert together == alone


def test_bad_generation_inputs_get_clear_answers(client):
    for empty in ("", "   \n"):
        with pytest.raises(AppError, match="enter a prompt"):
            generate(client, empty)
    with pytest.raises(AppError, match="temperature must be a number, got 'hot'"):
        generate(client, "Казан", (30, "hot", 0, 1.0, 1.0, 0))

    text, note = generate(client, "Казан", (-5, -1, -3, 7, 0, -1))
    for adjusted in ("max_new_tokens -5 → 1", "temperature -1 → 0", "top_k -3 → 0 (off)",
                     "top_p 7 → 1", "repetition_penalty 0 → 1", "seed -1 → 4294967295"):
        assert adjusted in note
    assert text == generate(client, "Казан", (1, 0.0, 0, 1.0, 1.0, 0))[0]  # one greedy token

    # Huge values are clamped (the note comes first); cancel rather than wait for 500 tokens.
    job = client.submit("Казан", 10**9, 1e9, 10**6, 1.0, 1.0, 0, api_name="/generate")
    deadline = time.monotonic() + 60
    while not job.outputs() and time.monotonic() < deadline:
        time.sleep(0.1)
    job.cancel()
    text, note = job.outputs()[0]
    assert text == "Казан"
    assert "max_new_tokens 1000000000 → 500" in note and "temperature 1000000000 → 2" in note


def test_long_prompt_is_cropped_with_a_note(client, tokenizer):
    sentences = (ROOT / "data" / "sample" / "geography_nature.txt").read_text(encoding="utf-8")
    # Cut inside a sentence, not after a space (no word token starts there: a model may end
    # the text at once).
    prompt = sentences.replace("\n", " ")[:3000].rstrip()
    n_tokens = 1 + len(tokenizer.encode(prompt))  # with <bos>
    assert n_tokens > BLOCK_SIZE
    text, note = generate(client, prompt, (5, 0.0, 0, 1.0, 1.0, 0))
    assert text.startswith(prompt) and len(text) > len(prompt)
    assert f"The prompt is {n_tokens} tokens long" in note
    assert f"only its last {BLOCK_SIZE} tokens" in note


# ---------------------------------------------------------------------------
# Tokenizer view, perplexity, model card
# ---------------------------------------------------------------------------


def test_tokenizer_view_round_trips(client, tokenizer):
    text = "Казан — Татарстанның башкаласы. Әйе, 2024 елда!\nЯңа  юл 😀 ҮҖҺ"
    view, stats, tokens = client.predict(text, api_name="/tokenize")
    assert "".join(t["text"] for t in tokens) == text
    ids = [t["id"] for t in tokens]
    assert ids == tokenizer.encode(text)
    assert all(isinstance(i, int) and 0 <= i < tokenizer.vocab_size for i in ids)
    assert f"**{len(ids)} tokens** · {len(text)} characters" in stats
    assert all(f">{i}</span>" in view for i in ids)
    assert "‹f0›" in view  # the emoji's first byte is a token of its own: shown as hex

    view, stats, tokens = client.predict("", api_name="/tokenize")
    assert tokens == [] and "**0 tokens**" in stats


def test_perplexity_prefers_natural_text(client, tiny_checkpoint, tokenizer):
    lines = (ROOT / "data" / "sample" / "history_culture.txt").read_text(
        encoding="utf-8").splitlines()[:3]
    rng = random.Random(0)
    shuffled = []
    for line in lines:
        words = line.split()
        while words == line.split():
            rng.shuffle(words)
        shuffled.append(" ".join(words))
    natural, scrambled = "\n".join(lines), "\n".join(shuffled)
    table, scores = client.predict(natural, scrambled, api_name="/perplexity")
    a, b = scores["a"], scores["b"]
    assert math.isfinite(a["perplexity"]) and 1 < a["perplexity"] < b["perplexity"]
    assert f"| perplexity | {a['perplexity']:.2f} | {b['perplexity']:.2f} |" in table
    assert f"| bits per character | {a['bits_per_char']:.3f} |" in table
    assert "**A** reads more like the training corpus" in table
    # The app's one-pass figures are utils.perplexity and utils.bits_per_char.
    model, _ = utils.load_model(tiny_checkpoint.checkpoint)
    assert a["perplexity"] == pytest.approx(utils.perplexity(model, tokenizer, lines), rel=1e-4)
    assert a["bits_per_char"] == pytest.approx(utils.bits_per_char(model, tokenizer, lines),
                                               rel=1e-4)
    assert a["tokens"] == sum(len(tokenizer.encode(line)) + 1 for line in lines)

    table, scores = client.predict("Казан.", "", api_name="/perplexity")
    assert scores["b"] is None and "| perplexity |" in table
    with pytest.raises(AppError, match="enter a sentence"):
        client.predict(" ", "Казан.", api_name="/perplexity")


def test_model_card_is_on_the_page(server, tiny_checkpoint):
    ckpt = torch.load(tiny_checkpoint.checkpoint, map_location="cpu", weights_only=True)
    page_config = fetch(server.url + "config")
    assert "| Preset | tiny |" in page_config
    assert f"| Best val loss | {ckpt['best_val_loss']:.4f} |" in page_config
    assert f"| Training iterations | {ckpt['iter']:,} |" in page_config
    assert "loss_curve.png" in page_config


# ---------------------------------------------------------------------------
# Without a model
# ---------------------------------------------------------------------------


def test_without_a_usable_model_the_page_explains_training(tiny_checkpoint, tmp_path):
    missing = tmp_path / "missing.pt"
    other = tmp_path / "other_tokenizer"  # a different tokenizer.json: another hash
    other.mkdir()
    tokenizer_json = (tiny_checkpoint.tokenizer_dir / "tokenizer.json").read_text("utf-8")
    (other / "tokenizer.json").write_text(tokenizer_json + "\n", encoding="utf-8")
    corrupt = tmp_path / "corrupt_tokenizer"
    corrupt.mkdir()
    (corrupt / "tokenizer.json").write_text(tokenizer_json[: len(tokenizer_json) // 2])
    # All start at once: their start-up is mostly single-threaded imports.
    servers = [
        launch_app(["--checkpoint", str(missing), "--tokenizer", str(tiny_checkpoint.tokenizer_dir)],
                   tmp_path / "missing.log"),
        launch_app(["--checkpoint", str(tiny_checkpoint.checkpoint), "--tokenizer", str(other)],
                   tmp_path / "mismatch.log"),
        launch_app(["--checkpoint", str(tiny_checkpoint.checkpoint), "--tokenizer", str(corrupt)],
                   tmp_path / "corrupt.log"),
    ]
    try:
        pages = []
        for server in servers:
            wait_until_up(server)
            pages.append(fetch(server.url + "config"))
    finally:
        for server in servers:
            stop_app(server)
    assert f"No checkpoint at {missing}" in pages[0]
    assert "was trained with a different tokenizer" in pages[1]
    assert "tokenizer.json is damaged" in pages[2]
    for page in pages:
        assert "no usable trained model" in page
        assert "bash run_pipeline.sh --quick" in page
        assert "python 03_train.py --preset tiny" in page


def raw_call(server: Server, api_name: str, data: list) -> list:
    """Call an endpoint through Gradio's HTTP API with JSON escapes as written (gradio_client
    cannot send a lone surrogate: it encodes the JSON as UTF-8 first)."""
    body = json.dumps({"data": data}, ensure_ascii=True).encode("ascii")
    request = urllib.request.Request(f"{server.url}gradio_api/call/{api_name}", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        event = json.loads(r.read())["event_id"]
    with urllib.request.urlopen(f"{server.url}gradio_api/call/{api_name}/{event}",
                                timeout=60) as r:
        stream = r.read().decode("utf-8")
    kinds = re.findall(r"^event: (\w+)$", stream, re.M)
    payloads = re.findall(r"^data: (.*)$", stream, re.M)
    assert kinds[-1] == "complete", stream[-500:]
    return json.loads(payloads[-1])


def test_lone_surrogates_get_answers_not_errors(server):
    text, _ = raw_call(server, "generate", ["\ud800Казан", 5, 0.0, 0, 1.0, 1.0, 0])
    assert text.startswith("\ufffdКазан") and len(text) > len("\ufffdКазан")
    _, _, tokens = raw_call(server, "tokenize", ["Казан \udfff"])
    assert "".join(t["text"] for t in tokens) == "Казан \ufffd"
    _, scores = raw_call(server, "perplexity", ["Казан \ud83d.", ""])
    assert math.isfinite(scores["a"]["perplexity"])


def test_port_out_of_range_is_refused_before_starting():
    run = subprocess.run([sys.executable, str(ROOT / "app.py"), "--port", "70000"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "--port must be between 1 and 65535, got 70000" in run.stderr
    assert "Traceback" not in run.stderr


def test_model_calls_are_serialised_across_requests(tiny_checkpoint):
    """Gradio's concurrency limit is per event: generate and perplexity can arrive at once.
    The app lets one call at a time use the model (on Apple MPS concurrent use aborts)."""
    import threading

    import app

    loaded = app.load(tiny_checkpoint.checkpoint, tiny_checkpoint.tokenizer_dir,
                      torch.device("cpu"))
    inside, most = [0], [0]
    guard = threading.Lock()
    real_forward = type(loaded.model).forward

    def forward(self, *a, **k):
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.002)  # long enough for another thread to try to come in
        try:
            return real_forward(self, *a, **k)
        finally:
            with guard:
                inside[0] -= 1

    loaded.model.forward = forward.__get__(loaded.model)
    results = {}

    def gen(name, seed):
        results[name] = list(app.generate(loaded, "Казан шәһәре", 30, 1.0, 0, 1.0, 1.0, seed))

    def ppl():
        results["ppl"] = app.perplexity(loaded, "\n".join(["Казан — борынгы шәһәр."] * 5), "")

    threads = [threading.Thread(target=gen, args=("a", 1)), threading.Thread(target=gen, args=(
        "b", 2)), threading.Thread(target=ppl)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert set(results) == {"a", "b", "ppl"}
    assert most[0] == 1, "two requests used the model at the same time"
    # and they interleaved: both generations streamed pieces
    assert len(results["a"]) > 2 and len(results["b"]) > 2


# ---------------------------------------------------------------------------
# Chat
# ---------------------------------------------------------------------------


def test_chat_answers_with_the_fine_tuned_model(client, tiny_chat, tokenizer):
    settings = (20, 0.0, 0, 1.0, 1.0, 0)  # greedy: the same answer as utils.chat gives
    answer = client.predict("Казан нинди шәһәр?", *settings, api_name="/chat")
    model, _ = utils.load_model(tiny_chat.chat_checkpoint)
    expected = utils.chat(model, tokenizer, "Казан нинди шәһәр?", max_new_tokens=20,
                          temperature=0)
    assert answer == (expected or "…")
    with pytest.raises(AppError, match="write a message first"):
        client.predict("  ", *settings, api_name="/chat")


def test_the_chat_history_goes_into_the_template(tiny_chat, tokenizer):
    import app

    loaded = app.load(tiny_chat.checkpoint, tiny_chat.tokenizer_dir, torch.device("cpu"))
    history = [{"role": "user", "content": [{"type": "text", "text": "Сәлам!"}]},
               {"role": "assistant", "content": "Исәнмесез!"}]
    settings = (15, 0.0, 0, 1.0, 1.0, 0)
    answer = list(app.chat(loaded, "Хәлләр ничек?", history, *settings))[-1]
    messages = [{"role": "user", "content": "Сәлам!"},
                {"role": "assistant", "content": "Исәнмесез!"},
                {"role": "user", "content": "Хәлләр ничек?"}]
    expected = utils.chat(loaded.chat_model, tokenizer, messages, max_new_tokens=15,
                          temperature=0)
    assert answer == (expected or "…")


# ---------------------------------------------------------------------------
# A real browser
# ---------------------------------------------------------------------------


def need_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium; "
                    "CI installs it)")


@contextlib.contextmanager
def browser_page(url: str, height: int):
    """A page of headless Chromium (Playwright) opened at `url`."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": height})
            page.goto(url, timeout=60_000)
            yield page
        finally:
            browser.close()


def test_browser_generates_text(server, client):
    need_chromium()
    # A tiny model may end some prompts at once with <eos>. The page's default settings are
    # seeded, so ask the API which prompt this checkpoint continues, then type that one.
    import app

    page_defaults = (app.MAX_NEW_TOKENS[2], app.TEMPERATURE[2], app.TOP_K_SLIDER[2],
                     app.TOP_P[2], app.REPETITION_PENALTY[2], app.DEFAULT_SEED)
    candidates = ["Безнең авылда", "Казан шәһәрендә", "Татарстан", "Мин", "Яз көне"]
    prompt = next((c for c in candidates
                   if len(generate(client, c, page_defaults)[0]) > len(c)), candidates[0])
    with browser_page(server.url, height=1000) as page:
        page.get_by_label("Prompt").fill(prompt)
        page.get_by_role("button", name="Generate").click()
        # (get_by_label finds no read-only textarea, whose label also holds a copy button)
        output = page.locator("#output textarea")
        deadline = time.monotonic() + 60
        while len(output.input_value()) <= len(prompt) and time.monotonic() < deadline:
            time.sleep(0.2)
        page.locator("#note").get_by_text("Generated").wait_for(timeout=60_000)  # ended
        text = output.input_value()
        page.screenshot(path=str(ARTIFACTS / "app_generate.png"), full_page=True)
    assert text.startswith(prompt) and len(text) > len(prompt)


def test_browser_chats(server):
    need_chromium()
    question = "Татарстанның башкаласы нинди шәһәр?"
    with browser_page(server.url, height=900) as page:
        page.get_by_role("tab", name="Сөйләшү (Chat)").click()
        page.get_by_text("Sampling").click()
        temperature = page.locator("#chat-temperature input[type=number]")
        temperature.fill("0")  # greedy: the sampling controls reach the model
        temperature.press("Tab")
        box = page.locator("#chat-input textarea")
        box.fill(question)
        box.press("Enter")
        bot = page.locator("#chatbot .bot").last
        bot.wait_for(timeout=60_000)
        deadline = time.monotonic() + 60  # streamed: wait until the answer stops growing
        seen, stable_since = "", time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - stable_since < 2:
            text = bot.inner_text().strip()
            if text != seen:
                seen, stable_since = text, time.monotonic()
            time.sleep(0.2)
        user = page.locator("#chatbot .user").last.inner_text().strip()
        page.screenshot(path=str(ARTIFACTS / "app_chat.png"), full_page=True)
    assert user == question
    assert seen  # the streamed answer (app.chat shows "…" when the model ends its turn at once)
