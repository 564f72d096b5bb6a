"""Loading labelled complaints through Hugging Face ``datasets``, checked on the way in.

A dataset is described by a small TOML config (see ``configs/``) or the same fields given on
the command line: where the files are, which column holds the text, and for each head
(topic, urgency, agency) its column, an optional separator for multi-label columns, an
optional file to join it from, and optional allowed / excluded labels.

Every problem is counted and reported (missing columns raise; empty texts, empty and
unknown labels skip the row for that head), never silently dropped.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from triage.errors import ConfigError, DataError
from triage.text import has_letters

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

HEADS = ("topic", "urgency", "agency")
_FORMATS = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".jsonl": "json", ".json": "json"}


@dataclass
class HeadConfig:
    """How one head's labels are read: column, separator, join file, label filters."""

    column: str
    separator: str | None = None
    file: str | None = None
    files: list[str] = field(default_factory=list)  # more label files joined after ``file``; later ones win
    join_on: str | None = None
    labels: list[str] | None = None
    exclude: list[str] = field(default_factory=list)


@dataclass
class DatasetConfig:
    """Where a dataset lives and how its columns map onto the model's inputs and heads."""

    name: str
    data: str
    text_column: str
    id_column: str | None = None
    time_column: str | None = None
    district_column: str | None = None
    heads: dict[str, HeadConfig] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)
    base_dir: Path = Path(".")
    agency: dict[str, Any] = field(default_factory=dict)  # [agency]: forwards file etc. (triage.agency)
    model: dict[str, Any] = field(default_factory=dict)  # [model]: features, topic_C, char_ngram (triage.training)

    def resolve(self, path: str) -> str:
        """Resolve a data path: hub names and absolute paths as they are, others under base_dir."""
        p = Path(path)
        if p.is_absolute() or "://" in path:
            return path
        return str(self.base_dir / p)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The parsed dataset TOML config, or a ConfigError naming the file."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read dataset config {path}: {exc}") from exc


def load_config(path: str | Path, data_root: str | Path) -> DatasetConfig:
    """Read a dataset TOML config; relative data paths resolve against ``data_root``."""
    return config_from_dict(read_config_file(path), data_root, source=str(path))


def config_from_dict(raw: dict[str, Any], data_root: str | Path, source: str = "") -> DatasetConfig:
    """Build a DatasetConfig from a dict (a parsed TOML file or command-line options)."""
    for key in ("data", "text_column"):
        if not raw.get(key):
            raise ConfigError(f"dataset config {source} needs {key!r}")
    heads: dict[str, HeadConfig] = {}
    for name, spec in (raw.get("heads") or {}).items():
        if name not in HEADS:
            raise ConfigError(f"head {name!r} is not one of: {', '.join(HEADS)}")
        if not isinstance(spec, dict) or not spec.get("column"):
            raise ConfigError(f"head {name!r} in {source} needs a 'column'")
        known = set(HeadConfig.__dataclass_fields__)
        unknown = set(spec) - known
        if unknown:
            raise ConfigError(f"head {name!r} has unknown keys {sorted(unknown)}; known: {sorted(known)}")
        heads[name] = HeadConfig(**spec)
    if not heads:
        raise ConfigError(f"dataset config {source} defines no head (one of {', '.join(HEADS)})")
    return DatasetConfig(
        name=raw.get("name", Path(str(raw["data"])).stem),
        data=raw["data"],
        text_column=raw["text_column"],
        id_column=raw.get("id_column"),
        time_column=raw.get("time_column"),
        district_column=raw.get("district_column"),
        heads=heads,
        split=raw.get("split") or {},
        base_dir=Path(data_root),
        agency=raw.get("agency") or {},
        model=raw.get("model") or {},
    )


def _data_files(location: str) -> tuple[str, list[str]]:
    p = Path(location)
    if p.is_dir():
        files = sorted(str(f) for f in p.iterdir() if f.suffix.lower() in _FORMATS)
        if not files:
            raise DataError(f"no CSV, Parquet or JSONL file in folder {location}")
        kinds = {_FORMATS[Path(f).suffix.lower()] for f in files}
        if len(kinds) > 1:
            raise DataError(f"folder {location} mixes file kinds {sorted(kinds)}; keep one kind per folder")
        return kinds.pop(), files
    if p.exists():
        kind = _FORMATS.get(p.suffix.lower())
        if kind is None:
            raise DataError(f"file {location} is not one of: {', '.join(sorted(_FORMATS))}")
        return kind, [str(p)]
    raise DataError(f"no such data file or folder: {location}")


def read_table(location: str) -> pd.DataFrame:
    """Read a file, a folder of files, or a hub dataset name into a DataFrame via ``datasets``."""
    import datasets

    datasets.disable_progress_bars()
    try:
        if Path(location).exists():
            kind, files = _data_files(location)
            ds = datasets.load_dataset(kind, data_files=files, split="train")
        else:
            if "/" not in location or location.startswith((".", "/")):
                raise DataError(f"no such data file or folder: {location}")
            ds = datasets.load_dataset(location, split="train")
    except DataError:
        raise
    except Exception as exc:  # datasets raises many kinds; all mean "cannot read this"
        raise DataError(f"cannot read {location}: {type(exc).__name__}: {exc}") from exc
    return ds.to_pandas()


@dataclass
class LoadReport:
    """Counts of what was read and what was skipped, per reason."""

    rows: int = 0
    kept: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    labelled: dict[str, int] = field(default_factory=dict)
    unknown_labels: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def skip(self, reason: str, n: int) -> None:
        if n:
            self.skipped[reason] = self.skipped.get(reason, 0) + int(n)

    def summary(self) -> str:
        lines = [f"read {self.rows} rows, kept {self.kept}"]
        lines += [f"  skipped {n}: {why}" for why, n in sorted(self.skipped.items())]
        lines += [f"  {head}: {n} labelled rows" for head, n in self.labelled.items()]
        for head, counts in self.unknown_labels.items():
            shown = ", ".join(f"{k!r} x{v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])[:8])
            lines.append(f"  {head}: unknown labels dropped: {shown}")
        lines += [f"  {note}" for note in self.notes]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "kept": self.kept,
            "skipped": self.skipped,
            "labelled": self.labelled,
            "unknown_labels": self.unknown_labels,
        }


def _require(frame: pd.DataFrame, columns: list[str], where: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{where} lacks column(s) {missing}; it has: {', '.join(map(str, frame.columns))}")


def _parse_labels(value: Any, head: HeadConfig) -> list[str]:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return []
    if isinstance(value, (list, tuple)):
        parts = [str(v) for v in value]
    elif head.separator:
        parts = str(value).split(head.separator)
    else:
        parts = [str(value)]
    return [p.strip() for p in parts if p and p.strip()]


def load_dataset(config: DatasetConfig) -> tuple[pd.DataFrame, LoadReport]:
    """Load a configured dataset into a frame with columns id, text, time, district and one per head.

    Head columns hold a list of labels (multi-label topic) or a single label (or None when the
    row has no label for that head).
    """
    raw = read_table(config.resolve(config.data))
    report = LoadReport(rows=len(raw))
    needed = [config.text_column] + [c for c in (config.id_column, config.time_column) if c]
    _require(raw, needed + [h.column for h in config.heads.values() if not h.file], config.data)
    out = pd.DataFrame(
        {
            "id": raw[config.id_column].astype(str) if config.id_column else raw.index.astype(str),
            "text": raw[config.text_column],
            "time": raw[config.time_column].astype(str) if config.time_column else None,
            "district": raw[config.district_column] if config.district_column in raw.columns else None,
        }
    )
    text_ok = out["text"].map(lambda t: isinstance(t, str) and has_letters(t))
    report.skip("empty or non-text complaint", int((~text_ok).sum()))
    out = out[text_ok].copy()
    for name, head in config.heads.items():
        column = raw.loc[out.index, head.column] if not head.file else _joined(config, head, out, report)
        out[name] = [_labels_for(name, head, v, report) for v in column]
        report.labelled[name] = int(out[name].map(bool).sum())
        if name != "topic":
            out[name] = out[name].map(lambda labels: labels[0] if labels else None)
    if config.id_column:
        dup = out["id"].duplicated(keep="last")
        report.skip(f"duplicate {config.id_column}", int(dup.sum()))
        out = out[~dup]
    report.kept = len(out)
    return out.reset_index(drop=True), report


REPO_DIR = Path(__file__).resolve().parent.parent


def resolve_label_file(config: DatasetConfig, path: str) -> str:
    """A label file under the data folder, or else in the repository (``labels/...`` lives there)."""
    under_data = config.resolve(path)
    if Path(under_data).exists() or Path(path).is_absolute():
        return under_data
    return str(REPO_DIR / path)


def read_label_files(config: DatasetConfig, head: HeadConfig, missing: list[str] | None = None) -> pd.DataFrame:
    """The rows of a head's label files (``file`` then ``files``), one per id: a later file wins.

    Extra columns (e.g. a sample's ``stratum``, ``pool``, ``drawn``, ``month``) are kept. A file of
    ``files`` that does not exist is left out and named in ``missing`` (the load report shows it).
    """
    key = head.join_on or config.id_column
    if not key:
        raise ConfigError(f"head column {head.column!r} comes from {head.file} but no join key is set")
    parts = []
    if head.file is None:
        raise ConfigError(f"head column {head.column!r} names no file to join")
    for path in [head.file, *head.files]:
        if path != head.file and not Path(resolve_label_file(config, path)).exists():
            if missing is not None:
                missing.append(path)
            continue
        side = read_table(resolve_label_file(config, path))
        _require(side, [key, head.column], path)
        parts.append(side.assign(**{key: side[key].astype(str), "label_file": path}))
    table = pd.concat(parts, ignore_index=True)
    return table.drop_duplicates(subset=[key], keep="last").set_index(key)


def _joined(config: DatasetConfig, head: HeadConfig, out: pd.DataFrame, report: LoadReport) -> pd.Series:
    missing: list[str] = []
    table = read_label_files(config, head, missing)
    report.notes += [f"label file {path} not found: left out" for path in missing]
    return out["id"].map(table[head.column].to_dict())


def _labels_for(name: str, head: HeadConfig, value: Any, report: LoadReport) -> list[str]:
    labels = [lab for lab in _parse_labels(value, head) if lab not in head.exclude]
    if head.labels is not None:
        unknown = [lab for lab in labels if lab not in head.labels]
        for lab in unknown:
            bucket = report.unknown_labels.setdefault(name, {})
            bucket[lab] = bucket.get(lab, 0) + 1
        labels = [lab for lab in labels if lab in head.labels]
    return labels


def fingerprint(frame: pd.DataFrame) -> str:
    """A short stable hash of the training rows (ids, texts and labels)."""
    digest = hashlib.sha256()
    for row in frame.itertuples(index=False):
        digest.update(repr(tuple(row)).encode("utf-8"))
    return digest.hexdigest()[:16]


def time_split(frame: pd.DataFrame, valid_from: str, test_from: str) -> tuple[pd.Index, pd.Index, pd.Index]:
    """Split row indexes by time: train < valid_from <= valid < test_from <= test."""
    if frame["time"].isna().all():
        raise DataError("time split needs a time column; the dataset config sets none")
    t = frame["time"].astype(str)
    train = frame.index[t < valid_from]
    valid = frame.index[(t >= valid_from) & (t < test_from)]
    test = frame.index[t >= test_from]
    for name, part in (("train", train), ("validation", valid), ("test", test)):
        if len(part) == 0:
            raise DataError(f"time split {valid_from}/{test_from} leaves the {name} part empty")
    return train, valid, test


def random_split(frame: pd.DataFrame, valid: float, test: float, seed: int = 0) -> tuple[pd.Index, pd.Index, pd.Index]:
    """Split row indexes at random (for data without time), stable for a seed."""
    order = frame.sample(frac=1.0, random_state=seed).index
    n_test, n_valid = int(len(order) * test), int(len(order) * valid)
    return order[n_test + n_valid :], order[n_test : n_test + n_valid], order[:n_test]
