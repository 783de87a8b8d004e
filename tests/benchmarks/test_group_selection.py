"""The group-selection experiment's rule (``benchmarks/group_selection.py``) on made-up
blocks: a group whose link to the label holds in the fit block only is left out, a
useful group is kept, and a run where nothing hurts leaves nothing out."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tests.benchmarks.scripts import load_script
from training.config import TrainConfig

selection = load_script("group_selection")


def _folds(n_fit: int = 3000, n_valid: int = 1500, drifting: bool = True):
    """One prefix per case; ``useful`` decides the label in every block; ``drift`` is
    the label plus noise in the fit block and noise alone in the valid block (a feature
    that stands for the period, as a calendar position can)."""
    rng = np.random.default_rng(0)

    def block(n: int, fit: bool) -> tuple[pd.DataFrame, np.ndarray]:
        useful = rng.normal(size=n)
        y = (useful + rng.normal(scale=0.8, size=n) > 0).astype(float)
        linked = fit or not drifting
        drift = (y if linked else rng.integers(0, 2, n)) + rng.normal(scale=0.3, size=n)
        return pd.DataFrame({"useful": useful, "drift": drift,
                             "noise": rng.normal(size=n)}), y

    (X_fit, y_fit), (X_valid, y_valid), (X_cal, y_cal) = (
        block(n_fit, True), block(n_valid, False), block(n_valid, False))
    return selection.Folds([X_fit, X_valid, X_cal], [y_fit, y_valid, y_cal],
                           np.arange(n_valid).astype(str))


GROUPS = {"kept": ["useful"], "period": ["drift"], "noise": ["noise"]}


def test_a_group_that_only_fits_the_past_is_left_out_and_a_useful_one_kept() -> None:
    target = selection.BENCH_TARGETS["outcome"]
    out = selection.select_groups(target, _folds(), GROUPS, (0, 1),
                                  TrainConfig(learning_curve=False), rounds=2, resamples=50)
    assert out.dropped[0] == "period"
    assert "kept" not in out.dropped
    first = out.rounds[0]["scores"]
    assert first["period"]["passes"] and first["period"]["gain_ci95"][0] > 0
    assert min(first["kept"]["gain_per_seed"]) < 0  # leaving it out costs AUC
    assert out.fits >= 2 * (1 + len(GROUPS))


def test_nothing_is_left_out_when_every_group_holds_in_the_valid_block() -> None:
    target = selection.BENCH_TARGETS["outcome"]
    out = selection.select_groups(target, _folds(drifting=False), {"kept": ["useful"],
                                                                   "period": ["drift"]},
                                  (0, 1), TrainConfig(learning_curve=False), rounds=2,
                                  resamples=50)
    assert out.dropped == []
    assert len(out.rounds) == 1
