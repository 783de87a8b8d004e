"""The HTML report and the ``l2c insight`` command, as a manager and a user get them."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd
import yaml
from typer.testing import CliRunner

from features.log import canonicalize
from features.mapping import Mapping
from insight import analyze
from insight.report import render_html
from l2c.cli import app
from tests.insight.logs import MAPPING, tiny_frame, tiny_log

runner = CliRunner()


def _no_external_resources(html: str) -> None:
    assert "<script" not in html and "<link" not in html and "@import" not in html
    urls = set(re.findall(r"https?://[^\s\"'<>]+", html))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls


def test_report_is_self_contained_and_has_every_section() -> None:
    ins = analyze(tiny_log())
    html = render_html(ins)
    _no_external_resources(html)
    for anchor in ("headlines", "map", "variants", "funnel", "bottlenecks", "rework",
                   "conformance", "discounts", "payments", "segments"):
        assert f"id='{anchor}'" in html
    assert html.count('<svg class="map"') == len(ins.detail_maps)
    assert "Invoice Created → Payment Received" in html  # the top bottleneck, in words
    assert "EUR" in html and "USD" in html
    assert "Not available" not in html
    # numbers for people: rounded days and percentages, not raw floats
    assert "33.0 days" in html and "66.7%" in html
    assert not re.search(r"\d\.\d{5,}", html)


def test_every_drawing_is_well_formed_svg() -> None:
    import xml.etree.ElementTree as ET

    from features.mapping import default_mapping
    from features.simulate import simulate_log

    events, _ = simulate_log(600, 4)
    ins = analyze(canonicalize(events, default_mapping()))
    html = render_html(ins)
    drawings = re.findall(r"<svg .*?</svg>", html, flags=re.S)
    assert len(drawings) >= 10
    for svg in drawings:
        root = ET.fromstring(svg)  # raises on a malformed drawing
        assert root.tag.endswith("svg")
    maps = [d for d in drawings if 'class="map"' in d]
    nodes = [d.count('<g class="node') for d in maps]
    assert nodes[-1] == events["activity"].nunique()  # the map of every case: all of them
    assert nodes == sorted(nodes)  # more detail, more activities


def test_report_marks_sections_the_log_cannot_support() -> None:
    frame = pd.DataFrame({"case": ["1", "1"], "activity": ["a", "b"],
                          "time": ["2024-01-01T10:00:00Z", "2024-01-02T10:00:00Z"]})
    mapping = Mapping.from_dict({"columns": {"case_id": "case", "activity": "activity",
                                             "timestamp": "time"}})
    html = render_html(analyze(canonicalize(frame, mapping)))
    assert "Not available for this log: no discount column mapped" in html
    assert "Not available for this log: no invoice activity in the mapping" in html


def test_report_by_segment() -> None:
    html = render_html(analyze(tiny_log(), by="region"))
    assert "id='by'" in html and "North" in html and "South" in html


def _write(tmp_path: Path) -> tuple[Path, Path]:
    log, mapping = tmp_path / "tiny.csv", tmp_path / "tiny.yaml"
    tiny_frame().to_csv(log, index=False)
    mapping.write_text(yaml.safe_dump(MAPPING))
    return log, mapping


def test_cli_writes_the_report(tmp_path: Path) -> None:
    log, mapping = _write(tmp_path)
    out = tmp_path / "out" / "report.html"
    result = runner.invoke(app, ["insight", str(log), "--mapping", str(mapping), "--by",
                                 "region", "--out", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text(encoding="utf-8")
    _no_external_resources(html)
    assert "id='by'" in html
    assert "biggest wait is Invoice Created → Payment Received" in result.output


def test_cli_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    log, mapping = _write(tmp_path)
    result = runner.invoke(app, ["insight", str(log), "--mapping", str(mapping), "--by",
                                 "colour", "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 2
    assert "cannot segment by 'colour'" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["insight", str(tmp_path / "missing.csv"), "--out",
                                 str(tmp_path / "r.html")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert not (tmp_path / "r.html").exists()



def test_the_map_keeps_every_label_inside_the_picture() -> None:
    """Backward arcs bend out to the left; their labels end left of the bend. On a log
    with long loops back (the simulator's), no text may start left of the picture."""
    from features.mapping import default_mapping
    from features.simulate import simulate_log
    from insight.svg import process_map_svg

    log = canonicalize(simulate_log(n_cases=400, seed=3)[0], default_mapping())
    section = analyze(log).process_map
    svg = process_map_svg(section.activities, section.edges, section.starts, section.ends)
    xs = [float(x) for x in re.findall(r'<text[^>]* x="(-?[\d.]+)"', svg)]
    assert xs and min(xs) >= 0


def test_the_map_labels_cover_no_box_and_no_other_label() -> None:
    """Edge labels are drawn over the nodes: each must sit where no box and no other
    label is (the simulator's map has long edges through other layers' boxes)."""
    from features.mapping import default_mapping
    from features.simulate import simulate_log
    from insight.svg import NODE_H, NODE_W, label_box, process_map_svg

    log = canonicalize(simulate_log(n_cases=400, seed=3)[0], default_mapping())
    section = analyze(log).process_map
    svg = process_map_svg(section.activities, section.edges, section.starts, section.ends)
    labels = [label_box(float(x), float(y), anchor, html.unescape(text)) for x, y, anchor, text
              in re.findall(r'<text class="edge" x="(-?[\d.]+)" y="(-?[\d.]+)" '
                            r'text-anchor="(\w+)">([^<]*)</text>', svg)]
    nodes = [(float(x), float(y), float(x) + NODE_W, float(y) + NODE_H) for x, y in
             re.findall(r'<rect x="(-?[\d.]+)" y="(-?[\d.]+)" width="190" height="44"', svg)]
    assert len(nodes) == len(section.activities)
    # most edges keep their label; the rest keep theirs in the tooltip
    assert len(labels) >= 0.8 * len(section.edges)

    def overlap(a, b) -> bool:
        return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]

    for i, box in enumerate(labels):
        assert not any(overlap(box, node) for node in nodes), box
        assert not any(overlap(box, other) for other in labels[i + 1:]), box
