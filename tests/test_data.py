import pytest

from triage.data import config_from_dict, load_dataset
from triage.errors import ConfigError, DataError


def _config(tmp_path, **heads):
    return config_from_dict({"data": "c.csv", "text_column": "text", "heads": heads}, tmp_path)


def test_loads_csv_and_counts_bad_rows(tmp_path):
    (tmp_path / "c.csv").write_text("text,label\nไฟดับ,สายไฟ|ถนน\n,ถนน\n   ,ถนน\nถนนพัง,\n", encoding="utf-8")
    frame, report = load_dataset(_config(tmp_path, topic={"column": "label", "separator": "|"}))
    assert report.skipped["empty or non-text complaint"] == 2
    assert list(frame["topic"]) == [["สายไฟ", "ถนน"], []]


def test_missing_column_is_named(tmp_path):
    (tmp_path / "c.csv").write_text("comment\nไฟดับ\n", encoding="utf-8")
    with pytest.raises(DataError, match="text"):
        load_dataset(_config(tmp_path, topic={"column": "label"}))


def test_unknown_head_rejected(tmp_path):
    with pytest.raises(ConfigError, match="not one of"):
        _config(tmp_path, colour={"column": "x"})


ROWS = [{"text": "ไฟดับทั้งซอย", "label": "สายไฟ", "u": "high"},
        {"text": "ถนนเป็นหลุม", "label": "ถนน", "u": "urgent!"},
        {"text": "", "label": "ถนน", "u": "low"},
        {"text": "ขยะเต็ม", "label": "", "u": "medium"}]


@pytest.mark.parametrize("kind", ["parquet", "jsonl", "folder"])
def test_loads_parquet_jsonl_and_folders(tmp_path, kind):
    import pandas as pd

    frame = pd.DataFrame(ROWS)
    if kind == "parquet":
        frame.to_parquet(tmp_path / "c.parquet")
        data = "c.parquet"
    elif kind == "jsonl":
        frame.to_json(tmp_path / "c.jsonl", orient="records", lines=True, force_ascii=False)
        data = "c.jsonl"
    else:
        (tmp_path / "d").mkdir()
        frame.iloc[:2].to_parquet(tmp_path / "d" / "a.parquet")
        frame.iloc[2:].to_parquet(tmp_path / "d" / "b.parquet")
        data = "d"
    config = config_from_dict({"data": data, "text_column": "text", "heads": {
        "topic": {"column": "label"}, "urgency": {"column": "u", "labels": ["high", "medium", "low"]}}}, tmp_path)
    out, report = load_dataset(config)
    assert report.rows == 4 and report.kept == 3
    assert report.skipped == {"empty or non-text complaint": 1}
    assert report.unknown_labels["urgency"] == {"urgent!": 1}
    assert [None if pd.isna(v) else v for v in out["urgency"]] == ["high", None, "medium"]
    assert "unknown labels dropped: 'urgent!' x1" in report.summary()


def test_unreadable_and_mixed_inputs_are_named(tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(DataError, match="not one of"):
        load_dataset(config_from_dict({"data": "x.txt", "text_column": "t", "heads": {"topic": {"column": "l"}}},
                                      tmp_path))
    with pytest.raises(DataError, match="no such data file"):
        load_dataset(config_from_dict({"data": "nope.csv", "text_column": "t", "heads": {"topic": {"column": "l"}}},
                                      tmp_path))
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really parquet")
    with pytest.raises(DataError):
        load_dataset(config_from_dict({"data": "bad.parquet", "text_column": "t", "heads": {"topic": {"column": "l"}}},
                                      tmp_path))
