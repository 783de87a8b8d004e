"""The quality benchmark's sweep figures: early-prefix ratios, the worst seed, a run."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from tests.benchmarks.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quality() -> ModuleType:
    return load_script("quality")


def test_early_ratios_compare_with_both_oracles_on_prefixes_of_length_1_2(
        quality: ModuleType) -> None:
    rng = np.random.default_rng(3)
    n = 600
    truth = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-2 * truth))).astype(int)
    test = pd.DataFrame({"prefix_len": np.tile([1, 2, 3], n // 3), "y": y,
                         "p_oracle": truth, "p_creation": truth + rng.normal(0, 1, n),
                         "p_win": truth + rng.normal(0, 2, n)})
    out = quality.early_ratios(test)
    early = test[test["prefix_len"] <= 2]
    auc = {c: roc_auc_score(early["y"], early[c]) for c in ("p_win", "p_oracle", "p_creation")}
    assert out["auc_ratio_to_oracle_k1_2"] == pytest.approx(auc["p_win"] / auc["p_oracle"])
    assert out["auc_ratio_to_creation_oracle_k1_2"] == pytest.approx(
        auc["p_win"] / auc["p_creation"])
    assert out["creation_oracle_ratio_k1_2"] == pytest.approx(auc["p_creation"] / auc["p_oracle"])
    assert out["auc_ratio_to_oracle_k1_2"] < out["auc_ratio_to_creation_oracle_k1_2"]
    # without the at-creation truth (older truth files): that ratio is missing, not made up
    partial = quality.early_ratios(test.drop(columns="p_creation"))
    assert np.isnan(partial["auc_ratio_to_creation_oracle_k1_2"])
    assert partial["auc_ratio_to_oracle_k1_2"] == out["auc_ratio_to_oracle_k1_2"]


def test_worst_seed_takes_the_highest_ece_of_ours_and_of_the_oracle(quality: ModuleType) -> None:
    seeds = [{"outcome": {"auc_ratio_to_oracle": r, "ece": e, "oracle_ece": o, "kind": k}}
             for r, e, o, k in ((0.95, 0.02, 0.01, "logistic"), (0.97, 0.03, 0.005, "lightgbm"))]
    worst = quality.worst_of(seeds)["outcome"]
    assert worst == {"auc_ratio_to_oracle": 0.95, "ece": 0.03, "oracle_ece": 0.01,
                     "kind": ["lightgbm", "logistic"]}


def test_a_small_sweep_reports_every_figure(quality: ModuleType) -> None:
    results, _ = quality.run(1500, 4)
    figures = quality.sweep_figures(results)["outcome"]
    for key in ("auc_ratio_to_oracle", "auc_ratio_to_oracle_k1_2",
                "auc_ratio_to_creation_oracle_k1_2", "creation_oracle_ratio_k1_2", "ece",
                "oracle_ece", "ece_sampling_floor"):
        assert np.isfinite(figures[key]), key
    assert 0.5 < figures["creation_oracle_ratio_k1_2"] < 1.0
    assert 0.0 <= figures["oracle_ece"] < 0.1
