"""export_hf.py: the exported folder loads in plain transformers and computes what ours does;
our own tools load it back (without transformers), and a Hub id fails clearly offline."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

import config
import utils
from conftest import ROOT, load_script
from model import GPT
from tatargpt import checkpoints

transformers = pytest.importorskip("transformers")  # in requirements-dev.txt: CI has it
export_hf = load_script("export_hf.py")

TEXT = "Казан — Татарстанның башкаласы, анда күп кеше яши."
SHAPES = {  # each preset's architecture at test size
    "small": {}, "llama": {}, "gpt2": {}, "mistral": {"n_kv_head": 2, "sliding_window": 16},
}


def lively_checkpoint(path, preset: str, tokenizer: utils.Tokenizer, **shape) -> GPT:
    """A checkpoint of the preset's architecture at test size, with weights large enough that
    the logits depend on the context (a fresh init predicts almost uniformly)."""
    cfg = config.get_preset(preset, vocab_size=tokenizer.vocab_size, n_layer=2, n_embd=64,
                            n_head=4, ffn_hidden=96, block_size=64, **shape)
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn_like(p) * 0.2)
    torch.save({"format": checkpoints.CHECKPOINT_FORMAT, "model": model.state_dict(),
                "model_config": cfg.to_dict(), "tokenizer_hash": tokenizer.hash,
                "train_config": {"preset": preset}, "iter": 7, "best_val_loss": 4.5,
                "metrics": {"val_loss": 4.5, "val_bpc": 2.5}, "init": "random",
                "data_stats": {"sources": [{"kind": "sample", "name": "sample"}]}}, path)
    return model


def copy_checkpoint(trained, tmp_path):
    """The session's checkpoint and its log in a folder of this test (nothing else beside)."""
    models = tmp_path / "models"
    models.mkdir()
    for name in ("best_model.pt", "train_log.jsonl"):
        shutil.copy(trained.out_dir / name, models / name)
    return models / "best_model.pt"


@pytest.fixture(scope="module")
def tokenizer(tiny_data) -> utils.Tokenizer:
    return utils.load_tokenizer(tiny_data.tokenizer_dir)


@pytest.mark.parametrize("preset", list(SHAPES))
def test_exported_logits_and_greedy_tokens_equal_ours(preset, tokenizer, tiny_data, tmp_path):
    ckpt = tmp_path / "model.pt"
    ours = lively_checkpoint(ckpt, preset, tokenizer, **SHAPES[preset])
    out = tmp_path / "hf"
    assert export_hf.main(["--checkpoint", str(ckpt), "--tokenizer",
                           str(tiny_data.tokenizer_dir), "--out", str(out)]) == 0
    model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert type(model).__name__ == export_hf.FAMILIES[export_hf.family_of(ours.config)]
    ids = tok(TEXT, return_tensors="pt").input_ids
    assert ids[0].tolist() == [tokenizer.bos_id] + tokenizer.encode(TEXT)
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, ours(ids, all_logits=True)[0],
                                   rtol=0, atol=1e-4)
    n = ours.config.block_size - ids.size(1)  # within the context: no cropping on either side
    theirs = model.generate(ids, max_new_tokens=n, do_sample=False, repetition_penalty=1.0,
                            eos_token_id=None)
    assert theirs.tolist() == ours.generate(ids, n, temperature=0).tolist()
    # And back: our loader rebuilds exactly the same model from the folder.
    again, meta = utils.load_model(out)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in ours.state_dict().items())
    assert meta["iter"] == 7


def test_a_trained_model_exports_with_card_tokenizer_and_generation_config(tiny_checkpoint,
                                                                            tmp_path):
    out = tmp_path / "hf"
    checkpoint = copy_checkpoint(tiny_checkpoint, tmp_path)
    assert export_hf.main(["--checkpoint", str(checkpoint), "--tokenizer",
                           str(tiny_checkpoint.tokenizer_dir), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "config.json", "generation_config.json", "model.safetensors",
        "tokenizer.json", "tokenizer_config.json"]
    gen = json.loads((out / "generation_config.json").read_text())
    assert (gen["eos_token_id"], gen["bos_token_id"], gen["pad_token_id"]) == (3, 2, 0)
    assert gen["do_sample"] and gen["temperature"] == 0.8 and gen["top_k"] == 50
    ckpt = torch.load(tiny_checkpoint.checkpoint, map_location="cpu", weights_only=True)
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "license: cc0-1.0" in card and "language: tt" in card
    assert f"| validation loss (nats per token) | {ckpt['best_val_loss']:.4f} |" in card
    # (tiny is RMSNorm + SwiGLU: a Llama)
    assert f"{ckpt['iter']:,} iterations" in card and "LlamaForCausalLM" in card
    assert "n-gram" not in card  # no eval.json for this checkpoint: nothing claimed

    tok = transformers.AutoTokenizer.from_pretrained(out)
    ours = utils.load_tokenizer(tiny_checkpoint.tokenizer_dir)
    literal = "Бу <eos> сүзе текстта гына."
    assert tok(literal).input_ids == [ours.bos_id] + ours.encode(literal)
    assert tok.decode(tok(TEXT).input_ids, skip_special_tokens=True) == TEXT
    pipe = transformers.pipeline("text-generation", model=str(out), device="cpu")
    text = pipe("Казан", max_new_tokens=10, do_sample=False)[0]["generated_text"]
    assert text.startswith("Казан") and len(text) > len("Казан")


def test_the_card_reports_the_evaluation_of_this_checkpoint(tiny_checkpoint, tmp_path):
    checkpoint = copy_checkpoint(tiny_checkpoint, tmp_path)
    evaluate = load_script("04_evaluate.py")
    assert evaluate.main(["--checkpoint", str(checkpoint), "--tokenizer",
                          str(tiny_checkpoint.tokenizer_dir), "--data-dir",
                          str(tiny_checkpoint.data_dir), "--device", "cpu"]) == 0
    ev = json.loads((checkpoint.parent / "eval.json").read_text(encoding="utf-8"))
    out = tmp_path / "hf"
    assert export_hf.main(["--checkpoint", str(checkpoint), "--tokenizer",
                           str(tiny_checkpoint.tokenizer_dir), "--out", str(out)]) == 0
    card = (out / "README.md").read_text(encoding="utf-8")
    assert f"{ev['gpt']['bpc']:.3f} (a 6-gram Kneser-Ney model on the same text: " \
           f"{ev['ngram']['bpc']:.3f})" in card


def test_our_tools_run_an_exported_folder(tiny_checkpoint, tmp_path):
    out = tmp_path / "hf"
    assert export_hf.main(["--checkpoint", str(tiny_checkpoint.checkpoint), "--tokenizer",
                           str(tiny_checkpoint.tokenizer_dir), "--out", str(out)]) == 0
    run = subprocess.run([sys.executable, str(ROOT / "quick_test.py"), "--checkpoint", str(out),
                          "--data-dir", str(tiny_checkpoint.data_dir), "--checklist"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "| ✅ | Trained from scratch" in run.stdout, run.stdout + run.stderr
    assert "required: 5/5 passed" in run.stdout and run.returncode == 0
    import app

    loaded = app.load(out, utils.DEFAULT_TOKENIZER, torch.device("cpu"))
    text = list(app.generate(loaded, "Казан", 10, 0.0, 0, 1.0, 1.0, 0))[-1][0]
    model, _ = utils.load_model(tiny_checkpoint.checkpoint)
    tok = utils.load_tokenizer(tiny_checkpoint.tokenizer_dir)
    assert text == utils.generate_text(model, tok, "Казан", 10, temperature=0)


def test_what_cannot_be_exported_is_refused(tokenizer, tiny_data, tmp_path, capsys):
    ckpt = tmp_path / "odd.pt"
    lively_checkpoint(ckpt, "small", tokenizer, norm="rmsnorm")  # RMSNorm with a GELU MLP
    assert export_hf.main(["--checkpoint", str(ckpt), "--tokenizer",
                           str(tiny_data.tokenizer_dir), "--out", str(tmp_path / "x")]) == 2
    assert "no transformers architecture computes exactly" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.tmp").exists()
    lively_checkpoint(ckpt, "tiny", tokenizer)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    assert export_hf.main(["--checkpoint", str(ckpt), "--tokenizer",
                           str(tiny_data.tokenizer_dir), "--out", str(busy)]) == 2
    assert "--overwrite" in capsys.readouterr().err and (busy / "keep.txt").is_file()


def test_a_hub_id_without_internet_is_one_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(utils.UserError) as e:
        utils.load_model("someone/tatar-gpt")
    message = str(e.value)
    assert "cannot get someone/tatar-gpt from the Hugging Face Hub" in message
    assert "huggingface-cli download someone/tatar-gpt --local-dir hf_model" in message
    with pytest.raises(utils.UserError, match="no checkpoint at models/none.pt"):
        utils.load_model("models/none.pt")  # a missing file is not taken for a Hub id
