"""The report as a browser shows it: scripts/check_report.py in headless Chromium (skipped without it)."""

import importlib.util
from pathlib import Path

import pytest

from groundup.cli import main

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_report.py"
spec = importlib.util.spec_from_file_location("check_report", SCRIPT)
check_report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_report)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(check_report.find_chromium() is None,
                                                   reason="needs Chromium (apt-get install chromium)")]


def test_chromium_shows_every_section_of_a_training_report_and_an_evaluation(image_folder, tmp_path,
                                                                            capsys):
    run, evaluation = tmp_path / "run", tmp_path / "eval"
    assert main(["train", "--data", str(image_folder), "--size", "16", "--bs", "4", "--num-workers", "0",
                 "--epochs", "2", "--quiet", "--out", str(run)]) == 0
    assert main(["evaluate", str(run / "model.pt"), "--data", str(image_folder),
                 "--out", str(evaluation)]) == 0
    shown = check_report.inspect_report(run / "report.html")
    failed = [name for name, ok in check_report.check(shown) if not ok]
    assert failed == []
    assert len(shown["images"]) == 4 and shown["per_class_rows"] == 3
    assert check_report.main([str(evaluation / "report.html"), "--evaluation"]) == 0
    assert "FAIL" not in capsys.readouterr().out


def test_the_check_fails_a_page_without_the_sections(tmp_path):
    page = tmp_path / "report.html"
    page.write_text("<!DOCTYPE html><html><body><h1>a run</h1><h2 id=\"plots\">Plots</h2>"
                    "<img alt=\"broken\" src=\"data:image/png;base64,AAAA\"></body></html>")
    results = dict(check_report.check(check_report.inspect_report(page)))
    assert not results["section #run is shown"] and results["section #plots is shown"]
    assert not results["1 images, each decoded with a size"]  # a broken PNG shows as 0 x 0
