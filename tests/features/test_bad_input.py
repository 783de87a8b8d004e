"""Bad input never crashes and never silently corrupts: each class of damaged or
ambiguous export gets a clear error, or its rows quarantined with the reason."""

from __future__ import annotations

import gzip
import io
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest

from features.encoders import unique_slugs
from features.errors import EventLogError, LogRefusedError, MappingError
from features.io import neutralise_formulas, read_raw, read_upload, write_csv_for_people
from features.log import canonicalize, read_log
from features.mapping import Mapping, default_mapping
from features.pipeline import PrefixPipeline

HEADER = "opportunity_id,activity,event_time,amount"
GOOD = [
    "O1,Lead Captured,2024-03-01T09:00:00Z,100",
    "O1,Opportunity Created,2024-03-02T09:00:00Z,100",
    "O2,Lead Captured,2024-03-03T09:00:00Z,200",
    "O2,Quote Issued,2024-03-04T09:00:00Z,200",
]


def csv_file(tmp_path: Path, lines: list[str], name: str = "log.csv",
             header: str = HEADER) -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return path


def mapping_with(**fmt: object) -> Mapping:
    raw = default_mapping().model_dump()
    raw["format"].update(fmt)
    return Mapping.from_dict(raw)


# ------------------------------------------------------------ damaged files
def _damaged_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    frame = pd.DataFrame({"opportunity_id": ["O1"] * 50, "activity": ["Lead Captured"] * 50,
                          "event_time": ["2024-01-01T00:00:00Z"] * 50})
    parquet, xlsx = tmp_path / "whole.parquet", tmp_path / "whole.xlsx"
    frame.to_parquet(parquet)
    frame.to_excel(xlsx, index=False)
    files = {
        "empty": (tmp_path / "empty.csv", b"", "empty (0 bytes)"),
        "blank": (tmp_path / "blank.csv", b"\n\n", "no header and no rows"),
        "truncated gzip": (tmp_path / "cut.csv.gz",
                           gzip.compress(os.urandom(4000))[:300], "truncated"),
        "truncated xlsx": (tmp_path / "cut.xlsx", xlsx.read_bytes()[:500], "damaged or truncated"),
        "xlsx not a zip": (tmp_path / "text.xlsx", b"opportunity_id,activity\n", "not a readable"),
        "truncated parquet": (tmp_path / "cut.parquet", parquet.read_bytes()[:300],
                              "cannot be read as Parquet"),
        "truncated xes.gz": (tmp_path / "cut.xes.gz",
                             gzip.compress(b"<log><trace>" * 400)[:60], "XES"),
    }
    for path, data, _ in files.values():
        path.write_bytes(data)
    return {name: (path, words) for name, (path, _, words) in files.items()}


def test_damaged_files_are_refused_with_what_is_wrong(tmp_path: Path) -> None:
    for name, (path, words) in _damaged_files(tmp_path).items():
        with pytest.raises(EventLogError) as caught:
            read_log(path)
        assert words in str(caught.value), (name, str(caught.value))
        assert str(path) in str(caught.value)
        # an upload of the same bytes gets the same message, never a library's exception
        with pytest.raises(EventLogError):
            read_upload(path.name, path.read_bytes())


def test_a_plain_file_named_gz_reads_as_it_is(tmp_path: Path) -> None:
    path = csv_file(tmp_path, GOOD, name="plain.csv.gz")
    assert len(read_log(path)) == 4


def test_directories_and_symlink_loops_say_what_they_are(tmp_path: Path) -> None:
    with pytest.raises(EventLogError, match="is a directory"):
        read_raw(tmp_path)
    loop = tmp_path / "loop.csv"
    loop.symlink_to(loop)
    with pytest.raises(EventLogError, match="symbolic link that loops"):
        read_raw(loop)
    with pytest.raises(EventLogError, match="no such file"):
        read_raw(tmp_path / "absent.csv")


def test_duplicate_column_names_are_refused_naming_both(tmp_path: Path) -> None:
    path = csv_file(tmp_path, ["O1,Lead Captured,2024-01-01T00:00:00Z,Other"],
                    header="opportunity_id,activity,event_time,activity")
    with pytest.raises(EventLogError, match=r"columns 2 and 4 are both named 'activity'"):
        read_log(path)
    book = openpyxl.Workbook()
    book.active.append(["opportunity_id", "event_time", "opportunity_id"])
    book.active.append(["O1", "2024-01-01", "O2"])
    book.save(tmp_path / "dup.xlsx")
    with pytest.raises(EventLogError, match="columns 1 and 3 are both named 'opportunity_id'"):
        read_raw(tmp_path / "dup.xlsx")


# ------------------------------------------------------------- mapping files
def test_mapping_files_that_cannot_be_read_get_a_message(tmp_path: Path) -> None:
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\ncolumns: {case_id: a, activity: b, timestamp: c}\n"
                      .encode("latin-1"))
    with pytest.raises(MappingError, match="not UTF-8"):
        Mapping.load(latin)
    with pytest.raises(MappingError, match="is a directory"):
        Mapping.load(tmp_path)


def test_a_misspelt_time_zone_is_refused_when_the_mapping_loads() -> None:
    raw = default_mapping().model_dump()
    raw["format"]["timezone"] = "Europe/Roma"
    with pytest.raises(MappingError) as caught:
        Mapping.from_dict(raw)
    assert "format.timezone" in str(caught.value)
    assert "Europe/Rome" in str(caught.value)  # the close match is suggested


# --------------------------------------------------------------- CSV lines
def test_malformed_csv_lines_are_quarantined_and_the_rest_kept(tmp_path: Path) -> None:
    lines = [
        GOOD[0],
        "O1,Opportunity Created,2024-03-02T09:00:00Z,100,surplus",  # line 3: ragged
        GOOD[2],
        'O2,"Quote Issued,2024-03-04T09:00:00Z,200',                 # line 5: open quote
        GOOD[3],
        "O3,Lead Captured,2024-03-05T09:00:00Z,300",
    ]
    log = read_log(csv_file(tmp_path, lines))
    assert log.report.quarantined == {"malformed_csv_line": 2}
    assert log.report.rows_in == 6 and len(log) == 4
    assert list(log.events["case_id"]) == ["O1", "O2", "O2", "O3"]
    assert sorted(log.events["source_row"]) == [1, 3, 5, 6]  # row k is line k + 1
    details = log.quarantine["quarantine_detail"].tolist()
    assert details[0].startswith("line 3: 5 fields where the header has 4")
    assert details[1].startswith("line 5: unbalanced quote")
    assert log.quarantine["source_row"].tolist() == [2, 4]


# ---------------------------------------------------------------- timestamps
def test_an_empty_timestamp_is_called_empty(tmp_path: Path) -> None:
    log = read_log(csv_file(tmp_path, [*GOOD, "O3,Lead Captured,,5"]), refuse_errors=False)
    assert log.report.quarantined == {"empty_timestamp": 1}
    assert "empty timestamp" in log.report.examples["empty_timestamp"][0]
    assert "nan" not in log.report.examples["empty_timestamp"][0]


def test_too_many_rows_without_a_time_refuse_the_log_with_the_threshold(tmp_path: Path) -> None:
    path = csv_file(tmp_path, [*GOOD, "O3,Lead Captured,01/02/2024,5"])
    with pytest.raises(LogRefusedError, match="1 of 5 rows"):
        read_log(path)
    lenient = mapping_with(max_unusable_timestamps=0.25)
    assert read_log(path, lenient).report.errors == []


def _dates(tmp_path: Path, dates: list[str]) -> Path:
    return csv_file(tmp_path, [f"O{i},Lead Captured,{d},1" for i, d in enumerate(dates)])


def test_mixed_day_month_orders_are_detected_and_refused(tmp_path: Path) -> None:
    day_first = mapping_with(timestamp_format="%d/%m/%Y", max_unusable_timestamps=1)
    mixed = _dates(tmp_path, ["25/03/2024", "03/25/2024", "04/05/2024", "01/02/2024"])
    log = read_log(mixed, day_first, refuse_errors=False)
    assert "mix two day/month orders" in log.report.errors[0]
    assert "row 1: '25/03/2024'" in log.report.errors[0]
    assert "row 2: '03/25/2024'" in log.report.errors[0]
    assert "2 row(s) with both fields up to 12" in log.report.errors[0]
    with pytest.raises(LogRefusedError):
        read_log(mixed, day_first)


def test_a_mapping_with_day_and_month_swapped_is_refused_with_the_fix(tmp_path: Path) -> None:
    month_first_file = _dates(tmp_path, ["03/25/2024", "04/05/2024", "12/31/2024"])
    day_first = mapping_with(timestamp_format="%d/%m/%Y", max_unusable_timestamps=1)
    log = read_log(month_first_file, day_first, refuse_errors=False)
    assert "would be read swapped" in log.report.errors[0]
    assert "'%m/%d/%Y'" in log.report.errors[0]
    right = mapping_with(timestamp_format="%m/%d/%Y")
    ok = read_log(month_first_file, right)
    assert ok.report.errors == [] and len(ok) == 3


def test_dates_that_cannot_tell_their_order_are_noted(tmp_path: Path) -> None:
    log = read_log(_dates(tmp_path, ["03/04/2024", "05/06/2024"]),
                   mapping_with(timestamp_format="%d/%m/%Y"))
    assert any("cannot be\nchecked" in w or "cannot be checked" in w for w in log.report.warnings)
    assert log.events["timestamp"].iloc[0] == pd.Timestamp("2024-04-03", tz="UTC")


AUTUMN = ["O1,Lead Captured,2024-10-27 02:50,1",   # first pass: summer time (+02:00)
          "O1,Quote Issued,2024-10-27 02:20,1",    # after it in the case: winter (+01:00)
          "O2,Lead Captured,2024-10-27 02:30,1"]   # alone: the earlier reading
SPRING = ["O3,Lead Captured,2024-03-31 02:30,1"]    # this hour does not exist in Rome


@pytest.mark.parametrize(("policy", "expected"), [
    ("infer", ["2024-10-27T00:50Z", "2024-10-27T01:20Z", "2024-10-27T00:30Z"]),
    ("earliest", ["2024-10-27T00:50Z", None, "2024-10-27T00:30Z"]),  # None: now before the first
    ("latest", ["2024-10-27T01:50Z", "2024-10-27T01:20Z", "2024-10-27T01:30Z"]),
])
def test_repeated_autumn_hour_is_kept_by_the_mapping_policy(tmp_path: Path, policy: str,
                                                            expected: list[str | None]) -> None:
    mapping = mapping_with(timestamp_format="%Y-%m-%d %H:%M", timezone="Europe/Rome",
                           repeated_local_times=policy)
    log = read_log(csv_file(tmp_path, AUTUMN), mapping)
    assert log.report.rows_quarantined == 0
    got = log.events.sort_values("source_row")["timestamp"].tolist()
    for have, want in zip(got, expected, strict=True):
        if want is not None:
            assert have == pd.Timestamp(want)
    if policy == "earliest":  # read early, the second event lands before the first
        assert got[1] == pd.Timestamp("2024-10-27T00:20Z")
    assert any("3 local time(s) fall in the hour repeated" in w for w in log.report.warnings)


def test_clock_change_rows_can_be_quarantined_with_their_own_reason(tmp_path: Path) -> None:
    mapping = mapping_with(timestamp_format="%Y-%m-%d %H:%M", timezone="Europe/Rome",
                           repeated_local_times="quarantine", skipped_local_times="quarantine",
                           max_unusable_timestamps=1)
    log = read_log(csv_file(tmp_path, [*AUTUMN, *SPRING, "O4,Lead Captured,2024-05-01 10:00,1"]),
                   mapping)
    assert log.report.quarantined == {"ambiguous_local_time": 3, "nonexistent_local_time": 1}
    assert len(log) == 1


def test_skipped_spring_hour_moves_past_the_gap_by_default(tmp_path: Path) -> None:
    mapping = mapping_with(timestamp_format="%Y-%m-%d %H:%M", timezone="Europe/Rome")
    log = read_log(csv_file(tmp_path, SPRING), mapping)
    assert log.events["timestamp"].iloc[0] == pd.Timestamp("2024-03-31T01:00Z")  # 03:00 CEST
    assert any("hour skipped" in w for w in log.report.warnings)


def test_a_typed_local_time_column_in_the_repeated_hour_does_not_crash(tmp_path: Path) -> None:
    frame = pd.DataFrame({"opportunity_id": ["O1", "O1"],
                          "activity": ["Lead Captured", "Quote Issued"],
                          "event_time": pd.to_datetime(["2024-10-27 02:50", "2024-10-27 02:20"])})
    frame.to_parquet(tmp_path / "typed.parquet")
    log = read_log(tmp_path / "typed.parquet", mapping_with(timezone="Europe/Rome"))
    assert log.events["timestamp"].tolist() == [pd.Timestamp("2024-10-27T00:50Z"),
                                                pd.Timestamp("2024-10-27T01:20Z")]


def test_implausible_but_parseable_times_are_noted_and_can_be_bounded(tmp_path: Path) -> None:
    lines = [*GOOD, "O5,Lead Captured,1970-01-01T00:00:00Z,1",
             "O6,Lead Captured,2100-06-01T00:00:00Z,1"]
    log = read_log(csv_file(tmp_path, lines))
    assert len(log) == 6
    warnings = " ".join(log.report.warnings)
    assert "1 event(s) at exactly 1970-01-01" in warnings and "row 5" in warnings
    assert "1 event(s) in the future" in warnings and "row 6" in warnings
    bounded = mapping_with(earliest_plausible="2020-01-01", latest_plausible="2030-12-31",
                           max_unusable_timestamps=1)
    log = read_log(csv_file(tmp_path, lines), bounded)
    assert log.report.quarantined == {"implausible_timestamp": 2}
    assert "earliest_plausible" in log.report.examples["implausible_timestamp"][0]


# ------------------------------------------------------------------- numbers
def test_non_finite_numbers_are_quarantined_at_read_time(tmp_path: Path) -> None:
    lines = [*GOOD, "O3,Lead Captured,2024-03-05T09:00:00Z,inf",
             "O4,Lead Captured,2024-03-05T09:00:00Z,1e999"]
    log = read_log(csv_file(tmp_path, lines))
    assert log.report.quarantined == {"non_finite_number": 2}
    assert np.isfinite(log.events["value"]).all()
    typed = pd.DataFrame({"opportunity_id": ["O1", "O2"], "activity": ["Lead Captured"] * 2,
                          "event_time": ["2024-01-01T00:00:00Z"] * 2, "amount": [1.0, -np.inf]})
    assert canonicalize(typed, default_mapping()).report.quarantined == {"non_finite_number": 1}


# --------------------------------------------------------------------- Excel
def _workbook_with_formulas(path: Path, cached: bool) -> Path:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["opportunity_id", "activity", "event_time", "amount", "note"])
    sheet.append(["O1", "Lead Captured", "2024-01-01T10:00:00Z", "=100*2", "=1+1"])
    sheet.append(["O2", "Lead Captured", "2024-01-02T10:00:00Z", 50, "=1+1"])
    book.save(path)
    if cached:  # as a spreadsheet program saves it: the formula and its value
        data = io.BytesIO()
        with zipfile.ZipFile(path) as old, zipfile.ZipFile(data, "w") as new:
            for item in old.infolist():
                body = old.read(item.filename)
                if item.filename == "xl/worksheets/sheet1.xml":  # <v/>, <v /> or <v></v>,
                    # as openpyxl writes it with or without lxml
                    body, found = re.subn(rb"<f>100\*2</f>(?:<v\s*/>|<v></v>)?",
                                          b"<f>100*2</f><v>200</v>", body)
                    assert found == 1, body
                new.writestr(item, body)
        path.write_bytes(data.getvalue())
    return path


def test_excel_formulas_read_their_saved_values(tmp_path: Path) -> None:
    log = read_log(_workbook_with_formulas(tmp_path / "saved.xlsx", cached=True))
    assert log.report.rows_quarantined == 0
    assert log.events.sort_values("source_row")["value"].tolist() == [200.0, 50.0]


def test_excel_formulas_without_a_value_are_quarantined_not_blanked(tmp_path: Path) -> None:
    log = read_log(_workbook_with_formulas(tmp_path / "script.xlsx", cached=False))
    # the amount is mapped: that row goes; the unmapped note's formulas harm nobody
    assert log.report.quarantined == {"formula_without_value": 1}
    assert list(log.events["case_id"]) == ["O2"]
    example = log.report.examples["formula_without_value"][0]
    assert "row 1, column 'amount'" in example and "=100*2" in example


# ----------------------------------------------------------------------- XES
XES = """<?xml version="1.0" encoding="UTF-8"?>
<log xes.version="1849-2016">
<trace><string key="concept:name" value="C1"/>
<event><string key="concept:name" value="Lead Captured"/>
<date key="time:timestamp" value="2024-01-01T10:00:00Z"/><int key="cost" value="n/a"/></event>
<event><string key="concept:name" value="Quote Issued"/>
<date key="time:timestamp" value="2024-01-02T10:00:00Z"/><int key="cost" value="7"/></event>
</trace></log>
"""


def test_one_mistyped_xes_attribute_does_not_refuse_the_log(tmp_path: Path) -> None:
    path = tmp_path / "log.xes"
    path.write_text(XES)
    log = read_log(path)
    assert len(log) == 2 and log.report.rows_quarantined == 0
    warning = " ".join(log.report.warnings)
    assert "trace 1, event 1, attribute 'cost': <int> value 'n/a'" in warning
    raw = default_mapping().model_dump()
    raw["extra_columns"] = {"cost": {"column": "cost", "type": "number"}}
    mapped = read_log(path, Mapping.from_dict(raw), refuse_errors=False)
    assert mapped.report.quarantined == {"unparseable_number": 1}


# ---------------------------------------------------------- CSVs for people
def test_csvs_written_for_people_neutralise_formulas(tmp_path: Path) -> None:
    frame = pd.DataFrame({"cell": ['=HYPERLINK("http://x")', "=cmd|' /C calc'!A0", "@SUM(A1)",
                                   "-12.5", "plain", None], "n": range(6)})
    safe = neutralise_formulas(frame)
    assert safe["cell"].tolist()[:5] == ["'=HYPERLINK(\"http://x\")", "'=cmd|' /C calc'!A0",
                                         "'@SUM(A1)", "-12.5", "plain"]
    pd.testing.assert_frame_equal(frame, frame.copy())  # the caller's frame is untouched
    write_csv_for_people(frame, tmp_path / "q.csv")
    assert "\n=" not in (tmp_path / "q.csv").read_text()


def test_unknown_activities_whose_names_meet_get_features_of_their_own(tmp_path: Path) -> None:
    assert unique_slugs(["Quote Issued", "Quote-Issued", "Events"], "n_",
                        taken=["n_events"]) == ["n_quote_issued", "n_quote_issued_2",
                                                "n_events_2"]
    lines = [*GOOD, "O3,Quote-Issued,2024-03-05T09:00:00Z,1", "O3,Events,2024-03-06T09:00:00Z,1"]
    pipeline = PrefixPipeline().fit(read_log(csv_file(tmp_path, lines)).events)
    assert {"n_quote_issued", "n_quote_issued_2", "n_events", "n_events_2"} <= set(
        pipeline.feature_names_out_)


def test_a_plausible_range_starting_at_the_epoch_still_bounds(tmp_path: Path) -> None:
    """A bound of exactly 1970-01-01 is zero microseconds, and still a bound."""
    lines = [*GOOD, "O5,Lead Captured,1969-12-31T23:00:00Z,1"]
    bounded = mapping_with(earliest_plausible="1970-01-01", max_unusable_timestamps=1)
    log = read_log(csv_file(tmp_path, lines), bounded)
    assert log.report.quarantined == {"implausible_timestamp": 1}
