"""The insight as one self-contained HTML page a manager can open offline.

Everything is inside the file: CSS inline, charts and the process map as SVG, the
detail levels of the map as ``<details>`` elements (no JavaScript needed to read any
number). Formatting only: every figure comes from ``analyze``'s typed sections.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from html import escape

import numpy as np
import pandas as pd

from insight.analyze import Insight
from insight.format import amount, days, money_text, number, pct
from insight.sections import Section
from insight.svg import PALETTE, bar_chart, process_map_svg

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1a202c;
background:#f7fafc}
main{max-width:1200px;margin:0 auto;padding:24px}
h1{font-size:26px;margin:0 0 4px} h2{font-size:20px;margin:0 0 8px;border-bottom:2px solid #e2e8f0;
padding-bottom:4px} h3{font-size:15px;margin:16px 0 6px;color:#2d3748}
section{background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:16px 20px;margin:16px 0}
.sub{color:#4a5568;margin:0 0 12px} ul.headlines li{margin:4px 0;font-size:15px}
.unavailable{color:#975a16;background:#fffff0;border:1px solid #f6e05e;padding:8px 12px;
border-radius:6px}
table{border-collapse:collapse;font-size:13px;margin:6px 0 10px}
th,td{border-bottom:1px solid #edf2f7;padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#edf2f7;position:sticky;top:0} td.t,th.t{text-align:left}
.scroll{overflow:auto;max-height:420px;border:1px solid #edf2f7}
svg text{font-size:12px;fill:#2d3748} svg .title{font-weight:600;font-size:13px}
svg.map{background:#fff} .node rect{fill:#ebf8ff;stroke:#2b6cb0;stroke-width:1.5}
.node.start rect{fill:#f0fff4;stroke:#2f855a} .node.end rect{fill:#fff5f5;stroke:#c53030}
.node text{font-size:12px} .node .count{fill:#4a5568;font-size:11px}
text.edge{font-size:11px;fill:#2d3748;paint-order:stroke;stroke:#fff;stroke-width:3px}
details{margin:8px 0} summary{cursor:pointer;font-weight:600}
.mapbox{overflow:auto;max-height:900px;border:1px solid #edf2f7}
.note{color:#718096;font-size:12px}
"""

_PCT_WORDS = ("share", "rate", "conversion", "drop_off", "fitness")
_MAX_ROWS = 25


# ---------------------------------------------------------------------- tables
def _cell(column: str, value: object) -> tuple[str, bool]:
    """Text of one cell and whether it is text (left-aligned)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return "", False
    if isinstance(value, pd.Timestamp | datetime):
        return f"{value:%Y-%m-%d}", False
    if isinstance(value, bool | np.bool_):
        return ("yes" if value else "no"), True
    if isinstance(value, tuple):
        return " > ".join(map(str, value)), True
    if isinstance(value, int | np.integer):
        return f"{int(value):,}", False
    if isinstance(value, float | np.floating):
        if column.endswith("_days") or column in ("age_days",):
            return days(value), False
        if any(w in column for w in _PCT_WORDS):
            return pct(value, 1), False
        if column.startswith("value") or column == "value":
            return amount(value), False
        if column in ("threshold",) or "discount" in column:
            return f"{value:.1f}%", False
        if column == "over_p90":
            return f"{value:.1f}×", False
        return number(value), False
    return str(value), True


def table_html(frame: pd.DataFrame, columns: list[str] | None = None, max_rows: int = _MAX_ROWS,
               title: str = "") -> str:
    """A frame as an HTML table with people's formatting; longer ones are cut, said so."""
    if frame is None or len(frame) == 0:
        return f"<p class='note'>{escape(title)}: none.</p>" if title else ""
    cols = [c for c in (columns or list(frame.columns)) if c in frame.columns]
    shown = frame.head(max_rows)
    head = "".join(f"<th class='t'>{escape(c.replace('_', ' '))}</th>" if i == 0 else
                   f"<th>{escape(c.replace('_', ' '))}</th>" for i, c in enumerate(cols))
    rows = []
    for record in shown[cols].itertuples(index=False):  # at most max_rows rows
        cells = []
        for c, v in zip(cols, record, strict=True):
            text, is_text = _cell(c, v)
            cells.append(f"<td class='t'>{escape(text)}</td>" if is_text else
                         f"<td>{escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = (f"<p class='note'>{len(frame) - max_rows:,} more rows not shown (all of them are "
            "in the Python result).</p>" if len(frame) > max_rows else "")
    caption = f"<h3>{escape(title)}</h3>" if title else ""
    return (f"{caption}<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>"
            + "".join(rows) + f"</tbody></table></div>{more}")


def _section(anchor: str, title: str, sec: Section, draw: Callable[[], str],
             lead: str = "") -> str:
    """A section of the report; ``draw`` runs only when the section is available."""
    body = draw() if sec.available else (
        f"<p class='unavailable'>Not available for this log: {escape(sec.reason or '')}</p>")
    lead_html = f"<p class='sub'>{escape(lead)}</p>" if lead and sec.available else ""
    return f"<section id='{anchor}'><h2>{escape(title)}</h2>{lead_html}{body}</section>"


# ---------------------------------------------------------------------- sections
def _process_map(ins: Insight) -> str:
    pm = ins.process_map
    out = []
    levels = sorted(ins.detail_maps)
    default = 0.8 if 0.8 in ins.detail_maps else levels[-1]
    for level in levels:
        m = ins.detail_maps[level]
        svg = process_map_svg(m.activities, m.edges, m.starts, m.ends,
                              label_share=0.0 if len(m.edges) <= 40 else 0.005)
        open_attr = " open" if level == default else ""
        out.append(f"<details{open_attr}><summary>Most frequent paths covering {pct(level)} of "
                   f"cases ({m.cases_kept:,} cases, {len(m.activities)} activities, "
                   f"{len(m.edges)} transitions)</summary><div class='mapbox'>{svg}</div>"
                   "</details>")
    out.append("<p class='note'>Boxes: activities (green border: where most of its cases "
               "start, red: where most of them end). Arrows: one activity directly followed "
               "by the next, labelled with the number of cases and the median time between "
               "the two; orange arcs go back (loops, rework). Hover for P90 and counts.</p>")
    out.append(table_html(pm.edges, ["source", "target", "cases", "events", "median_days",
                                     "p90_days", "mean_days"], title="Transitions"))
    out.append(table_html(pm.activities, ["activity", "events", "cases", "case_share",
                                          "starts", "ends", "wait_median_days",
                                          "wait_p90_days"], title="Activities"))
    return "".join(out)


def _variants(ins: Insight) -> str:
    v = ins.variants
    top = v.top()
    chart = bar_chart([f"#{r}" for r in top["variant"]], top["share"].tolist(),
                      value_text=lambda x: pct(x, 1), title="Share of cases, top variants",
                      notes=[f"{n} steps" for n in top["length"]])
    return chart + table_html(top, ["variant", "cases", "share", "median_cycle_days",
                                    "win_rate", "length", "label"],
                              title=f"Top {v.top_n} variants (the other "
                                    f"{max(len(v.table) - v.top_n, 0):,} cover "
                                    f"{pct(v.tail_share)} of cases)")


def _funnel(ins: Insight) -> str:
    s = ins.funnel.steps
    notes = ["" if np.isnan(c) else f"{pct(c)} from previous" for c in s["conversion"]]
    chart = bar_chart(s["milestone"].tolist(), s["cases"].tolist(), title="Cases reaching "
                      "each milestone", notes=notes, color=PALETTE[2])
    return chart + table_html(s, ["milestone", "activities", "cases", "share_of_first",
                                  "conversion", "drop_off", "open_at_previous", "median_days",
                                  "p90_days"])


def _bottlenecks(ins: Insight) -> str:
    b = ins.bottlenecks
    top = b.transitions.head(10)
    out = [bar_chart([f"{s} → {t}" for s, t in zip(top["source"], top["target"], strict=True)],
                     top["total_days"].tolist(), value_text=lambda x: f"{x:,.0f} case-days",
                     title="Waiting time added (cases × time), top transitions",
                     notes=[f"median {days(m)}" for m in top["median_days"]],
                     color=PALETTE[1], width=900)]
    out.append(table_html(b.transitions, ["rank", "source", "target", "cases", "median_days",
                                          "p90_days", "total_days", "share_of_cycle"],
                          max_rows=15, title="Transitions by waiting time added"))
    if len(b.stages):
        out.append(bar_chart(b.stages["stage"].tolist(), b.stages["total_days"].tolist(),
                             value_text=lambda x: f"{x:,.0f} case-days",
                             title=f"Time spent per stage ({b.stage_source})",
                             notes=[f"P90 {days(p)}" for p in b.stages["p90_days"]],
                             color=PALETTE[1]))
        out.append(table_html(b.stages, title="Stages: time, stalls (past the stage's P90) "
                              "and open cases stuck now"))
    out.append(table_html(b.stuck, max_rows=20, title=f"Open cases stuck now ({len(b.stuck):,})"))
    return "".join(out)


def _rework(ins: Insight) -> str:
    r = ins.rework
    counted = r.activities[r.activities["counted"]]
    out = [table_html(r.summary, title="Cases with rework")]
    if len(counted):
        out.append(bar_chart(counted["activity"].tolist(), counted["share_repeated"].tolist(),
                             value_text=lambda x: pct(x), color=PALETTE[3],
                             title="Share of cases doing the step more than once",
                             notes=[f"{n:,} cases" for n in counted["cases_repeated"]]))
    out.append(table_html(r.activities, title="Repeated activities (counted: part of the "
                          "expected order)"))
    if r.regression_note:
        out.append(f"<p class='note'>{escape(r.regression_note)}</p>")
    elif len(r.regressions):
        out.append(table_html(r.regressions, title="Stage regressions"))
    return "".join(out)


def _conformance(ins: Insight) -> str:
    c = ins.conformance
    out = [f"<p>Expected order ({escape(c.source)}): {escape(' > '.join(c.path))}. "
           f"{pct(c.deviation_rate)} of cases deviate; mean fitness "
           f"{pct(c.cases['fitness'].mean())}.</p>"]
    steps = c.steps
    out.append(bar_chart(steps["activity"].tolist(), steps["skipped_cases"].tolist(),
                         title="Cases that skipped the step", color=PALETTE[5],
                         notes=[f"{o:,} out of order, {r:,} repeated" for o, r in
                                zip(steps["out_of_order_cases"], steps["repeated_cases"],
                                    strict=True)]))
    out.append(table_html(steps, title="Per step"))
    if len(c.by_segment):
        for attribute, part in c.by_segment.groupby("attribute", sort=False):
            part = part.sort_values("deviation_rate", ascending=False)
            out.append(table_html(part, ["segment", "cases", "deviation_rate", "skip_rate",
                                         "out_of_order_rate", "repeat_rate", "mean_fitness"],
                                  max_rows=12, title=f"Deviation rate by {attribute}"))
    out.append(table_html(c.unexpected, title="Activities outside the expected order"))
    return "".join(out)


def _discounts(ins: Insight) -> str:
    d = ins.discounts
    out = [bar_chart(d.distribution["band"].tolist(), d.distribution["quotes"].tolist(),
                     title="Quotes by discount", color=PALETTE[4]),
           bar_chart(d.bands["band"].tolist(), d.bands["win_rate"].tolist(),
                     value_text=lambda x: pct(x), color=PALETTE[2],
                     title="Win rate by the case's last discount",
                     notes=[f"{int(n):,} cases" for n in d.bands["cases"].fillna(0)])]
    out.append(table_html(d.bands, title="By discount band (value per currency)"))
    if d.given_away:
        out.append(f"<p>Value given away on won deals: {escape(money_text(d.given_away))} "
                   "(value × discount, per currency).</p>")
    if d.policy_note:
        out.append(f"<p class='note'>Policy check: {escape(d.policy_note)}.</p>")
    else:
        out.append(table_html(d.policy, title=f"Policy: quotes above {d.threshold:g}% need "
                              "approval"))
        out.append(table_html(d.violations, title="Quotes above the threshold without "
                              "approval"))
    for attribute, part in (d.by_segment.groupby("attribute", sort=False)
                            if len(d.by_segment) else []):
        out.append(table_html(part.sort_values("mean_discount", ascending=False),
                              ["segment", "cases", "mean_discount", "median_discount",
                               "share_above_threshold", "win_rate"], max_rows=12,
                              title=f"Discount by {attribute}"))
    return "".join(out)


def _payments(ins: Insight) -> str:
    p = ins.payments
    out = [table_html(p.summary)]
    if len(p.aging):
        out.append(bar_chart([f"{b} ({c})" for b, c in zip(p.aging["bucket"],
                                                           p.aging["currency"], strict=True)],
                             p.aging["invoices"].tolist(), title="Open invoices by days past "
                             "due", color=PALETTE[5],
                             notes=[f"{c} {amount(v)}" for c, v in zip(p.aging["currency"],
                                                                      p.aging["value"],
                                                                      strict=True)]))
    out.append(table_html(p.aging, title="Aging of open invoices"))
    for attribute, part in (p.by_segment.groupby("attribute", sort=False)
                            if len(p.by_segment) else []):
        out.append(table_html(part, ["segment", "invoices", "paid", "open", "mean_delay_days",
                                     "median_delay_days", "on_time_share"], max_rows=12,
                              title=f"Payment delay by {attribute.replace('_', ' ')}"))
    return "".join(out)


def _segments(ins: Insight) -> str:
    t = ins.segments.table
    out = []
    month = t[t["attribute"] == "month"]
    if len(month) > 1:
        out.append(bar_chart(month["segment"].tolist(), month["cases"].tolist(),
                             title="Cases started per month",
                             notes=[f"win rate {pct(w)}" for w in month["win_rate"]]))
    for attribute, part in t.groupby("attribute", sort=False):
        if attribute == "account":
            continue  # hundreds of rows: in the Python result and the payments section
        out.append(table_html(part.drop(columns="attribute"), max_rows=40,
                              title=f"By {attribute.replace('_', ' ')}"))
    return "".join(out)


def _by(ins: Insight) -> str:
    rows = []
    for value, sub in ins.by_segment.items():
        f = sub.overview.figures.iloc[0]
        row = {ins.by: value, "cases": int(f["cases"]), "win_rate": f["win_rate"],
               "median_cycle_days": f["median_cycle_days"]}
        if sub.bottlenecks.available and len(sub.bottlenecks.transitions):
            top = sub.bottlenecks.transitions.iloc[0]
            row["biggest_wait"] = f"{top['source']} → {top['target']}"
            row["wait_median_days"] = top["median_days"]
        if sub.rework.available:
            row["rework_share"] = sub.rework.summary.set_index("kind").loc["any rework", "share"]
        if sub.conformance.available:
            row["deviation_rate"] = sub.conformance.deviation_rate
        if sub.discounts.available and len(sub.discounts.policy):
            row["approval_wait_days"] = sub.discounts.policy.iloc[0]["median_wait_days"]
        if sub.payments.available:
            row["dso_days"] = sub.payments.summary.iloc[0]["dso_days"]
            row["on_time_share"] = sub.payments.summary.iloc[0]["on_time_share"]
        rows.append(row)
    frame = pd.DataFrame(rows)
    notes = "".join(f"<p class='note'>{escape(n)}</p>" for n in ins.notes)
    lines = []
    for value, sub in ins.by_segment.items():
        lines.append(f"<details><summary>{escape(str(value))}</summary><ul>" +
                     "".join(f"<li>{escape(h)}</li>" for h in sub.headlines) + "</ul></details>")
    return table_html(frame, max_rows=50) + notes + "".join(lines)


def render_html(ins: Insight, title: str = "Lead-to-Cash process insight") -> str:
    """The whole report as one HTML string (UTF-8, no external resource)."""
    f = ins.overview.figures.iloc[0]
    money_cols = [c for c in ins.overview.figures.columns if c.startswith("value_")]
    won_money = {c.removeprefix("value_won_"): f[c] for c in money_cols if "value_won_" in c}
    open_money = {c.removeprefix("value_open_"): f[c] for c in money_cols if "value_open_" in c}
    sub = (f"{escape(ins.source or 'event log')} · {int(f['cases']):,} cases · "
           f"{int(f['events']):,} events · {f['first_event']:%d %b %Y} – "
           f"{f['last_event']:%d %b %Y}")
    if won_money:
        sub += f" · won {escape(money_text(won_money))}"
    if open_money:
        sub += f" · open pipeline {escape(money_text(open_money))}"
    nav = [("headlines", "Headlines"), ("map", "Process map"), ("variants", "Variants"),
           ("funnel", "Funnel"), ("bottlenecks", "Bottlenecks"), ("rework", "Rework"),
           ("conformance", "Conformance"), ("discounts", "Discounts"),
           ("payments", "Payments"), ("segments", "Segments and time")]
    if ins.by_segment:
        nav.append(("by", f"By {ins.by}"))
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
             f"<title>{escape(title)}</title><style>{_CSS}</style></head><body><main>",
             f"<h1>{escape(title)}</h1><p class='sub'>{sub}</p>",
             "<p class='note'>" + " · ".join(f"<a href='#{a}'>{escape(t)}</a>" for a, t in nav)
             + "</p>",
             "<section id='headlines'><h2>Headlines</h2><ul class='headlines'>"
             + "".join(f"<li>{escape(h)}</li>" for h in ins.headlines) + "</ul>"
             + "".join(f"<p class='note'>{escape(n)}</p>" for n in ins.notes) + "</section>",
             _section("map", "Process map", ins.process_map, lambda: _process_map(ins),
                      "What actually happens: every activity and every direct hand-over."),
             _section("variants", "Variants", ins.variants, lambda: _variants(ins)),
             _section("funnel", "Funnel", ins.funnel, lambda: _funnel(ins),
                      "Cases reaching each milestone and the time between milestones."),
             _section("bottlenecks", "Bottlenecks", ins.bottlenecks, lambda: _bottlenecks(ins),
                      "Ranked by the waiting time they add over all cases (volume × time)."),
             _section("rework", "Rework", ins.rework, lambda: _rework(ins),
                      "Steps done again and stages that move back; extra days compare "
                      "median cycle times of completed cases with and without."),
             _section("conformance", "Conformance", ins.conformance, lambda: _conformance(ins)),
             _section("discounts", "Discounts", ins.discounts, lambda: _discounts(ins)),
             _section("payments", "Payments", ins.payments, lambda: _payments(ins),
                      "DSO: mean days from invoice to payment; delay: days past the due date."),
             _section("segments", "Segments and time", ins.segments, lambda: _segments(ins))]
    if ins.by_segment:
        parts.append(f"<section id='by'><h2>By {escape(str(ins.by))}</h2>{_by(ins)}</section>")
    parts.append(f"<p class='note'>Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by "
                 "l2c insight. Times are calendar days; rates count decided cases only "
                 "(won / (won + lost)).</p></main></body></html>")
    return "".join(parts)
