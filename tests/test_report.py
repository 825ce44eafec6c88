import base64
import csv
import json
import re

import pytest
from conftest import Points, groundup_mlp

from groundup.callbacks.schedules import OneCycle
from groundup.callbacks.tracking import COLUMNS, TrackResults
from groundup.learner import Learner
from groundup.losses import cross_entropy
from groundup.run.report import (
    METRICS_COLUMNS,
    render_report,
    run_facts,
    write_metrics_csv,
    write_per_class_csv,
    write_report,
    write_summary,
)
from groundup.utils.plots import png_axes

HISTORY = [
    {"epoch": 0, "train_loss": 2.1, "train_acc": 0.2, "valid_loss": 2.0, "valid_acc": 0.25, "seconds": 1.5},
    {"epoch": 1, "train_loss": 1.7, "train_acc": 0.4, "valid_loss": 1.8, "valid_acc": 0.375, "seconds": 1.25},
]
SUMMARY = {"final": HISTORY[-1], "wall_seconds": 3.2,
           "config": {"arch": "simple_cnn", "epochs": 2, "lr": 0.01, "schedule": "one-cycle", "data": None},
           "vocab": ["cat", "<script>alert(1)</script>"], "data_path": "/data/x",
           "versions": {"torch": "2.13.0", "groundup": "0.1.0"}}


@pytest.fixture
def plot(tmp_path):
    with png_axes(tmp_path / "loss.png") as ax:
        ax.plot([3, 2, 1])
    return tmp_path / "loss.png"


def test_report_is_one_self_contained_page(tmp_path, plot):
    path = write_report(SUMMARY, HISTORY, {"Training loss": plot}, tmp_path / "report.html")
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
    assert list(read[0]) == list(METRICS_COLUMNS) == [*COLUMNS, "lr", "data_seconds"]
    assert [r["epoch"] for r in read] == ["0", "1", "2"]
    assert float(read[2]["train_loss"]) == 1 / 3 and read[2]["valid_loss"] == ""


def test_summary_is_json_and_writes_leave_no_temporary_files(tmp_path):
    write_summary(SUMMARY, tmp_path / "summary.json")
    assert json.loads((tmp_path / "summary.json").read_text())["final"]["valid_acc"] == 0.375
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_the_lr_column_is_the_lr_at_the_end_of_each_epoch(tmp_path):
    schedule = OneCycle(0.5)
    learn = Learner(groundup_mlp(), Points(), cross_entropy, cbs=[TrackResults(print_table=False)])
    learn.fit(3, cbs=[schedule])
    rows = list(csv.DictReader(write_metrics_csv(learn.history, tmp_path / "m.csv").open()))
    n_iter = len(Points().train)
    assert [float(r["lr"]) for r in rows] == [schedule.lrs[(k + 1) * n_iter - 1] for k in range(3)]


def test_per_class_csv_has_a_row_per_class_and_leaves_undefined_scores_empty(tmp_path):
    rows = [{"label": "n01", "name": "tench", "support": 3, "accuracy": 2 / 3, "precision": 1.0,
             "recall": 2 / 3, "f1": 0.8},
            {"label": "n02", "name": "dog", "support": 0, "accuracy": None, "precision": None, "recall": None,
             "f1": None}]
    read = list(csv.DictReader(write_per_class_csv(rows, tmp_path / "per_class.csv").open()))
    assert list(read[0]) == ["label", "name", "support", "accuracy", "precision", "recall", "f1"]
    assert read[0]["name"] == "tench" and float(read[0]["accuracy"]) == 2 / 3 and read[1]["precision"] == ""


FACTS = {**SUMMARY, "command": "groundup train --epochs 2", "started": "2024-05-01T09:30:00",
         "n_params": 97827,
         "machine": {"device": "cpu", "cpu": "AMD EPYC 7763", "cpu_cores": 64, "cpu_cores_usable": 2,
                     "gpu": None},
         "world_size": 2, "global_batch": 128, "lr_finder": {"method": "valley"},
         "epoch_seconds": [1.5, 1.25], "best": HISTORY[1], "best_by": "valid_loss",
         "best_rule": "best.pt holds the epoch with the lowest valid_loss",
         "settings": {"data": "imagenette-mini, shipped with groundup", "num_workers": "2, one per core",
                      "amp": "False (default)", "resume": None},
         "per_class": [{"label": "n01", "name": "tench", "support": 3, "accuracy": 0.5, "precision": None,
                        "recall": 0.5, "f1": None}],
         "most_confused": [["tench", "golf ball", 2]]}


def test_the_header_names_the_run_its_machine_and_its_best_epoch():
    facts = run_facts(FACTS)
    assert facts["command"] == "groundup train --epochs 2"
    assert facts["device"] == "cpu; CPU: AMD EPYC 7763 (2 of 64 cores usable)"
    assert facts["parameters"] == "97,827"
    assert facts["world size"] == "2: 2 processes (torchrun); global batch 128"
    assert run_facts({**FACTS, "config": {**FACTS["config"], "lr": 0.00316}})["lr finder"] == \
        "suggested lr 0.00316 (valley), used for training"
    rise = {"method": "rise", "how": "rise; below the cap 0.01"}
    assert run_facts({**FACTS, "config": {**FACTS["config"], "lr": 0.002}, "lr_finder": rise})["lr finder"] == \
        "suggested lr 0.002 (rise; below the cap 0.01), used for training"
    assert facts["wall time"].startswith("3.2 s in all; per epoch 1.4 s on average (min 1.2, max 1.5")
    assert facts["best epoch"] == "1 (valid_loss 1.8000); best.pt holds the epoch with the lowest valid_loss"
    assert run_facts({**FACTS, "lr_finder": None})["lr finder"] == "not run (--lr 0.01 given)"


def test_the_page_has_every_section_and_never_a_blank_setting(plot):
    page = render_report(FACTS, HISTORY, {"Training": plot})
    for section in ("run", "metrics", "per-class", "plots", "settings", "versions"):
        assert f'<h2 id="{section}">' in page
    assert "simple_cnn · 2 epochs · lr 0.01 · one-cycle" in page  # the subtitle, from the config
    assert "<td>tench</td><td>n01</td><td>3</td><td>0.5000</td><td>–</td>" in page
    assert "tench → golf ball: 2" in page and "<th>lr</th>" in page
    assert "imagenette-mini, shipped with groundup" in page
    assert not re.search(r'<td class="v"></td>', page)  # a setting left at None reads "none"
    assert '<td class="k">resume</td><td class="v">none</td>' in page


def test_metrics_csv_and_the_report_show_the_learners_metrics(tmp_path):
    history = [{"epoch": 0, "train_loss": 0.9, "valid_loss": 0.8, "accuracy": 0.61, "error_rate": 0.39,
                "seconds": 1.0, "lr": 0.1, "data_seconds": 0.2}]
    write_metrics_csv(history, tmp_path / "metrics.csv")
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0] == "epoch,train_loss,valid_loss,accuracy,error_rate,seconds,lr,data_seconds"
    assert lines[1] == "0,0.9,0.8,0.61,0.39,1.0,0.1,0.2"
    page = render_report({"name": "a"}, history, {})
    assert "<th>accuracy</th><th>error_rate</th>" in page and "<td>0.3900</td>" in page
