"""The exploration notebook runs top to bottom on a small slice, so it cannot rot."""

import os

import nbformat
from nbclient import NotebookClient

from triage.testing import REPO


def test_notebook_executes_on_a_slice(traffy_slice, small_model_dir, monkeypatch):
    monkeypatch.setenv("TRIAGE_SHARED_DATA", str(traffy_slice))
    monkeypatch.setenv("TRIAGE_MODEL", str(small_model_dir / "current"))
    nb = nbformat.read(REPO / "notebooks" / "explore.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO)}},
                   env=dict(os.environ)).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("tickets with at least one wrong or missing label" in o.get("text", "") for o in outputs)
