"""Old spellings keep working for one release and say what replaced them."""

import importlib

import pytest
from conftest import Points, groundup_mlp

from groundup.callbacks.schedules import OneCycle
from groundup.data.loader import DataLoader
from groundup.learner import Learner
from groundup.losses import cross_entropy


def test_one_cycle_lr_max_is_now_max_lr():
    with pytest.warns(DeprecationWarning, match="'lr_max' is now called 'max_lr'"):
        sched = OneCycle(lr_max=0.1)
    assert sched.max_lr == 0.1
    with pytest.warns(DeprecationWarning):
        assert sched.lr_max == 0.1


def test_dataloader_takes_the_walkthroughs_n_workers_beside_num_workers(recwarn):
    assert DataLoader(list(range(4)), 2, n_workers=0).num_workers == 0 and not recwarn.list


@pytest.mark.parametrize("module, name, new", [
    ("groundup.distributed", "is_main_process", "groundup.process_group.is_main_process"),
    ("groundup.cli", "TrainConfig", "groundup.config.TrainConfig"),
    ("groundup.cli", "train", "groundup.run.train"),
    ("groundup.run", "SCHEDULES", "groundup.config.SCHEDULES"),
    ("groundup.run", "check_choice", "groundup.checks.check_choice"),
])
def test_moved_names_are_still_importable_with_a_warning(module, name, new):
    mod = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        value = getattr(mod, name)
    new_module, new_name = new.rsplit(".", 1)
    assert value is getattr(importlib.import_module(new_module), new_name)
    with pytest.raises(AttributeError):
        mod.no_such_name  # noqa: B018


def test_write_report_in_the_old_argument_order_warns_and_writes(tmp_path):
    from groundup.report import write_report

    learn = Learner(groundup_mlp(), Points(n=64), cross_entropy)
    with pytest.warns(DeprecationWarning, match="write_report"):
        write_report(tmp_path / "r.html", {"arch": "mlp"}, learn.history, {})
    assert "<html" in (tmp_path / "r.html").read_text()


def test_default_device_is_now_local_device():
    from groundup.callbacks import setup
    from groundup.process_group import local_device

    with pytest.warns(DeprecationWarning, match="groundup.process_group.local_device"):
        assert setup.default_device is local_device
