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


def run_notebook(cells: list[str], folder: Path, monkeypatch):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1] / "src"))
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(folder)}}).execute()
    return nb.cells


def shown(cell, mime: str) -> list:
    return [o for o in cell.outputs if mime in o.get("data", {})]


def streamed(cell, name: str = "stdout") -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream" and o.name == name)


def test_the_readme_notebook_section_runs_with_a_bar_metric_columns_and_inline_plots(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    images = next(b for b in blocks if 'untar_data("imagenette-mini")' in b).replace("learn.fit(8", "learn.fit(1")
    section = next(b for b in blocks if "metrics=[accuracy, error_rate]" in b)
    cells = section.strip().split("\n\n")  # the README's cells: the blocks between blank lines
    assert [c.splitlines()[-1].split("  #")[0].strip() for c in cells[2:6]] == [
        "learn.lr_find()", "learn.fit_one_cycle(1, 0.1)", "rec.plot_loss()", "learn.show_results(9)"]
    out = run_notebook([images, *cells], tmp_path, monkeypatch)[1:]
    lr_find, fit, loss, results, predict = out[2:]
    assert len(shown(lr_find, "image/png")) == 1  # the plot, inline,
    assert any("LRSuggestion(lr=" in o["data"].get("text/plain", "") for o in lr_find.outputs)  # then the suggestion
    table = streamed(fit).splitlines()
    assert table[0].split() == ["epoch", "train_loss", "valid_loss", "accuracy", "error_rate", "seconds"]
    acc, err = map(float, table[1].split()[3:5])
    assert acc + err == pytest.approx(1.0, abs=2e-4)  # error_rate is 1 - accuracy, each to 4 places
    try:
        import ipywidgets  # noqa: F401
        assert shown(fit, "application/vnd.jupyter.widget-view+json"), fit.outputs  # a notebook bar
    except ImportError:  # without ipywidgets, tqdm.auto falls back to text: a plain line per epoch
        assert "epoch 0 done" in streamed(fit, "stderr")
    for cell in (loss, results):
        assert len(shown(cell, "image/png")) == 1, cell.outputs  # the figure, shown once, inline
    n_files = len(list((Path(__file__).resolve().parents[1] / "src/groundup/datasets/imagenette-mini/val/n01440764")
                       .iterdir()))
    assert streamed(predict).split()[0] == str(n_files)  # one prediction per image of the folder
    assert list(tmp_path.iterdir()) == []  # and no file written
