"""04_evaluate.py and its parts: the Kneser-Ney character n-gram (ngram.py), the batched
sentence scores of utils.py, and eval.json as quick_test.py reads it."""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
import torch

import ngram
import tatar_text
import utils
from conftest import ROOT, load_script
from tatargpt import checkpoints

evaluate_mod = load_script("04_evaluate.py")
quick_test = load_script("quick_test.py")

TEXT = [line.strip() for line in (ROOT / "data" / "sample" / "history_culture.txt")
        .read_text(encoding="utf-8").splitlines() if line.strip()]


def distribution_sum(model: ngram.CharNgram, context: str) -> float:
    """Σ P(symbol | context) over every symbol that can follow: each character, the sentence
    end, and UNK (which stands for all unseen characters at once)."""
    unseen = "\uffff"
    assert unseen not in model.vocab
    total = 0.0
    for follower in [*model.vocab, None, unseen]:
        sentence = context + (follower or "")
        p, _ = model.position_probs([sentence])
        total += p[len(context)]
    return total


@pytest.mark.parametrize("order", [2, 4, 6])
@pytest.mark.parametrize("context", ["", "Каз", "Татарстанның баш", "qqq"])
def test_the_ngram_is_a_proper_distribution(order, context):
    model = ngram.CharNgram(order).fit(TEXT)
    assert distribution_sum(model, context) == pytest.approx(1.0, abs=1e-9)


def test_the_ngram_follows_the_kneser_ney_formula():
    """A bigram model of «аб» and «аа», computed by hand (^ = sentence start, $ = end).

    Bigram counts: ^а 2, аб 1, аа 1, а$ 1, б$ 1 → n₁ = 4, n₂ = 1, Y = 4/6,
    D₁ = 1 − 2Y·1/4 = 2/3, D₂ = 2 − 3Y·0 = 2. Unigram continuation counts: а ← {^, а} = 2,
    б ← {а} = 1, $ ← {б, а} = 2, total 5 → n₁ = 1, n₂ = 2, Y = 1/5, D₁ = 0.2, D₂ = 2;
    γ = (0.2·1 + 2·2)/5 = 0.84 over a uniform 1/4 (а, б, $, UNK).
    """
    model = ngram.CharNgram(2).fit(["аб", "аа"])
    assert model.orders[1].discounts[:2] == pytest.approx((2 / 3, 2.0))
    assert model.orders[0].discounts[:2] == pytest.approx((0.2, 2.0))
    p_b = (1 - 0.2) / 5 + 0.84 / 4  # P₁(б) = 0.37
    p_a = 0.84 / 4  # P₁(а): its count 2 is discounted away
    p, _ = model.position_probs(["аб"])
    assert p[0] == pytest.approx((2 - 2.0) / 2 + (2.0 / 2) * p_a)  # P(а | ^), γ(^) = D₂·1/2
    assert p[1] == pytest.approx((1 - 2 / 3) / 3 + (2 / 3) * p_b)  # P(б | а), γ(а) = 3·D₁/3
    assert distribution_sum(model, "а") == pytest.approx(1.0)


def test_a_longer_order_fits_tatar_better_and_unknown_letters_are_finite():
    train, val = TEXT[::2], TEXT[1::2]
    bpc = {k: ngram.CharNgram(k).fit(train).bits_per_char(val) for k in (2, 4, 6)}
    assert bpc[6] < bpc[4] < bpc[2] < 5
    model = ngram.CharNgram(4).fit(train)
    assert math.isfinite(model.bits_per_char(["Ǆ ☃ 漢字 — бу яңа хәрефләр."]))
    with pytest.raises(ValueError):
        ngram.CharNgram(9)


def test_batched_sentence_scores_equal_one_by_one(tiny_checkpoint):
    model, _ = utils.load_model(tiny_checkpoint.checkpoint)
    tok = utils.load_tokenizer(tiny_checkpoint.tokenizer_dir)
    long = " ".join(TEXT[:40])  # longer than the context: scored in windows
    sentences = TEXT[:9] + [long, "Ә"]
    batched = utils.sentence_nlls(model, tok, sentences, batch_size=4)
    single = [utils.score_text(model, tok, s)["nll"] for s in sentences]
    assert batched == pytest.approx(single, rel=1e-5)


@pytest.fixture(scope="module")
def evaluated(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "eval.json"
    code = evaluate_mod.main(["--checkpoint", str(tiny_checkpoint.checkpoint), "--tokenizer",
                              str(tiny_checkpoint.tokenizer_dir), "--data-dir",
                              str(tiny_checkpoint.data_dir), "--out", str(out), "--device",
                              "cpu", "--max-pairs", "200", "--eval-file",
                              str(tiny_checkpoint.data_dir / "processed" / "val.txt")])
    assert code == 0
    return out, json.loads(out.read_text(encoding="utf-8"))


def test_eval_json_holds_figures_that_can_be_recomputed(evaluated, tiny_checkpoint):
    out, result = evaluated
    val = [line for line in (tiny_checkpoint.data_dir / "processed" / "val.txt")
           .read_text(encoding="utf-8").splitlines() if line.strip()]
    train = [line for line in (tiny_checkpoint.data_dir / "processed" / "train.txt")
             .read_text(encoding="utf-8").splitlines() if line.strip()]
    assert result["val"]["sentences"] == len(val)
    assert result["val"]["chars"] == sum(len(s) + 1 for s in val)
    model, ckpt = utils.load_model(tiny_checkpoint.checkpoint)
    tok = utils.load_tokenizer(tiny_checkpoint.tokenizer_dir)
    assert result["gpt"]["bpc"] == pytest.approx(utils.bits_per_char(model, tok, val), abs=1e-3)
    lm = ngram.CharNgram(6).fit(train)
    assert result["ngram"]["bpc"] == pytest.approx(lm.bits_per_char(val), abs=1e-4)
    pairs = tatar_text.minimal_pairs(val, 200, seed=0)
    assert result["harmony"]["pairs"] == len(pairs) > 20
    knows = np.mean([o > f for o, f in zip(lm.sentence_logprobs([p[0] for p in pairs]),
                                           lm.sentence_logprobs([p[1] for p in pairs]),
                                           strict=True)])
    assert result["ngram"]["harmony_accuracy"] == pytest.approx(knows, abs=1e-4)
    assert result["beats_ngram_bpc"] == (result["gpt"]["bpc"] < result["ngram"]["bpc"])
    assert result["fingerprint"] == checkpoints.checkpoint_fingerprint(ckpt)
    assert 1 < result["tokenizer"]["tokens_per_word"] < 6
    png = out.with_suffix(".png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (800, 340)


def test_an_eval_file_is_scored_like_val(evaluated, tiny_checkpoint):
    """val.txt given as --eval-file: the same sentences, so the same figures as the val row."""
    _, result = evaluated
    [own] = result["eval_files"]
    assert own["path"].endswith("val.txt") and own["train_overlap"] == 0
    assert (own["sentences"], own["chars"]) == (result["val"]["sentences"], result["val"]["chars"])
    assert own["gpt"]["bpc"] == result["gpt"]["bpc"]
    assert own["ngram"]["bpc"] == result["ngram"]["bpc"]
    assert own["pairs"] == result["harmony"]["pairs"]
    assert own["gpt"]["harmony_accuracy"] == result["gpt"]["harmony_accuracy"]


def test_an_eval_file_from_train_txt_is_refused(tiny_checkpoint, tmp_path, capsys):
    train = (tiny_checkpoint.data_dir / "processed" / "train.txt").read_text(
        encoding="utf-8").splitlines()
    mine = tmp_path / "mine.txt"
    mine.write_text("\n".join(train[:8] + ["Бу җөмлә беркайчан да язылмаган иде, ахры."]),
                    encoding="utf-8")
    args = ["--checkpoint", str(tiny_checkpoint.checkpoint), "--tokenizer",
            str(tiny_checkpoint.tokenizer_dir), "--data-dir", str(tiny_checkpoint.data_dir),
            "--out", str(tmp_path / "e.json"), "--device", "cpu", "--max-pairs", "20",
            "--eval-file", str(mine)]
    assert evaluate_mod.main(args) == 2
    err = capsys.readouterr().err
    assert "8 of its 9 lines are also in train.txt" in err and "--max-overlap 8" in err
    assert not (tmp_path / "e.json").exists()
    assert evaluate_mod.main(args + ["--max-overlap", "8"]) == 0
    result = json.loads((tmp_path / "e.json").read_text(encoding="utf-8"))
    # Allowed, the lines of train.txt are still left out: only the unwritten one is scored.
    [own] = result["eval_files"]
    assert (own["train_overlap"], own["sentences"]) == (8, 1)
    assert own["chars"] == len("Бу җөмлә беркайчан да язылмаган иде, ахры.") + 1
    (tmp_path / "latin.txt").write_bytes("Казан\n".encode("cp1251"))
    assert evaluate_mod.main(args[:-1] + [str(tmp_path / "latin.txt")]) == 2
    assert "is not UTF-8 text" in capsys.readouterr().err


def test_a_long_eval_file_may_share_two_percent_of_its_lines_left_out(tiny_checkpoint,
                                                                      tmp_path, capsys):
    """Natural text shares a few short common sentences with any corpus: by default 2 % of a
    long file's lines (at least 5) may be in train.txt, and they are not scored."""
    processed = tiny_checkpoint.data_dir / "processed"
    train = (processed / "train.txt").read_text(encoding="utf-8").splitlines()
    val = (processed / "val.txt").read_text(encoding="utf-8").splitlines()[:294]
    assert len(val) == 294
    mine = tmp_path / "mine.txt"
    args = ["--checkpoint", str(tiny_checkpoint.checkpoint), "--tokenizer",
            str(tiny_checkpoint.tokenizer_dir), "--data-dir", str(tiny_checkpoint.data_dir),
            "--out", str(tmp_path / "e.json"), "--device", "cpu", "--max-pairs", "20",
            "--max-sentences", "40", "--eval-file", str(mine)]
    mine.write_text("\n".join(val + train[:7]) + "\n", encoding="utf-8")  # 7 of 301 > 2 %
    assert evaluate_mod.main(args) == 2
    assert "7 of its 301 lines are also in train.txt" in capsys.readouterr().err
    mine.write_text("\n".join(val + train[:6]) + "\n", encoding="utf-8")  # 6 of 300 = 2 %
    assert evaluate_mod.main(args) == 0
    [own] = json.loads((tmp_path / "e.json").read_text(encoding="utf-8"))["eval_files"]
    assert (own["train_overlap"], own["sentences"]) == (6, 294)
    assert own["chars"] == sum(len(s) + 1 for s in val)
    assert "6 of its lines are also in train.txt: left out" in capsys.readouterr().out


def test_the_checklist_row_reads_eval_json_and_refuses_a_stale_one(evaluated, tiny_checkpoint,
                                                                   tmp_path):
    out, result = evaluated
    ckpt = torch.load(tiny_checkpoint.checkpoint, map_location="cpu", weights_only=True)
    here = tmp_path / "best_model.pt"
    here.write_bytes(b"")  # check_baseline reads only the eval.json beside the path
    (tmp_path / "eval.json").write_text(out.read_text(encoding="utf-8"), encoding="utf-8")
    row = quick_test.check_baseline(here, ckpt)
    assert row.ok == result["beats_ngram_bpc"]
    assert f"GPT {result['gpt']['bpc']:.3f} vs 6-gram" in row.evidence
    ckpt["iter"] += 1  # another trained state: the figures are not about it
    row = quick_test.check_baseline(here, ckpt)
    assert not row.ok and "describes another checkpoint" in row.evidence
    (tmp_path / "eval.json").unlink()
    assert "python 04_evaluate.py" in quick_test.check_baseline(here, ckpt).evidence


def test_bad_inputs_get_one_message(tiny_checkpoint, tmp_path, capsys):
    empty = tmp_path / "data"
    (empty / "processed").mkdir(parents=True)
    code = evaluate_mod.main(["--checkpoint", str(tiny_checkpoint.checkpoint), "--tokenizer",
                              str(tiny_checkpoint.tokenizer_dir), "--data-dir", str(empty),
                              "--out", str(tmp_path / "e.json")])
    assert code == 2 and "01_prepare_data.py" in capsys.readouterr().err
    assert not (tmp_path / "e.json").exists()
    with pytest.raises(SystemExit):
        evaluate_mod.main(["--order", "9"])
    assert "--order must be 2 to 7" in capsys.readouterr().err
