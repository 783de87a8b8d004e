"""Model objects on synthetic data whose truth is known."""

from __future__ import annotations

import copy
import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from sklearn.isotonic import IsotonicRegression

from models.baselines import LogisticBaseline, PaymentDelayBaseline
from models.bundle import TargetBundle
from models.estimators import IntervalRegressor, WinProbabilityModel, treeshap_booster
from models.matrix import as_matrix
from models.metrics import ece_sampling_floor, expected_calibration_error


def synthetic(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({
        "a": rng.normal(size=n), "b": rng.normal(size=n),
        "c": pd.Categorical(rng.choice(["x", "y", "z"], size=n), categories=["x", "y", "z"]),
    })
    logit = 1.2 * X["a"] - 0.8 * X["b"] + X["c"].map({"x": 0.5, "y": 0.0, "z": -0.5}).astype(float)
    p = 1 / (1 + np.exp(-logit.to_numpy()))
    return X, (rng.random(n) < p).astype(int), p


def folds(seed: int = 0) -> list[tuple[pd.DataFrame, np.ndarray]]:
    return [synthetic(n, seed + i)[:2] for i, n in enumerate((4000, 1500, 3000, 4000))]


def test_calibration_lowers_the_calibration_error() -> None:
    (X, y), (Xv, yv), (Xc, yc), (Xt, yt) = folds()
    # weighting positives 4x makes the raw probabilities too high: calibration must fix it
    skewed = {"scale_pos_weight": 4.0, "n_estimators": 300}
    raw = WinProbabilityModel(skewed, calibration="none", base=None, select=False).fit(
        X, y, Xv, yv, Xc, yc)
    calibrated = WinProbabilityModel(skewed, calibration="isotonic", base=None,
                                         select=False).fit(
        X, y, Xv, yv, Xc, yc)
    ece_raw = expected_calibration_error(yt, raw.predict_proba(Xt))
    ece_cal = expected_calibration_error(yt, calibrated.predict_proba(Xt))
    assert ece_raw > 0.1
    assert ece_cal < ece_raw / 3
    assert calibrated.calibration_used_ != "none"


def flattened(factor: float, n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The synthetic cases with every true log-odds scaled by ``factor`` (a few weeks in
    which the features tell less about the outcome than usual)."""
    X, _, p = synthetic(n, seed)
    flat = 1 / (1 + np.exp(-factor * np.log(p / (1 - p))))
    return X, (np.random.default_rng(seed + 200).random(n) < flat).astype(int)


def test_a_miscalibration_of_the_last_weeks_alone_is_not_calibrated_in() -> None:
    """Only the cal block's weeks make the model look over-confident (BPIC 2012's weeks
    before its split did): a calibrator fitted there helps the block's other half, but
    one fitted on the valid block does not carry over to it, so none is kept, and the
    later cases, where the features tell as much as before, stay calibrated."""
    (X, y), (Xv, yv), (Xt, yt) = (synthetic(n, 30 + i)[:2] for i, n in
                                  enumerate((4000, 3000, 6000)))
    Xc, yc = flattened(0.4, 2000, 33)
    model = WinProbabilityModel({"n_estimators": 100}, select=False).fit(
        X, y, Xv, yv, Xc, yc)
    assert model.calibration_used_ == "none"
    # what a calibrator fitted on those weeks would have done to the later cases
    fitted_there = copy.copy(model)
    fitted_there.calibrator_ = IsotonicRegression(out_of_bounds="clip").fit(
        model.raw_proba(Xc), yc)
    kept_ece = expected_calibration_error(yt, model.predict_proba(Xt))
    assert kept_ece < 0.035
    assert expected_calibration_error(yt, fitted_there.predict_proba(Xt)) > 3 * kept_ece


def drifting(level: float, n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The synthetic cases with every log-odds moved by ``level`` (a later win rate)."""
    X, _, p = synthetic(n, seed)
    moved = 1 / (1 + np.exp(-(np.log(p / (1 - p)) + level)))
    return X, (np.random.default_rng(seed + 100).random(n) < moved).astype(int)


@pytest.mark.parametrize("select", [False, True])
def test_a_win_rate_that_fell_is_followed_to_its_new_level(select: bool) -> None:
    """Blocks in time order: the win rate falls after the fit block and stays down. The
    refit on all blocks would predict their average level; the drift check (on blocks
    the first model has not seen) finds the new level holds, and the model follows it."""
    (X, y), (Xv, yv), (Xc, yc), (Xt, yt) = (drifting(level, n, 20 + i) for i, (level, n) in
                                            enumerate(((0.0, 4000), (-0.8, 3000),
                                                       (-0.8, 3000), (-0.8, 4000))))
    model = WinProbabilityModel({"n_estimators": 100}, select=select).fit(
        X, y, Xv, yv, Xc, yc)
    assert model.calibration_used_.endswith("+drift") and model.drift_ != 0.0
    unmoved = copy.copy(model)
    unmoved.drift_ = 0.0
    moved_ece = expected_calibration_error(yt, model.predict_proba(Xt))
    assert moved_ece < 0.03
    assert moved_ece < expected_calibration_error(yt, unmoved.predict_proba(Xt))
    assert abs(model.predict_proba(Xc).mean() - yc.mean()) < 0.01


def test_a_steady_win_rate_is_not_moved() -> None:
    (X, y), (Xv, yv), (Xc, yc), _ = folds(3)
    model = WinProbabilityModel({"n_estimators": 100}).fit(X, y, Xv, yv, Xc, yc)
    assert model.drift_ == 0.0 and not model.calibration_used_.endswith("+drift")


def test_win_model_explanations_add_up_with_the_logistic_base() -> None:
    (X, y), (Xv, yv), (Xc, yc), (Xt, _) = folds(10)
    model = WinProbabilityModel({"n_estimators": 200}, select=False).fit(X, y, Xv, yv, Xc, yc)
    bundle = TargetBundle.__new__(TargetBundle)
    bundle.model = model
    values = bundle.contributions(Xt)
    np.testing.assert_allclose(values.sum(axis=1), model.raw_margin(Xt), atol=1e-8)
    # the strongest true effect carries the largest mean absolute contribution
    mean_abs = np.abs(values[:, :-1]).mean(axis=0)
    assert list(Xt.columns)[int(np.argmax(mean_abs))] == "a"


def test_treeshap_reads_its_own_copy_of_the_trees_safely_beside_predictions() -> None:
    """The API computes TreeSHAP in a second thread while the same model predicts: the
    copy it reads must give LightGBM's own values bit for bit, stay out of the pickle,
    and leave both results unchanged when the two run at once."""
    (X, y), (Xv, yv), (Xc, yc), (Xt, _) = folds(20)
    model = WinProbabilityModel({"n_estimators": 200}, select=False).fit(X, y, Xv, yv, Xc, yc)
    M = model.matrix(Xt)
    copy_ = treeshap_booster(model.booster)
    assert copy_ is not model.booster and treeshap_booster(model.booster) is copy_
    own = model.booster.predict(M, pred_contrib=True, num_threads=1)
    np.testing.assert_array_equal(model.tree_contributions(M), own)
    assert len(pickle.dumps(model)) < 1.5 * len(pickle.dumps(model.booster))
    expected_margin = model.raw_margin(Xt)
    with ThreadPoolExecutor(1) as pool:  # one explanation thread, as the API runs it
        shap_runs = [pool.submit(model.tree_contributions, M) for _ in range(20)]
        margins = [model.raw_margin(Xt) for _ in range(20)]
    for run in shap_runs:
        np.testing.assert_array_equal(run.result(), own)
    for margin in margins:
        np.testing.assert_array_equal(margin, expected_margin)


def test_intervals_cover_about_eighty_percent_and_boost_from_the_base() -> None:
    rng = np.random.default_rng(3)

    def data(n: int) -> tuple[pd.DataFrame, np.ndarray]:
        history = rng.normal(5, 10, n)
        X = pd.DataFrame({"account_mean_payment_delay_days": history,
                          "payment_terms_days": rng.choice([30.0, 60.0], n),
                          "noise": rng.normal(size=n)})
        return X, history + 0.1 * X["payment_terms_days"].to_numpy() + rng.normal(0, 3, n)

    (X, y), (Xv, yv), (Xc, yc), (Xt, yt) = (data(3000), data(1000), data(2000), data(4000))
    model = IntervalRegressor({"n_estimators": 300}, alpha=0.2,
                              base=PaymentDelayBaseline()).fit(X, y, Xv, yv, Xc, yc)
    point, lower, upper = model.predict_interval(Xt)
    coverage = np.mean((yt >= lower) & (yt <= upper))
    assert 0.75 <= coverage <= 0.86
    assert np.mean(np.abs(point - yt)) < 3.0  # noise sd 3: MAE near 2.4 when right
    bundle = TargetBundle.__new__(TargetBundle)
    bundle.model = model
    np.testing.assert_allclose(bundle.contributions(Xt).sum(axis=1), point, atol=1e-8)


def test_unknown_calibration_is_refused() -> None:
    (X, y), (Xv, yv), (Xc, yc), _ = folds()
    with pytest.raises(ValueError, match="calibration"):
        WinProbabilityModel({"n_estimators": 5}, calibration="magic").fit(X, y, Xv, yv, Xc, yc)


def test_logistic_tables_equal_scikit_learn_with_missing_rare_and_unused_levels() -> None:
    X, y, _ = synthetic(3000, 21)
    rng = np.random.default_rng(21)
    X["a"] = X["a"].where(rng.random(len(X)) > 0.1)  # missing numbers: imputed + indicator
    levels = ["x", "y", "z", "rare", "unused"]
    X["c"] = X["c"].cat.set_categories(levels)
    X.loc[X.index[:5], "c"] = "rare"  # below min_frequency: the infrequent column
    X.loc[X.index[5:300], "c"] = None  # missing: its own "(missing)" level
    X["d"] = 7.0  # constant
    # a second categorical column: its terms sit after c's in the joined table
    X["e"] = pd.Categorical(rng.choice(["p", "q", "r"], len(X)), categories=["p", "q", "r"])
    base = LogisticBaseline().fit(X, y)
    Xt = synthetic(500, 22)[0].assign(d=np.r_[np.nan, np.full(499, 3.0)], e=pd.Categorical(
        ["q", "p", "r", None] * 125, categories=["p", "q", "r"]))
    Xt["c"] = Xt["c"].cat.set_categories(levels)
    Xt.loc[Xt.index[:3], "c"] = "unused"
    Xt.loc[Xt.index[3:6], "c"] = "rare"
    Xt.loc[Xt.index[6:9], "c"] = None
    Xt.loc[Xt.index[9:12], "a"] = np.nan
    Xt.loc[Xt.index[12], "b"] = 1e308  # held at the training maximum, not overflowing
    clipped = Xt.assign(b=Xt["b"].clip(upper=X["b"].max()))
    expected = base.model_.predict_proba(base._frame(clipped))[:, 1]
    np.testing.assert_allclose(base.predict_proba(Xt), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(base.predict_proba(as_matrix(Xt)), expected, rtol=1e-9,
                               atol=1e-12)
    # a code past the fitted categories is a matrix from another encoder: said, not guessed
    foreign = as_matrix(Xt)
    foreign[0, list(Xt.columns).index("e")] = 3.0
    with pytest.raises(ValueError, match="outside the fitted categories"):
        base.terms(foreign)
    # the saved model leaves its derived layout out (and rebuilds it on first use)
    import pickle
    assert "_term_layout" in vars(base) and "_term_layout" not in vars(
        pickle.loads(pickle.dumps(base)))


def test_matrix_predictions_equal_lightgbm_on_the_frame() -> None:
    (X, y), (Xv, yv), (Xc, yc), (Xt, _) = folds(5)
    model = WinProbabilityModel({"n_estimators": 100}, base=None, select=False).fit(
        X, y, Xv, yv, Xc, yc)
    Xt = Xt.assign(c=Xt["c"].cat.set_categories(["z", "y", "x"]))  # other order: realigned
    Xt.loc[Xt.index[:20], "c"] = None
    np.testing.assert_array_equal(model.booster.predict(model.matrix(Xt), raw_score=True),
                                  model.model_.predict(Xt, raw_score=True))
    np.testing.assert_array_equal(model.tree_contributions(Xt),
                                  model.booster.predict(Xt, pred_contrib=True))


def test_logistic_takes_skewed_non_negative_numbers_on_a_log_scale() -> None:
    """Deal amounts: win odds fall with the amount in proportion; a log scale fits that
    and the tables still equal scikit-learn's answers on the log-scaled frame."""
    rng = np.random.default_rng(31)
    n = 6000
    amount = np.exp(rng.normal(10.0, 1.0, n))
    X = pd.DataFrame({"amount": amount, "a": rng.normal(size=n),
                      "shifted": rng.exponential(1.0, n) - 0.5})  # skewed but negative too
    logit = -0.9 * (np.log(amount) - 10.0) + 0.5 * X["a"].to_numpy()
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    fit, test = slice(None, 4000), slice(4000, None)
    base = LogisticBaseline().fit(X[fit], y[fit])
    assert base.log_columns_ == ["amount"]

    class Linear(LogisticBaseline):
        SKEWED = np.inf

    linear = Linear().fit(X[fit], y[fit])
    assert linear.log_columns_ == []
    from sklearn.metrics import log_loss
    assert log_loss(y[test], base.predict_proba(X[test])) < log_loss(
        y[test], linear.predict_proba(X[test])) - 0.01
    Xt = X[test].copy()
    Xt.iloc[0, 0] = amount.max() * 1000  # beyond the training range: held at its edge
    Xt.iloc[1, 0] = np.nan
    clipped = Xt.assign(amount=Xt["amount"].clip(upper=X["amount"][fit].max()))
    expected = base.model_.predict_proba(base._frame(clipped, scaled=True))[:, 1]
    np.testing.assert_allclose(base.predict_proba(Xt), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(base.predict_proba(as_matrix(Xt)), expected, rtol=1e-9,
                               atol=1e-12)
    # a model saved before the log scale existed scores as it did (linear)
    old = copy.deepcopy(linear)
    del old.log_columns_
    np.testing.assert_allclose(old.predict_proba(Xt), linear.predict_proba(Xt))


def test_the_sampling_floor_is_the_ece_a_calibrated_model_shows_on_that_many_cases() -> None:
    """Probabilities that are exactly right, labels drawn from them: on 300 cases of ten
    prefixes each their ECE is far from 0 and about the floor; on 30,000 cases both
    shrink; a floor never depends on the labels."""
    rng = np.random.default_rng(4)
    for n_cases, shrinks_to in ((300, None), (30_000, 0.02)):
        cases = np.repeat(np.arange(n_cases), 10)
        p = np.repeat(rng.uniform(0.05, 0.95, n_cases), 10)
        y = rng.random(n_cases)[cases] < p  # each case's prefixes share its label
        floor = ece_sampling_floor(p, cases)
        seen = expected_calibration_error(y, p)
        if shrinks_to is None:
            assert floor > 0.02 and 0.3 * floor < seen < 3 * floor
        else:
            assert floor < shrinks_to and seen < shrinks_to
