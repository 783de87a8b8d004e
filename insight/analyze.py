"""One call for the whole process insight of a mapped log: ``analyze(log)``.

Every section is computed from the same ``Context``; a section the log cannot support
comes back marked unavailable with the reason instead of failing the whole analysis.
``by`` repeats the analysis per segment (a loop over the segments, each vectorised).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.log import EventLog
from insight.bottlenecks import Bottlenecks, bottlenecks
from insight.conformance import Conformance, conformance
from insight.context import MONTH, Context, InsightError, money, win_rate
from insight.discounts import DEFAULT_APPROVALS, DEFAULT_THRESHOLD, Discounts, discounts
from insight.format import days, money_text, pct
from insight.funnel import Funnel, Milestones, funnel
from insight.partials import Runner
from insight.payments import Payments, payments
from insight.process_map import ProcessMap, Variants, compute_variants, process_map
from insight.rework import Rework, rework
from insight.sections import Section

#: at most this many segments get their own analysis; the rest are "(other)"
MAX_SEGMENTS = 12
OTHER = "(other)"
EARLIER = "(earlier)"


@dataclass
class Overview(Section):
    """``figures``: one row: cases, events, activities, first_event, last_event,
    completed, open, won, lost, win_rate, median_cycle_days (completed cases), and the
    open pipeline and won value per currency (``value_open_<CUR>``, ``value_won_<CUR>``)."""

    figures: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class Segments(Section):
    """``table``: attribute, segment, cases, share, won, lost, win_rate,
    median_cycle_days (completed), rework_share, deviation_rate, mean_discount,
    mean_payment_delay_days; for every case attribute the log has and for the month of
    the case's start (``attribute == "month"``: the trend over time)."""

    table: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class Insight:
    """The whole descriptive analysis. Each field is a ``Section`` dataclass of data
    frames whose columns its docstring lists; ``headlines`` are plain-language
    findings; ``by_segment`` holds the same analysis per value of ``by``."""

    overview: Overview
    process_map: ProcessMap
    detail_maps: dict[float, ProcessMap]
    variants: Variants
    funnel: Funnel
    bottlenecks: Bottlenecks
    rework: Rework
    conformance: Conformance
    discounts: Discounts
    payments: Payments
    segments: Segments
    headlines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    by: str | None = None
    by_segment: dict[str, Insight] = field(default_factory=dict)
    source: str = ""

    def sections(self) -> dict[str, Section]:
        return {"overview": self.overview, "process_map": self.process_map,
                "variants": self.variants, "funnel": self.funnel,
                "bottlenecks": self.bottlenecks, "rework": self.rework,
                "conformance": self.conformance, "discounts": self.discounts,
                "payments": self.payments, "segments": self.segments}

    def to_dict(self, max_rows: int | None = 1000) -> dict[str, Any]:
        """Plain JSON-ready data (for an API answer or a file): per section its
        availability, reason and tables as lists of records (times as ISO 8601 text,
        missing as None), each cut to ``max_rows`` with its full ``rows`` count."""
        out: dict[str, Any] = {"source": self.source, "headlines": list(self.headlines),
                               "notes": list(self.notes), "by": self.by, "sections": {}}
        for name, sec in self.sections().items():
            tables = {}
            for tname, frame in sec.tables().items():
                shown = frame if max_rows is None else frame.head(max_rows)
                tables[tname] = {"rows": len(frame), "records": _records(shown)}
            out["sections"][name] = {"available": sec.available, "reason": sec.reason,
                                     "tables": tables}
        if self.by_segment:
            out["by_segment"] = {k: v.to_dict(max_rows) for k, v in self.by_segment.items()}
        return out

    def stacked(self, section: str, table: str) -> pd.DataFrame:
        """One table of a section for every segment of ``by`` (column ``by`` first)."""
        if not self.by_segment:
            raise InsightError("this insight was not segmented: analyze(..., by=...)")
        parts = []
        for value, sub in self.by_segment.items():
            sec = sub.sections()[section]
            if sec.available:
                parts.append(getattr(sec, table).assign(**{self.by: value}))
        if not parts:
            return pd.DataFrame()
        frame = pd.concat(parts, ignore_index=True)
        return frame[[self.by, *[c for c in frame.columns if c != self.by]]]


@dataclass(frozen=True)
class Options:
    """What a user may set; each default is documented where it is used."""

    coverage_levels: tuple[float, ...] = (0.5, 0.8, 1.0)
    top_variants: int = 10
    milestones: Milestones | None = None
    happy_path: list[str] | None = None
    strict_conformance: bool = False
    rework_activities: list[str] | None = None
    discount_threshold: float | None = DEFAULT_THRESHOLD
    approval_activities: tuple[str, ...] = DEFAULT_APPROVALS


def analyze(log: EventLog | Context, by: str | None = None, *,
            coverage_levels: tuple[float, ...] = (0.5, 0.8, 1.0), top_variants: int = 10,
            milestones: Milestones | None = None, happy_path: list[str] | None = None,
            strict_conformance: bool = False, rework_activities: list[str] | None = None,
            discount_threshold: float | None = None,
            approval_activities: tuple[str, ...] | list[str] | None = None,
            as_of: pd.Timestamp | None = None, context: Context | None = None,
            runner: Runner | None = None) -> Insight:
    """The whole insight of a read log (``features.log.read_log``).

    ``by``: a case attribute (region, rep, lead_source, product, contract_type, an
    extra case column) or "month", to repeat everything per segment.
    ``discount_threshold`` / ``approval_activities``: the discount policy (quotes above
    the threshold need one of these activities); ``milestones`` / ``happy_path``
    override the funnel's steps and the conformance path; ``as_of``: when "now" is for
    open cases (default: the log's last event). Policy arguments left None come from
    the mapping's ``process`` section, else the built-in defaults. ``context``: the
    log's ``Context`` when it was built elsewhere (from partitions on Dask), with its
    own ``as_of``; ``log`` then gives the mapping and the source. ``runner``: where
    the sections that split into per-partition partials compute them (the partitions
    of ``context`` on a Dask cluster; default: this process); segments (``by``) are
    analysed in this process.
    """
    if context is not None and as_of is not None:
        raise ValueError("as_of belongs to the context when a context is given")
    policy = log.mapping.process if isinstance(log, EventLog) else None
    if milestones is None and policy is not None and policy.milestones:
        milestones = [(label, list(acts)) for label, acts in policy.milestones.items()]
    if discount_threshold is None:
        discount_threshold = (policy.discount_policy_pct if policy is not None
                              and policy.discount_policy_pct is not None else DEFAULT_THRESHOLD)
    if approval_activities is None:
        approval_activities = (policy.approval if policy is not None and policy.approval
                               else DEFAULT_APPROVALS)
    options = Options(tuple(coverage_levels), top_variants, milestones, happy_path,
                      strict_conformance, rework_activities, discount_threshold,
                      tuple(approval_activities))
    ctx = (context if context is not None else log if isinstance(log, Context)
           else Context.from_log(log, as_of))
    result = _analyze_context(ctx, options, runner)
    result.source = log.report.source if isinstance(log, EventLog) else ""
    if by is not None:
        result.by = by
        segment = ctx.segment_of_cases(by)  # raises a clear error for an unknown one
        counts = segment.value_counts()
        # months: the latest ones (a trend), other attributes: the largest segments
        top = (sorted(counts.index)[-MAX_SEGMENTS:] if by == MONTH
               else list(counts.index[:MAX_SEGMENTS]))
        rest = EARLIER if by == MONTH else OTHER
        label = np.where(segment.isin(top), segment, rest)
        values = list(top)
        if len(counts) > MAX_SEGMENTS:
            values = [rest, *values] if by == MONTH else [*values, rest]
            which = "latest" if by == MONTH else "largest"
            result.notes.append(f"{len(counts)} values of {by}: the {MAX_SEGMENTS} {which} "
                                f"are analysed apart, the rest as {rest!r}")
        for value in values:
            result.by_segment[str(value)] = _analyze_context(ctx.subset(label == value),
                                                             options)
    return result


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts of plain Python values: numbers, text, ISO times, None."""
    if frame.empty:
        return []
    cells = frame.astype(object).where(frame.notna(), None)
    rows = []
    for record in cells.to_dict(orient="records"):  # at most max_rows rows
        rows.append({k: _plain(v) for k, v in record.items()})
    return rows


def _plain(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, tuple):
        return list(value)
    return value


def _guard(compute: Callable[[], Section], cls: type[Section]) -> Section:
    """A section that fails on this log's data is marked unavailable, not fatal."""
    try:
        return compute()
    except (InsightError, ValueError, KeyError) as exc:
        return cls.unavailable(f"could not be computed on this log: {exc}")


def _analyze_context(ctx: Context, opt: Options, runner: Runner | None = None) -> Insight:
    variants = compute_variants(ctx, top_n=opt.top_variants, runner=runner)
    full = process_map(ctx, runner=runner)
    detail = {c: (full if c >= 1.0 else process_map(ctx, c, variants, runner))
              for c in opt.coverage_levels}
    fun = _guard(lambda: funnel(ctx, opt.milestones, runner), Funnel)
    bott = _guard(lambda: bottlenecks(ctx, full, runner), Bottlenecks)
    rew = _guard(lambda: rework(ctx, opt.rework_activities, runner), Rework)
    conf = _guard(lambda: conformance(ctx, opt.happy_path, opt.strict_conformance,
                                      runner), Conformance)
    disc = _guard(lambda: discounts(ctx, opt.discount_threshold, opt.approval_activities,
                                    runner=runner), Discounts)
    pay = _guard(lambda: payments(ctx, runner), Payments)
    insight = Insight(overview=_overview(ctx), process_map=full, detail_maps=detail,
                      variants=variants, funnel=fun, bottlenecks=bott, rework=rew,
                      conformance=conf, discounts=disc, payments=pay,
                      segments=_segments(ctx, rew, conf, disc, pay))
    insight.headlines = headlines(insight)
    insight.notes.extend(ctx.notes)
    return insight


def _overview(ctx: Context) -> Overview:
    cases = ctx.cases
    completed = cases["completed"].to_numpy()
    row: dict[str, Any] = {
        "cases": ctx.n_cases, "events": len(ctx.case), "activities": ctx.n_activities,
        "first_event": cases["start"].min(), "last_event": cases["end"].max(),
        "completed": int(completed.sum()), "open": int((~completed).sum()),
        "won": int(ctx.won.sum()), "lost": int(ctx.lost.sum()),
        "win_rate": win_rate(ctx.won, ctx.lost),
        "median_cycle_days": float(cases.loc[completed, "cycle_days"].median()),
    }
    if "value" in cases.columns:
        cur = cases["currency"].to_numpy() if "currency" in cases else None
        for name, mask in (("open", ~completed & ~ctx.lost), ("won", ctx.won)):
            totals = money(cases["value"].to_numpy()[mask], None if cur is None else cur[mask])
            row.update({f"value_{name}_{c}": v for c, v in totals.items()})
    return Overview(figures=pd.DataFrame([row]))


def _segments(ctx: Context, rew: Rework, conf: Conformance, disc: Discounts,
              pay: Payments) -> Segments:
    cases = ctx.cases
    frame = pd.DataFrame({
        "won": ctx.won, "lost": ctx.lost,
        "cycle": cases["cycle_days"].where(cases["completed"]).to_numpy(),
        "rework": rew.case_rework if rew.available else np.nan,
        "deviating": (~conf.cases["conforming"].to_numpy()) if conf.available else np.nan,
        "discount": disc.case_discount if disc.available else np.nan,
    })
    if pay.available:
        delay = pay.invoices.set_index("case_id")["delay_days"]
        frame["delay"] = delay.reindex(cases["case_id"].to_numpy()).to_numpy()
    else:
        frame["delay"] = np.nan
    parts = []
    for attribute in [*ctx.segment_columns, MONTH]:
        seg, names = ctx.segment_codes(attribute)
        g = frame.groupby(seg, sort=True)
        part = pd.DataFrame({"cases": g.size(), "won": g["won"].sum(), "lost": g["lost"].sum(),
                             "median_cycle_days": g["cycle"].median(),
                             "rework_share": g["rework"].mean(),
                             "deviation_rate": g["deviating"].mean(),
                             "mean_discount": g["discount"].mean(),
                             "mean_payment_delay_days": g["delay"].mean()})
        part["share"] = part["cases"] / ctx.n_cases
        part["win_rate"] = part["won"] / (part["won"] + part["lost"]).replace(0, np.nan)
        part.index = names.take(part.index.to_numpy())
        part.index.name = "segment"
        parts.append(part.reset_index().assign(attribute=attribute))
    table = pd.concat(parts, ignore_index=True)
    table = table[["attribute", "segment", "cases", "share", "won", "lost", "win_rate",
                   "median_cycle_days", "rework_share", "deviation_rate", "mean_discount",
                   "mean_payment_delay_days"]]
    return Segments(table=table)


# ---------------------------------------------------------------------- headlines
def headlines(ins: Insight) -> list[str]:
    """Plain-language findings, one sentence each, numbers rounded for people."""
    out: list[str] = []
    f = ins.overview.figures.iloc[0]
    line = (f"{f['cases']:,} cases and {f['events']:,} events from "
            f"{f['first_event']:%d %b %Y} to {f['last_event']:%d %b %Y}")
    if f["won"] + f["lost"] > 0:
        line += f"; {pct(f['win_rate'])} of decided cases were won"
    out.append(line + ".")
    v = ins.variants
    out.append(f"{len(v.table):,} distinct paths; the {min(v.top_n, len(v.table))} most "
               f"frequent cover {pct(1 - v.tail_share)} of cases.")
    b = ins.bottlenecks
    if b.available and len(b.transitions):
        top = b.transitions.iloc[0]
        out.append(f"The biggest wait is {top['source']} → {top['target']}: median "
                   f"{days(top['median_days'])} over {top['cases']:,} cases, "
                   f"{pct(top['share_of_cycle'])} of all cycle time.")
        if len(b.stuck):
            out.append(f"{len(b.stuck):,} open cases are stuck now (in their stage past its "
                       "P90).")
    fu = ins.funnel
    if fu.available and len(fu.steps) > 1:
        steps = fu.steps.iloc[1:]
        worst = steps.loc[steps["drop_off"].idxmax()]
        prev = fu.steps.loc[fu.steps["step"] == worst["step"] - 1, "milestone"].iloc[0]
        out.append(f"The largest drop-off is {prev} → {worst['milestone']}: "
                   f"{pct(worst['drop_off'])} of cases do not get there.")
    r = ins.rework
    if r.available:
        s = r.summary.set_index("kind").loc["any rework"]
        if s["cases"]:
            line = f"{pct(s['share'])} of cases have rework"
            if not np.isnan(s["extra_days"]):
                longer = "longer" if s["extra_days"] >= 0 else "shorter"
                line += f"; they take {days(abs(s['extra_days']))} {longer} (median)"
            if not (np.isnan(s["win_rate_with"]) or np.isnan(s["win_rate_without"])):
                line += (f" and win {pct(s['win_rate_with'])} vs "
                         f"{pct(s['win_rate_without'])} without")
            out.append(line + ".")
    c = ins.conformance
    if c.available:
        line = f"{pct(c.deviation_rate)} of cases deviate from the expected order"
        if len(c.steps) and c.steps["skipped_cases"].max() > 0:
            st = c.steps.loc[c.steps["skipped_cases"].idxmax()]
            line += f"; most skipped step: {st['activity']} ({st['skipped_cases']:,} cases)"
        out.append(line + ".")
    d = ins.discounts
    if d.available and len(d.policy):
        p = d.policy.iloc[0]
        if p["quotes_above"]:
            line = f"Quotes above {p['threshold']:g}% discount"
            if not np.isnan(p["median_wait_days"]):
                line += f" wait {days(p['median_wait_days'])} for approval (median)"
            if not np.isnan(p["share_of_won_above"]):
                line += f"; {pct(p['share_of_won_above'])} of won deals are above it"
            out.append(line + ".")
        if p["without_approval"]:
            out.append(f"{int(p['without_approval']):,} quotes above {p['threshold']:g}% have no "
                       "approval.")
    if d.available and d.given_away:
        out.append(f"Discounts gave away {money_text(d.given_away)} on won deals.")
    pay = ins.payments
    if pay.available:
        s = pay.summary.iloc[0]
        line = f"Invoices are paid after {days(s['dso_days'])} on average (DSO)"
        if not np.isnan(s["on_time_share"]):
            line += f"; {pct(s['on_time_share'])} on time"
        line += f"; {int(s['open']):,} open"
        out.append(line + ".")
    return out
