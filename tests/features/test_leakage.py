"""The leakage check flags columns known only at the end, and not honest ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.errors import MappingError
from features.leakage import find_leaky_columns
from features.log import canonicalize
from features.mapping import Mapping, default_mapping
from features.outcomes import case_outcomes
from features.pipeline import PrefixPipeline
from features.simulate import simulate_log


@pytest.fixture(scope="module")
def simulated() -> pd.DataFrame:
    return simulate_log(n_cases=1500, seed=8)[0]


def _with_leaks(export: pd.DataFrame) -> tuple[pd.DataFrame, Mapping]:
    """The simulator's export plus two columns real CRM exports carry: a close value
    (the amount when won, 0 when lost, on every row) and an ``isclosed`` flag."""
    mapping = default_mapping()
    events = canonicalize(export, mapping).events
    outcome = case_outcomes(events, mapping.roles)
    won = export["opportunity_id"].map(outcome.eq("won"))
    leaky = export.assign(close_value=np.where(won, export["amount"], 0.0))
    decided_at = export["activity"].isin(["Opportunity Won", "Opportunity Lost"])
    closed = decided_at.groupby(export["opportunity_id"]).cummax()
    leaky["isclosed"] = np.where(closed, "true", "false")
    raw = mapping.model_dump()
    raw["extra_columns"] = {"close_value": {"column": "close_value", "type": "number"},
                            "isclosed": {"column": "isclosed", "level": "event"}}
    return leaky, Mapping.from_dict(raw)


def test_injected_leaky_columns_are_flagged_with_evidence(simulated: pd.DataFrame) -> None:
    leaky, mapping = _with_leaks(simulated)
    events = canonicalize(leaky, mapping).events
    findings = {(f.column, f.sign): f for f in find_leaky_columns(events, mapping.roles)}
    assert set(findings) == {("close_value", "separates_at_first_event"),
                             ("isclosed", "changes_at_outcome")}
    assert "ROC AUC 1.000" in findings["close_value", "separates_at_first_event"].evidence
    assert "changes at the outcome event in 100%" in findings[
        "isclosed", "changes_at_outcome"].evidence


def test_the_simulators_honest_columns_are_not_flagged(simulated: pd.DataFrame) -> None:
    mapping = default_mapping()
    events = canonicalize(simulated, mapping).events
    assert find_leaky_columns(events, mapping.roles) == []


def test_label_only_columns_are_neither_checked_nor_features(simulated: pd.DataFrame) -> None:
    leaky, mapping = _with_leaks(simulated)
    raw = mapping.model_dump()
    raw["roles"]["label_only"] = ["close_value", "isclosed"]
    marked = Mapping.from_dict(raw)
    events = canonicalize(leaky, marked).events
    assert find_leaky_columns(events, marked.roles) == []
    names = PrefixPipeline(roles=marked.roles).fit(events).feature_names_out_
    assert not {"close_value", "isclosed"} & set(names)
    assert "close_value" in PrefixPipeline(roles=mapping.roles).fit(events).feature_names_out_
    raw["roles"]["label_only"] = ["rep"]
    with pytest.raises(MappingError, match="label_only"):
        Mapping.from_dict(raw)
