"""The ``l2c`` command line: one entry point for data checks, training and serving.

Heavy libraries are imported inside each command so ``l2c --help`` answers at once.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(
    name="l2c",
    help="Predictive Lead-to-Cash analytics: simulate, validate, train, compare, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)
Command = TypeVar("Command", bound=Callable[..., Any])


def fail(label: str, message: object, code: int) -> NoReturn:
    """One line for the user, their own text escaped: a file name or cell holding
    ``[red]`` or ``[/]`` would otherwise be read as rich markup (or crash it)."""
    err_console.print(f"[red]{label}:[/] {escape(str(message))}")
    raise typer.Exit(code)


def guarded(command: Command) -> Command:
    """No traceback reaches a user. Bad input (a log, a mapping) is exit 2 with its
    message; an interruption is exit 130; anything else is a bug, said in one line
    with how to see the traceback (``L2C_DEBUG=1``), exit 3."""
    from features.errors import EventLogError

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except EventLogError as exc:
            fail("error", exc, 2)
        except KeyboardInterrupt:
            fail("interrupted", "stopped before the end; nothing half-done was kept", 130)
        except Exception as exc:
            if os.environ.get("L2C_DEBUG"):
                raise
            fail("internal error", f"{type(exc).__name__}: {exc} (run again with L2C_DEBUG=1 "
                 "for the traceback, and report it)", 3)

    return run  # type: ignore[return-value]

MappingOption = Annotated[
    Path | None,
    typer.Option("--mapping", "-m", help="YAML mapping of the export; default: simulator's."),
]
# the same Dask options on every command that can run on a cluster (docs/scale.md)
ClusterOption = Annotated[str | None, typer.Option(
    help="Run on Dask: local:N starts N local workers (see docs/scale.md). LOG may then "
    "also be a directory of Parquet files.")]
SchedulerOption = Annotated[str | None, typer.Option(
    help="Run on an existing Dask cluster, e.g. tcp://HOST:8786 (default: "
    "$DASK_SCHEDULER_ADDRESS).")]
PartitionsOption = Annotated[int | None, typer.Option(
    min=1, help="Dask: partitions of cases (default: ~500k rows each).")]


@app.command()
@guarded
def simulate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Log to write: .csv, .parquet, "
                                      ".xlsx, .xes or .xes.gz.")],
    cases: Annotated[int, typer.Option("--cases", "-n", min=1, help="Opportunities.")] = 5000,
    seed: Annotated[int, typer.Option("--seed", "-s", help="Random seed.")] = 1,
    export: Annotated[str, typer.Option(
        "--format", help="events: one row per event; crm-table: one row per deal with a "
        "date column per milestone, and its mapping beside it.")] = "events",
) -> None:
    """Write a realistic simulated Lead-to-Cash log and its truth file."""
    import shutil
    import time
    from importlib import resources

    from features.crm_table import deals_table
    from features.io import sidecar_path, write_frame
    from features.simulate import simulate_log

    if export not in ("events", "crm-table"):
        fail("error", f"--format {export!r}: use events or crm-table", 2)
    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    events, truth = simulate_log(n_cases=cases, seed=seed)
    rows = events if export == "events" else deals_table(events)
    write_frame(rows, out, case_column="opportunity_id", activity_column="activity",
                timestamp_column="event_time", resource_column="user")
    truth_file = sidecar_path(out, "truth")
    truth.to_csv(truth_file, index=False)
    what = "events" if export == "events" else "deal rows"
    console.print(
        f"wrote {len(rows):,} {what} of {cases:,} cases to [bold]{escape(str(out))}[/] and "
        f"the truth to {escape(str(truth_file))} in {time.perf_counter() - started:.1f} s"
    )
    if export == "crm-table":
        mapping_file = out.with_name(sidecar_path(out, "mapping").stem + ".yaml")
        with resources.as_file(resources.files("features.mappings") / "crm_table.yaml") as src:
            shutil.copyfile(src, mapping_file)
        console.print(f"read it with [bold]--mapping {escape(str(mapping_file))}[/]")


@app.command()
@guarded
def validate(
    log: Annotated[Path, typer.Argument(help="Event log file (CSV, Parquet, XLSX, XES).")],
    mapping: MappingOption = None,
    quarantine: Annotated[Path | None, typer.Option(
        help="Where to write quarantined rows; default: beside the log.")] = None,
) -> None:
    """Check a log through its mapping and summarise it; exit 1 when it is unusable."""
    from features.io import write_csv_for_people
    from features.log import quarantine_path, read_log
    from features.summary import is_usable, summarize

    result = read_log(log, mapping, refuse_errors=False)
    summary = summarize(result)
    _print_summary(summary)
    if not result.quarantine.empty:
        target = quarantine or quarantine_path(log)
        write_csv_for_people(result.quarantine, target)
        console.print(f"quarantined rows written to [bold]{escape(str(target))}[/]")
        for reason, examples in result.report.examples.items():
            for message in examples[:3]:
                console.print(f"  [yellow]{escape(reason)}[/]: {escape(message)}")
    for warning in summary["warnings"]:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
    for error in result.report.errors:
        err_console.print(f"[red]refused:[/] {escape(error)}")
    if not is_usable(summary):
        fail("not usable", "no event survived validation", 1)
    if result.report.errors:
        raise typer.Exit(1)


def _no_progress_bars() -> None:
    """MLflow's download and upload progress bars would sit between the user and the
    answer (train, score, promote)."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _print_summary(summary: dict) -> None:
    table = Table(title=f"Event log {escape(summary['source'])}", show_header=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    span = ("-" if summary["events"] == 0 else
            f"{summary['first_event']:%Y-%m-%d} .. {summary['last_event']:%Y-%m-%d}")
    rows = [
        ("cases", f"{summary['cases']:,}"),
        ("events", f"{summary['events']:,}"),
        ("activities", f"{summary['activities']:,}"),
        ("time span", span),
        ("completed cases", f"{summary['completed_cases']:,}"),
        ("open cases", f"{summary['open_cases']:,}"),
        ("won", f"{summary['won']:,}"),
        ("lost", f"{summary['lost']:,}"),
        ("rows in", f"{summary['rows_in']:,}"),
        ("rows kept", f"{summary['rows_kept']:,}"),
        ("rows quarantined", f"{summary['rows_quarantined']:,}"),
    ]
    rows += [(f"  quarantined: {escape(r)}", f"{n:,}")
             for r, n in summary["quarantined_by_reason"].items()]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


@app.command()
@guarded
def template(
    out: Annotated[Path, typer.Argument(help="Excel file to write, e.g. template.xlsx.")],
) -> None:
    """Write the Excel data template (events sheet plus column and activity guides)."""
    from features.template import write_template

    write_template(out)
    console.print(f"wrote the data template to [bold]{escape(str(out))}[/]")


@app.command()
@guarded
def train(
    log: Annotated[Path, typer.Argument(help="Event log file (CSV, Parquet, XLSX, XES).")],
    mapping: MappingOption = None,
    target: Annotated[str, typer.Option(
        help="all, outcome, remaining_time or payment_delay.")] = "all",
    max_prefix_len: Annotated[int, typer.Option(help="Longest prefix used.")] = 40,
    seed: Annotated[int, typer.Option(help="Random seed of the models.")] = 0,
    test_fraction: Annotated[float, typer.Option(
        min=0.05, max=0.5, help="Share of the latest cases held out as the test set.")] = 0.2,
    cluster: ClusterOption = None,
    scheduler: SchedulerOption = None,
    partitions: PartitionsOption = None,
    sample_cases: Annotated[int, typer.Option(
        min=100, help="Dask: training cases of the driver's run that picks the number of "
        "trees, the bases and the calibration.")] = 20_000,
    store: Annotated[Path | None, typer.Option(
        help="Dask: keep the validated partitions as Parquet files in this folder (every "
        "worker must reach it) instead of in worker memory.")] = None,
    name: Annotated[str | None, typer.Option(
        help="Process the models are named after (l2c-NAME-outcome); default: the "
        "mapping's name (the simulator's keeps l2c-outcome).")] = None,
) -> None:
    """Train models for the targets, compare with baselines, log and register in MLflow.

    Each target ships the best of LightGBM, the logistic base and the baselines on the
    latest training block, and says which and why. Below 200 won and 200 lost labelled
    training cases (win model) or 200 completed / paid ones (the two regressions) a
    target is still trained, but flagged "low data" with its counts wherever it is shown.

    With --cluster or --scheduler (or DASK_SCHEDULER_ADDRESS) the same job runs on Dask.
    """
    import logging
    import os
    import warnings

    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    # MLflow's own chatter (progress bars, signature hints) would bury the result table
    _no_progress_bars()
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)

    from features.errors import EventLogError
    from scaleout.cluster import ClusterSpec
    from training.config import TrainConfig
    from training.train import train as run_training

    config = TrainConfig(max_prefix_len=max_prefix_len, seed=seed, test_fraction=test_fraction,
                         process=name)
    spec = ClusterSpec.from_options(cluster, scheduler)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("starting", total=None)
        try:
            if spec is None:
                outcome = run_training(
                    log, mapping, target, config,
                    progress=lambda m: progress.update(task, description=escape(m)))
            else:
                from scaleout.run import train_on_cluster

                outcome = train_on_cluster(
                    log, mapping, target, config, spec, partitions=partitions,
                    sample_cases=sample_cases, store=store,
                    progress=lambda m: progress.update(task, description=escape(m)),
                    announce=lambda m: console.print(escape(m)))
        except (EventLogError, ValueError) as exc:
            progress.stop()
            fail("error", exc, 2)
    _print_training(outcome)


@app.command()
@guarded
def score(
    log: Annotated[Path, typer.Argument(
        help="Event log: a file, or with --cluster/--scheduler a directory of Parquet files.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Scores to write: .parquet or .csv.")],
    mapping: MappingOption = None,
    target: Annotated[str, typer.Option(
        help="all, outcome, remaining_time or payment_delay (their champions).")] = "all",
    cluster: ClusterOption = None,
    scheduler: SchedulerOption = None,
    partitions: PartitionsOption = None,
) -> None:
    """Score every open case of a log (its latest prefix) with the champion models."""
    _no_progress_bars()
    from models.targets import resolve_targets
    from scaleout.cluster import ClusterSpec
    from scaleout.run import score_log
    from scaleout.score import champion_bundles

    if out.suffix not in (".parquet", ".csv"):
        fail("error", f"--out {out}: use a .parquet or .csv file name", 2)
    spec = ClusterSpec.from_options(cluster, scheduler)
    try:
        targets = [t.name for t in resolve_targets(target)]
    except ValueError as exc:
        fail("error", exc, 2)
    try:
        bundles = champion_bundles(targets)
    except Exception as exc:  # the registry has no champion for a target
        fail("no model", f"{exc} (train and promote first: l2c train LOG; l2c promote)", 2)
    with console.status("scoring open cases"):
        scores, report = score_log(log, mapping, bundles, spec, partitions=partitions,
                                   announce=lambda m: console.print(escape(m)))
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        scores.to_parquet(out, index=False)
    else:
        scores.to_csv(out, index=False)
    console.print(f"scored {len(scores):,} open case(s) of {report.rows_kept:,} event(s) "
                  f"({report.rows_quarantined:,} row(s) quarantined) into "
                  f"[bold]{escape(str(out))}[/]")
    refused = int((~scores["predicted"]).sum())
    if refused:
        console.print(f"{refused:,} case(s) not predicted: an input is not a finite number "
                      "(their notes column says which)")


def _print_training(outcome) -> None:
    from training.tracking import run_metrics_table

    rows = run_metrics_table(outcome.results)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    table = Table(title="Test metrics (temporal split) vs baselines")
    for column in columns:
        table.add_column(column, justify="left" if column in ("target", "metric") else "right")
    for row in rows:
        table.add_row(*(_fmt(row.get(c)) for c in columns))
    console.print(table)
    fp = outcome.data.fingerprint
    console.print(f"data: {fp['cases']:,} cases, {fp['events']:,} events, sha256 "
                  f"{fp['sha256'][:12]}; split at {outcome.data.split.split_time:%Y-%m-%d}")
    for leak in outcome.data.leaks:
        console.print(f"[yellow]possible leak:[/] {escape(leak.evidence)}; if it is known only "
                      f"at the end, add it to roles.label_only in the mapping")
    for result in outcome.results:
        console.print(f"{result.target.name}: shipped [bold]{escape(result.kind)}[/]: "
                      f"{escape(result.kind_reason)}")
        if result.low_data:
            console.print(f"[yellow]{escape(result.low_data)}[/]")
    for target_name, why in outcome.skipped.items():
        console.print(f"[yellow]skipped {escape(target_name)}:[/] {escape(why)}")
    console.print(f"MLflow run [bold]{outcome.run_id}[/] in {escape(outcome.tracking_uri)}")
    for result in outcome.results:
        registered = result.bundle.info.get("registered_name", result.target.registered_name)
        console.print(f"  registered {escape(result.target.name)} as {escape(registered)}: "
                      f"version {outcome.versions[result.target.name]}")
    console.print("Open the UI: [bold].venv/bin/mlflow ui --backend-store-uri "
                  f"{escape(outcome.tracking_uri)}[/]")


def _fmt(value: object) -> str:
    """A table cell: rich reads markup in cells too, so text is escaped."""
    if isinstance(value, float):  # nan: a figure the run has not (no oracle, no target)
        return "–" if value != value else f"{value:.4f}"
    return "" if value is None else escape(str(value))


@app.command()
@guarded
def runs(
    max_runs: Annotated[int, typer.Option(help="How many recent runs to show.")] = 5,
) -> None:
    """Compare recent training runs side by side: data, parameters, metrics."""
    from training.runs import compare_runs

    table_frame = compare_runs(max_runs=max_runs)
    if table_frame.empty:
        console.print("no runs yet: train one with `l2c train LOG`")
        return
    table = Table(title="Runs (newest first)")
    table.add_column("")
    for column in table_frame.columns:
        table.add_column(str(column), justify="right")
    for name, row in table_frame.iterrows():
        table.add_row(_fmt(name), *(_fmt(v) for v in row))
    console.print(table)


@app.command()
@guarded
def promote(
    run_or_version: Annotated[str, typer.Argument(
        help="Run id, model version number, or 'latest'.")],
    target: Annotated[str, typer.Option(help="outcome, remaining_time or payment_delay.")],
    force: Annotated[bool, typer.Option(
        help="Promote even if worse than the champion or its baseline, or miscalibrated."
    )] = False,
    name: Annotated[str | None, typer.Option(
        help="Process the models are named after (as given to `l2c train --name`, or the "
        "mapping's name); default: the run's, else the simulator's names.")] = None,
) -> None:
    """Make a model the champion, unless it is worse than the current one or than its own
    baseline, or its calibration error is above the bound (L2C_PROMOTE_MAX_ECE)."""
    _no_progress_bars()
    from training.promote import PromotionError
    from training.promote import promote as run_promotion

    try:
        result = run_promotion(target, run_or_version, force=force, process=name)
    except PromotionError as exc:
        fail("refused", exc, 1)
    line = f"{target}: version {result.version} is now the champion"
    if result.previous is not None and result.candidate_score is not None:
        line += (f" (was version {result.previous}; {result.metric} "
                 f"{result.candidate_score:.4f} vs {result.champion_score:.4f})")
    console.print(line)
    for warning in result.warnings:
        console.print(f"[yellow]{escape(warning)}[/]")


@app.command()
@guarded
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[int, typer.Option(
        min=1, help="Worker processes (each loads the models); one per core for throughput.")
    ] = 1,
) -> None:
    """Serve the champions over HTTP (FastAPI on uvicorn); API docs at /docs (open in
    development; in production only with L2C_EXPOSE_DOCS=true)."""
    import uvicorn
    from pydantic import ValidationError

    from serving.settings import Settings

    try:
        Settings()
    except ValidationError as exc:
        fail("refusing to start", exc.errors()[0]["msg"], 2)
    uvicorn.run("serving.app:create_app", factory=True, host=host, port=port,
                workers=workers, log_level="warning")


@app.command()
@guarded
def insight(
    log: Annotated[Path, typer.Argument(help="Event log file (CSV, Parquet, XLSX, XES).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML report to write.")] = Path(
        "insight.html"),
    mapping: MappingOption = None,
    by: Annotated[str | None, typer.Option(
        help="Repeat the analysis per segment: region, rep, lead_source, product, "
             "contract_type, month or another case attribute.")] = None,
    discount_threshold: Annotated[float | None, typer.Option(
        help="Discount policy: quotes above this percent need an approval (default: the "
             "mapping's process.discount_policy_pct, else 15).")] = None,
    happy_path: Annotated[str | None, typer.Option(
        help="Expected order to check cases against, activities separated by commas "
             "(default: the mapping's expected_order).")] = None,
    cluster: ClusterOption = None,
    scheduler: SchedulerOption = None,
    partitions: PartitionsOption = None,
) -> None:
    """Describe the actual process: map, variants, funnel, bottlenecks, rework,
    conformance, discounts, payments; writes a self-contained HTML report.

    With --cluster or --scheduler (or DASK_SCHEDULER_ADDRESS) the log is read and
    validated on Dask."""
    from features.errors import EventLogError
    from features.log import read_log
    from insight import InsightError, analyze
    from insight.report import render_html
    from scaleout.cluster import ClusterSpec

    path = [a.strip() for a in happy_path.split(",") if a.strip()] if happy_path else None
    options = {"by": by, "discount_threshold": discount_threshold, "happy_path": path}
    spec = ClusterSpec.from_options(cluster, scheduler)
    try:
        if spec is None:
            result = analyze(read_log(log, mapping), **options)
        else:
            from scaleout.insight import insight_on_cluster

            with console.status("computing the insight on Dask") as status:
                result = insight_on_cluster(
                    log, mapping, spec, options, partitions=partitions,
                    announce=lambda m: console.print(escape(m)),
                    progress=lambda m: status.update(escape(m)))
    except (InsightError, EventLogError, ValueError) as exc:
        fail("error", exc, 2)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render_html(result), encoding="utf-8")
    except OSError as exc:
        fail("error", f"cannot write {out}: {exc.strerror or exc}", 2)
    for line in result.headlines:
        console.print(f"- {escape(line)}")
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    for name, section in result.sections().items():
        if not section.available:
            console.print(f"[yellow]{name} unavailable:[/] {escape(section.reason or '')}")
    console.print(f"wrote the insight report to [bold]{escape(str(out))}[/]")


if __name__ == "__main__":  # pragma: no cover
    app()
