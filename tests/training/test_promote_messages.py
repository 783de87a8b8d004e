"""The honesty gate's words (issue 19): a refusal shows both numbers so that they differ
as printed, and a model that predicts exactly the base rate is not "worse" than it."""

from __future__ import annotations

from types import SimpleNamespace

from models.targets import TARGETS
from training.promote import PromotionSettings, honesty_problems


def _win_model(log_loss: float, base_rate_log_loss: float) -> SimpleNamespace:
    return SimpleNamespace(target=TARGETS["outcome"], info={
        "metrics": {"auc": 0.5, "log_loss": log_loss, "ece": 0.01},
        "test_baselines": {"stage_rate": {"auc": 0.5},
                           "base_rate": {"log_loss": base_rate_log_loss}}})


def test_a_model_that_predicts_the_base_rate_is_not_worse_than_it() -> None:
    # the figures of a stage-rate model shipped on a log without signal (a coin toss):
    # the same probabilities as the base rate, summed in another order
    same = _win_model(0.6936762436482848, 0.6936762404381369)
    assert honesty_problems(same, PromotionSettings()) == []


def test_a_refusal_prints_two_numbers_that_differ() -> None:
    [problem] = honesty_problems(_win_model(0.69372, 0.69366), PromotionSettings())
    assert "log loss 0.69372 is worse" in problem and "(0.69366)" in problem
    [plain] = honesty_problems(_win_model(0.7123, 0.6931), PromotionSettings())
    assert "0.7123" in plain and "(0.6931)" in plain  # four decimals when they suffice
