"""``l2c train --cluster local:N`` and ``l2c score`` as a user runs them: real worker
processes, the dashboard link printed, the models registered and scored with."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from l2c.cli import app

runner = CliRunner()


def test_bad_cluster_options_are_one_line_errors(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    log = tmp_path / "log.csv"
    log.write_text("opportunity_id,activity,event_time\nO1,Lead Captured,2024-01-01T00:00Z\n")
    result = runner.invoke(app, ["train", str(log), "--cluster", "local:zero"])
    assert result.exit_code == 2
    assert "expected local:N" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["train", str(log), "--cluster", "local:2",
                                 "--scheduler", "tcp://127.0.0.1:8786"])
    assert result.exit_code == 2 and "not both" in result.output
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:1")  # nobody listens
    result = runner.invoke(app, ["train", str(log)])
    assert result.exit_code == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:1" in result.output


def test_train_on_a_local_cluster_then_score_open_cases(tmp_path: Path, mlflow_home: Path,
                                                        monkeypatch) -> None:
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    log = tmp_path / "l2c.csv"
    result = runner.invoke(app, ["simulate", "--cases", "400", "--seed", "3", "--out", str(log)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["train", str(log), "--cluster", "local:2", "--target",
                                 "outcome", "--partitions", "2"])
    assert result.exit_code == 0, result.output
    assert "Dask cluster with 2 worker(s); dashboard: http://" in result.output
    assert "registered outcome as l2c-outcome: version" in " ".join(result.output.split())
    result = runner.invoke(app, ["promote", "--target", "outcome", "latest", "--force"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "scores.parquet"
    result = runner.invoke(app, ["score", str(log), "--target", "outcome", "--out", str(out)])
    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(out)
    assert len(scores) > 5 and scores["outcome.p_win"].between(0, 1).all()
    assert f"scored {len(scores):,} open case(s)" in result.output.replace("\n", " ")
    result = runner.invoke(app, ["score", str(log), "--target", "payment_delay",
                                 "--out", str(out)])
    assert result.exit_code == 2 and "no model" in result.output
