"""Feature groups a log gives nothing to read are not built (features.pruning)."""

from __future__ import annotations

import pandas as pd

from features.crosscase import key_feature_names
from features.pipeline import PrefixPipeline
from tests.features.test_pipeline_properties import ROLES, canonical_frame

T0 = pd.Timestamp("2024-01-01", tz="UTC")


def _log(**attrs: object) -> pd.DataFrame:
    rows = [{"case_id": f"C{i % 4}", "activity": "Lead Captured" if i < 4 else "Quote Sent",
             "timestamp": T0 + pd.Timedelta(days=i), **attrs} for i in range(8)]
    return canonical_frame(rows)


def test_cross_case_features_only_where_a_rep_region_or_account_is_given() -> None:
    without = PrefixPipeline(roles=ROLES, min_frequency=1).fit(_log())
    assert not [n for n in without.feature_names_out_ if n.startswith(("rep_", "account_"))]
    frame = without.transform(_log())
    assert len(frame) == 8 and "n_events" in frame
    with_rep = PrefixPipeline(roles=ROLES, min_frequency=1).fit(_log(rep="R1"))
    assert "rep_win_rate" in with_rep.feature_names_out_
    both = PrefixPipeline(roles=ROLES, min_frequency=1).fit(_log(rep="R1", account="A1"))
    assert {"rep_win_rate", "account_prior_cases"} <= set(both.feature_names_out_)


def test_the_cross_case_columns_keep_their_order() -> None:
    """A column's place decides which trees' column samples draw it: the per-key
    names keep the order they had when every key was built."""
    assert key_feature_names(["rep", "region", "account"], ROLES) == [
        "rep_open_cases", "region_open_cases", "rep_started_recent", "rep_decided_cases",
        "rep_win_rate", "rep_mean_cycle_days", "account_prior_cases", "account_won_cases",
        "account_paid_cases", "account_mean_payment_delay_days"]


def test_a_key_no_case_fills_gets_no_columns() -> None:
    """Helpdesk has accounts but no rep: the rep's four columns would be missing on
    every row; the account's are built and keep their values."""
    only_account = PrefixPipeline(roles=ROLES, min_frequency=1).fit(_log(account="A1"))
    names = only_account.feature_names_out_
    assert not [n for n in names if n.startswith(("rep_", "region_"))]
    assert "account_prior_cases" in names
    frame = only_account.transform(_log(account="A1"))
    both = PrefixPipeline(roles=ROLES, min_frequency=1).fit(_log(rep="R1", account="A1"))
    full = both.transform(_log(rep="R1", account="A1"))
    account = [n for n in names if n.startswith("account_")]
    pd.testing.assert_frame_equal(frame[account], full[account])


def test_stage_and_invoice_ageing_only_where_the_log_has_them() -> None:
    """A log without stages or invoices (most public logs) gets no days-in-stage or
    invoice-ageing columns; one with them keeps the columns, with values."""
    plain = PrefixPipeline(roles=ROLES, min_frequency=1).fit(_log())
    assert not {"days_in_stage", "days_since_invoice", "days_past_due"} & set(
        plain.feature_names_out_)
    rows = [{"case_id": f"C{i % 2}", "timestamp": T0 + pd.Timedelta(days=i),
             "activity": ("Lead Captured", "Invoice Created", "Payment Received")[i // 2],
             "stage": "Prospecting"} for i in range(6)]
    log = canonical_frame(rows)
    full = PrefixPipeline(roles=ROLES, min_frequency=1).fit(log)
    frame = full.transform(log)
    assert frame["days_in_stage"].notna().all()
    assert frame["days_since_invoice"].notna().sum() == 4
