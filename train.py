"""Train the triage model and save a version under --out (default models/).

    python train.py --config configs/traffy.toml --data ../shared/data --out models
    python train.py --input complaints.csv --text-column comment --topic-column labels --topic-separator "|"
"""

import sys

from triage.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
