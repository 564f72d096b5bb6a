"""Measure agency routing (issue 14 §6) without retraining the topic and urgency heads.

    .venv/bin/python bench/agency.py --model /tmp/models-routing/current --data ../shared/data

Loads a trained model (for its topic predictions, which feed the routing table), the dataset and
the forwards, and runs exactly the agency step of training (``triage.agency.train_agency``):
calibration fitted on validation, numbers on the time-ordered held-out part. Prints, on the later
forwards plus ordinary tickets: first agency right by kind, right kind among the first three
suggestions, ordinary tickets kept at the district office, accuracy on mixes at 2/5/8% forward
rates next to "always the district office", agreement with the organisations really assigned in
the later month (``[agency] assigned``), the share sent to review, and the replay of reviewers'
corrections. Use it after editing ``triage/resources/routing.toml``, ``agencies.toml`` or
``places.toml``.
"""

import argparse
import json
import tomllib
from pathlib import Path

from triage import registry
from triage.agency import train_agency
from triage.data import load_config, load_dataset
from triage.text import normalize_many

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models/current", type=Path)
    ap.add_argument("--config", default="configs/traffy.toml")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--json", type=Path, help="also write the agency metrics here")
    ap.add_argument("--forward-rate", type=float, help="override [agency] forward_rate (the prior of the calibration)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override an [agency] setting (a TOML value), e.g. --set assigned_weight=3 --set replay=false")
    ap.add_argument("--directory-from-train", action="store_true",
                    help="build the directory from the forwards before the held-out part only (honest 'exact' numbers: "
                         "the shipped directory's stations and branches were read from all forwards)")
    ap.add_argument("--validation-only", action="store_true",
                    help="stop after the validation numbers (what settings are chosen on); the held-out and frozen parts are not looked at")
    a = ap.parse_args()
    model, _meta = registry.load(a.model)
    config = load_config(a.config, a.data)
    if a.forward_rate is not None:
        config.agency = dict(config.agency, forward_rate=a.forward_rate)
    for item in a.set:
        key, _, value = item.partition("=")
        config.agency = dict(config.agency, **tomllib.loads(f"{key.strip()} = {value.strip()}"))
    if a.validation_only:
        config.agency = dict(config.agency, validation_only=True)
    frame, _report = load_dataset(config)
    frame["norm"] = normalize_many(frame["text"].tolist())
    router = None
    if a.directory_from_train:
        import tempfile

        import pandas as pd

        from triage.agency import AgencySettings
        from triage.routing import Router
        from triage.tools.build_directory import (
            HEADER,
            build_directory,
            kind_of,
            to_toml,
        )

        st = AgencySettings.from_dict(dict(config.agency))
        fw = pd.read_csv(Path(a.data) / st.forwards).sort_values("timestamp", kind="stable")
        fw = fw[fw["comment"].map(lambda t: isinstance(t, str) and t.strip() != "")]
        earlier = fw.iloc[: round(len(fw) * (1 - st.holdout))]
        tickets = pd.concat([pd.read_parquet(p, columns=["district", "province", "note"])
                             for p in sorted((Path(a.data) / "traffy").glob("*.parquet"))])
        directory = build_directory(earlier, tickets)
        for name in fw["forwarded_to"].astype(str).str.strip().unique():  # names only, no coverage from later forwards
            if name not in directory["agencies"] and f"สำนักงาน{name}" not in directory["agencies"]:
                directory["agencies"][name] = {"kind": kind_of(name)[0]}
        tmp = Path(tempfile.mkdtemp()) / "agencies.toml"
        tmp.write_text(to_toml(directory, HEADER), encoding="utf-8")
        router = Router.load(tmp)
        print(f"directory built from the {len(earlier)} forwards before the held-out part")
    _agency, metrics = train_agency(model, frame, config, None, 3, print, router=router)
    if a.validation_only:
        print(json.dumps(metrics["validation"], ensure_ascii=False, indent=1, default=str))
        if a.json:
            a.json.write_text(json.dumps(metrics, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
        raise SystemExit(0)
    print()
    for name in ("router", "table_only"):
        print(f"\n{name}: review share forwards {metrics[name]['forwarded_review']}, ordinary {metrics[name]['ordinary_review']}")
        for kind, row in metrics[name]["per_kind"].items():
            print(f"  {kind:18} n={row['n']:4} recall={row['recall']:.2f} predicted={row['predicted']}")
    if a.json:
        a.json.write_text(json.dumps(metrics, ensure_ascii=False, indent=2), encoding="utf-8")
