"""The command line as a user runs it (typer's runner, real files)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from l2c.cli import app

runner = CliRunner()


def test_help_lists_every_command_with_its_purpose() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("simulate", "validate", "template", "train", "runs", "promote", "serve"):
        assert command in result.output


def test_simulate_is_deterministic_and_validate_summarises(tmp_path: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    for path in (first, second):
        result = runner.invoke(app, ["simulate", "--cases", "300", "--seed", "1",
                                     "--out", str(path)])
        assert result.exit_code == 0, result.output
    assert first.read_bytes() == second.read_bytes()
    assert (tmp_path / "a.truth.csv").is_file()
    result = runner.invoke(app, ["validate", str(first)])
    assert result.exit_code == 0, result.output
    for figure in ("cases", "events", "time span", "open cases", "won", "lost",
                   "rows quarantined"):
        assert figure in result.output
    assert "300" in result.output


def test_validate_fails_on_an_unusable_log_and_writes_the_quarantine(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("opportunity_id,activity,event_time\nO1,Lead Captured,31/02/2024 25:61\n")
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 1
    assert "row 1" in result.output and "31/02/2024 25:61" in result.output
    assert (tmp_path / "bad.quarantine.csv").is_file()
    missing = tmp_path / "missing.csv"
    missing.write_text("id,what\n1,x\n")
    result = runner.invoke(app, ["validate", str(missing)])
    assert result.exit_code == 2
    assert "Columns found" in result.output


def test_template_command_writes_the_workbook(tmp_path: Path) -> None:
    result = runner.invoke(app, ["template", str(tmp_path / "t.xlsx")])
    assert result.exit_code == 0 and (tmp_path / "t.xlsx").is_file()


def test_no_traceback_reaches_a_user_for_bad_files_or_mappings(tmp_path: Path) -> None:
    """Each damaged input gets one line and exit 2: never a traceback, nor a bare
    'Aborted!' (click's answer to an EOFError escaping a command)."""
    good = tmp_path / "good.csv"
    good.write_text("opportunity_id,activity,event_time\nO1,Lead Captured,2024-01-01T00:00:00Z\n")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\xe9\n".encode("latin-1"))
    zone = tmp_path / "zone.yaml"
    zone.write_text("columns: {case_id: opportunity_id, activity: activity, timestamp: "
                    "event_time}\nformat: {timezone: Europe/Roma}\n")
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 20)
    (tmp_path / "empty.csv").write_bytes(b"")
    cases = {
        "empty file": ["validate", str(tmp_path / "empty.csv")],
        "truncated gzip": ["validate", str(cut)],
        "directory as log": ["validate", str(tmp_path)],
        "latin-1 mapping": ["validate", str(good), "--mapping", str(latin)],
        "directory as mapping": ["validate", str(good), "--mapping", str(tmp_path)],
        "misspelt zone": ["validate", str(good), "--mapping", str(zone)],
        "train on a directory": ["train", str(tmp_path)],
    }
    for name, args in cases.items():
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (name, result.output)
        assert "Traceback" not in result.output and "Aborted" not in result.output, name
        assert "error:" in result.output, (name, result.output)
    assert "format.timezone" in runner.invoke(app, cases["misspelt zone"]).output


def test_rich_markup_in_file_names_and_cells_is_printed_as_text(tmp_path: Path) -> None:
    folder = tmp_path / "[red]x"
    folder.mkdir()
    log = folder / "[bold]log[red].csv"
    log.write_text("opportunity_id,activity,event_time\n"
                   "O1,Lead Captured,2024-01-01T00:00:00Z\n"
                   "O1,[/] Step [red],not a time\n")
    result = runner.invoke(app, ["validate", str(log)])
    assert "Traceback" not in result.output and "MarkupError" not in result.output
    assert "[bold]log[red].csv" in result.output.replace("\n", "")
    assert "not a time" in result.output
    assert result.exit_code == 1  # 1 of 2 rows without a usable time: over the threshold
    assert "no usable time" in result.output


def test_an_unexpected_failure_is_one_line_with_how_to_see_more(tmp_path: Path,
                                                                monkeypatch) -> None:
    import features.log

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(features.log, "read_log", broken)
    monkeypatch.delenv("L2C_DEBUG", raising=False)
    result = runner.invoke(app, ["validate", str(tmp_path / "x.csv")])
    assert result.exit_code == 3
    assert "internal error" in result.output and "L2C_DEBUG=1" in result.output
    assert "Traceback" not in result.output


def test_quarantine_file_neutralises_spreadsheet_formulas(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    rows = ["O1,Lead Captured,2024-01-01T00:00:00Z"] * 1 + [
        f"O{i},Lead Captured,2024-01-0{i}T00:00:00Z" for i in range(2, 9)]
    log.write_text("opportunity_id,activity,event_time\n" + "\n".join(rows)
                   + '\n"=HYPERLINK(""http://evil"")",Lead Captured,nope\n')
    result = runner.invoke(app, ["validate", str(log)])
    assert result.exit_code == 1, result.output  # 1 of 9 rows: over the 5% threshold
    text = (tmp_path / "log.quarantine.csv").read_text()
    assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text and "\n=" not in text


def test_simulate_writes_a_crm_table_with_its_mapping(tmp_path: Path) -> None:
    out = tmp_path / "deals.csv"
    result = runner.invoke(app, ["simulate", "--cases", "150", "--format", "crm-table",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    mapping = tmp_path / "deals.mapping.yaml"
    assert mapping.is_file()
    result = runner.invoke(app, ["validate", str(out), "--mapping", str(mapping)])
    assert result.exit_code == 0, result.output
    assert "150 row(s), one per case" in " ".join(result.output.split())


def test_train_takes_the_test_share_from_the_command_line(tmp_path: Path, monkeypatch) -> None:
    import training.train

    seen = {}

    def record(log, mapping, target, config, progress=None):
        seen["test_fraction"] = config.test_fraction
        raise ValueError("stop here")

    monkeypatch.setattr(training.train, "train", record)
    result = runner.invoke(app, ["train", str(tmp_path / "x.csv"), "--test-fraction", "0.3"])
    assert seen == {"test_fraction": 0.3} and result.exit_code == 2
    assert "stop here" in result.output
    outside = runner.invoke(app, ["train", str(tmp_path / "x.csv"), "--test-fraction", "0.9"])
    assert outside.exit_code == 2 and "Error" in outside.output  # typer: outside 0.05-0.5


def test_runs_show_a_missing_figure_as_a_dash_not_nan() -> None:
    from l2c.cli import _fmt

    assert _fmt(float("nan")) == "–" and _fmt(0.12345) == "0.1235" and _fmt(None) == ""


def test_promote_prints_its_answer_without_mlflow_progress_bars(trained, small_log) -> None:
    import os
    import subprocess
    import sys

    from training.config import TrainConfig
    from training.train import train

    # a one-tree model, refused by the comparison with the champion (whose test data
    # promote downloads); the honesty gates relaxed so that it gets that far
    weak = train(small_log, None, "outcome", TrainConfig(
        lgbm={"n_estimators": 1, "num_leaves": 2}, win_base=None, calibration="none",
        select_kind=False, learning_curve=False))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"}
    env.update(L2C_PROMOTE_AUC_TOLERANCE="1", L2C_PROMOTE_MAX_ECE="1")
    # in a process of its own, as a user runs it: MLflow's bars go to the real stderr
    done = subprocess.run([sys.executable, "-m", "l2c.cli", "promote", weak.run_id,
                           "--target", "outcome"], capture_output=True, text=True, env=env,
                          timeout=180)
    assert done.returncode == 1 and "worse than champion version" in done.stderr, done.stderr
    assert "Downloading artifacts" not in done.stderr + done.stdout, done.stderr


def test_runs_show_what_was_shipped_in_order_and_the_score_stability(trained) -> None:
    from training.runs import compare_runs

    table = compare_runs(max_runs=100)  # what `l2c runs` prints, the session's run among them
    rows = list(table[trained.run_id[:12]].dropna().index)
    assert "outcome.kind" in rows and "outcome.low_data" in rows
    assert "outcome.stability.median_jump" in rows and "outcome.stability.p90_jump" in rows
    auc = [r for r in rows if r.startswith("outcome.") and r.endswith(".auc")]
    assert auc[0] == "outcome.auc"  # the shipped model's figure first, then its baselines
    assert auc.index("outcome.baseline_stage_rate.auc") < auc.index(
        "outcome.selection_lightgbm.auc")
    assert not any(".learning_curve." in r for r in rows)
    result = runner.invoke(app, ["runs", "--max-runs", "3"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "outcome.stability.p90_jump" in result.output and " nan " not in result.output


def test_train_help_says_how_thin_data_is_flagged() -> None:
    from training.data import MIN_CASES

    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.output.replace("│", " ").split())
    assert f"{MIN_CASES['outcome']['won']} won and {MIN_CASES['outcome']['lost']} lost" in text
    assert f"{MIN_CASES['payment_delay']['paid']} completed / paid" in text
    assert '"low data"' in text
