from __future__ import annotations

import json

from nora.records import JsonlWriter, read_jsonl, write_json


def test_write_json_is_atomic_and_leaves_no_temp(tmp_path):
    path = tmp_path / "a" / "m.json"
    write_json(path, {"x": 1})
    write_json(path, {"x": 2})
    assert json.loads(path.read_text()) == {"x": 2}
    assert [p.name for p in path.parent.iterdir()] == ["m.json"]


def test_jsonl_lines_are_readable_while_open_and_torn_tail_skipped(tmp_path):
    path = tmp_path / "d.jsonl"
    w = JsonlWriter(path)
    w.write({"a": 1})
    w.write({"a": 2})
    assert [r["a"] for r in read_jsonl(path)] == [1, 2]  # flushed before close
    with open(path, "a") as fh:
        fh.write('{"a": 3')  # a kill mid-line
    assert [r["a"] for r in read_jsonl(path)] == [1, 2]
    w.close()
