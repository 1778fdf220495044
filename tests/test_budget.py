"""--time-budget: the preset the budget affords, the evaluations' share, and what 03 does with
them. The planner's choices are checked on made-up speeds: no assertion here depends on how
fast this machine is."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

import config
from tatargpt import budget
from tests.test_train import evals, run_train, train_mod

LADDER = [("tiny", 1_000_000), ("small", 23_000_000), ("medium", 50_000_000),
          ("large", 110_000_000)]


def timer(rates: dict[str, float]):
    calls = []

    def speed(name: str) -> float:
        calls.append(name)
        return rates[name]

    return speed, calls


def test_a_slow_machine_gets_the_smallest_preset_and_times_nothing_bigger():
    # A 2-core CPU: 12,000 tokens/s for tiny; 20 min leave ~18 min for training.
    speed, calls = timer({"tiny": 12_000, "small": 600})
    plan = budget.choose(LADDER, 18 * 60, 300_000, speed)
    assert plan.preset == "tiny"
    assert calls == ["tiny"]  # small could not reach 20 tokens/param even 64× faster
    assert plan.chosen.tokens == pytest.approx(12_000 * 18 * 60)
    assert plan.passes() == pytest.approx(12_000 * 18 * 60 / 300_000)
    small = plan.options[1]
    assert small.preset == "small" and small.tokens_per_s is None
    assert small.per_param < config.TOKENS_PER_PARAM
    line = plan.line(20)
    assert "preset tiny" in line and "per parameter" in line and "passes over" in line
    assert "small (23.00M) <" in line


def test_a_fast_machine_gets_the_largest_preset_that_sees_enough_tokens():
    # A GPU: tiny leaves it idle (1M tokens/s, where FLOPs alone predict 23M / 1M × small's
    # speed); small reaches 20 tokens/param in the budget, medium does not.
    speed, calls = timer({"tiny": 1_000_000, "small": 600_000, "medium": 250_000,
                          "large": 100_000})
    plan = budget.choose(LADDER, 18 * 60, 20_000_000, speed)
    assert plan.preset == "small"
    assert plan.chosen.per_param == pytest.approx(600_000 * 18 * 60 / 23_000_000)
    assert calls == ["tiny", "small", "medium"]  # large is bounded out, not timed
    assert [o.tokens_per_s is None for o in plan.options] == [False, False, False, True]


def test_too_little_time_for_any_preset_still_trains_the_smallest():
    speed, calls = timer({"tiny": 1_000})
    plan = budget.choose(LADDER, 60, 300_000, speed)
    assert plan.preset == "tiny" and plan.chosen.per_param < config.TOKENS_PER_PARAM
    assert calls == ["tiny"]


def test_every_preset_fitting_gets_the_largest():
    speed, _ = timer({name: 1e9 for name, _ in LADDER})
    assert budget.choose(LADDER, 3600, 1, speed).preset == "large"


@pytest.mark.parametrize("per_eval, interval", [(0.5, 200), (30.0, 200), (300.0, 50)])
def test_evaluations_take_at_most_their_share_of_the_budget(per_eval, interval):
    budget_s, per_iter = 20 * 60, 0.35
    left = budget_s - 10 - per_eval
    n, spaced = budget.space_evaluations(left, per_iter, per_eval, budget_s, interval)
    assert spaced >= interval
    assert n * per_iter + (n / spaced) * per_eval <= left + 1e-6
    assert (n / spaced) * per_eval <= config.BUDGET_EVAL_SHARE * budget_s + per_eval
    if per_eval * (left / per_iter) / interval <= config.BUDGET_EVAL_SHARE * budget_s:
        assert spaced == interval  # cheap evaluations keep the preset's interval


def test_the_ladder_counts_parameters_with_this_vocabulary():
    counted = dict(budget.ladder(3072, {}))
    assert list(counted) == list(config.BUDGET_LADDER)
    assert counted["tiny"] < counted["small"] < counted["medium"] < counted["large"]
    from model import GPT
    assert counted["tiny"] == GPT(config.get_preset("tiny", vocab_size=3072)).num_params()


def test_measured_speed_is_a_positive_rate():
    cfg = config.get_preset("tiny", vocab_size=512, block_size=16)
    rate = budget.measure_tokens_per_s(cfg, 2, torch.device("cpu"), torch.float32)
    assert rate > 0


def test_03_without_preset_lets_the_budget_choose(tiny_data, tmp_path, capsys):
    out = tmp_path / "models"
    assert train_mod.main([
        "--data-dir", str(tiny_data.data_dir), "--tokenizer-dir", str(tiny_data.tokenizer_dir),
        "--out-dir", str(out), "--time-budget", "0.15", "--batch-size", "4",
        "--block-size", "32", "--eval-iters", "2", "--device", "cpu", "--dtype", "float32",
    ]) == 0
    printed = capsys.readouterr().out
    chose = re.search(r"time budget 0.15 min: preset (\w+) \(([\d.]+)M parameters\).*"
                      r"([\d.]+) per parameter.*passes over", printed)
    assert chose, printed
    ckpt = torch.load(out / "last.pt", weights_only=True)
    # Tokens per parameter in 9 s on a CPU are far from 20: the smallest preset is taken,
    # with its own training settings (its learning rate, not small's).
    assert chose[1] == "tiny" == ckpt["train_config"]["preset"]
    assert ckpt["train_config"]["lr"] == config.TRAIN_PRESETS["tiny"]["lr"]
    assert ckpt["train_config"]["batch_size"] == 4  # an explicit flag is kept
    assert ckpt["model_config"]["block_size"] == 32
    assert ckpt["finished"] and len(evals(out)) >= 2


def test_an_explicit_preset_too_big_for_the_budget_is_named(tiny_data, tmp_path, capsys):
    out = tmp_path / "models"
    assert run_train(tiny_data, out, "--preset", "small", "--time-budget", "0.05",
                     "--max-iters", "1", "--block-size", "16", "--batch-size", "1",
                     "--grad-accum", "1") == 0
    printed = capsys.readouterr().out
    warned = re.search(r"warning: in 0.05 min this machine trains preset small .* per "
                       r"parameter: too few steps to learn much. --preset (\w+) would see",
                       printed)
    assert warned, printed
    assert warned[1] == "tiny"
    # It warns, and trains what was asked for.
    assert torch.load(out / "last.pt", weights_only=True)["train_config"]["preset"] == "small"


def test_a_small_corpus_caps_the_plan_at_its_passes(tmp_path, capsys):
    """However long the budget, a run reads train.bin at most BUDGET_MAX_PASSES times: 150
    sentences are read 30 times in well under the 5 minutes given (the run ends there)."""
    from conftest import ROOT, load_script
    text = tmp_path / "mine.txt"
    lines = (ROOT / "data/sample/daily_life.txt").read_text(encoding="utf-8").splitlines()
    text.write_text("\n".join(lines[:150]) + "\n", encoding="utf-8")
    data, tok, out = tmp_path / "data", tmp_path / "tokenizer", tmp_path / "models"
    assert load_script("01_prepare_data.py").main(
        ["--text-file", str(text), "--data-dir", str(data)]) == 0
    assert load_script("02_train_tokenizer.py").main(
        ["--data-dir", str(data), "--tokenizer-dir", str(tok), "--vocab-size", "512"]) == 0
    assert train_mod.main([
        "--data-dir", str(data), "--tokenizer-dir", str(tok), "--out-dir", str(out),
        "--preset", "tiny", "--time-budget", "5", "--block-size", "32", "--batch-size", "4",
        "--eval-iters", "2", "--eval-interval", "50", "--patience", "0", "--device", "cpu",
        "--dtype", "float32"]) == 0
    printed = capsys.readouterr().out
    assert f"{config.BUDGET_MAX_PASSES} passes over train.bin" in printed, printed
    train_tokens = json.loads((data / "processed/meta.json").read_text())["train_tokens"]
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["iter"] == math.ceil(config.BUDGET_MAX_PASSES * train_tokens / (4 * 32))
    assert ckpt["finished"] and ckpt["train_config"]["max_iters"] == ckpt["iter"]
