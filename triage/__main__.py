"""``python -m triage``: see ``triage.cli``."""

import sys

from triage.cli import main

sys.exit(main())
