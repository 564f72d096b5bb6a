"""``python -m triage predict`` end to end, in a real subprocess."""

import json
import subprocess
import sys

import pandas as pd
import pytest

ROWS = [
    {"comment": "ไฟฟ้าส่องสว่างดับทั้งซอย", "district": "จตุจักร", "ticket_id": "a"},
    {"comment": "", "district": "บางรัก", "ticket_id": "b"},
    {"comment": "มีขยะกองใหญ่ส่งกลิ่นเหม็น โทร 0812345678", "district": None, "ticket_id": "c"},
    {"comment": "น้ำท่วมถนน ๕๕๕๕ 😀", "district": "บางเขน", "ticket_id": "d"},
]


def run_predict(model_dir, inp, out, *extra):
    cmd = [sys.executable, "-m", "triage", "predict", "--model", str(model_dir / "current"), "--input", str(inp),
           "--output", str(out), "--text-column", "comment", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("kind", ["csv", "parquet", "jsonl"])
def test_predict_writes_one_object_per_row_in_order(small_model_dir, tmp_path, kind):
    frame = pd.DataFrame(ROWS)
    inp = tmp_path / f"in.{kind}"
    {"csv": lambda: frame.to_csv(inp, index=False), "parquet": lambda: frame.to_parquet(inp),
     "jsonl": lambda: frame.to_json(inp, orient="records", lines=True, force_ascii=False)}[kind]()
    out = tmp_path / "out.jsonl"
    res = run_predict(small_model_dir, inp, out, "--district-column", "district", "--id-column", "ticket_id")
    assert res.returncode == 0, res.stderr
    recs = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in recs] == ["a", "b", "c", "d"]
    assert recs[1] == {"id": "b", "error": "empty complaint text"}
    for r in (recs[0], recs[2], recs[3]):
        assert {"topics", "topic_scores", "urgency", "urgency_scores", "explanation", "agencies"} <= set(r)
    assert "แสงสว่าง" in recs[0]["topics"]
    assert "0812345678" not in res.stderr + res.stdout


def test_predict_errors_are_one_clear_line(small_model_dir, tmp_path):
    inp = tmp_path / "in.csv"
    pd.DataFrame(ROWS).to_csv(inp, index=False)
    res = run_predict(small_model_dir, inp, tmp_path / "o.jsonl", "--text-column", "text")
    assert res.returncode == 2 and "no column 'text'" in res.stderr and "Traceback" not in res.stderr
    res = run_predict(small_model_dir, tmp_path / "missing.csv", tmp_path / "o.jsonl")
    assert res.returncode == 2 and "does not exist" in res.stderr
    res = run_predict(tmp_path, inp, tmp_path / "o.jsonl")
    assert res.returncode == 3 and "train.py" in res.stderr
    assert not (tmp_path / "o.jsonl").exists()


def test_an_output_that_cannot_be_written_is_exit_4(small_model_dir, tmp_path):
    inp = tmp_path / "in.csv"
    pd.DataFrame(ROWS).to_csv(inp, index=False)
    (tmp_path / "a-file").write_text("not a folder", encoding="utf-8")
    # the output's folder would have to be inside a regular file: no write can succeed (even as root)
    for out in (tmp_path / "a-file" / "o.jsonl", tmp_path / "a-file" / "deeper" / "o.jsonl"):
        res = run_predict(small_model_dir, inp, out)
        assert res.returncode == 4, res.stderr
        assert "cannot write" in res.stderr and "Traceback" not in res.stderr


def test_worker_processes_write_what_one_process_writes(small_model_dir, tmp_path, traffy_slice):
    last = max((traffy_slice / "traffy").glob("*.parquet"))
    frame = pd.read_parquet(last, columns=["comment", "district", "ticket_id"]).head(800)
    inp = tmp_path / "in.parquet"
    frame.to_parquet(inp)
    outs = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"out-{jobs}.jsonl"
        res = run_predict(small_model_dir, inp, out, "--district-column", "district", "--id-column", "ticket_id",
                          "--jobs", jobs, "--quiet")
        assert res.returncode == 0, res.stderr
        outs[jobs] = out.read_text(encoding="utf-8")
    assert outs["1"] == outs["2"] and outs["1"].count("\n") == len(frame) > 500  # (U+2028 in texts: no splitlines)


def test_bytes_that_are_not_utf8_are_counted_and_marked(small_model_dir, tmp_path):
    inp = tmp_path / "bad.csv"
    inp.write_bytes(b"comment\n" + b"\xff\xfe\xe0\xb8 bad bytes\n" + "ไฟฟ้าดับทั้งซอย\n".encode())
    out = tmp_path / "out.jsonl"
    res = run_predict(small_model_dir, inp, out)
    assert res.returncode == 0, res.stderr
    recs = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert "not UTF-8" in recs[0]["warning"] and "warning" not in recs[1]
    assert "1 with bytes that are not UTF-8" in res.stderr


def test_an_output_under_proc_is_exit_4_with_one_line(small_model_dir, tmp_path):
    inp = tmp_path / "in.csv"
    pd.DataFrame(ROWS).to_csv(inp, index=False)
    res = run_predict(small_model_dir, inp, "/proc/nope/out.jsonl")
    assert res.returncode == 4, res.stderr
    assert "cannot write /proc/nope/out.jsonl" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.unit
@pytest.mark.parametrize("row_id, warning", [(None, None), ("T-1 ก", None), (None, "ข้อความ"), ("7", "w \" \\ \n")])
def test_an_output_line_is_what_orjson_gives_for_the_whole_record(row_id, warning):
    """The CLI writes compact JSON by orjson (since issue 9's seventh round; json.dumps' spacing before):
    a line is the whole record's ``orjson.dumps``, and parses to the same values as ``json.dumps`` of it."""
    import orjson

    from triage.cli import output_line

    pred = {"topics": ["ถนน", "ไฟฟ้า"], "topic_scores": {"ถนน": 0.91, "ไฟฟ้า": 0.5}, "urgency": "high",
            "agency_explanation": {"table": [{"why": "phrase 'สายไฟ \u2028'"}]}, "explanation": []}
    rec = {**({"id": row_id} if row_id is not None else {}), **pred, **({"warning": warning} if warning else {})}
    line = output_line(orjson.dumps(pred), row_id, warning)
    assert line == orjson.dumps(rec)
    assert json.loads(line) == json.loads(json.dumps(rec, ensure_ascii=False)) == rec
    assert output_line(b"{}", row_id, warning) == orjson.dumps({k: v for k, v in rec.items() if k in ("id", "warning")})


def test_a_missing_district_in_a_parquet_string_column_is_missing_not_a_district(small_model_dir, tmp_path):
    """pandas reads such a cell as ``pd.NA``; it used to be routed as a district named "<NA>"."""
    frame = pd.DataFrame({"comment": ["ไฟฟ้าส่องสว่างดับทั้งซอย", "ไฟฟ้าส่องสว่างดับทั้งซอย เขตบางรัก", "ขยะเต็มถนน"],
                          "district": pd.array([None, None, "จตุจักร"], dtype="string"),
                          "ticket_id": pd.array(["a", None, "c"], dtype="string")})
    inp = tmp_path / "in.parquet"
    frame.to_parquet(inp)
    assert str(pd.read_parquet(inp)["district"].dtype) == "string"  # the file carries pandas' string type
    out = tmp_path / "out.jsonl"
    res = run_predict(small_model_dir, inp, out, "--district-column", "district", "--id-column", "ticket_id", "--quiet")
    assert res.returncode == 0, res.stderr
    text = out.read_text(encoding="utf-8")
    assert "<NA>" not in text
    recs = [json.loads(line) for line in text.splitlines()]
    assert [r.get("id") for r in recs] == ["a", "", "c"]
    assert recs[0]["agency_explanation"]["district"] is None
    assert recs[1]["agency_explanation"]["district"] == "บางรัก"  # read from the text, as for an empty cell
    assert recs[1]["agency_explanation"]["district_source"] == "text"
    assert recs[2]["agency_explanation"]["district"] == "จตุจักร"


@pytest.mark.unit
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_batch_command_can_ask_malloc_to_keep_freed_memory():
    """``keep_freed_memory`` (called by ``python -m triage predict``): glibc takes both settings."""
    from triage.cli import keep_freed_memory

    assert keep_freed_memory() is True
