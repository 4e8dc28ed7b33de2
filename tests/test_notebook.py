"""The Colab notebook executes top to bottom (quick mode, CPU, tiny preset)."""

from __future__ import annotations

import os

import pytest

from tests.conftest import ROOT

NOTEBOOK = ROOT / "notebooks" / "sjjax_colab_tpu.ipynb"


def test_notebook_is_committed_without_outputs():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None


def test_notebook_executes(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("SJJAX_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("SJJAX_NOTEBOOK_ROOT", str(tmp_path / "runs"))
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=1500, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    report = tmp_path / "runs" / "report" / "report.md"
    assert report.exists()
    text = report.read_text()
    assert "oracle accuracy" in text and "Tournament N-sweep" in text
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.get("output_type") == "display_data" and "image/png" in o.get("data", {})]
    assert images, "the report plots were not displayed"
