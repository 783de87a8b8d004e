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
