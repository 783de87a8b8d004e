"""The trees read the encoders' summaries only where they clearly beat the other features
(``TrainConfig.summary_penalty``, LightGBM's ``feature_penalty``)."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.io import write_frame
from features.simulate import simulate_log
from models.targets import TARGETS, resolve_targets
from training.config import TrainConfig
from training.data import prepare_training_data
from training.fit import fit_target


def test_lightgbm_honours_the_gain_penalty() -> None:
    """The informative column and a near copy: unpenalised, the trees split on both;
    with the copy penalised, never on it, as the original always gains more than a
    tenth of it. Guards the LightGBM parameter the penalty rides on."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=4000)
    X = pd.DataFrame({"state": x, "summary": x + rng.normal(scale=0.05, size=4000),
                      "noise": rng.normal(size=4000)})
    y = x + rng.normal(scale=0.5, size=4000)
    params = {"n_estimators": 60, "verbose": -1, "random_state": 1}

    def splits(**extra: object) -> dict[str, int]:
        booster = lgb.LGBMRegressor(**params, **extra).fit(X, y).booster_
        return dict(zip(X.columns, booster.feature_importance("split"), strict=True))

    assert splits()["summary"] > 100
    penalised = splits(feature_penalty=[1.0, 0.1, 1.0])
    assert penalised["summary"] == 0 and penalised["state"] > 100


def test_the_penalty_follows_the_matrix_columns_and_yields_to_an_override() -> None:
    names = ["last_activity", "n_a_then_b", "days_since_a", "elapsed_days"]
    summaries = ["n_a_then_b", "days_since_a"]
    params = TrainConfig().lgbm_params(names, summaries)
    assert params["feature_penalty"] == [1.0, 0.1, 0.1, 1.0]
    assert "feature_penalty" not in TrainConfig(summary_penalty=1.0).lgbm_params(names,
                                                                                  summaries)
    own = TrainConfig(lgbm={"feature_penalty": [1.0] * 4}).lgbm_params(names, summaries)
    assert own["feature_penalty"] == [1.0] * 4
    alias = TrainConfig(lgbm={"feature_contri": [1.0] * 4}).lgbm_params(names, summaries)
    assert "feature_penalty" not in alias  # LightGBM's other name for it wins, unwarned
    assert "feature_penalty" not in TrainConfig().lgbm_params(names, [])


def test_the_shipped_trees_carry_the_penalty_of_the_pipelines_summaries(tmp_path: Path) -> None:
    events, _ = simulate_log(n_cases=600, seed=4)
    path = tmp_path / "log.csv"
    write_frame(events, path, case_column="opportunity_id", activity_column="activity",
                timestamp_column="event_time", resource_column="user")
    config = TrainConfig(lgbm={"n_estimators": 40}, learning_curve=False, select_kind=False)
    data = prepare_training_data(path, None, config, resolve_targets("remaining_time"))
    summaries = set(data.pipeline.summary_names())
    names = list(data.pipeline.feature_names_out_)
    assert any(n.startswith("days_since_") for n in summaries)
    assert any("_then_" in n for n in summaries)
    assert {"day_in_quarter", "days_to_quarter_end"} & set(names) <= summaries
    assert not summaries & {"last_activity", "elapsed_days", "n_events"}
    result = fit_target(data, TARGETS["remaining_time"], config)
    expected = [0.1 if n in summaries else 1.0 for n in names]
    model = result.bundle.model
    for trees in (model.model_, model.lower_, model.upper_):  # the point and the interval
        assert trees.get_params()["feature_penalty"] == expected
