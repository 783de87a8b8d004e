"""Mapping options that let real exports read without a conversion script: each on a
small log written by the test, with the canonical result it must give."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.errors import MappingError
from features.log import read_log
from features.mapping import Mapping

BASE = {
    "columns": {"case_id": "Deal", "activity": "Step", "timestamp": "When"},
    "roles": {"won": ["Won"], "lost": ["Lost"]},
}


def mapping(**extra: object) -> Mapping:
    return Mapping.from_dict({**BASE, **extra})


def write(tmp_path: Path, text: str, name: str = "log.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


LOG = """Deal,Step,When,Valore (EUR),Fase
D1,Created,2024-01-01T09:00:00Z,1000,
D1,Quote,2024-01-03T09:00:00Z,1000,Trattativa
D1,Won,2024-01-09T09:00:00Z,1000,
D2,Created,2024-01-02T09:00:00Z,500,
D2,Quote,2024-01-05T09:00:00Z,500,
"""


def test_a_constant_fills_a_role_the_export_only_names_in_a_header(tmp_path: Path) -> None:
    m = mapping(columns={**BASE["columns"], "value": "Valore (EUR)"},
                constants={"currency": "EUR", "payment_terms": "Net 30"})
    events = read_log(write(tmp_path, LOG), m).events
    assert set(events["currency"]) == {"EUR"}
    assert set(events["payment_terms_days"]) == {30.0}
    assert events["value"].tolist()[:2] == [1000.0, 1000.0]


def test_constants_must_name_roles_that_are_not_also_columns() -> None:
    with pytest.raises(MappingError, match="not canonical roles"):
        mapping(constants={"colour": "red"})
    with pytest.raises(MappingError, match="also mapped under columns"):
        mapping(columns={**BASE["columns"], "currency": "Cur"}, constants={"currency": "EUR"})
    with pytest.raises(MappingError, match="must come from the file"):
        mapping(constants={"case_id": "x"})


def test_stages_come_from_activities_where_the_export_has_none(tmp_path: Path) -> None:
    m = mapping(columns={**BASE["columns"], "stage": "Fase"},
                activity_stages={"Created": "Prospecting", "Quote": "Proposal"})
    events = read_log(write(tmp_path, LOG), m).events.sort_values(["case_id", "timestamp"])
    # the export's own stage wins where given; unlisted activities (Won) stay empty
    assert events["stage"].fillna("-").tolist() == ["Prospecting", "Trattativa", "-",
                                                    "Prospecting", "Proposal"]
    without_column = read_log(write(tmp_path, LOG),
                              mapping(activity_stages={"Quote": "Proposal"})).events
    assert without_column["stage"].eq("Proposal").sum() == 2


def test_exact_duplicates_are_a_policy(tmp_path: Path) -> None:
    text = LOG + "D2,Quote,2024-01-05T09:00:00Z,500,\n"
    assert read_log(write(tmp_path, text), mapping()).report.quarantined == {
        "duplicate_event": 1}
    kept = read_log(write(tmp_path, text), mapping(duplicate_events="keep"))
    assert kept.report.rows_quarantined == 0 and len(kept) == 6


def test_a_case_level_attribute_that_changes_within_a_case_is_warned_about(
        tmp_path: Path) -> None:
    m = mapping(extra_columns={"amount": {"column": "Valore (EUR)", "type": "number",
                                          "level": "case"}})
    text = LOG.replace("D1,Won,2024-01-09T09:00:00Z,1000", "D1,Won,2024-01-09T09:00:00Z,900")
    warnings = read_log(write(tmp_path, text), m).report.warnings
    assert any("'amount' is declared level: case but holds several values in 1 case(s) "
               "(e.g. 'D1')" in w for w in warnings)
    event_level = mapping(extra_columns={"amount": {"column": "Valore (EUR)", "type": "number",
                                                    "level": "event"}})
    assert not read_log(write(tmp_path, text), event_level).report.warnings


DUE = """Deal,Step,When,Due
D1,Created,2024-01-01T00:00:00Z,
D1,Quote,2024-01-03T00:00:00Z,2024-01-13T00:00:00Z
D1,Quote,2024-01-05T00:00:00Z,2024-01-20T00:00:00Z
D1,Won,2024-01-25T00:00:00Z,
D2,Created,2024-01-02T00:00:00Z,someday
"""


def test_a_date_attribute_becomes_days_until_it_as_known_at_the_prefix_end(
        tmp_path: Path) -> None:
    from features.pipeline import PrefixPipeline

    m = mapping(extra_columns={"due": {"column": "Due", "type": "date", "level": "event"}},
                format={"max_unusable_timestamps": 1})
    log = read_log(write(tmp_path, DUE), m)
    assert log.report.quarantined == {"unparseable_date": 1}
    assert "someday" in log.report.examples["unparseable_date"][0]
    assert str(log.events["due"].dtype) == "datetime64[us, UTC]"
    frame = PrefixPipeline(roles=m.roles).fit(log.events).transform(log.events)
    d1 = frame[frame["case_id"] == "D1"].sort_values("prefix_len")
    # unknown at first; 10 days ahead at the quote; the re-quote moves it; then passed
    assert d1["days_until_due"].tolist()[1:] == [10.0, 15.0, -5.0]
    assert pd.isna(d1["days_until_due"].iloc[0])


@given(rows=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 400),
                               st.one_of(st.none(), st.integers(-30, 60))),
                     min_size=2, max_size=12),
       cut=st.integers(0, 400), new_due=st.integers(-30, 60))
@settings(max_examples=40, deadline=None, derandomize=True)
def test_date_attributes_never_leak_what_comes_after_the_prefix_end(
        rows: list[tuple[int, int, int | None]], cut: int, new_due: int) -> None:
    """Changing or adding due dates strictly after t leaves every prefix that ends at
    or before t with the features it had."""
    from features.log import canonicalize
    from features.pipeline import PrefixPipeline

    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    m = mapping(extra_columns={"due": {"column": "Due", "type": "date", "level": "event"}})

    def events(changed: bool) -> pd.DataFrame:
        table = []
        for case, hours, due in rows:
            when = t0 + pd.Timedelta(hours=hours)
            if changed and hours > cut:
                due = new_due
            table.append({"Deal": f"D{case}", "Step": "Step", "When": when.isoformat(),
                          "Due": None if due is None else (
                              when + pd.Timedelta(days=due)).isoformat()})
        if changed:  # a new event after t in every case
            table += [{"Deal": f"D{c}", "Step": "Later", "Due": t0.isoformat(),
                       "When": (t0 + pd.Timedelta(hours=cut + 1)).isoformat()} for c in range(3)]
        return canonicalize(pd.DataFrame(table), m).events

    original = events(False)
    pipe = PrefixPipeline(roles=m.roles, min_frequency=1).fit(original)
    t = t0 + pd.Timedelta(hours=cut)
    keys = ["case_id", "prefix_len"]

    def until_t(frame: pd.DataFrame) -> pd.Series:
        upto = frame[frame["prefix_end"] <= t]
        return upto.set_index(keys).sort_index()["days_until_due"]

    if "days_until_due" not in pipe.feature_names_out_:
        return  # no due date anywhere: nothing to leak
    pd.testing.assert_series_equal(until_t(pipe.transform(original)),
                                   until_t(pipe.transform(events(True))))


DEALS = """Deal,Created,Won,Lost,Amount
D1,2024-01-01T09:00:00Z,2024-02-01T09:00:00Z,,100
D2,2024-01-05T09:00:00Z,,2024-01-20T09:00:00Z,50
D3,,,,70
D4,2024-01-07T09:00:00Z,2024-01-07T09:00:00Z,,10
"""


def test_one_row_per_deal_becomes_events_of_its_date_columns(tmp_path: Path) -> None:
    m = Mapping.from_dict({
        "columns": {"case_id": "Deal", "value": "Amount"},
        "events_from_columns": {"Created": "Created", "Won": "Won", "Lost": "Lost"},
        "roles": {"won": ["Won"], "lost": ["Lost"]}})
    log = read_log(write(tmp_path, DEALS), m, refuse_errors=False)
    events = log.events
    assert events[["case_id", "activity"]].values.tolist() == [
        ["D1", "Created"], ["D1", "Won"], ["D2", "Created"], ["D2", "Lost"],
        ["D4", "Created"], ["D4", "Won"]]  # equal times keep the mapping's order
    assert events["value"].tolist() == [100.0, 100.0, 50.0, 50.0, 10.0, 10.0]
    assert events["source_row"].tolist() == [1, 1, 2, 2, 4, 4]
    assert log.report.quarantined == {"no_event_dates": 1}  # D3: nothing happened? said
    assert "row 3" in log.report.examples["no_event_dates"][0]
    assert log.report.rows_in == log.report.rows_kept + log.report.rows_quarantined == 7
    with pytest.raises(MappingError, match="both say where events come from"):
        Mapping.from_dict({"columns": {"case_id": "Deal", "activity": "A", "timestamp": "T"},
                           "events_from_columns": {"Created": "Created"}})
    with pytest.raises(MappingError, match=r"\['timestamp'\] not mapped"):
        Mapping.from_dict({"columns": {"case_id": "Deal", "activity": "A"}})


def test_the_simulators_crm_table_reads_back_through_its_mapping(tmp_path: Path) -> None:
    from features.crm_table import crm_table_mapping, deals_table
    from features.log import canonicalize
    from features.outcomes import case_outcomes
    from features.pipeline import PrefixPipeline
    from features.simulate import simulate_log

    events, truth = simulate_log(n_cases=200, seed=5)
    table = deals_table(events)
    assert len(table) == 200
    m = crm_table_mapping()
    log = canonicalize(table, m)
    assert log.report.rows_quarantined == 0
    outcomes = case_outcomes(log.events, m.roles)
    realised = truth.set_index("opportunity_id")
    decided = outcomes[outcomes != "open"]
    # where the cut log shows an outcome, it is the simulation's own
    assert (decided.eq("won") == realised.loc[decided.index, "won"].astype(bool)).all()
    frame = PrefixPipeline(roles=m.roles, min_frequency=1).fit(log.events).transform(log.events)
    assert len(frame) == len(log.events)


def test_the_end_of_what_we_measure_is_not_the_end_of_the_case(tmp_path: Path) -> None:
    """Measuring until billed must not quarantine what happens after the bill."""
    from features.labels import build_labels
    from features.prefixes import prepare_events

    text = """Deal,Step,When
D1,Created,2024-01-01T00:00:00Z
D1,Billed,2024-01-11T00:00:00Z
D1,Rebilled,2024-01-21T00:00:00Z
D2,Created,2024-01-02T00:00:00Z
"""
    old_way = mapping(roles={"won": ["Won"], "lost": ["Lost"], "case_end": ["Billed"]})
    assert read_log(write(tmp_path, text), old_way).report.quarantined == {
        "event_after_case_end": 1}
    m = mapping(roles={"won": ["Won"], "lost": ["Lost"], "case_end": [],
                       "measure_end": ["Billed"]})
    log = read_log(write(tmp_path, text), m)
    assert log.report.rows_quarantined == 0 and len(log) == 4
    labels = build_labels(prepare_events(log.events), m.roles)
    d1 = labels[labels["case_id"] == "D1"]
    assert d1["remaining_days"].tolist()[:2] == [10.0, 0.0]
    assert d1["remaining_usable"].tolist() == [True, False, False]
    assert not d1["remaining_censored"].any()
    assert labels[labels["case_id"] == "D2"]["remaining_censored"].all()


ABSENCE = """Deal,Step,When
D1,Created,2024-01-01T00:00:00Z
D1,Call,2024-01-05T00:00:00Z
D1,Won,2024-01-10T00:00:00Z
D2,Created,2024-01-01T00:00:00Z
D2,Call,2024-01-03T00:00:00Z
D2,Call,2024-03-01T00:00:00Z
D3,Created,2024-01-02T00:00:00Z
D3,Closed,2024-01-04T00:00:00Z
D4,Created,2024-05-01T00:00:00Z
D5,Created,2024-05-02T00:00:00Z
"""


def test_lost_by_absence_of_the_win_within_the_horizon(tmp_path: Path) -> None:
    """Won if 'Won' happens; lost when the case closes without it or is silent for 30
    days; a case whose silence has not lasted 30 days by the extraction is open."""
    from features.labels import build_labels
    from features.outcomes import case_outcomes, outcome_events
    from features.prefixes import prepare_events

    m = mapping(roles={"won": ["Won"], "case_end": ["Closed"],
                       "outcome_rule": "won_else_lost", "lost_after_days": 30})
    events = read_log(write(tmp_path, ABSENCE), m).events
    verdicts = case_outcomes(events, m.roles)
    assert verdicts.to_dict() == {"D1": "won", "D2": "lost", "D3": "lost", "D4": "open",
                                  "D5": "open"}
    decided = outcome_events(events, m.roles)
    # D2 fell silent after its call on Jan 3: lost 30 days later, its March call too late
    assert decided.loc["D2", "outcome_time"] == pd.Timestamp("2024-02-02", tz="UTC")
    labels = build_labels(prepare_events(events), m.roles)
    d2 = labels[labels["case_id"] == "D2"]
    assert d2["won"].tolist() == [0.0, 0.0, 0.0]
    assert d2["outcome_usable"].tolist() == [True, True, False]
    d1 = labels[labels["case_id"] == "D1"]
    assert d1["outcome_usable"].tolist() == [True, True, False] and d1["won"].eq(1).all()
    assert labels[labels["case_id"] == "D4"]["won"].isna().all()
    with pytest.raises(MappingError, match="needs lost_after_days"):
        mapping(roles={"won": ["Won"], "case_end": [], "outcome_rule": "won_else_lost"})
    with pytest.raises(MappingError, match="only with outcome_rule won_else_lost"):
        mapping(roles={"won": ["Won"], "lost_after_days": 5})
