"""Mapping options that let real exports read without a conversion script: each on a
small log written by the test, with the canonical result it must give."""

from __future__ import annotations

from pathlib import Path

import pytest

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
