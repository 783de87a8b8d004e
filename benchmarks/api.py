"""Benchmark of the HTTP API: single-prediction latency under load and a 10k-case batch.

Prepares a working folder as a user would (``l2c simulate``, ``l2c train``, ``l2c promote``
for the three targets; a second, 10k-case log for the batch), starts the real server
(``l2c serve`` on a free local port, production settings, a random API key), then:

* single predictions with explanations (``POST /v1/predict``) from 1, 8 and 32 client
  threads, each level bounded by a request budget and a time limit, whichever comes first;
  bodies are prefixes (3-12 events) of open and late (test-period) cases of the log; each
  client's first request opens its connection and is not timed (the level's cold start:
  its slowest answer is reported as ``first_max_ms``, its failures as errors);
* one ``POST /v1/predict/batch`` multipart CSV upload of 10,000 running cases, explained.

    .venv/bin/python benchmarks/api.py                             # fresh temporary folder
    .venv/bin/python benchmarks/api.py --workdir /tmp/apibench --json  # reuse when prepared

The server runs one worker per core (``--workers``, as ``l2c serve --workers N`` would be
deployed); requests per pass (``mean_pass``) are read from ``/ready`` with one worker only.
With ``--json`` the last line of stdout is one JSON object with the figures.
Targets: p99 at most 50 ms with 8 clients, no errors with 32, the 10k batch under 5 s.
Client threads (standard-library keep-alive connections, ~0.4 ms of CPU a request) share
the machine with the server, so the figures include that overhead.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent

LOG_CASES, LOG_SEED = 3000, 5
BIG_CASES, BIG_SEED = 10_000, 9
TARGETS = ("outcome", "remaining_time", "payment_delay")
LEVELS = {1: 300, 8: 800, 32: 1200}  # clients -> request budget
WARMUP_REQUESTS = 20
PREFIX_RANGE = (3, 12)
BODY_POOL = 500
TARGET_P99_MS_C8 = 50.0
TARGET_BATCH_S = 5.0
CASE_ATTRIBUTES = {  # request attribute -> column of the simulated log
    "currency": "currency", "rep": "owner", "region": "region", "account": "account",
    "lead_source": "lead_source", "product": "product_line", "contract_type": "contract_type",
    "payment_terms": "payment_terms",
}

err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def l2c_executable() -> str:
    beside = Path(sys.executable).parent / "l2c"
    for candidate in (beside, ROOT / ".venv" / "bin" / "l2c"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("l2c")
    if found is None:
        raise SystemExit("cannot find the l2c command; run with the project's venv python")
    return found


def tracking_env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir / 'mlflow.db'}"
    env["COLUMNS"] = "200"  # keep rich from wrapping the lines parsed below
    return env


def run_l2c(workdir: Path, *args: str) -> str:
    started = time.perf_counter()
    done = subprocess.run([l2c_executable(), *args], cwd=workdir, env=tracking_env(workdir),
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"`l2c {' '.join(args)}` failed ({done.returncode}):\n"
                         f"{done.stdout}\n{done.stderr}")
    err.print(f"  l2c {' '.join(args)}: {time.perf_counter() - started:.1f} s")
    return done.stdout


def prepare(workdir: Path) -> None:
    """Simulate, train and promote in ``workdir``; skipped when its mlflow.db exists."""
    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / "log.csv").exists():
        run_l2c(workdir, "simulate", "--cases", str(LOG_CASES), "--seed", str(LOG_SEED),
                "--out", "log.csv")
    if not (workdir / "big.csv").exists():
        run_l2c(workdir, "simulate", "--cases", str(BIG_CASES), "--seed", str(BIG_SEED),
                "--out", "big.csv")
    train_and_promote(workdir, "log.csv")


def train_and_promote(workdir: Path, log: str) -> None:
    """Train on ``log`` in ``workdir`` and make the run's models the champions; skipped
    when the folder's mlflow.db exists (a folder prepared before)."""
    if (workdir / "mlflow.db").exists():
        err.print(f"  {workdir / 'mlflow.db'} exists: models taken as prepared")
        return
    output = run_l2c(workdir, "train", log)
    found = re.search(r"MLflow run ([0-9a-f]{32})", output)
    run_or_version = found.group(1) if found else "1"
    for target in TARGETS:
        # speed is measured here, not model quality: the promotion gates are not asked
        run_l2c(workdir, "promote", "--target", target, run_or_version, "--force")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``l2c serve`` as a subprocess, ready when ``GET /ready`` answers 200."""

    def __init__(self, workdir: Path, api_key: str, ready_timeout: float,
                 extra_env: dict[str, str] | None = None, workers: int = 1) -> None:
        self.workdir = workdir
        self.workers = workers
        self.extra_env = extra_env or {}
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.api_key = api_key
        self.ready_timeout = ready_timeout
        self.log_path = workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        env = tracking_env(self.workdir)
        env.update(L2C_API_KEY=self.api_key, L2C_ENVIRONMENT="production", **self.extra_env)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [l2c_executable(), "serve", "--host", "127.0.0.1", "--port", str(self.port),
                 "--workers", str(self.workers)],
                cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        started = time.perf_counter()
        deadline = started + self.ready_timeout
        last = "no answer"
        with httpx.Client(base_url=self.base_url, timeout=5) as client:
            while time.perf_counter() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise SystemExit(f"server exited with {self.proc.returncode}:\n"
                                     f"{self.log_tail()}")
                try:
                    response = client.get("/ready")
                    if response.status_code == 200:
                        err.print(f"  server ready on port {self.port} in "
                                  f"{time.perf_counter() - started:.1f} s: {response.text}")
                        return
                    last = f"{response.status_code} {response.text[:300]}"
                except httpx.HTTPError as exc:
                    last = repr(exc)
                time.sleep(0.5)
        raise SystemExit(f"server not ready after {self.ready_timeout:.0f} s ({last}):\n"
                         f"{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _clean(value: Any) -> Any:
    """A JSON-safe scalar: NaN and empty strings become None."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str) and value == "":
        return None
    return value


def _float(value: Any) -> float | None:
    value = _clean(value)
    return None if value is None else float(value)


def single_bodies(log_path: Path, count: int, seed: int) -> list[bytes]:
    """Request bodies from open and late cases of the log, cut at 3-12 events."""
    events = pd.read_csv(log_path)
    events["event_time"] = pd.to_datetime(events["event_time"], utc=True, format="ISO8601")
    events = events.sort_values(["opportunity_id", "event_time"], kind="stable")
    sizes = events.groupby("opportunity_id").size()
    starts = events.groupby("opportunity_id")["event_time"].min()
    late = starts[starts >= starts.quantile(0.7)].index
    truth_path = log_path.with_name(f"{log_path.stem}.truth.csv")
    open_cases: pd.Index = pd.Index([])
    if truth_path.exists():
        truth = pd.read_csv(truth_path)
        if "open_at_extraction" in truth:
            open_cases = pd.Index(truth.loc[truth["open_at_extraction"].astype(bool),
                                            "opportunity_id"])
    pool = open_cases.union(late)
    pool = pool[pool.isin(sizes[sizes >= PREFIX_RANGE[0]].index)]
    rng = np.random.default_rng(seed)
    chosen = rng.choice(np.asarray(pool), size=min(count, len(pool)), replace=False)
    grouped = dict(tuple(events[events["opportunity_id"].isin(chosen)]
                         .groupby("opportunity_id", sort=False)))
    bodies = []
    for case_id in chosen:
        case = grouped[case_id]
        k = int(rng.integers(PREFIX_RANGE[0], min(PREFIX_RANGE[1], len(case)) + 1))
        prefix = case.iloc[:k]
        first = prefix.iloc[0]
        attributes: dict[str, Any] = {"value": _float(first["amount"])}
        attributes.update({name: _clean(first[column])
                           for name, column in CASE_ATTRIBUTES.items()})
        body = {
            "case_id": str(case_id),
            "attributes": attributes,
            "events": [{"activity": str(row.activity),
                        "timestamp": row.event_time.isoformat(),
                        "resource": _clean(row.user),
                        "attributes": {"stage": _clean(row.stage),
                                       "discount_pct": _float(row.discount_pct)}}
                       for row in prefix.itertuples(index=False)],
            "explain": True,
            "top_k": 5,
        }
        bodies.append(json.dumps(body, allow_nan=False).encode())
    return bodies


def batch_csv(log_path: Path, cases: int, seed: int) -> tuple[bytes, int]:
    """The first events of ``cases`` cases, each cut at a random point so it is running."""
    raw = pd.read_csv(log_path, dtype=str, keep_default_na=False)
    ids = raw["opportunity_id"].drop_duplicates().iloc[:cases]
    raw = raw[raw["opportunity_id"].isin(ids)]
    position = raw.groupby("opportunity_id", sort=False).cumcount().to_numpy()
    rng = np.random.default_rng(seed)
    keep_per_case = pd.Series(  # 1 .. n-1 events (all of a one-event case)
        [int(rng.integers(1, max(n - 1, 1) + 1)) for n in
         raw.groupby("opportunity_id", sort=False).size()], index=ids.to_numpy())
    keep = keep_per_case.reindex(raw["opportunity_id"]).to_numpy()
    cut = raw[position < keep].copy()
    if "lost_reason" in cut:
        cut["lost_reason"] = ""  # label only: never sent
    buffer = io.StringIO()
    cut.to_csv(buffer, index=False)
    return buffer.getvalue().encode(), int(cut["opportunity_id"].nunique())


@dataclass
class LevelResult:
    clients: int
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    first_5xx: str | None = None
    first_exception: str | None = None
    elapsed: float = 0.0
    stopped_by: str = "budget"
    mean_pass: float | None = None  # requests per scoring pass (server's /ready counts)
    first_requests: list[float] = field(default_factory=list)  # untimed: one per client
    first_errors: int = 0  # of ``errors``: failed first requests (before the clock)

    def summary(self) -> dict[str, Any]:
        done = np.asarray(self.latencies) * 1000
        pct = (lambda q: round(float(np.percentile(done, q)), 1)) if len(done) else (
            lambda q: None)
        return {"p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99),
                "rps": round((len(done) + self.errors - self.first_errors) / self.elapsed, 2)
                if self.elapsed else 0,
                "errors": self.errors, "mean_pass": self.mean_pass,
                "first_max_ms": round(max(self.first_requests) * 1000, 1)
                if self.first_requests else None}


@dataclass
class Answer:
    status_code: int
    text: str


class KeepAliveClient:
    """One keep-alive HTTP/1.1 connection (the standard library's ``http.client``).

    The load generator's own cost shows up in every latency it measures: its client
    threads share the machine, and a Python lock, with the server. httpx cost ~2.5 ms of
    client CPU per request here, ``http.client`` ~0.4 ms (measured), so the figures
    describe the server rather than the client.
    """

    def __init__(self, base_url: str, headers: dict[str, str], timeout: float) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.headers, self.timeout = headers, timeout
        self.connection: http.client.HTTPConnection | None = None

    def __enter__(self) -> KeepAliveClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def post(self, path: str, body: bytes) -> Answer:
        if self.connection is None:
            self.connection = http.client.HTTPConnection(self.host, self.port,
                                                         timeout=self.timeout)
        try:
            self.connection.request("POST", path, body=body, headers=self.headers)
            response = self.connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self.close()  # the next request opens a fresh connection
            raise
        if response.will_close:
            self.close()
        return Answer(response.status, data.decode("utf-8", errors="replace"))


def load(base_url: str, api_key: str, bodies: list[bytes], clients: int, budget: int,
         max_seconds: float, timeout: float) -> LevelResult:
    """``clients`` threads send single predictions until the budget or the time is spent.

    Each client first opens its connection with one request that is not timed (nor in
    the budget): the level's cold start, every client arriving at once on a new TCP
    connection, is not the steady load the figures describe. Its latencies are kept
    apart (``first_max_ms``) and its failures count as errors. The clock starts when
    every client has its answer.
    """
    result = LevelResult(clients=clients)
    lock = threading.Lock()
    issued = 0
    clock = {"started": 0.0, "deadline": 0.0}

    def start_clock() -> None:
        clock["started"] = time.perf_counter()
        clock["deadline"] = clock["started"] + max_seconds

    everyone_connected = threading.Barrier(clients, action=start_clock)
    headers = {"X-API-Key": api_key, "Content-Type": "application/json"}

    def send(client: KeepAliveClient, body: bytes, first: bool = False) -> None:
        """One request; a client's first is kept apart from the timed ones."""
        sent = time.perf_counter()
        try:
            response = client.post("/v1/predict", body)
        except (OSError, http.client.HTTPException) as exc:
            with lock:
                result.errors += 1
                result.first_errors += first
                result.statuses["exception"] = result.statuses.get("exception", 0) + 1
                result.first_exception = result.first_exception or repr(exc)
            return
        took = time.perf_counter() - sent
        with lock:
            code = str(response.status_code)
            result.statuses[code] = result.statuses.get(code, 0) + 1
            if response.status_code == 200:
                (result.first_requests if first else result.latencies).append(took)
            else:
                result.errors += 1
                result.first_errors += first
                if response.status_code >= 500 and result.first_5xx is None:
                    result.first_5xx = f"{code}: {response.text[:2000]}"

    def worker(offset: int) -> None:
        nonlocal issued
        with KeepAliveClient(base_url, headers, timeout) as client:
            send(client, bodies[offset % len(bodies)], first=True)
            try:
                everyone_connected.wait(timeout=2 * timeout)
            except threading.BrokenBarrierError:  # a client never got its first answer
                with lock:
                    result.stopped_by = "no start"
                return
            while True:
                with lock:
                    if issued >= budget:
                        return
                    if time.perf_counter() >= clock["deadline"]:
                        result.stopped_by = "time"
                        return
                    ticket = issued
                    issued += 1
                send(client, bodies[(ticket + offset) % len(bodies)])

    threads = [threading.Thread(target=worker, args=(i * 7,), daemon=True)
               for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # a level that never started reports no rate (and its clients' errors)
    result.elapsed = time.perf_counter() - clock["started"] if clock["started"] else 0.0
    return result


def pass_counts(base_url: str, api_key: str) -> dict[str, Any] | None:
    """The server's coalescing counts (``/ready``, shown with the key); with several
    workers, one worker's."""
    try:
        return httpx.get(f"{base_url}/ready", headers={"X-API-Key": api_key},
                         timeout=10).json().get("predict_passes")
    except (httpx.HTTPError, ValueError):
        return None


def mean_pass(before: dict[str, Any] | None, after: dict[str, Any] | None) -> float | None:
    """Requests per scoring pass between two readings of the counts."""
    if not before or not after or after["passes"] <= before["passes"]:
        return None
    return round((after["requests"] - before["requests"])
                 / (after["passes"] - before["passes"]), 2)


def warm_up(base_url: str, api_key: str, bodies: list[bytes], timeout: float,
            workdir: Path) -> None:
    headers = {"X-API-Key": api_key, "Content-Type": "application/json"}
    failed = 0
    with httpx.Client(base_url=base_url, timeout=timeout, headers=headers) as client:
        for i in range(WARMUP_REQUESTS):
            try:
                response = client.post("/v1/predict", content=bodies[i % len(bodies)])
            except httpx.HTTPError as exc:
                failed += 1
                err.print(f"  [yellow]warm-up request {i}:[/] {exc!r}")
                continue
            if response.status_code != 200:
                failed += 1
                if failed == 1:
                    err.print(f"  [yellow]warm-up request {i}: {response.status_code}[/] "
                              f"{response.text[:2000]}")
    if failed:
        err.print(f"  [yellow]{failed}/{WARMUP_REQUESTS} warm-up requests failed[/]; if the "
                  f"models predate a code change, remove {workdir / 'mlflow.db'} to retrain")


def batch(base_url: str, api_key: str, payload: bytes, cases: int,
          timeout: float) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        response = httpx.post(f"{base_url}/v1/predict/batch", headers={"X-API-Key": api_key},
                              files={"file": ("open.csv", payload, "text/csv")},
                              data={"explain": "true"}, timeout=timeout)
    except httpx.HTTPError as exc:
        return {"ok": False, "seconds": time.perf_counter() - started, "status": None,
                "error": repr(exc), "cases_sent": cases, "bytes": len(payload)}
    took = time.perf_counter() - started
    out: dict[str, Any] = {"seconds": took, "status": response.status_code,
                           "cases_sent": cases, "bytes": len(payload)}
    if response.status_code == 200:
        answer = response.json()
        out["cases_answered"] = answer.get("cases")
        out["server_seconds"] = answer.get("seconds")
        out["ok"] = answer.get("cases") == cases
        if not out["ok"]:
            out["error"] = f"cases in the response {answer.get('cases')} != {cases} sent"
    else:
        out["ok"] = False
        out["error"] = f"{response.status_code}: {response.text[:2000]}"
    return out


def report(levels: dict[int, LevelResult], batch_out: dict[str, Any] | None,
           workers: int) -> dict[str, Any]:
    single = {f"c{n}": r.summary() for n, r in levels.items()}
    batch_s = (round(batch_out["seconds"], 2) if batch_out and batch_out.get("ok") else None)
    table = Table(title=f"Single predictions with explanations (POST /v1/predict), "
                        f"{workers} worker(s)")
    for column in ("clients", "requests", "stopped by", "p50 ms", "p95 ms", "p99 ms", "req/s",
                   "errors", "per pass", "first max ms", "statuses"):
        table.add_column(column, justify="right")
    for n, r in levels.items():
        s = single[f"c{n}"]
        table.add_row(str(n), str(len(r.latencies) + r.errors), r.stopped_by,
                      *(_cell(s[k]) for k in ("p50_ms", "p95_ms", "p99_ms", "rps")),
                      str(s["errors"]), _cell(s["mean_pass"]), _cell(s["first_max_ms"]),
                      " ".join(f"{k}:{v}" for k, v in sorted(r.statuses.items())))
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)
    for n, r in levels.items():
        if r.first_5xx:
            console.print(f"[red]c{n} first 5xx:[/] {r.first_5xx}")
        if r.first_exception:
            console.print(f"[red]c{n} first exception:[/] {r.first_exception}")
    if batch_out is not None:
        console.print(
            f"Batch (POST /v1/predict/batch, CSV upload, explain=true): "
            f"{batch_out['cases_sent']:,} cases, {batch_out['bytes'] / 1e6:.1f} MB, "
            f"status {batch_out['status']}, {batch_out['seconds']:.2f} s"
            + (f" (server {batch_out['server_seconds']:.2f} s)"
               if batch_out.get("server_seconds") is not None else ""))
        if batch_out.get("error"):
            console.print(f"[red]batch error:[/] {batch_out['error']}")
    c8, c32 = single.get("c8"), single.get("c32")
    targets = {  # None: not measured in this run
        "p99_c8_le_50ms": None if c8 is None else bool(
            c8["p99_ms"] is not None and c8["p99_ms"] <= TARGET_P99_MS_C8
            and c8["errors"] == 0),
        "no_errors_c32": None if c32 is None else (c32["errors"] == 0
                                                   and c32["p50_ms"] is not None),
        "batch_10k_lt_5s": None if batch_out is None else (
            batch_s is not None and batch_s < TARGET_BATCH_S),
    }
    targets_table = Table(title="Targets")
    targets_table.add_column("target")
    targets_table.add_column("met")
    for name, met in targets.items():
        targets_table.add_row(name, "not run" if met is None
                              else "[green]yes[/]" if met else "[red]no[/]")
    console.print(targets_table)
    return {"single": single, "batch_10k_s": batch_s, "workers": workers, "batch_ok": bool(batch_out
            and batch_out.get("ok")), "targets": targets}


def _cell(value: object) -> str:
    return "-" if value is None else f"{value:,.1f}" if isinstance(value, float) else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path,
                        help="prepared folder to reuse (or to prepare); default: a temporary one")
    parser.add_argument("--json", action="store_true", help="print one JSON line at the end")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="uvicorn worker processes (default: one per core, as deployed)")
    parser.add_argument("--max-seconds", type=float, default=60.0,
                        help="time limit of each concurrency level")
    parser.add_argument("--levels", default=",".join(str(n) for n in LEVELS),
                        help="comma-separated client counts, of 1, 8, 32")
    parser.add_argument("--no-batch", action="store_true", help="skip the 10k batch")
    parser.add_argument("--request-timeout", type=float, default=120.0)
    parser.add_argument("--batch-timeout", type=float, default=900.0)
    parser.add_argument("--ready-timeout", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=0, help="seed of prefixes and sampling")
    parser.add_argument("--max-request-bytes", type=int,
                        help="server's L2C_MAX_REQUEST_BYTES; default: the server's own")
    args = parser.parse_args(argv)
    levels = [int(n) for n in args.levels.split(",") if n.strip()]
    unknown = [n for n in levels if n not in LEVELS]
    if unknown:
        parser.error(f"unknown levels {unknown}; choose from {list(LEVELS)}")

    with tempfile.TemporaryDirectory(prefix="l2c-apibench-") as scratch:
        workdir = (args.workdir or Path(scratch)).resolve()
        err.print(f"preparing {workdir}")
        prepare(workdir)
        bodies = single_bodies(workdir / "log.csv", BODY_POOL, args.seed)
        payload, batch_cases = (b"", 0) if args.no_batch else batch_csv(
            workdir / "big.csv", BIG_CASES, args.seed)
        err.print(f"  {len(bodies)} single bodies; batch {batch_cases:,} cases, "
                  f"{len(payload) / 1e6:.1f} MB")
        api_key = secrets.token_urlsafe(24)
        results: dict[int, LevelResult] = {}
        batch_out = None
        extra_env = ({} if args.max_request_bytes is None
                     else {"L2C_MAX_REQUEST_BYTES": str(args.max_request_bytes)})
        with Server(workdir, api_key, args.ready_timeout, extra_env, args.workers) as server:
            warm_up(server.base_url, api_key, bodies, args.request_timeout, workdir)
            for n in levels:
                err.print(f"  {n} client(s): up to {LEVELS[n]} requests or "
                          f"{args.max_seconds:.0f} s")
                before = pass_counts(server.base_url, api_key)
                results[n] = load(server.base_url, api_key, bodies, n, LEVELS[n],
                                  args.max_seconds, args.request_timeout)
                if args.workers == 1:  # /ready is one worker's: counts of several don't add
                    results[n].mean_pass = mean_pass(before, pass_counts(server.base_url, api_key))
            if not args.no_batch:
                err.print(f"  batch of {batch_cases:,} cases")
                batch_out = batch(server.base_url, api_key, payload, batch_cases,
                                  args.batch_timeout)
            if server.proc is not None and server.proc.poll() is not None:
                err.print(f"[red]server died during the run:[/]\n{server.log_tail()}")
        figures = report(results, batch_out, args.workers)
    if args.json:
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
