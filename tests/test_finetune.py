"""Stage 5: the chat template and its loss mask, LoRA, 05_finetune.py on bad and good input,
and the exported chat model in plain transformers."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import config
import utils
from conftest import ROOT, load_script
from model import GPT
from tatargpt import chat, lora

finetune_mod = load_script("05_finetune.py")

CONVERSATION = [
    {"role": "user", "content": "Сәлам! Хәлләр ничек?"},
    {"role": "assistant", "content": "Әйбәт, рәхмәт."},
    {"role": "user", "content": "«Көн» сүзенең күплеге?"},
    {"role": "assistant", "content": "Көннәр."},
]


@pytest.fixture(scope="module")
def tok(tiny_data):
    return utils.load_tokenizer(tiny_data.tokenizer_dir)


def test_the_template_and_mask_of_a_two_turn_conversation(tok):
    """Checked by hand: the mask is 1 exactly on the answers' tokens and their <|end|>."""
    assert (tok.user_id, tok.assistant_id, tok.end_id) == (4, 5, 6)
    ids, mask = chat.render_conversation(tok, CONVERSATION)
    u1, a1, u2, a2 = (tok.encode(m["content"]) for m in CONVERSATION)
    assert ids == ([2] + [4] + u1 + [6] + [5] + a1 + [6] + [4] + u2 + [6] + [5] + a2 + [6])
    assert mask == ([0] + [0] + [0] * len(u1) + [0] + [0] + [1] * len(a1) + [1]
                    + [0] + [0] * len(u2) + [0] + [0] + [1] * len(a2) + [1])
    assert tok.decode([i for i, m in zip(ids, mask, strict=True) if m]) == "Әйбәт, рәхмәт.Көннәр."
    prompt = chat.render_prompt(tok, CONVERSATION[:3])
    assert prompt == ids[: len(prompt) - 1] + [5]
    # A typed role token is text, not the token: the user cannot end a turn for the model.
    typed, _ = chat.render_conversation(tok, [{"role": "user", "content": "<|end|>"},
                                              {"role": "assistant", "content": "Ә"}])
    assert typed.count(tok.end_id) == 2


def test_the_loss_ignores_what_the_user_wrote(tok):
    """Changing a user token's target leaves the loss as it was; an answer token's does not."""
    torch.manual_seed(0)
    model = GPT(config.get_preset("tiny", vocab_size=tok.vocab_size, block_size=64,
                                  dropout=0.0)).eval()
    ids, mask = chat.render_conversation(tok, CONVERSATION)
    x, y = finetune_mod.make_batch([(ids, mask, None)], tok.pad_id, torch.device("cpu"))
    loss = model(x, y)[1].item()
    user_pos = mask.index(0, 3) - 1  # a target inside the first user message
    answer_pos = mask.index(1) - 1  # the first target of the first answer
    for pos, changes in ((user_pos, False), (answer_pos, True)):
        other = list(ids)
        other[pos + 1] = 100 + (ids[pos + 1] + 1) % 50
        _, y2 = finetune_mod.make_batch([(other, mask, None)], tok.pad_id, torch.device("cpu"))
        assert (model(x, y2)[1].item() != loss) == changes


# rank 8 on this tiny model: 4.99 % of its weights with GELU, 5.31 % with SwiGLU (a third
# matrix per MLP)
@pytest.mark.parametrize("mlp, hidden, share", [("gelu", 512, 0.05), ("swiglu", 344, 0.055)])
def test_lora_trains_adapters_only_and_merges_exactly(mlp, hidden, share):
    torch.manual_seed(0)
    cfg = config.get_preset("tiny", vocab_size=3072, block_size=32, dropout=0.0, mlp=mlp,
                            ffn_hidden=hidden)
    model = GPT(cfg)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    names = lora.add_lora(model, rank=8, alpha=16, targets=["attn", "mlp"])
    c, h, mlps = cfg.n_embd, cfg.ffn_hidden, 3 if cfg.mlp == "swiglu" else 2  # (gate: SwiGLU)
    assert len(names) == (2 + mlps) * cfg.n_layer
    trainable = lora.trainable_parameters(model)
    # r · (in + out) per adapted layer: c_attn, c_proj; c_fc (and c_gate), c_proj
    assert trainable == cfg.n_layer * 8 * ((c + 3 * c) + (c + c) + (mlps - 1) * (c + h) + (h + c))
    assert trainable <= share * sum(base[k].numel() for k in base if k != "lm_head.weight")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x = torch.randint(0, 3072, (2, 32))
    for _ in range(3):
        _, loss = model(x, x)
        loss.backward()
        opt.step()
        opt.zero_grad()
    merged_state = lora.merged_state_dict(model)
    for name, tensor in model.state_dict().items():  # untouched until the merge
        if ".lora_" not in name:
            assert torch.equal(tensor, base[name.replace(".base.", ".")]), name
    assert any(not torch.equal(merged_state[k], base[k]) for k in base)
    merged = GPT(cfg)
    merged.load_state_dict(merged_state)
    model.eval(), merged.eval()
    with torch.no_grad():
        diff = (model(x, all_logits=True)[0] - merged(x, all_logits=True)[0]).abs().max()
    assert diff <= 1e-5
    with pytest.raises(ValueError, match="unknown LoRA target"):
        lora.add_lora(GPT(cfg), 8, 16, ["attention"])


def finetune(tiny_checkpoint, out, *extra) -> int:
    return finetune_mod.main([
        "--checkpoint", str(tiny_checkpoint.checkpoint), "--tokenizer-dir",
        str(tiny_checkpoint.tokenizer_dir), "--data-dir", str(tiny_checkpoint.data_dir),
        "--out", str(out), "--device", "cpu", "--forget-sentences", "20",
        "--check-prompts", "2", *extra])


@pytest.mark.parametrize("line, message", [
    ("not json", "line 2 is not JSON"),
    ('{"messages": [{"role": "assistant", "content": "Әйе."}]}',
     "line 2: message 1 has role 'assistant', expected 'user'"),
    ('{"messages": [{"role": "user", "content": " "}, {"role": "assistant", "content": "Ә"}]}',
     "line 2: message 1 (user) has empty content"),
    ('{"messages": [{"role": "user", "content": "Сәлам"}]}', "line 2: the conversation ends "
                                                             "with the user"),
    (json.dumps({"messages": [{"role": "user", "content": "Сәлам " * 400},
                              {"role": "assistant", "content": "Ә"}]}, ensure_ascii=False),
     "line 2 ("),
])
def test_bad_conversations_get_their_line_and_nothing_is_written(tiny_checkpoint, tmp_path,
                                                                 capsys, line, message):
    sft = tmp_path / "sft"
    sft.mkdir()
    good = json.dumps({"messages": CONVERSATION}, ensure_ascii=False)
    (sft / "mine.jsonl").write_text(f"{good}\n{line}\n{good}\n", encoding="utf-8")
    out = tmp_path / "m" / "chat_model.pt"
    assert finetune(tiny_checkpoint, out, "--sft-dir", str(sft), "--max-iters", "2") == 2
    err = capsys.readouterr().err
    assert f"{sft / 'mine.jsonl'}, {message}" in err and "Traceback" not in err
    assert not out.exists() and not (tmp_path / "m" / "chat_model.new.pt").exists()


def test_a_tokenizer_without_chat_tokens_says_what_to_rerun(tiny_checkpoint, tmp_path):
    old = tmp_path / "tok"
    shutil.copytree(tiny_checkpoint.tokenizer_dir, old)
    text = (old / "tokenizer.json").read_text(encoding="utf-8")
    for name in config.CHAT_TOKENS:  # as a tokenizer trained before they were reserved
        text = text.replace(json.dumps(name), json.dumps(name.replace("|", "¦")))
    (old / "tokenizer.json").write_text(text, encoding="utf-8")
    tokenizer = utils.load_tokenizer(old)
    assert not tokenizer.has_chat_tokens
    with pytest.raises(utils.UserError, match="02_train_tokenizer.py && python 03_train.py"):
        chat.render_conversation(tokenizer, CONVERSATION)


@pytest.fixture(scope="module")
def lora_run(tiny_chat, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora") / "chat_model.pt"
    code = finetune(tiny_chat, out, "--lora-rank", "8", "--max-iters", "20",
                    "--eval-interval", "10")
    return code, out


def test_the_chat_model_loads_everywhere_and_reports(tiny_chat, lora_run):
    model, ckpt = utils.load_model(tiny_chat.chat_checkpoint)
    ft = ckpt["finetune"]
    assert ft["method"] == "full" and ft["val_answer_loss"] < ft["before"]["answer_loss"]
    card = utils.model_card(ckpt, model)
    assert card["fine-tuned"].startswith("full") and "val answer loss" in card
    log = [json.loads(r) for r in tiny_chat.chat_checkpoint.with_name("chat_log.jsonl")
           .read_text().splitlines()]
    assert log[-1]["type"] == "report" and log[-1]["after"]["prompts"] == 2
    tok = utils.load_tokenizer(tiny_chat.tokenizer_dir)
    answer = utils.chat(model, tok, "Сәлам!", max_new_tokens=12, temperature=0)
    assert isinstance(answer, str)
    code, out = lora_run
    assert code == 0
    _, lora_ckpt = utils.load_model(out)
    assert lora_ckpt["finetune"]["method"] == "LoRA rank 8"
    report = json.loads(out.with_name("chat_log.jsonl").read_text().splitlines()[-1])
    assert 0 < report["trainable"] <= 0.05 * report["parameters"]


def test_an_existing_chat_model_is_kept_without_overwrite_and_resume_continues(
        tiny_chat, lora_run, capsys):
    _, out = lora_run
    before = out.read_bytes()
    assert finetune(tiny_chat, out, "--lora-rank", "8", "--max-iters", "20") == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == before
    assert finetune(tiny_chat, out, "--lora-rank", "8", "--max-iters", "25",
                    "--eval-interval", "10", "--resume") == 0
    assert "resuming at iteration 20" in capsys.readouterr().out
    evals = [json.loads(r)["iter"] for r in out.with_name("chat_log.jsonl").read_text()
             .splitlines() if json.loads(r)["type"] == "eval"]
    assert evals == [0, 10, 20, 20, 25]


def test_the_exported_chat_template_gives_our_ids(tiny_chat, tmp_path):
    export = load_script("export_hf.py")
    assert export.main(["--checkpoint", str(tiny_chat.chat_checkpoint), "--tokenizer",
                        str(tiny_chat.tokenizer_dir), "--out", str(tmp_path / "hf")]) == 0
    from transformers import AutoTokenizer, GenerationConfig

    hf = AutoTokenizer.from_pretrained(tmp_path / "hf")
    tok = utils.load_tokenizer(tiny_chat.tokenizer_dir)
    longer = CONVERSATION + [{"role": "user", "content": "Җәйге яңгыр, өй түбәсе һәм үрдәкләр."},
                             {"role": "assistant", "content": "Бик матур җөмлә: ә, ө, ү, җ, ң, һ."}]
    for messages in (CONVERSATION, longer):
        ours, _ = chat.render_conversation(tok, messages)
        assert hf.apply_chat_template(messages, return_dict=True)["input_ids"] == ours
        theirs = hf.apply_chat_template(messages[:-1], add_generation_prompt=True,
                                        return_dict=True)["input_ids"]
        assert theirs == chat.render_prompt(tok, messages[:-1])
    generation = GenerationConfig.from_pretrained(tmp_path / "hf")
    assert tok.end_id in generation.eos_token_id
    assert "apply_chat_template" in (tmp_path / "hf" / "README.md").read_text(encoding="utf-8")


def test_the_data_split_is_stable_and_the_bundled_set_is_checked():
    files = sorted((ROOT / "data" / "sft").glob("*.jsonl"))
    conversations = [m for f in files for _, m in chat.read_conversations(f)]
    assert len(conversations) >= 1000
    assert any(len(m) >= 4 for m in conversations)
    val = [m for m in conversations if chat.is_val(m, 10)]
    assert 0.06 < len(val) / len(conversations) < 0.14
    assert chat.is_val(conversations[0], 10) == chat.is_val(list(conversations[0]), 10)


def test_ctrl_c_keeps_the_best_model_so_far(tiny_chat, tmp_path):
    """SIGINT (Ctrl-C) after the first evaluation: exit 130, chat_model.pt holds the best
    model of the run (a checkpoint every tool loads), and --resume is named."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "chat_model.pt"
    cmd = [sys.executable, "05_finetune.py", "--checkpoint", str(tiny_chat.checkpoint),
           "--tokenizer-dir", str(tiny_chat.tokenizer_dir), "--data-dir",
           str(tiny_chat.data_dir), "--out", str(out), "--device", "cpu", "--max-iters",
           "100000", "--eval-interval", "100000", "--forget-sentences", "5",
           "--check-prompts", "1"]
    # Ctrl-C as in a terminal, even where pytest itself was started with SIGINT ignored (a
    # background job): the child would inherit that, and Python would leave it ignored.
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        log = tmp_path / "chat_log.new.jsonl"
        deadline = time.monotonic() + 240
        while ('"eval"' not in (log.read_text() if log.is_file() else "")
               and proc.poll() is None and time.monotonic() < deadline):
            time.sleep(0.3)
        assert proc.poll() is None, proc.communicate()
        assert not out.exists()  # the run's best waits in chat_model.new.pt until it ends
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # a failed test leaves no training running behind it
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert "holds the best model so far" in stderr and "--resume" in stderr
    _, ckpt = utils.load_model(out)
    assert ckpt["finetune"]["iter"] == 0
    assert not (tmp_path / "chat_model.new.pt").exists()
    assert (tmp_path / "chat_last.pt").is_file()
