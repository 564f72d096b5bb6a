"""Versioned model artifacts on disk: ``models/<version>/`` and the ``models/current`` pointer.

A version folder holds ``model.joblib``, ``metadata.json`` (library versions, label sets,
dataset fingerprint, config, metrics, created time, the model file's SHA-256) and the
evaluation report, and, since issue 9, ``model.pkl``: the same model as a plain pickle (its own
SHA-256 and the ``model.joblib`` checksum it was made from are in ``metadata.json`` under
``fast_copy``). joblib unpickles in pure Python, 3-5 s for the full Traffy model here; the plain
pickle loads in C in about a fifth of that. ``load`` still checks ``model.joblib`` and uses the
fast copy only when both checksums match and it was made from that very file; otherwise it reads
``model.joblib`` as before. ``add_fast_copy`` writes one for a version saved without it. Saving writes into a temporary folder and renames it into place, then
swaps ``current`` (a symlink) with an atomic rename, so a crash never leaves a broken
``current``. Loading checks the checksum and the metadata before unpickling, because a
joblib file runs code when loaded: only artifacts this project wrote are accepted.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import platform
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from triage.errors import ModelError

ARTIFACT_FORMAT = 1
MODEL_FILE = "model.joblib"
FAST_FILE = "model.pkl"
METADATA_FILE = "metadata.json"
_TRACKED = ("scikit-learn", "numpy", "scipy", "pythainlp", "nlpo3", "joblib")


def library_versions() -> dict[str, str]:
    """Versions of the libraries a pickled model depends on."""
    versions = {"python": platform.python_version()}
    for name in _TRACKED:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def new_version(name: str) -> str:
    """A sortable version id: ``<dataset>-<UTC time>``, e.g. ``traffy-20261125T211500Z``."""
    return f"{name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save(model: Any, meta: dict[str, Any], models_dir: Path, version: str, extra_files: dict[str, bytes] | None = None,
         make_current: bool = True) -> Path:
    """Write a version folder atomically and (optionally) point ``current`` at it."""
    models_dir.mkdir(parents=True, exist_ok=True)
    final = models_dir / version
    if final.exists():
        raise ModelError(f"model version {version} already exists in {models_dir}")
    import joblib

    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=models_dir))
    try:
        joblib.dump(model, tmp / MODEL_FILE, compress=3)
        meta = dict(meta)
        meta.update(
            format=ARTIFACT_FORMAT,
            version=version,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            libraries=library_versions(),
            model_sha256=_sha256(tmp / MODEL_FILE),
        )
        meta["fast_copy"] = _write_fast_copy(model, tmp, meta["model_sha256"])
        (tmp / METADATA_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
        for name, content in (extra_files or {}).items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(content)
        for f in tmp.rglob("*"):
            if f.is_file():
                with f.open("rb") as fh:
                    os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if make_current:
        set_current(models_dir, version)
    return final


def _write_fast_copy(model: Any, folder: Path, made_from: str) -> dict[str, str]:
    """Write ``model.pkl`` (a plain pickle, loaded in C) into ``folder``; its ``fast_copy`` metadata."""
    path = folder / FAST_FILE
    with path.open("wb") as fh:
        pickle.dump(model, fh, protocol=pickle.HIGHEST_PROTOCOL)
        fh.flush()
        os.fsync(fh.fileno())
    return {"file": FAST_FILE, "sha256": _sha256(path), "made_from": made_from}


def add_fast_copy(path: str | Path) -> Path:
    """Give a version saved without one its ``model.pkl`` (checked like ``load``); returns the file.

    The pickle is written under a temporary name and renamed, then ``metadata.json`` is replaced
    by one rename, so a reader sees either the old metadata or the new one with a complete file.
    """
    folder = resolve(path)
    model, meta = load(folder)
    tmp = Path(tempfile.mkdtemp(prefix=".fast.", dir=folder))
    try:
        meta["fast_copy"] = _write_fast_copy(model, tmp, meta["model_sha256"])
        os.replace(tmp / FAST_FILE, folder / FAST_FILE)
        (tmp / METADATA_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
        os.replace(tmp / METADATA_FILE, folder / METADATA_FILE)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder / FAST_FILE


def set_current(models_dir: Path, version: str) -> None:
    """Point ``models_dir/current`` at ``version`` with an atomic symlink swap."""
    if not (models_dir / version / METADATA_FILE).exists():
        raise ModelError(f"no model version {version} in {models_dir}")
    link = models_dir / "current"
    tmp = models_dir / f".current.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(version, tmp)
    os.replace(tmp, link)


def resolve(path: str | Path) -> Path:
    """The version folder behind a path (``models/current`` or ``models/<version>``)."""
    p = Path(path)
    if not p.exists():
        raise ModelError(
            f"no model at {p}. Train one with: python train.py --config configs/traffy.toml --data ../shared/data"
        )
    return p.resolve()


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Read and check a version folder's metadata.json."""
    folder = resolve(path)
    try:
        meta: dict[str, Any] = json.loads((folder / METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"model at {folder} has no readable {METADATA_FILE}: {exc}") from exc
    if meta.get("format") != ARTIFACT_FORMAT:
        raise ModelError(f"model at {folder} has artifact format {meta.get('format')!r}; this code reads {ARTIFACT_FORMAT}")
    return meta


def _fast_copy(folder: Path, meta: dict[str, Any]) -> Path | None:
    """``model.pkl`` when metadata names it, it was made from the checked ``model.joblib`` and its
    checksum matches; else None (then ``model.joblib`` is read)."""
    fast = meta.get("fast_copy")
    if not isinstance(fast, dict) or fast.get("file") != FAST_FILE or fast.get("made_from") != meta.get("model_sha256"):
        return None
    path = folder / FAST_FILE
    if not path.is_file() or _sha256(path) != fast.get("sha256"):
        return None
    return path


def load(path: str | Path, light: bool = False) -> tuple[Any, dict[str, Any]]:
    """Load a model and its metadata, refusing a corrupt or mismatched artifact.

    ``light``: for prediction only (the batch CLI), the fast copy is unpickled with stand-ins for
    scikit-learn's classes (``triage.lightload``: scikit-learn is imported only if something needs it).
    """
    folder = resolve(path)
    meta = read_metadata(folder)
    model_file = folder / MODEL_FILE
    if not model_file.exists():
        raise ModelError(f"model file {model_file} is missing or corrupt (checksum differs from {METADATA_FILE})")
    # model.joblib's checksum is computed on another thread (hashlib lets go of the GIL) while the fast
    # copy's is checked and the fast copy unpickled; the model is given out only if it matched, and
    # model.joblib itself is unpickled only after it matched
    with ThreadPoolExecutor(1) as pool:
        joblib_sum = pool.submit(_sha256, model_file)
        model = _load_checked(folder, meta, model_file, light, lambda: joblib_sum.result() == meta.get("model_sha256"))
    if getattr(model, "version", None) != meta.get("version"):
        raise ModelError(f"model file {model_file} does not match its metadata version {meta.get('version')!r}")
    return model, meta


def _load_checked(folder: Path, meta: dict[str, Any], model_file: Path, light: bool, joblib_ok: Any) -> Any:
    """``load``'s checks and unpickling, with ``joblib_ok()`` telling whether model.joblib's checksum matched
    (the errors in the order of the checks: the checksum, the scikit-learn version, unpickling)."""
    corrupt = ModelError(f"model file {model_file} is missing or corrupt (checksum differs from {METADATA_FILE})")
    saved = meta.get("libraries", {}).get("scikit-learn")
    try:
        here = importlib_metadata.version("scikit-learn")
    except importlib_metadata.PackageNotFoundError:
        here = "absent"
    if saved and saved.split(".")[:2] != here.split(".")[:2]:
        if not joblib_ok():
            raise corrupt
        raise ModelError(f"model was saved with scikit-learn {saved}, this is {here}: retrain it with train.py")
    fast = _fast_copy(folder, meta)
    if fast is None and not joblib_ok():
        raise corrupt
    try:
        if fast is not None:
            with fast.open("rb") as fh:
                if light:
                    from triage import lightload

                    model = lightload.load(fh)
                else:
                    model = pickle.load(fh)
        else:
            import joblib

            model = joblib.load(model_file)
    except Exception as exc:  # unpickling errors come in many types
        if not joblib_ok():
            raise corrupt from exc
        raise ModelError(f"model file {model_file} cannot be loaded: {type(exc).__name__}: {exc}") from exc
    if not joblib_ok():
        raise corrupt
    return model
