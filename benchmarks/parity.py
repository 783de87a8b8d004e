"""Answers before and after a change: the API's predictions and explanations, compared.

A refactoring of the serving path must not change one bit of what a user is told. This
script pins that down on the demo log and the three real logs of ``../shared/data``:

- ``prepare DIR``: per log, trains and promotes the champions (``l2c train``, ``l2c
  promote``) into ``DIR/<log>/mlflow.db`` and writes the requests to send: running
  prefixes of cases, cut at seeded random points, as single-case ``/v1/predict`` bodies,
  one JSON batch and (for the demo log, in its export's own columns) a CSV upload.
  Run it once, with the code *before* the change: the requests and models then stay
  fixed, whatever the code reads them with afterwards.
- ``answer DIR OUT``: serves each log's champions with ``l2c serve`` and records every
  answer: the single requests one after another and then eight at a time (so the
  coalescer scores them in shared passes), the batch, the upload and the forecast.
  Run it with the code before and after (``PYTHONPATH=<tree>`` picks the tree).
- ``compare A B``: the answers side by side; exit 1 if any differs in any bit.

Nothing here is timed: ``benchmarks/api.py`` measures speed.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.api import Server, batch_csv, err, run_l2c  # noqa: E402
from features.log import read_log  # noqa: E402
from features.schema import LABEL_ONLY_COLUMNS  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
LOGS = {  # name -> (file, mapping); None: the simulator's log and mapping
    "demo": None,
    "bpic2012": ("bpic2012/BPI_Challenge_2012.xes.gz", "bpic2012.yaml"),
    "helpdesk": ("helpdesk/helpdesk.xes.gz", "helpdesk.yaml"),
    "traffic_fines": ("traffic_fines/traffic_fines_full.csv.gz", "traffic_fines.yaml"),
}
TARGETS = ("outcome", "remaining_time", "payment_delay")
SINGLE = 120  # single-case requests per log
BATCH = 300  # cases in the JSON batch
DEMO_CASES = 3000
# keys whose values say when or how fast, not what: left out of the comparison
VOLATILE = {"elapsed_ms", "seconds", "generated_at", "loaded_at", "uptime_s"}


def prepare(workdir: Path, logs: list[str], seed: int) -> None:
    for name in logs:
        folder = workdir / name
        folder.mkdir(parents=True, exist_ok=True)
        if LOGS[name] is None:
            log_path, mapping = folder / "log.csv", None
            if not log_path.exists():
                run_l2c(folder, "simulate", "--cases", str(DEMO_CASES), "--seed", "7",
                        "--out", "log.csv")
        else:
            file, mapping_name = LOGS[name]
            log_path, mapping = DATA / file, ROOT / "benchmarks" / "mappings" / mapping_name
        named = [] if mapping is None else ["--name", name]  # the mapping's name
        if not (folder / "mlflow.db").exists():
            extra = [] if mapping is None else ["--mapping", str(mapping)]
            run_l2c(folder, "train", str(log_path), *extra)
        for target in TARGETS:
            if (folder / f"promoted-{target}").exists():
                continue
            try:  # the promotion gates judge models, not what this script compares
                run_l2c(folder, "promote", "--target", target, "latest", "--force", *named)
                (folder / f"promoted-{target}").touch()
            except SystemExit as exc:  # a target the log cannot train
                err.print(f"  {name}: {target} not promoted ({str(exc)[:200]})")
        events = read_log(log_path, mapping).events
        bodies = _bodies(events, np.random.default_rng(seed))
        (folder / "single.json").write_text(json.dumps(bodies[:SINGLE]))
        cases = [{k: v for k, v in b.items() if k not in ("explain", "top_k")}
                 for b in bodies[SINGLE:SINGLE + BATCH]]
        (folder / "batch.json").write_text(json.dumps({"cases": cases, "explain": True}))
        if mapping is None:
            payload, _ = batch_csv(log_path, 400, seed)
            (folder / "upload.csv").write_bytes(payload)
        err.print(f"  {name}: requests written")


def _bodies(events: pd.DataFrame, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Running prefixes (1 to n-1 events) of randomly chosen cases, in canonical names."""
    ids = pd.unique(events["case_id"])
    chosen = rng.choice(ids, size=min(SINGLE + BATCH, len(ids)), replace=False)
    picked = events[events["case_id"].isin(chosen)]
    grouped = dict(tuple(picked.groupby("case_id", sort=False)))
    skip = {"case_id", "activity", "timestamp", "resource", "source_row", *LABEL_ONLY_COLUMNS}
    bodies = []
    for case_id in chosen:
        case = grouped[case_id].sort_values("timestamp", kind="stable")
        k = int(rng.integers(1, max(len(case) - 1, 1) + 1))
        prefix = case.iloc[:k]
        events_out = []
        for row in prefix.to_dict("records"):
            attributes = {key: _json(value) for key, value in row.items()
                          if key not in skip and _json(value) is not None}
            event = {"activity": str(row["activity"]),
                     "timestamp": pd.Timestamp(row["timestamp"]).isoformat(),
                     "attributes": attributes}
            if _json(row.get("resource")) is not None:
                event["resource"] = str(row["resource"])
            events_out.append(event)
        bodies.append({"case_id": str(case_id), "events": events_out, "explain": True,
                       "top_k": 5})
    return bodies


def _json(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value if isinstance(value, int | float | str | bool) else str(value)


def answer(workdir: Path, out: Path, logs: list[str]) -> None:
    answers: dict[str, Any] = {}
    for name in logs:
        folder = workdir / name
        key = secrets.token_urlsafe(16)
        process = {} if LOGS[name] is None else {"L2C_PROCESS": name}
        with Server(folder, key, 300.0, process) as server, httpx.Client(
                base_url=server.base_url, timeout=600,
                headers={"X-API-Key": key}) as client:
            bodies = json.loads((folder / "single.json").read_text())
            one = [_reply(client.post("/v1/predict", json=b)) for b in bodies]
            with ThreadPoolExecutor(8) as pool:  # shared passes in the coalescer
                together = list(pool.map(lambda b: _reply(client.post("/v1/predict", json=b)),
                                         bodies))
            batch = _reply(client.post("/v1/predict/batch",
                                       content=(folder / "batch.json").read_bytes(),
                                       headers={"Content-Type": "application/json"}))
            upload = None
            if (folder / "upload.csv").exists():
                upload = _reply(client.post("/v1/predict/batch", files={
                    "file": ("upload.csv", (folder / "upload.csv").read_bytes(), "text/csv")},
                    data={"explain": "true"}))
            # traffic fines' training log holds 150k fines: a forecast over all of them
            # takes longer than a client waits here, and is not what this compares
            forecast = None if name == "traffic_fines" else _reply(client.get("/v1/forecast"))
        answers[name] = {"single": one, "together": together, "batch": batch,
                         "upload": upload, "forecast": forecast}
        err.print(f"  {name}: {len(one)} single, batch, forecast answered")
    out.write_text(json.dumps(answers, sort_keys=True))


def _reply(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = response.text
    return {"status": response.status_code, "body": _stable(body)}


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def compare(a: Path, b: Path) -> int:
    left, right = json.loads(a.read_text()), json.loads(b.read_text())
    differing = 0
    for name in sorted(set(left) | set(right)):
        for part in ("single", "together", "batch", "upload", "forecast"):
            x, y = left.get(name, {}).get(part), right.get(name, {}).get(part)
            same = x == y
            count = len(x) if isinstance(x, list) else 1
            print(f"{name:14} {part:9} {count:4} answer(s): "
                  f"{'identical' if same else 'DIFFERENT'}")
            if not same:
                differing += 1
                _first_difference(x, y, f"{name}.{part}")
    return 1 if differing else 0


def _first_difference(x: Any, y: Any, path: str) -> bool:
    if type(x) is not type(y):
        print(f"  {path}: {x!r:.200} != {y!r:.200}")
        return True
    if isinstance(x, dict):
        return any(_first_difference(x.get(k), y.get(k), f"{path}.{k}")
                   for k in sorted(set(x) | set(y)) if x.get(k) != y.get(k))
    if isinstance(x, list) and len(x) == len(y):
        return any(_first_difference(u, v, f"{path}[{i}]")
                   for i, (u, v) in enumerate(zip(x, y, strict=True)) if u != v)
    print(f"  {path}: {x!r:.200} != {y!r:.200}")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("workdir", type=Path)
    p.add_argument("--logs", default=",".join(LOGS))
    p.add_argument("--seed", type=int, default=0)
    a = sub.add_parser("answer")
    a.add_argument("workdir", type=Path)
    a.add_argument("out", type=Path)
    a.add_argument("--logs", default=",".join(LOGS))
    c = sub.add_parser("compare")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    args = parser.parse_args(argv)
    if args.command == "compare":
        return compare(args.a, args.b)
    logs = [n for n in args.logs.split(",") if n]
    unknown = [n for n in logs if n not in LOGS]
    if unknown:
        parser.error(f"unknown logs {unknown}; choose from {list(LOGS)}")
    missing = [n for n in logs if LOGS[n] is not None and not (DATA / LOGS[n][0]).exists()]
    if missing:
        err.print(f"left out (no file under {DATA}): {', '.join(missing)}")
        logs = [n for n in logs if n not in missing]
    if args.command == "prepare":
        prepare(args.workdir.resolve(), logs, args.seed)
    else:
        answer(args.workdir.resolve(), args.out.resolve(), logs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
