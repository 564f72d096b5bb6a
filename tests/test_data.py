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
