"""Train the triage model: python train.py --config configs/traffy.toml --data ../shared/data --out models

With --corrections FILE (from `python -m triage export-corrections`) reviewers' corrections join the base
data and outweigh the original labels of the same case. When a current model exists, the new one is
compared with it on the same held-out set and promoted only if it is not worse (both are printed).
"""
import argparse
import sys
from pathlib import Path

from triage.corrections import read_corrections
from triage.data import load_config
from triage.errors import TriageError
from triage.promote import train_and_promote
from triage.training import TrainOptions

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/traffy.toml")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--out", default="models")
    ap.add_argument("--features", default="word", choices=["word", "char", "both"])
    ap.add_argument("--final-fit", default="all", choices=["all", "train"])
    ap.add_argument("--corrections", default=None, help="exported corrections CSV to train on with the base data")
    ap.add_argument("--correction-weight", type=int, default=3, help="how many times a correction counts")
    ap.add_argument("--tolerance", type=float, default=0.0,
                    help="how much lower micro-F1 may be and still count as not worse (default 0)")
    a = ap.parse_args()
    try:
        corrections = read_corrections(a.corrections) if a.corrections else None
        options = TrainOptions(features=a.features, final_fit=a.final_fit, corrections=corrections,
                               correction_weight=a.correction_weight)
        train_and_promote(load_config(a.config, a.data), Path(a.out), options, a.tolerance)
    except TriageError as exc:
        sys.exit(f"train.py: {exc}")
