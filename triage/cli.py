"""Command line: ``python -m triage predict ...`` (batch prediction) and the ``train.py`` options.

A thin shell over the package: it parses options, streams rows through the predict path that the
service uses too (``triage.prediction.predict``: the model, then the router) and turns the
package's errors into exit codes in one place, ``run``, with ``triage.errors.exit_code`` (2 bad
usage or input, 3 model problem, 4 cannot write). Raw complaint text is never printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from triage.errors import DataError, StorageError, TriageError, exit_code
from triage.prediction import predict

CHUNK_ROWS = 2000


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for ext in ("parquet", "jsonl", "json", "csv", "tsv"):
        if name.endswith("." + ext) or name.endswith("." + ext + ".gz"):
            return ext
    raise DataError(f"input {path} must be .csv, .tsv, .parquet or .jsonl")


def count_rows(path: Path) -> int | None:
    """Row count for the progress bar (cheap for Parquet; None when it would mean a second pass)."""
    if _suffix(path) == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    return None


def iter_chunks(path: Path, columns: list[str], chunk_rows: int = CHUNK_ROWS) -> Iterator[dict[str, list[Any]]]:
    """Read an input file in chunks of rows, in file order, so 100k rows are never held twice: each chunk
    is a dict of column -> values (the values pandas gives; Parquet text columns are read straight from
    Arrow, without importing pandas)."""
    if not path.exists():
        raise DataError(f"input file {path} does not exist")
    kind = _suffix(path)
    try:
        if kind == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(path)
            missing = [c for c in columns if c not in pf.schema_arrow.names]
            if missing:
                raise DataError(f"input {path} has no column {missing[0]!r}; columns: {', '.join(pf.schema_arrow.names)}")
            for batch in pf.iter_batches(batch_size=chunk_rows, columns=columns):
                if all(pa.types.is_string(t) or pa.types.is_large_string(t) for t in batch.schema.types):
                    yield {c: batch.column(c).to_pylist() for c in columns}  # str or None, as pandas gives them
                else:  # numbers, times ...: as pandas converts them (an integer column with nulls as floats)
                    frame = batch.to_pandas()
                    yield {c: frame[c].tolist() for c in columns}
            return
        import pandas as pd

        if kind in ("csv", "tsv"):
            reader = pd.read_csv(path, chunksize=chunk_rows, dtype=str, keep_default_na=False,
                                 sep="\t" if kind == "tsv" else ",", encoding="utf-8", encoding_errors="replace")
        else:
            reader = pd.read_json(path, lines=True, chunksize=chunk_rows, dtype=False)
        with reader:
            for chunk in reader:
                missing = [c for c in columns if c not in chunk.columns]
                if missing:
                    raise DataError(f"input {path} has no column {missing[0]!r}; "
                                    f"columns: {', '.join(map(str, chunk.columns))}")
                yield {c: chunk[c].tolist() for c in columns}
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc


def _as_text(value: Any) -> str:
    """A cell as text; a missing one (None, NaN, and pandas' NA and NaT) as ""."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    pandas = sys.modules.get("pandas")  # its missing markers exist only once it is imported
    if pandas is not None and (value is pandas.NA or value is pandas.NaT):
        return ""  # (was "<NA>": a Parquet string column's missing district was routed as a district named <NA>)
    return str(value)


_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def predict_lines(model: Any, texts: list[str], districts: list[str | None] | None, router: Any = None) -> list[bytes]:
    """``predict``'s records as compact JSON object texts in UTF-8, by orjson (in the worker processes:
    encoding is a share of the work; orjson is about seven times as fast as ``json.dumps``)."""
    dumps = orjson.dumps
    return [dumps(pred, option=_OPTIONS) for pred in predict(model, texts, districts, router)]


def output_line(pred_json: bytes, row_id: str | None, warning: str | None) -> bytes:
    """``orjson.dumps({"id": row_id, **pred, "warning": warning})`` (without the keys that are None) from the
    prediction's JSON text, so the prediction is not encoded twice."""
    if row_id is None and warning is None:
        return pred_json
    parts = [] if row_id is None else [b'"id":' + orjson.dumps(row_id)]
    if pred_json != b"{}":
        parts.append(pred_json[1:-1])
    if warning is not None:
        parts.append(b'"warning":' + orjson.dumps(warning))
    return b"{" + b",".join(parts) + b"}"


WARM_UP_TEXT = "ไฟฟ้าดับทั้งซอย สายไฟช็อต"

UNDECODABLE = "\ufffd"
"""What the file readers put where bytes were not valid UTF-8."""


def predict_file(model: Any, inp: Path, out: Path, text_column: str, district_column: str | None = None,
                 id_column: str | None = None, router: Any = None, progress: bool = True,
                 jobs: int | None = 1) -> dict[str, int]:
    """Triage every row of ``inp`` and write one JSON object per row to ``out``, in input order.

    Rows with no usable text get ``{"error": ...}`` instead of a prediction, so the output always
    lines up with the input. The output is written to a temporary file and renamed at the end.
    ``jobs`` worker processes share each chunk (None: one per core; see ``triage.parallel``).
    """
    from triage.parallel import ParallelPredict

    columns = [c for c in (text_column, district_column, id_column) if c]
    counts = {"rows": 0, "predicted": 0, "empty": 0, "undecodable": 0}
    # warm once before the workers fork: the tokenizer's dictionary and the fast path's derived
    # matrices (0.3 s of CPU) are then shared with them instead of built again in each
    predict(model, [WARM_UP_TEXT], [None], router)
    tmp = out.with_name(out.name + ".part")
    total = count_rows(inp)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh, _progress_bar(total, progress) as bar, \
                ParallelPredict(predict_lines, model, router, jobs) as run:
            pending: tuple[list[str], list[str] | None, list[int], Any] | None = None
            for chunk in iter_chunks(inp, columns):
                texts = [_as_text(v) for v in chunk[text_column]]
                districts = [(_as_text(v) or None) for v in chunk[district_column]] if district_column else None
                ids = [_as_text(v) for v in chunk[id_column]] if id_column else None
                ok = [i for i, t in enumerate(texts) if t.strip()]
                job = run.submit([texts[i] for i in ok], [districts[i] for i in ok] if districts else None) if ok else []
                if pending is not None:  # the workers are already on this chunk while the last one is written
                    _write_chunk(fh, *pending, run, counts)
                    bar.update(len(pending[0]))
                pending = (texts, ids, ok, job)
            if pending is not None:
                _write_chunk(fh, *pending, run, counts)
                bar.update(len(pending[0]))
        tmp.replace(out)
    except OSError as exc:
        _remove_quietly(tmp)
        raise StorageError(f"cannot write {out}: {exc}") from exc
    except BaseException:
        _remove_quietly(tmp)
        raise
    return counts


class _NoBar:
    """What ``--quiet`` shows: nothing."""

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, n: int) -> None:
        pass


def _progress_bar(total: int | None, progress: bool) -> Any:
    """tqdm's bar on stderr, or (``--quiet``) nothing, without importing tqdm."""
    if not progress:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="rows", file=sys.stderr, mininterval=1.0)


def _write_chunk(fh: Any, texts: list[str], ids: list[str] | None, ok: list[int], job: Any, run: Any,
                 counts: dict[str, int]) -> None:
    """Write one chunk's lines, in input order: its predictions (``job``, waited for here) or its errors."""
    by_row = dict(zip(ok, run.result(job) if ok else []))
    lines = []
    for i in range(len(texts)):
        row_id = ids[i] if ids is not None else None
        if i in by_row:
            counts["predicted"] += 1
            warning = None
            if UNDECODABLE in texts[i]:  # the reader replaced bytes that are not UTF-8
                warning = "text had bytes that are not UTF-8; they were replaced before triage"
                counts["undecodable"] += 1
            lines.append(output_line(by_row[i], row_id, warning))
        else:
            rec: dict[str, Any] = {} if row_id is None else {"id": row_id}
            rec["error"] = "empty complaint text"
            counts["empty"] += 1
            lines.append(orjson.dumps(rec))
    if lines:
        fh.write(b"\n".join(lines) + b"\n")
    counts["rows"] += len(texts)


def _remove_quietly(path: Path) -> None:
    """Remove a partial output; where nothing could be written (e.g. its folder is a file) there is none."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for the next allocations (this process and the workers forked
    from it) instead of giving it back to the system at once: batch prediction makes large numpy arrays of
    about the same sizes chunk after chunk, and memory freshly mapped costs a page fault per page (about
    half of the command's 240,000). False where it cannot (not glibc)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    # arrays up to 32 MB (the largest threshold glibc takes) from the heap, which keeps up to 512 MB it no longer uses
    return bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(mallopt(m_trim_threshold, 512 << 20))


def cmd_predict(args: argparse.Namespace) -> int:
    from triage import registry

    keep_freed_memory()

    model, meta = registry.load(args.model, light=True)  # prediction only: without importing scikit-learn
    router = None
    if not args.no_routing:
        from triage.routing import Router

        router = Router.load()
    counts = predict_file(model, Path(args.input), Path(args.output), args.text_column, args.district_column,
                          args.id_column, router, progress=not args.quiet, jobs=args.jobs)
    print(f"model {meta.get('version')}: {counts['rows']} rows, {counts['predicted']} predicted, "
          f"{counts['empty']} without text, {counts['undecodable']} with bytes that are not UTF-8 (replaced) "
          f"-> {args.output}", file=sys.stderr)
    return 0


def train_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="train.py", description="Train, evaluate and save a triage model.")
    ap.add_argument("--config", default=None, help="dataset TOML config (default configs/traffy.toml "
                    "unless --input is given)")
    ap.add_argument("--data", default="../shared/data", help="folder that relative data paths resolve against")
    ap.add_argument("--out", default="models", help="models folder: writes <version>/ and current")
    cols = ap.add_argument_group("column options (instead of, or overriding, --config)")
    cols.add_argument("--input", help="data file, folder or hub dataset name")
    cols.add_argument("--text-column")
    cols.add_argument("--id-column")
    cols.add_argument("--time-column", help="enables a time-ordered split (with --valid-from/--test-from)")
    cols.add_argument("--district-column")
    cols.add_argument("--topic-column")
    cols.add_argument("--topic-separator", help="separator of a multi-label topic column, e.g. '|'")
    cols.add_argument("--urgency-column")
    cols.add_argument("--valid-from", help="time split: validation from this time (e.g. 2022-10)")
    cols.add_argument("--test-from", help="time split: test from this time (e.g. 2022-11)")
    ap.add_argument("--features", default=None, choices=["word", "char", "both"],
                    help="default: the config's [model] features, else word")
    ap.add_argument("--final-fit", default="all", choices=["all", "train"],
                    help="ship a refit on all labelled rows (default) or the evaluated model itself")
    ap.add_argument("--no-current", action="store_true", help="save the version without pointing current at it")
    corr = ap.add_argument_group("retraining from reviewers' corrections")
    corr.add_argument("--corrections", default=None,
                      help="CSV from `python -m triage export-corrections`, trained on with the base data")
    corr.add_argument("--correction-weight", type=int, default=3, help="how many times a correction counts")
    corr.add_argument("--tolerance", type=float, default=0.0, help="how much lower micro-F1 may be than the "
                      "current model's and still count as not worse (default 0)")
    corr.add_argument("--force-promote", action="store_true", help="make the new model current even when no "
                      "honest comparison is possible (the current model has no record of its training rows)")
    return ap


def dataset_config(args: argparse.Namespace) -> Any:
    """The dataset config from --config and/or the column options (options win)."""
    from triage.data import config_from_dict, read_config_file

    path = args.config or (None if args.input else "configs/traffy.toml")
    raw: dict[str, Any] = read_config_file(path) if path else {}
    for key, opt in (("data", "input"), ("text_column", "text_column"), ("id_column", "id_column"),
                     ("time_column", "time_column"), ("district_column", "district_column")):
        if getattr(args, opt):
            raw[key] = getattr(args, opt)
    heads = raw.setdefault("heads", {})
    if args.topic_column:
        heads["topic"] = {"column": args.topic_column, **({"separator": args.topic_separator}
                                                            if args.topic_separator else {})}
    if args.urgency_column:
        heads["urgency"] = {"column": args.urgency_column}
    if args.valid_from and args.test_from:
        raw["split"] = {"kind": "time", "valid_from": args.valid_from, "test_from": args.test_from}
    elif args.input and not args.config:
        raw.setdefault("split", {"kind": "random"})
    return config_from_dict(raw, args.data, source=path or "command line")


def train_main(argv: Sequence[str] | None = None) -> int:
    from triage.training import TrainOptions, train

    args = train_parser().parse_args(argv)

    def go() -> int:
        from triage.corrections import read_corrections
        from triage.promote import train_and_promote

        config = dataset_config(args)
        options = TrainOptions(features=args.features, final_fit=args.final_fit,
                               corrections=read_corrections(args.corrections) if args.corrections else None,
                               correction_weight=args.correction_weight)
        if args.no_current:
            path, _metrics = train(config, Path(args.out), options, make_current=False)
        else:  # the first model becomes current; a later one only if it is not worse than current
            path, _comparison = train_and_promote(config, Path(args.out), options, args.tolerance,
                                                  force=args.force_promote)
        print(headline(json.loads((path / "metrics.json").read_text(encoding="utf-8"))))
        return 0

    return run(go)


def headline(metrics: dict[str, Any]) -> str:
    """The numbers a person wants at the end of a training run."""
    t = metrics["topic"]["test"]
    lines = [f"model {metrics['version']} ({metrics['train_seconds']} s)",
             f"  topic (held-out test): micro-F1 {t['micro_f1']}  macro-F1 {t['macro_f1']}  "
             f"over {t['labels_scored']} labels, {t['rows']} rows; ECE {metrics['topic']['calibration']['ece']}"]
    if "single_label" in metrics["topic"]:
        s = metrics["topic"]["single_label"]
        lines.append(f"  single-label: accuracy {s.get('accuracy')}  macro-F1 {s.get('macro_f1')}")
    if "urgency" in metrics:
        cv = metrics["urgency"]["cross_validated"]
        lines.append(f"  urgency (nested 5-fold CV, {cv['rows']} tickets): recall(high) {cv['high_recall']}  precision(high) "
                     f"{cv['high_precision']}  flagged high {cv['flagged_high_share']}  macro-F1 {cv['macro_f1']}")
        for key, name in (("cross_validated_random_reweighted", "CV, random stratum reweighted"),
                          ("frozen_test", "frozen test"), ("frozen_test_random_reweighted",
                                                           "frozen test, random stratum reweighted")):
            u = metrics["urgency"].get(key)
            if u:
                lines.append(f"  urgency ({name}, {u['rows']} tickets, {u.get('high_rows', '?')} high): recall(high) "
                             f"{u['high_recall']}  precision(high) {u['high_precision']}  flagged high "
                             f"{u['flagged_high_share']}  macro-F1 {u['macro_f1']}")
    if metrics.get("stage_seconds"):
        cpu = metrics.get("stage_cpu_seconds", {})
        lines.append("  seconds per stage, wall (CPU): " + ", ".join(
            f"{k} {v} ({cpu.get(k, '?')})" for k, v in metrics["stage_seconds"].items()))
    if metrics.get("frozen"):
        f = metrics["frozen"]
        lines.append(f"  shipped model on the frozen slice ({f['rows']} rows it never trained on: {f['describe']}): "
                     f"micro-F1 {f['micro_f1']}  macro-F1 {f['macro_f1']}")
    for key, value in metrics.items():
        if key not in ("topic", "urgency") and isinstance(value, dict) and "summary" in value:
            summary = str(value["summary"]).replace("\n", "\n    ")  # e.g. the agency step's table
            lines.append(f"  {key}: {summary}")
    return "\n".join(lines)


def cmd_export_corrections(argv: list[str]) -> int:
    from triage.corrections import main as export_main

    return export_main(argv)


def build_parser(extra: dict[str, Callable[[argparse._SubParsersAction], None]] | None = None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m triage", description="Thai complaint triage")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("export-corrections", help="write reviewers' corrections as a training file (masked); "
                   "see python -m triage export-corrections --help")
    sub.add_parser("escalate-overdue", help="one pass of the deadline check (escalate overdue cases) for a scheduler")
    p = sub.add_parser("predict", help="triage every row of a CSV/Parquet/JSONL file into JSONL")
    p.add_argument("--model", default="models/current", help="model version folder or models/current")
    p.add_argument("--input", required=True, help="CSV, TSV, Parquet or JSONL file")
    p.add_argument("--text-column", default="comment")
    p.add_argument("--district-column", default=None, help="column with the district (เขต), used for routing")
    p.add_argument("--id-column", default=None, help="copied into each output object as 'id'")
    p.add_argument("--output", required=True, help="JSONL file, one object per input row, in input order")
    p.add_argument("--no-routing", action="store_true", help="leave out agencies")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: one per core)")
    p.set_defaults(func=cmd_predict)
    for register in (extra or {}).values():
        register(sub)
    return ap


def run(func: Callable[[], int]) -> int:
    """Run a command, turning the package's errors into a one-line message and an exit code."""
    try:
        return func()
    except TriageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def cmd_escalate_overdue(argv: list[str]) -> int:
    """One pass of the deadline check for an outside scheduler (cron, a systemd timer)."""
    ap = argparse.ArgumentParser(prog="python -m triage escalate-overdue",
                                 description="Escalate every open case past its deadline one level up (settings: "
                                 "TRIAGE_* variables, as for the service); with TRIAGE_WEBHOOK_URL, then deliver "
                                 "the outbox once.")
    ap.add_argument("--no-deliver", action="store_true", help="leave webhook delivery to the running service")
    args = ap.parse_args(argv)

    def go() -> int:
        from pydantic import ValidationError

        from triage.config import Settings
        from triage.database import open_store
        from triage.errors import ConfigError
        from triage.outbox import Deliverer
        from triage.routing import Directory
        from triage.sla import escalate_overdue

        try:
            settings = Settings()
        except ValidationError as exc:
            raise ConfigError(f"bad settings: {exc}") from exc
        store = open_store(settings.database, settings.sla, webhooks=bool(settings.webhook_url))
        try:
            moved = escalate_overdue(store, Directory.load(), settings.escalation_agency)
            for m in moved:
                print(f"case {m['case_id']}: {m['from']} -> {m['to']}")
            print(f"escalated {len(moved)} overdue case(s)", file=sys.stderr)
            if settings.webhook_url and not args.no_deliver:
                sent = Deliverer(store, settings.webhook_url, settings.webhook_secret,
                                 settings.webhook_timeout).deliver_due()
                print(f"delivered {sent} webhook event(s)", file=sys.stderr)
        finally:
            store.close()
        return 0

    return run(go)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["export-corrections"]:  # its own parser lives with the store code
        return cmd_export_corrections(argv[1:])
    if argv[:1] == ["escalate-overdue"]:
        return cmd_escalate_overdue(argv[1:])
    args = build_parser().parse_args(argv)
    return run(lambda: args.func(args))
