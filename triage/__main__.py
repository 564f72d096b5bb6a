"""``python -m triage``: see ``triage.cli``."""

import logging
import os
import sys

from triage.cli import main

code = main()
if sys.argv[1:2] == ["predict"]:
    # Batch prediction is finished: its output is written and renamed into place, its worker processes are
    # joined. Leave without the interpreter's teardown, which frees the loaded model object by object
    # (0.15-0.25 s of the command's wall clock); what teardown would still do that matters is done here.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
