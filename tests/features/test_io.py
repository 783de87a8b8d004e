"""Readers and writers: every format round-trips; real public logs read through a mapping."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from features.io import write_frame
from features.log import read_log
from features.simulate import simulate_log
from features.summary import summarize
from features.template import write_template

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
MAPPINGS = Path(__file__).resolve().parents[2] / "benchmarks" / "mappings"
XES_COLUMNS = {"case_column": "opportunity_id", "activity_column": "activity",
               "timestamp_column": "event_time", "resource_column": "user"}


@pytest.fixture(scope="module")
def simulated() -> pd.DataFrame:
    return simulate_log(n_cases=120, seed=4)[0]


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet", ".xlsx", ".xes", ".xes.gz"])
def test_every_format_reads_back_the_same_canonical_log(tmp_path: Path, simulated: pd.DataFrame,
                                                        suffix: str) -> None:
    reference = tmp_path / "reference.csv"
    write_frame(simulated, reference)
    expected = read_log(reference).events.drop(columns="source_row")
    path = tmp_path / f"log{suffix}"
    write_frame(simulated, path, **XES_COLUMNS)
    log = read_log(path)
    assert log.report.rows_quarantined == 0
    got = log.events.drop(columns="source_row")
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-12)
    assert len(got) == len(simulated)


def test_the_excel_template_reads_with_the_default_mapping(tmp_path: Path) -> None:
    path = write_template(tmp_path / "template.xlsx")
    sheets = pd.read_excel(path, sheet_name=None)
    assert list(sheets) == ["events", "columns", "activities"]
    assert "Payment Received" in set(sheets["activities"]["activity"])
    log = read_log(path)
    assert summarize(log)["cases"] == 1
    assert log.events["discount_pct"].tolist()[1] == 12.5


def _real(path: str) -> Path:
    file = SHARED / path
    if not file.is_file():
        pytest.skip(f"{file} is absent (the shared data folder is not beside the project)")
    return file


@pytest.mark.slow  # reads a real public log
def test_bpic2012_reads_through_its_mapping_within_30_seconds() -> None:
    path = _real("bpic2012/BPI_Challenge_2012.xes.gz")
    started = time.perf_counter()
    log = read_log(path, MAPPINGS / "bpic2012.yaml")
    seconds = time.perf_counter() - started
    summary = summarize(log)
    assert (summary["cases"], summary["events"]) == (13087, 262200)
    assert summary["won"] > 2000 and summary["lost"] > 2000  # offers accepted / declined
    assert log.events["value"].notna().all()  # case attribute AMOUNT_REQ via case:
    assert seconds < 30, f"took {seconds:.1f} s"


@pytest.mark.slow  # reads a real public log
def test_helpdesk_reads_and_exact_duplicates_are_quarantined() -> None:
    log = read_log(_real("helpdesk/helpdesk.xes.gz"), MAPPINGS / "helpdesk.yaml")
    report = log.report
    assert report.rows_in == 21348
    assert report.rows_kept + report.rows_quarantined == report.rows_in
    assert set(report.quarantined) <= {"duplicate_event"}
    assert log.events["case_id"].nunique() == 4580
    assert log.events["seriousness"].notna().mean() > 0.9


@pytest.mark.slow  # reads a real public log
def test_traffic_fines_reads_day_resolution_csv() -> None:
    log = read_log(_real("traffic_fines/traffic_fines_full.csv.gz"),
                   MAPPINGS / "traffic_fines.yaml")
    assert log.report.rows_in == 561470 and log.report.rows_quarantined == 0
    assert log.events["case_id"].nunique() == 150370
    assert (log.events["timestamp"].dt.hour == 0).all()
    assert log.events["payment_terms_days"].eq(60).all()


@pytest.mark.slow  # reads a real public log
def test_the_feature_pipeline_runs_on_a_real_log_through_its_mapping() -> None:
    from features.pipeline import PrefixPipeline

    log = read_log(_real("helpdesk/helpdesk.xes.gz"), MAPPINGS / "helpdesk.yaml")
    pipe = PrefixPipeline(roles=log.mapping.roles).fit(log.events)
    frame = pipe.transform(log.events)
    labels = pipe.labels(log.events)
    assert len(frame) == len(labels) == len(log.events)
    assert {"seriousness", "n_events", "elapsed_days"} <= set(frame.columns)
    # helpdesk has no end activity: every case ends at its last event, remaining >= 0
    assert (labels.loc[labels["remaining_usable"], "remaining_days"] >= 0).all()
