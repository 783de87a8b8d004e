"""The real-log benchmark's pure pieces: the literature's traffic-fines label, the paired
case bootstrap, the early-prefix mean, and skpm's encodings on a tiny log (skipped when
skpm, the optional ``benchmark`` extra, is not installed)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from tests.benchmarks.scripts import load_script
from training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]


real_logs = load_script("real_logs")
DAY = pd.Timestamp("2010-01-01", tz="UTC")


def _events(cases: dict[str, list[str]]) -> pd.DataFrame:
    rows = [(case, activity, DAY + pd.Timedelta(days=i)) for case, acts in cases.items()
            for i, activity in enumerate(acts)]
    frame = pd.DataFrame(rows, columns=["case_id", "activity", "timestamp"])
    return frame.assign(source_row=range(len(frame)))


def test_credit_collection_label_rule() -> None:
    events = _events({
        "a": ["Create Fine", "Send Fine", "Insert Fine Notification", "Add penalty",
              "Send for Credit Collection"],                       # positive at k = 5
        "b": ["Create Fine", "Payment"],                            # negative, paid
        "c": ["Create Fine", "Send Fine"],                          # incomplete: left out
        "d": ["Create Fine", "Send Fine", "Insert Fine Notification", "Appeal to Judge"],
    })
    labels = pd.DataFrame([(c, k) for c, n in events.groupby("case_id").size().items()
                           for k in range(1, n + 1)], columns=["case_id", "prefix_len"])
    out = real_logs.credit_collection_labels(labels, events,
                                             real_logs.LOGS["traffic_fines"].credit_rule)
    by_case = out.groupby("case_id")
    assert by_case["credit_collection"].first().to_dict() == pytest.approx(
        {"a": 1.0, "b": 0.0, "c": np.nan, "d": 0.0}, nan_ok=True)
    usable = out.set_index(["case_id", "prefix_len"])["credit_usable"]
    # positives: prefixes stop before the credit collection; negatives: every prefix
    assert usable["a"].tolist() == [True, True, True, True, False]
    assert usable["b"].tolist() == [True, True]
    assert usable["c"].tolist() == [False, False]
    assert usable["d"].tolist() == [True] * 4
    target = real_logs.BENCH_TARGETS["credit_collection"]
    assert target.rows(out).sum() == 4 + 2 + 4


def _mean(pred: np.ndarray, weight: np.ndarray | None) -> float:
    return float(np.average(pred, weights=weight))


def test_paired_bootstrap_interval() -> None:
    cases = np.repeat(np.arange(50), 4)
    rng = np.random.default_rng(1)
    peer = rng.normal(size=len(cases))
    # the same predictions: every draw gives 0; a constant shift: every draw gives it
    assert real_logs.paired_bootstrap_ci(_mean, cases, peer, peer, seed=0) == (0.0, 0.0)
    low, high = real_logs.paired_bootstrap_ci(_mean, cases, peer + 0.5, peer, seed=0)
    assert low == pytest.approx(0.5) and high == pytest.approx(0.5)
    # a difference that is noise per case straddles zero; pairing does not hide that
    noisy = peer + np.repeat(rng.normal(scale=1.0, size=50), 4)
    low, high = real_logs.paired_bootstrap_ci(_mean, cases, noisy, peer, seed=0)
    assert low < 0 < high
    # cases, not rows, are drawn: each case's rows move together, so an effect carried
    # by a few cases gives a wider interval than the same rows drawn one by one
    effect = np.where(cases < 5, 10.0, 0.0)
    low, high = real_logs.paired_bootstrap_ci(_mean, cases, peer + effect, peer, seed=0)
    row_low, row_high = real_logs.paired_bootstrap_ci(_mean, np.arange(len(cases)),
                                                      peer + effect, peer, seed=0)
    assert high - low > 1.5 * (row_high - row_low)
    # the same seed, the same interval
    assert real_logs.paired_bootstrap_ci(_mean, cases, noisy, peer, seed=3) == \
        real_logs.paired_bootstrap_ci(_mean, cases, noisy, peer, seed=3)


def test_early_mean_and_best_peer() -> None:
    figures = {"1": 0.5, "2": 0.6, "3": 0.7, "7": 0.9}
    assert real_logs.mean_over_lengths(figures) == pytest.approx(0.6)
    assert real_logs.mean_over_lengths({"8": 0.9}) is None
    auc, mae = real_logs.BENCH_TARGETS["outcome"], real_logs.BENCH_TARGETS["remaining_time"]
    assert real_logs.best_of(auc, {"a": 0.6, "b": 0.7}) == "b"
    assert real_logs.best_of(mae, {"a": 6.0, "b": 7.0}) == "a"
    assert real_logs.best_of(mae, {}) is None


@pytest.mark.parametrize("encoding", ["skpm_agg", "skpm_window", "skpm_window_abs"])
def test_skpm_encodings_see_only_the_prefix(encoding: str) -> None:
    pytest.importorskip("skpm", reason="skpm is the optional 'benchmark' extra")
    import sklearn

    from benchmarks.skpm_peer import SkpmEncoding

    events = _events({f"c{i}": ["A", "B", "A", "C", "B"][: 2 + i % 4] for i in range(30)})
    events["resource"] = np.where(events.index % 2 == 0, "r1", "r2")
    events["amount"] = np.arange(len(events), dtype=float)
    fitted = SkpmEncoding(encoding).fit(events)
    assert sklearn.get_config()["transform_output"] == "default"  # skpm's import undone
    full = fitted.transform(events, max_prefix_len=3)
    sizes = events.groupby("case_id").size()
    assert len(full) == int(np.minimum(sizes, 3).sum())
    assert full.groupby("case_id")["prefix_len"].max().to_dict() == \
        np.minimum(sizes, 3).to_dict()
    # changing a case's later events changes none of its earlier prefixes' features
    later = events.copy()
    cut = (later["case_id"] == "c3") & (later.groupby("case_id").cumcount() >= 2)
    later.loc[cut, ["activity", "resource"]] = ["C", "r1"]
    later.loc[cut, "amount"] = 1e6
    changed = fitted.transform(later, max_prefix_len=3)
    early = (full["case_id"] == "c3") & (full["prefix_len"] <= 2)
    pd.testing.assert_frame_equal(full[early], changed[early])
    assert not full[full["case_id"] == "c3"].equals(changed[changed["case_id"] == "c3"])


def test_stored_peer_predictions_are_named_after_the_model_code(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run after a change of the model code must not reuse predictions of the old code:
    the stored file's name carries a hash of the sources that make predictions."""
    source = tmp_path / "estimators.py"
    source.write_text("one model\n")
    monkeypatch.setattr(real_logs, "ROOT", tmp_path)
    monkeypatch.setattr(real_logs, "MODEL_SOURCES", ("estimators.py",))
    monkeypatch.setitem(real_logs.PEER_CACHE, "dir", tmp_path)
    monkeypatch.setitem(real_logs.PEER_CACHE, "max_cases", None)
    prep = SimpleNamespace(spec=SimpleNamespace(name="helpdesk"))
    target = real_logs.BENCH_TARGETS["remaining_time"]
    before = real_logs._cache_file(prep, target, "skpm_window", TrainConfig(seed=1))
    assert before.parent == tmp_path and "seed1" in before.name
    assert before == real_logs._cache_file(prep, target, "skpm_window", TrainConfig(seed=1))
    source.write_text("another model\n")
    after = real_logs._cache_file(prep, target, "skpm_window", TrainConfig(seed=1))
    assert after != before and after.name.split("-models")[0] == before.name.split("-models")[0]
