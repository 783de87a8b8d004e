"""Benchmark of the cockpit's pages: server time per page and the browser's first render.

Prepares a working folder as ``make demo`` does (``l2c simulate --cases 5000 --seed 1``,
``l2c train``, ``l2c promote`` for the three targets), starts the real server (``l2c
serve``, production settings, a random API key), logs in once, then asks for each page
``--repeats`` times over one keep-alive connection and reports p50 and p95 of the time
to the whole answer. The first answer of each page (it reads the training log, scores
the deals or analyses the process once per served model) is reported apart, as
``first_ms``, and is not in p50/p95. Then the system's headless Chromium opens each page
and reports its first contentful paint; ``first_render_ms`` is the slowest of them.

    .venv/bin/python benchmarks/pages.py                              # fresh folder
    .venv/bin/python benchmarks/pages.py --workdir /tmp/pagesbench --json  # reuse it

With ``--json`` the last line of stdout is one JSON object:
``{"pages": {NAME: {"p50_ms", "p95_ms", "first_ms"}}, "first_render_ms": ...}``.
Targets: p95 at most 300 ms per page, first render within 1 s.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.api import Server, err, run_l2c, train_and_promote  # noqa: E402

DEMO_CASES, DEMO_SEED = 5000, 1
CHROMIUM = "/usr/bin/chromium"


def prepare(workdir: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / "l2c.csv").exists():
        run_l2c(workdir, "simulate", "--cases", str(DEMO_CASES), "--seed", str(DEMO_SEED),
                "--out", "l2c.csv")
    train_and_promote(workdir, "l2c.csv")


def pages_of(client: httpx.Client) -> tuple[dict[str, str], float]:
    """The pages to time (a deal of the list stands for every deal), and how long the
    first answer of the deals page took (it scores every deal of the log)."""
    started = time.perf_counter()
    listed = client.get("/deals")
    first_ms = (time.perf_counter() - started) * 1000
    listed.raise_for_status()
    case = re.search(r'data-case="([^"]+)"', listed.text)
    if case is None:
        raise SystemExit("the deals page lists no open deal")
    deal = f"/deals/{case.group(1)}"
    return {"pipeline": "/", "pipeline_by_region": "/?group_by=region", "deals": "/deals",
            "deal": deal, "what_if": f"{deal}/whatif?discount=20", "process": "/process",
            "process_report": "/process/report", "models": "/models"}, first_ms


def time_pages(client: httpx.Client, pages: dict[str, str], repeats: int
               ) -> dict[str, dict[str, float]]:
    figures = {}
    for name, path in pages.items():
        started = time.perf_counter()
        first = client.get(path)
        first_ms = (time.perf_counter() - started) * 1000
        if first.status_code != 200:
            raise SystemExit(f"{path}: {first.status_code} {first.text[:300]}")
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            client.get(path).raise_for_status()
            times.append((time.perf_counter() - started) * 1000)
        figures[name] = {"p50_ms": round(float(np.percentile(times, 50)), 1),
                         "p95_ms": round(float(np.percentile(times, 95)), 1),
                         "first_ms": round(first_ms, 1)}
        err.print(f"  {name:20s} p50 {figures[name]['p50_ms']:7.1f} ms  p95 "
                  f"{figures[name]['p95_ms']:7.1f} ms  first {first_ms:7.1f} ms")
    return figures


def first_renders(base_url: str, cookie: str, pages: dict[str, str],
                  screenshots: Path | None = None) -> dict[str, float]:
    """First contentful paint of each page in headless Chromium (pages already warm);
    with ``screenshots``, a picture of each page there (the deal with a what-if)."""
    from playwright.sync_api import sync_playwright

    paints = {}
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_cookies([{"name": "l2c_session", "value": cookie, "url": base_url}])
        page = context.new_page()
        for name, path in pages.items():
            if name == "what_if":
                continue  # a fragment the deal page swaps in, not a page
            page.goto(f"{base_url}{path}", wait_until="load")
            paint = page.evaluate(_FIRST_PAINT)
            if paint is None:
                raise SystemExit(f"{path}: the browser reported no first contentful paint")
            paints[name] = round(float(paint), 1)
            if screenshots is not None and name in _SHOTS:
                _screenshot(page, base_url, pages, name, screenshots / f"cockpit-{name}.png")
        browser.close()
    return paints


#: the first contentful paint, waited for (it is recorded just after the paint)
_FIRST_PAINT = """() => new Promise(resolve => {
  const seen = performance.getEntriesByName('first-contentful-paint')[0];
  if (seen) { resolve(seen.startTime); return; }
  new PerformanceObserver(list => {
    const entry = list.getEntriesByName('first-contentful-paint')[0];
    if (entry) { resolve(entry.startTime); }
  }).observe({type: 'paint', buffered: true});
  setTimeout(() => resolve(null), 5000);
})"""

_SHOTS = ("pipeline_by_region", "deals", "deal", "process", "models")


def _screenshot(page: Any, base_url: str, pages: dict[str, str], name: str,
                path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if name == "deal":
        page.goto(f"{base_url}{pages['deal']}?discount=20", wait_until="load")
    if name == "process":
        page.frame_locator("#report").locator("#map").wait_for()
    page.screenshot(path=str(path), full_page=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--screenshots", type=Path, default=None,
                        help="write a picture of each page here (docs/ for the README)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="l2c-pages-"))
    err.print(f"working folder {workdir}")
    prepare(workdir)
    key = secrets.token_urlsafe(24)
    with Server(workdir, key, ready_timeout=180) as server, \
            httpx.Client(base_url=server.base_url, timeout=120) as client:
        login = client.post("/login", data={"key": key, "next": "/"})
        token = login.cookies.get("l2c_session")
        if login.status_code != 303 or not token:
            raise SystemExit(f"login failed: {login.status_code}")
        # the cookie is Secure: a browser sends it to the loopback, httpx's jar would not
        client.headers["Cookie"] = f"l2c_session={token}"
        pages, deals_first_ms = pages_of(client)
        figures = time_pages(client, pages, args.repeats)
        figures["deals"]["first_ms"] = round(deals_first_ms, 1)
        paints = first_renders(server.base_url, token, pages, args.screenshots)
    for name, paint in paints.items():
        figures[name]["first_render_ms"] = paint
        err.print(f"  {name:20s} first contentful paint {paint:7.1f} ms")
    result: dict[str, Any] = {"pages": figures,
                              "first_render_ms": max(paints.values()) if paints else None,
                              "demo_cases": DEMO_CASES, "repeats": args.repeats}
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
