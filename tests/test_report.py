import base64
import csv
import json
import re

import pytest

from groundup.callbacks.tracking import COLUMNS
from groundup.plots import png_axes
from groundup.report import render_report, write_metrics_csv, write_report, write_summary

HISTORY = [
    {"epoch": 0, "train_loss": 2.1, "train_acc": 0.2, "valid_loss": 2.0, "valid_acc": 0.25, "seconds": 1.5},
    {"epoch": 1, "train_loss": 1.7, "train_acc": 0.4, "valid_loss": 1.8, "valid_acc": 0.375, "seconds": 1.25},
]
SUMMARY = {"final": HISTORY[-1], "wall_seconds": 3.2, "arch": "simple_cnn", "epochs": 2, "lr": 0.01,
           "schedule": "one-cycle", "config": {"arch": "simple_cnn", "lr": 0.01, "data": None},
           "vocab": ["cat", "<script>alert(1)</script>"], "data_path": "/data/x",
           "versions": {"torch": "2.13.0", "groundup": "0.1.0"}}


@pytest.fixture
def plot(tmp_path):
    with png_axes(tmp_path / "loss.png") as ax:
        ax.plot([3, 2, 1])
    return tmp_path / "loss.png"


def test_report_is_one_self_contained_page(tmp_path, plot):
    path = write_report(tmp_path / "report.html", SUMMARY, HISTORY, {"Training loss": plot})
    page = path.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)  # nothing from the network
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<(script|link|iframe)\b", page, re.IGNORECASE)
    sources = re.findall(r'<img[^>]*src="([^"]+)"', page)
    assert len(sources) == 1 and sources[0].startswith("data:image/png;base64,")
    assert base64.b64decode(sources[0].split(",", 1)[1]) == plot.read_bytes()


def test_report_shows_the_table_and_the_settings(plot):
    page = render_report(SUMMARY, HISTORY, {"Training loss": plot})
    for column in COLUMNS:
        assert f"<th>{column}</th>" in page
    assert "0.3750" in page and "1.8000" in page  # the last row
    assert "simple_cnn" in page and "/data/x" in page and "2.13.0" in page
    assert "&lt;script&gt;" in page  # labels are escaped, never markup


def test_report_leaves_out_missing_plots(tmp_path):
    page = render_report(SUMMARY, HISTORY, {"Nope": tmp_path / "missing.png"})
    assert "<img" not in page and "No plots." in page


def test_metrics_csv_has_one_row_per_epoch_with_full_precision(tmp_path):
    rows = [*HISTORY, {"epoch": 2, "train_loss": 1 / 3, "seconds": 1.0}]  # no validation pass
    path = write_metrics_csv(rows, tmp_path / "metrics.csv")
    read = list(csv.DictReader(path.open()))
    assert list(read[0]) == list(COLUMNS)
    assert [r["epoch"] for r in read] == ["0", "1", "2"]
    assert float(read[2]["train_loss"]) == 1 / 3 and read[2]["valid_loss"] == ""


def test_summary_is_json_and_writes_leave_no_temporary_files(tmp_path):
    write_summary(SUMMARY, tmp_path / "summary.json")
    assert json.loads((tmp_path / "summary.json").read_text())["final"]["valid_acc"] == 0.375
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
