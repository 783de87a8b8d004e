"""Validation: every unusable row is named, quarantined with a reason and counted."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd
import pytest

from features.errors import EventLogError, MappingError, MissingColumnsError
from features.log import canonicalize, read_log
from features.mapping import Mapping, default_mapping
from features.summary import summarize

HEADER = "opportunity_id,activity,event_time,user,amount,owner,payment_terms,discount_pct\n"
GOOD_ROWS = [
    "O1,Lead Captured,2024-01-01T09:00:00Z,ann,1000,ann,Net 30,",
    "O1,Quote Issued,2024-01-03T09:00:00Z,ann,1000,ann,Net 30,10",
    "O1,Opportunity Won,2024-01-09T09:00:00Z,ann,1000,ann,Net 30,",
    "O2,Lead Captured,2024-01-02T09:00:00Z,bob,500,bob,Net 60,",
    "O2,Opportunity Lost,2024-01-05T09:00:00Z,bob,500,bob,Net 60,",
]


def write_csv(tmp_path: Path, rows: list[str], header: str = HEADER, name: str = "log.csv") -> Path:
    path = tmp_path / name
    path.write_text(header + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_clean_log_reads_into_canonical_form(tmp_path: Path) -> None:
    log = read_log(write_csv(tmp_path, GOOD_ROWS))
    events = log.events
    assert list(events.columns[:4]) == ["case_id", "activity", "timestamp", "resource"]
    assert str(events["timestamp"].dtype) == "datetime64[us, UTC]"
    assert events["value"].dtype == "float64"
    assert events["payment_terms_days"].tolist() == [30.0, 30.0, 30.0, 60.0, 60.0]
    assert events.loc[1, "discount_pct"] == 10.0
    assert events["rep"].tolist() == ["ann", "ann", "ann", "bob", "bob"]
    assert log.report.rows_in == 5 and log.report.rows_kept == 5 and log.quarantine.empty
    summary = summarize(log)
    assert (summary["won"], summary["lost"], summary["cases"]) == (1, 1, 2)
    assert (summary["completed_cases"], summary["open_cases"]) == (1, 1)


def test_unparseable_timestamp_names_file_row_and_value(tmp_path: Path) -> None:
    rows = [f"C{i},Lead Captured,2024-01-01T09:00:00Z,ann,10,ann,Net 30," for i in range(1, 1234)]
    rows.append("C9999,Lead Captured,31/02/2024 25:61,ann,10,ann,Net 30,")
    rows += [f"D{i},Lead Captured,2024-01-01T09:00:00Z,ann,10,ann,Net 30," for i in range(10)]
    path = write_csv(tmp_path, rows)
    log = read_log(path)
    assert log.report.quarantined == {"unparseable_timestamp": 1}
    message = log.report.examples["unparseable_timestamp"][0]
    assert str(path) in message and "row 1234" in message and "'31/02/2024 25:61'" in message
    assert "event_time" in message
    bad = log.quarantine.iloc[0]
    assert bad["source_row"] == 1234 and bad["event_time"] == "31/02/2024 25:61"
    assert log.report.rows_kept + log.report.rows_quarantined == log.report.rows_in == 1244


def test_each_row_problem_is_quarantined_with_its_reason(tmp_path: Path) -> None:
    rows = [
        *GOOD_ROWS,
        ",Lead Captured,2024-01-01T09:00:00Z,ann,10,ann,Net 30,",  # empty case id
        "O3,Lead Captured,2024-01-01T09:00:00Z,ann,-5,ann,Net 30,",  # negative amount
        GOOD_ROWS[1],  # exact duplicate of row 2
        "O2,Quote Issued,2024-01-07T09:00:00Z,bob,500,bob,Net 60,5",  # after the loss
        "O4,Lead Captured,2024-01-01T09:00:00Z,ann,lots,ann,Net 30,",  # not a number
        "O5,Mystery Step,2024-01-01T09:00:00Z,ann,10,ann,Net 30,",  # unknown: kept, warned
    ]
    log = read_log(write_csv(tmp_path, rows))
    assert dict(log.report.quarantined) == {
        "empty_case_id": 1,
        "negative_amount": 1,
        "duplicate_event": 1,
        "event_after_case_end": 1,
        "unparseable_number": 1,
    }
    by_row = log.quarantine.set_index("source_row")["quarantine_reason"].to_dict()
    assert by_row == {6: "empty_case_id", 7: "negative_amount", 8: "duplicate_event",
                      9: "event_after_case_end", 10: "unparseable_number"}
    assert "exact duplicate of row 2" in log.report.examples["duplicate_event"][0]
    assert "'lots'" in log.report.examples["unparseable_number"][0]
    assert log.report.unknown_activities == {"Mystery Step": 1}
    assert "Mystery Step" in log.report.warnings[-1]
    assert "left empty: currency, stage, region" in log.report.warnings[0]
    assert log.report.rows_kept == 6 and log.report.rows_in == 11


def test_unknown_activities_can_be_quarantined_by_the_mapping(tmp_path: Path) -> None:
    mapping = default_mapping().model_copy(update={"unknown_activities": "quarantine"})
    rows = [*GOOD_ROWS, "O5,Mystery Step,2024-01-01T09:00:00Z,ann,10,ann,Net 30,"]
    log = read_log(write_csv(tmp_path, rows), mapping)
    assert log.report.quarantined == {"unknown_activity": 1}
    assert not any("Mystery" in w for w in log.report.warnings)


def test_missing_required_column_names_expected_and_found(tmp_path: Path) -> None:
    path = write_csv(tmp_path, ["O1,Lead Captured,ann"], header="opportunity_id,activity,user\n")
    with pytest.raises(MissingColumnsError) as info:
        read_log(path)
    text = str(info.value)
    assert "timestamp -> 'event_time | time:timestamp'" in text
    assert "'opportunity_id'" in text and "'user'" in text


def test_mapping_naming_a_column_the_file_lacks_is_an_error(tmp_path: Path) -> None:
    mapping = Mapping.from_dict({
        "columns": {"case_id": "opportunity_id", "activity": "activity",
                    "timestamp": "event_time", "region": "Territory"},
    })
    with pytest.raises(MissingColumnsError, match="region -> 'Territory'"):
        read_log(write_csv(tmp_path, GOOD_ROWS), mapping)


def test_malformed_mapping_files_fail_with_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("columns: {case_id: a, activity: b}\n")
    with pytest.raises(MappingError, match=r"required role.*timestamp"):
        Mapping.load(bad)
    bad.write_text("columns: {case_id: a, activity: b, timestamp: c, colour: d}\n")
    with pytest.raises(MappingError, match=r"unknown canonical role.*colour"):
        Mapping.load(bad)
    bad.write_text("columns: [unclosed\n")
    with pytest.raises(MappingError, match="not valid YAML"):
        Mapping.load(bad)


def test_a_german_export_reads_through_a_mapping_alone(tmp_path: Path) -> None:
    mapping_file = tmp_path / "crm-de.yaml"
    mapping_file.write_text(textwrap.dedent("""\
        name: crm-de
        format: {separator: ";", decimal: ",", thousands: ".", encoding: latin-1,
                 timestamp_format: "%d.%m.%Y %H:%M", timezone: Europe/Berlin}
        columns:
          case_id: Verkaufschance
          activity: Aktivität
          timestamp: Zeitpunkt
          resource: Bearbeiter
          value: Betrag
          rep: Verantwortlicher
          payment_terms: Zahlungsziel
          lost_reason: Verlustgrund
        activities:
          Lead erfasst: Lead Captured
          Angebot erstellt: Quote Issued
          Auftrag gewonnen: Opportunity Won
          Zahlung eingegangen: Payment Received
        roles:
          won: [Opportunity Won]
          payment: [Payment Received]
          invoice: [Invoice Created]
        payment_terms: {pattern: '(\\d+) Tage'}
        """), encoding="utf-8")
    export = tmp_path / "export.csv"
    export.write_text(
        "Verkaufschance;Aktivität;Zeitpunkt;Bearbeiter;Betrag;Verantwortlicher;Zahlungsziel;"
        "Verlustgrund\n"
        "VC-1;Lead erfasst;01.03.2024 09:30;Müller;12.345,50;Müller;30 Tage;\n"
        "VC-1;Angebot erstellt;15.07.2024 14:00;Müller;12.345,50;Müller;30 Tage;\n"
        "VC-1;Auftrag gewonnen;20.07.2024 10:00;Müller;12.345,50;Müller;30 Tage;\n",
        encoding="latin-1",
    )
    log = read_log(export, mapping_file)
    events = log.events
    assert events["activity"].tolist() == ["Lead Captured", "Quote Issued", "Opportunity Won"]
    assert events["value"].tolist() == [12345.5] * 3
    assert events["resource"].iloc[0] == "Müller"
    assert events["payment_terms_days"].iloc[0] == 30.0
    # 09:30 in Berlin in winter is 08:30 UTC; 14:00 in summer is 12:00 UTC
    assert events["timestamp"].iloc[0] == pd.Timestamp("2024-03-01T08:30:00Z")
    assert events["timestamp"].iloc[1] == pd.Timestamp("2024-07-15T12:00:00Z")
    assert summarize(log)["won"] == 1


def test_wrong_encoding_or_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EventLogError, match="no such file"):
        read_log(tmp_path / "absent.csv")
    path = tmp_path / "latin.csv"
    path.write_bytes((HEADER + "O1,Lead Captured,2024-01-01T09:00:00Z,J\xf6rg,1,x,Net 30,\n")
                     .encode("latin-1"))
    with pytest.raises(EventLogError, match=r"set format\.encoding"):
        read_log(path)


def test_input_order_does_not_change_the_canonical_log(tmp_path: Path) -> None:
    forward = read_log(write_csv(tmp_path, GOOD_ROWS, name="a.csv")).events
    backward = read_log(write_csv(tmp_path, GOOD_ROWS[::-1], name="b.csv")).events
    pd.testing.assert_frame_equal(forward.drop(columns="source_row"),
                                  backward.drop(columns="source_row"))


def test_placeholder_dates_are_quarantined_not_used(tmp_path: Path) -> None:
    rows = "\n".join([
        "opportunity_id,activity,event_time",
        "O1,Lead Captured,2024-01-02T10:00:00Z",
        "O1,Opportunity Created,9999-12-31T00:00:00Z",
        "O2,Lead Captured,0001-01-01T00:00:00Z",
    ])
    path = tmp_path / "placeholders.csv"
    path.write_text(rows + "\n")
    log = read_log(path, refuse_errors=False)
    assert log.report.quarantined == {"implausible_timestamp": 2}
    assert "2 of 3 rows (67%) have no usable time" in log.report.errors[0]
    assert list(log.events["case_id"]) == ["O1"]
    assert "row 2, column 'event_time'" in log.report.examples["implausible_timestamp"][0]


def test_typed_times_read_as_their_text_and_past_year_9999_are_quoted_not_fatal() -> None:
    """A Parquet export (and the API) hands the reader UTC instants, not text: they must
    read as their ISO text does, and a time past the year 9999 (which pandas cannot
    print) is quarantined with a readable quote instead of failing the whole read."""
    import numpy as np

    micros = np.array([1_704_189_600_000_000, 1_704_193_200_000_000,
                       (253_402_300_800 + 23 * 3600) * 10**6], dtype="datetime64[us]")
    typed = pd.DataFrame({"opportunity_id": ["O1", "O1", "O1"],
                          "activity": ["Lead Captured", "Opportunity Created", "Quote Issued"],
                          "event_time": pd.array(micros).tz_localize("UTC")})
    as_text = typed.assign(event_time=["2024-01-02T10:00:00Z", "2024-01-02T11:00:00Z",
                                       "10000-01-01T23:00:00Z"])
    log, text_log = canonicalize(typed, default_mapping()), canonicalize(as_text,
                                                                          default_mapping())
    assert dict(log.report.quarantined) == {"implausible_timestamp": 1}
    assert "(value '10000-01-01T23:00:00Z')" in log.report.examples["implausible_timestamp"][0]
    assert log.quarantine["quarantine_detail"].str.contains("10000-01-01T23:00:00Z").all()
    assert log.events["timestamp"].tolist() == text_log.events["timestamp"].tolist()[:2]
    # pyarrow's own time type (a Parquet read with the pyarrow backend) is quoted as is
    arrow = typed.assign(event_time=pd.array(
        pd.to_datetime(["2024-01-02T10:00:00Z", "2024-01-02T11:00:00Z", "1800-01-01T00:00:00Z"]),
        dtype="timestamp[us, tz=UTC][pyarrow]"))
    arrow_log = canonicalize(arrow, default_mapping())
    assert dict(arrow_log.report.quarantined) == {"implausible_timestamp": 1}
    assert "1800-01-01" in arrow_log.report.examples["implausible_timestamp"][0]


def test_small_frames_read_text_as_pandas_does_and_find_loose_duplicates() -> None:
    import numpy as np

    from features.log import _as_text
    from features.simulate import simulate_log

    dates = pd.Series(pd.to_datetime(["2024-01-01", "2024-02-03"]))
    assert _as_text(dates).tolist() == dates.astype("str").tolist() == ["2024-01-01",
                                                                        "2024-02-03"]
    floats = pd.Series(np.array([0.1, 2.5], dtype="float32"))
    assert _as_text(floats).tolist() == floats.astype("str").tolist()
    # an exact duplicate whose case id is typed 1 in one row and 1.0 in the other, as
    # pandas' duplicated sees it
    raw = simulate_log(n_cases=2, seed=1)[0].astype(object).iloc[:3].copy()
    raw = pd.concat([raw, raw.iloc[[1]]], ignore_index=True)
    raw.loc[1, "opportunity_id"], raw.loc[3, "opportunity_id"] = 1, 1.0
    log = canonicalize(raw, default_mapping())
    assert dict(log.report.quarantined) == {"duplicate_event": 1}


def test_payment_terms_pattern_needs_exactly_one_group() -> None:
    from features.mapping import PaymentTerms

    assert PaymentTerms(pattern=r"Net (\d+)").pattern == r"Net (\d+)"
    for pattern in (r"Net \d+", r"(Net )?(\d+)"):
        with pytest.raises(ValueError, match="exactly one capture group"):
            PaymentTerms(pattern=pattern)


@pytest.mark.parametrize("rows", [3, 5000])  # the request path and the file path
def test_hour_only_offsets_are_offsets_and_bare_dates_stay_local(rows: int) -> None:
    """'10:00:00-05' carries an offset (pandas failed on it as a mixed-zone naive time);
    '2024-01-05' ends in digits that look like one but is a local date."""
    mapping = default_mapping().model_copy(update={"format": default_mapping().format.model_copy(
        update={"timestamp_format": "ISO8601", "timezone": "Europe/Berlin"})})
    times = ["2024-01-05T10:00:00-05", "2024-01-05", "2024-01-05T10:00:00.250+05"]
    raw = pd.DataFrame({"opportunity_id": [f"C{i}" for i in range(rows)],
                        "activity": "Lead Captured",
                        "event_time": [times[i % 3] for i in range(rows)]})
    log = canonicalize(raw, mapping)
    assert log.quarantine.empty
    got = log.events.set_index("case_id")["timestamp"]
    assert got["C0"] == pd.Timestamp("2024-01-05T15:00:00Z")
    assert got["C1"] == pd.Timestamp("2024-01-04T23:00:00Z")  # Berlin midnight
    assert got["C2"] == pd.Timestamp("2024-01-05T05:00:00.250Z")


def test_a_log_with_every_row_kept_holds_its_columns_and_builds_the_same_frame(
        tmp_path: Path) -> None:
    """A request's log is encoded from the reader's columns; the frame built from them
    on demand must be the one a log with a quarantined row keeps (same rows, same
    dtypes), and replacing the frame must drop the columns, which no longer match."""
    clean = read_log(write_csv(tmp_path, GOOD_ROWS[::-1], name="clean.csv"))
    assert clean.columns is not None and len(clean) == 5
    assert clean.column("case_id").tolist() == ["O1", "O1", "O1", "O2", "O2"]
    with_bad = read_log(write_csv(tmp_path, [*GOOD_ROWS[::-1], "O3,Lead Captured,never,x,1,x,,"],
                                  name="bad.csv"), refuse_errors=False)
    assert with_bad.columns is None and with_bad.report.quarantined == {
        "unparseable_timestamp": 1}
    pd.testing.assert_frame_equal(clean.events, with_bad.events)
    assert list(clean.table()) == list(clean.events.columns)
    clean.events = clean.events.iloc[:2]
    assert clean.columns is None and clean.column("case_id").tolist() == ["O1", "O1"]
