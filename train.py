"""Train the triage model: python train.py --config configs/traffy.toml --data ../shared/data --out models"""
import argparse
from pathlib import Path

from triage.data import load_config
from triage.training import TrainOptions, train

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="configs/traffy.toml")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--out", default="models")
    ap.add_argument("--features", default="word", choices=["word", "char", "both"])
    ap.add_argument("--final-fit", default="all", choices=["all", "train"])
    a = ap.parse_args()
    train(load_config(a.config, a.data), Path(a.out), TrainOptions(features=a.features, final_fit=a.final_fit))
