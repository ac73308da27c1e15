"""report.html shows what records say as text: HTML/JS written into any string field of a
manifest, a decision or a verdict never becomes live markup on the page."""
from __future__ import annotations

import html
import json
from html.parser import HTMLParser
from pathlib import Path

from nora.records import write_json
from nora.reporting import build_report

EVIL = '<script>alert(1)</script><img src=x onerror="alert(2)"><nora-evil a=1>'
# Tags the page itself writes; anything else came from a record.
PAGE_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "table", "tr",
             "th", "td", "thead", "tbody", "img", "details", "summary", "div", "b", "ul", "li"}


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))


def _evil(n: int) -> str:
    return f"{EVIL}{n}"


def _run(root: Path, i: int) -> Path:
    run = root / f"run{i}{EVIL.replace('/', '')}"
    names = {k: {"name": _evil(j)} for j, k in enumerate(("mode", "regime", "violation",
                                                           "trainer"))}
    write_json(run / "manifest.json", {
        "status": "done", "outcome": _evil(5), "fingerprint": _evil(6),
        "config": {**names, "seed": i, "device": _evil(7)}, "metrics": {"accuracy": _evil(8)},
    })
    write_json(run / "norms" / "reproducibility_metrics.json", {
        "outcome": _evil(9), "expected_outcome": _evil(10), "detection_rate_pct": 100.0,
        "verdicts": {_evil(11): {"passed": False, "detail": _evil(12)}},
        "findings": [{"violation": _evil(13), "evidence": {_evil(14): _evil(15)}}]})
    (run / "norms" / "agent_decisions.jsonl").write_text("".join(
        json.dumps({"agent_action": action, "violation_name": _evil(16), "message": _evil(17),
                    "event": _evil(18), "step": 1, "epoch": 0, "evidence": {"x": _evil(19)}})
        + "\n" for action in ("halt", _evil(20))))
    (run / "metrics.jsonl").write_text('{"kind": "step", "step": 0, "loss": 1.0}\n')
    return run


def test_record_strings_are_text_on_the_report_page(tmp_path):
    runs = [_run(tmp_path / "runs", i) for i in range(2)]
    _, page_path = build_report(runs, tmp_path / "out")
    page = page_path.read_text()
    parser = _Tags()
    parser.feed(page)
    tags = {t for t, _ in parser.tags}
    assert tags <= PAGE_TAGS, tags - PAGE_TAGS
    for tag, attrs in parser.tags:
        assert not any(k.startswith("on") for k, _ in attrs), (tag, attrs)
        if tag == "img":
            assert dict(attrs)["src"].startswith("data:image/png;base64,"), attrs
    assert "<script>" not in page and "<nora-evil" not in page
    # and the records are on the page, as text
    for n in (0, 1, 2, 9, 10, 11, 16, 17):
        assert (html.escape(_evil(n), quote=True) in page          # our own escaping
                or html.escape(_evil(n), quote=False) in page), n  # pandas' to_html
