"""groundup's messages are log records of the "groundup" logger; the command line shows them (setup_logging)."""

import logging

import pytest

from groundup.cli import main
from groundup.run.config import TrainConfig
from groundup.utils.logs import setup_logging
from groundup.run.train import train


@pytest.fixture(autouse=True)
def restore_the_groundup_logger():
    logger = logging.getLogger("groundup")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:], logger.level = handlers, level


def test_setup_logging_prints_info_on_stdout_warnings_on_stderr_debug_with_v(capsys):
    log = logging.getLogger("groundup.somewhere")
    setup_logging()
    setup_logging()  # twice: still one handler
    log.debug("hidden")
    log.info("shown")
    log.warning("careful")
    assert capsys.readouterr() == ("shown\n", "groundup: warning: careful\n")
    setup_logging(verbosity=1)
    log.debug("details")
    assert capsys.readouterr().out == "details\n"
    setup_logging(quiet=True)
    log.info("quiet now")
    log.warning("but not this")
    assert capsys.readouterr() == ("", "groundup: warning: but not this\n")


def test_an_application_gets_a_runs_messages_as_records(image_folder, tmp_path, caplog, capsys):
    caplog.set_level(logging.DEBUG, logger="groundup")
    cfg = TrainConfig(data=str(image_folder), size=16, bs=4, num_workers=0, epochs=2, patience=1, lr=1e-30,
                      schedule="constant")
    train(cfg, out=str(tmp_path / "run"), quiet=True)
    by_logger = {}
    for r in caplog.records:
        by_logger.setdefault(r.name, []).append((r.levelname, r.getMessage()))
    assert any(m.startswith("training simple_cnn on") for _, m in by_logger["groundup.run"])
    assert ("DEBUG", f"saved {tmp_path / 'run' / 'model.pt'} (epoch 0)") in by_logger["groundup.callbacks.checkpoint"]
    assert by_logger["groundup.callbacks.early_stopping"][0][1].startswith(
        "early stopping after epoch 1: valid_loss has not improved for 1 epochs")
    assert capsys.readouterr() == ("", "")  # no handler of its own: nothing printed


def test_the_command_line_shows_debug_messages_with_v(image_folder, tmp_path, capsys):
    args = ["train", "--data", str(image_folder), "--size", "16", "-b", "4", "-j", "0", "-e", "1"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert "training simple_cnn on" in out and "saved" not in out
    assert main([*args, "--out", str(tmp_path / "b"), "-v", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"saved {tmp_path / 'b' / 'model.pt'} (epoch 0)" in out and "train_loss" not in out  # no table


def test_resuming_says_so_in_the_log(image_folder, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="groundup")
    cfg = TrainConfig(data=str(image_folder), size=16, bs=4, num_workers=0, epochs=2, schedule="constant")
    train(cfg, out=str(tmp_path / "run"), quiet=True)
    train(TrainConfig(data=str(image_folder), num_workers=0), resume=str(tmp_path / "run" / "model.pt"),
          quiet=True, epochs=3)
    assert any(r.getMessage().startswith(f"resuming {tmp_path / 'run' / 'model.pt'}: 2 of 3 epochs done")
               for r in caplog.records if r.name == "groundup.run")


def test_a_command_shows_the_log_only_while_it_runs(tmp_path, capsys):
    logger = logging.getLogger("groundup")
    before = (list(logger.handlers), logger.level)
    assert main(["train", "--data", str(tmp_path / "missing")]) == 2
    assert (list(logger.handlers), logger.level) == before
