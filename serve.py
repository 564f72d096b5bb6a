"""The HTTP service is not built yet (issue 3); this placeholder says so."""
import sys

if __name__ == "__main__":
    sys.exit("serve.py: the triage service is not implemented yet (see issue 3); train with `make train`.")
