"""The real-log benchmark's core on a slice of the Helpdesk log: protocol and real outputs.

Skipped when ``../shared/data`` is absent; the peer test also needs the optional
``benchmark`` extra (pm4py). The traffic-fines label rule is checked on a tiny frame.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.targets import TARGETS
from tests.benchmarks.scripts import load_script
from training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
HELPDESK_CASES = 800


real_logs = load_script("real_logs")


@pytest.fixture(scope="module")
def helpdesk_slice() -> object:
    spec = real_logs.LOGS["helpdesk"]
    path = real_logs.DEFAULT_DATA_DIR / spec.file
    if not path.is_file():
        pytest.skip(f"{path} is absent (the shared data folder is not beside the project)")
    log = real_logs.load(spec, real_logs.DEFAULT_DATA_DIR, HELPDESK_CASES)
    return real_logs.prepare(spec, log, TrainConfig())


def test_strict_temporal_protocol(helpdesk_slice: object) -> None:
    prep = helpdesk_slice
    split = prep.split
    first_test_event = split.test["timestamp"].min()
    assert split.split_time == first_test_event
    assert split.train["timestamp"].max() < first_test_event  # strict cut
    assert set(split.train["case_id"]).isdisjoint(split.test["case_id"])
    train_starts = split.train.groupby("case_id")["timestamp"].min()
    test_starts = split.test.groupby("case_id")["timestamp"].min()
    assert train_starts.max() <= test_starts.min()  # ordered by start
    assert len(test_starts) == pytest.approx(0.2 * HELPDESK_CASES, abs=1)
    data = prep.data
    assert (data.train_frame["prefix_end"] < split.split_time).all()
    q90 = prep.log.events.groupby("case_id").size().quantile(0.9)
    assert prep.max_prefix_len == min(40, math.ceil(q90))
    for frame in (data.train_frame, data.test_frame):
        assert frame["prefix_len"].between(1, prep.max_prefix_len).all()


def test_remaining_time_figures_are_real(helpdesk_slice: object) -> None:
    result = real_logs.run_target(helpdesk_slice, TARGETS["remaining_time"],
                                  TrainConfig(learning_curve=False), None)
    assert result["metric"] == "mae_days"
    assert 0 < result["ours"] < 100 and math.isfinite(result["ours"])
    assert 0 < result["baselines"]["historical"] < 100
    assert result["test_cases"] > 100
    lengths = [int(k) for k in result["ours_per_length"]]
    assert lengths and max(lengths) <= helpdesk_slice.max_prefix_len
    assert all(math.isfinite(v) for v in result["ours_per_length"].values())
    # the kind shipped, chosen on the latest training block, is never worse than a baseline
    assert result["shipped_kind"] in result["latest_block"]
    assert set(result["latest_block"]) == {"lightgbm", "median_by_last_activity"}
    assert result["shipped_worse_than_a_baseline_on_latest_block"] is False


def test_peer_on_the_same_rows(helpdesk_slice: object) -> None:
    pytest.importorskip("pm4py", reason="pm4py is the optional 'benchmark' extra")
    peer = real_logs.build_peer(helpdesk_slice, seed=0)
    assert peer.features_s > 0
    assert peer.test["prefix_len"].max() <= helpdesk_slice.max_prefix_len
    assert list(peer.test.columns) == list(peer.train.columns)
    pred, y, k = real_logs.fit_peer(helpdesk_slice, peer, TARGETS["remaining_time"], TrainConfig())
    assert len(pred) == len(y) == len(k) > 100
    assert np.isfinite(np.abs(pred - y).mean())


def test_payment_delay_anchored_on_notification_else_creation() -> None:
    t = pd.Timestamp
    events = pd.DataFrame({
        "case_id": ["a", "a", "a", "b", "b", "c", "c"],
        "activity": ["Create Fine", "Insert Fine Notification", "Payment",
                     "Create Fine", "Payment", "Create Fine", "Send Fine"],
        "timestamp": [t("2010-01-01", tz="UTC"), t("2010-02-01", tz="UTC"),
                      t("2010-04-12", tz="UTC"), t("2010-01-01", tz="UTC"),
                      t("2010-01-05", tz="UTC"), t("2010-01-01", tz="UTC"),
                      t("2010-01-09", tz="UTC")],
        "source_row": range(7),
    })
    labels = events[["case_id"]].assign(prefix_len=[1, 2, 3, 1, 2, 1, 2])
    anchor = real_logs.LOGS["traffic_fines"].payment_anchor
    out = real_logs.anchored_payment_labels(labels, events, anchor)
    # a: notified 1 Feb, due 2 Apr, paid 12 Apr -> 10 days late; b: on the spot, 56 early
    assert out["payment_delay_days"].tolist()[:5] == [10.0, 10.0, 10.0, -56.0, -56.0]
    assert out["payment_usable"].tolist() == [True, True, False, True, False, False, False]
    assert out["payment_censored"].tolist() == [False] * 5 + [True, True]
