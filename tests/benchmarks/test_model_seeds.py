"""The many-seed comparison (``benchmarks/model_seeds.py``): its paired interval, and a
run on a slice of Helpdesk that refits the shipped model at each seed (skipped when
``../shared/data`` is absent)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.benchmarks.scripts import load_script

model_seeds = load_script("model_seeds")


def test_the_paired_interval_is_a_t_interval_of_the_differences() -> None:
    ours, peer = [5.5, 5.7, 5.6, 5.4], [5.4, 5.5, 5.5, 5.4]
    out = model_seeds.paired_interval(ours, peer)
    diff = np.array(ours) - np.array(peer)  # 0.1, 0.2, 0.1, 0.0
    half = 3.182446 * diff.std(ddof=1) / 2  # t(0.975, 3 df) * sd / sqrt(4)
    assert out["mean"] == pytest.approx(0.1)
    assert out["ci95_low"] == pytest.approx(0.1 - half, rel=1e-5)
    assert out["ci95_high"] == pytest.approx(0.1 + half, rel=1e-5)
    assert math.isnan(model_seeds.paired_interval([1.0], [2.0])["ci95_low"])  # one seed


def test_each_seed_refits_the_shipped_model() -> None:
    spec = model_seeds.LOGS["helpdesk"]
    if not (model_seeds.DEFAULT_DATA_DIR / spec.file).is_file():
        pytest.skip("../shared/data/helpdesk is absent")
    out = model_seeds.run("helpdesk", "remaining_time", [0, 1, 0], [], max_cases=500)
    maes = out["per_seed"]["ours"]
    assert all(0 < m < 60 for m in maes)
    assert maes[0] == maes[2]  # the same seed, the same model
    assert out["mean"]["ours"] == pytest.approx(np.mean(maes))
    assert out["ours_minus_peer"] == {}
