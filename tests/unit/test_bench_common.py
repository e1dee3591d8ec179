"""bench/common.py: the figures every benchmark prints are computed the same way (no service,
no database: the pure helpers only)."""
import json
import os
import re

import pytest

from bench import common


def test_pct_is_the_nearest_rank_of_the_sorted_values():
    values = [7, 1, 9, 3, 5, 2, 8, 4, 10, 6]
    assert common.pct(values, 0) == 1
    assert common.pct(values, 50) == 5     # rank round(0.5 * 9) = 4 (half to even)
    assert common.pct(values, 95) == 10    # rank round(8.55) = 9
    assert common.pct(values, 100) == 10
    assert values[0] == 7                  # the caller's list is left as it was
    assert common.pct([0.25], 95) == 0.25


def test_pct_of_nothing_fails_loudly():
    with pytest.raises(IndexError):
        common.pct([], 50)


def test_summary_rounds_only_when_asked():
    assert common.summary([3.0, 1.0, 2.0, 10.0]) == {"median": 2.5, "min": 1.0, "max": 10.0, "n": 4}
    assert common.summary([0.123456, 0.2, 0.3], 4) == {"median": 0.2, "min": 0.1235, "max": 0.3, "n": 3}


def test_load_span_names_start_end_and_cpus():
    text = common.load_span((1.25, 0, 0), (3.0, 0, 0))
    assert text == f"load average 1.2 at the start, 3.0 at the end, on {os.cpu_count()} CPUs"
    assert re.fullmatch(r"load average 0\.5 at the start, \d+\.\d at the end, on \d+ CPUs",
                        common.load_span((0.5, 0, 0)))


def test_write_json_names_the_file_under_output(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "OUTPUT", tmp_path / "output")
    name = f"unit-{common.utc_stamp()}.json"
    assert re.fullmatch(r"unit-\d{8}T\d{6}Z\.json", name)
    path = common.write_json(name, {"when": common.datetime(2026, 12, 2), "p50": 1.5})
    assert path == tmp_path / "output" / name
    assert json.loads(path.read_text()) == {"when": "2026-12-02 00:00:00", "p50": 1.5}


def test_environ_sets_for_the_block_and_restores(monkeypatch):
    monkeypatch.setenv("BF_BENCH_UNIT_KEEP", "kept")
    monkeypatch.delenv("BF_BENCH_UNIT_NEW", raising=False)
    with pytest.raises(RuntimeError):
        with common.environ({"BF_BENCH_UNIT_NEW": "1", "BF_BENCH_UNIT_KEEP": "changed"}):
            assert os.environ["BF_BENCH_UNIT_NEW"] == "1" and os.environ["BF_BENCH_UNIT_KEEP"] == "changed"
            raise RuntimeError("the block failed")
    assert "BF_BENCH_UNIT_NEW" not in os.environ and os.environ["BF_BENCH_UNIT_KEEP"] == "kept"
