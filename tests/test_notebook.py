"""The README's examples in a Jupyter notebook, run headless: tables print and plots show inline."""

import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebook test needs pip install -e '.[test]'")
nbclient = pytest.importorskip("nbclient", reason="the notebook test needs pip install -e '.[test]'")
pytest.importorskip("ipykernel", reason="the notebook test needs pip install -e '.[test]'")

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_quickstart_runs_in_a_notebook_and_its_plots_show_inline(tmp_path, monkeypatch):
    quickstart = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)[0]
    cells = [quickstart,
             "from groundup import Recorder\nrec = Recorder()\nlearn.fit(1, cbs=rec)\nrec.plot_loss()",
             "rec.plot_lr()"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1] / "src"))
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    table = "".join(o.get("text", "") for o in nb.cells[0].outputs if o.output_type == "stream")
    assert re.search(r"epoch\s+train_loss", table) and len(table.splitlines()) >= 4
    for cell in nb.cells[1:]:
        images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert len(images) == 1, cell.outputs  # the figure, shown once, inline
    assert list(tmp_path.iterdir()) == []  # and no file written
