import functools

import pytest

from groundup.run.config import TrainConfig, opt_func_for
from groundup.optim import SGD, Adam


def test_train_config_validates_like_the_command_line():
    with pytest.raises(ValueError, match="--epochs must be a positive integer"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match=r"unknown --arch 'resnt' \(did you mean 'resnet'\?\)"):
        TrainConfig(arch="resnt")
    with pytest.raises(ValueError, match="--num-workers must be an integer >= 0, got -1"):
        TrainConfig(num_workers=-1)
    assert TrainConfig(lr="auto").lr == "auto"


def test_from_dict_ignores_unknown_keys_and_reads_the_old_workers_key():
    assert TrainConfig.from_dict({**TrainConfig().to_dict(), "unknown": 1}) == TrainConfig()
    assert TrainConfig.from_dict({"workers": 3}).num_workers == 3  # checkpoints of groundup 0.1


def test_a_toml_file_may_spell_a_setting_as_its_option(tmp_path):
    from groundup.run.config import read_toml_settings

    path = tmp_path / "a.toml"
    path.write_text('num-workers = 2\nlabel-smoothing = 0.1\ntrain_size = 8\naugment = true\n')
    assert read_toml_settings(path) == {"num_workers": 2, "label_smoothing": 0.1, "train_size": 8, "augment": True}
    assert TrainConfig.from_toml(path).num_workers == 2
    path.write_text('num-workers = 2\nnum_workers = 3\n')
    with pytest.raises(ValueError, match=r"'num-workers' and 'num_workers' are the same setting"):
        read_toml_settings(path)
    path.write_text('workers = 2\n')  # the flag of 0.1 is no setting: the error names the one there is
    with pytest.raises(ValueError, match=r"unknown setting 'workers' \(did you mean 'num_workers'\?\)"):
        read_toml_settings(path)


@pytest.mark.parametrize("name, cls, group", [("sgd", SGD, {"momentum": 0.9, "weight_decay": 1e-4}),
                                               ("adam", Adam, {"weight_decay": 1e-2})])
def test_opt_func_for_names_the_optimizer_and_its_settings(name, cls, group):
    import torch

    make = opt_func_for(name)
    assert isinstance(make, functools.partial) and make.func is cls
    opt = make([torch.zeros(2, requires_grad=True)], 0.1)
    assert all(opt.param_groups[0][k] == v for k, v in group.items())


@pytest.mark.parametrize("name, wd, momentum, group", [
    ("sgd", 0.05, 0.8, {"momentum": 0.8, "weight_decay": 0.05}),
    ("adam", 0.1, 0.85, {"betas": (0.85, 0.99), "weight_decay": 0.1}),
    ("adam", None, None, {"betas": (0.9, 0.99), "weight_decay": 1e-2}),
])
def test_opt_func_for_takes_weight_decay_and_momentum(name, wd, momentum, group):
    import torch

    opt = opt_func_for(name, wd=wd, momentum=momentum)([torch.zeros(2, requires_grad=True)], 0.1)
    assert {k: opt.param_groups[0][k] for k in group} == group


def test_opt_func_for_gives_nesterov_sgd():
    import torch

    opt = opt_func_for("sgd", nesterov=True)([torch.zeros(2, requires_grad=True)], 0.1)
    assert opt.param_groups[0]["nesterov"] is True and opt.param_groups[0]["momentum"] == 0.9
    with pytest.raises(ValueError, match="--nesterov is a kind of SGD momentum: it needs --opt sgd, got --opt adam"):
        opt_func_for("adam", nesterov=True)


@pytest.mark.parametrize("kwargs, pattern", [
    ({"wd": -0.1}, r"--wd must be a finite number >= 0, got -0.1"),
    ({"momentum": 1.0}, r"--momentum must be a finite number in \[0, 1\), got 1.0"),
    ({"nesterov": True}, r"--nesterov is a kind of SGD momentum: it needs --opt sgd \(this run: --opt adam\)"),
    ({"nesterov": True, "opt": "sgd", "momentum": 0.0}, r"--nesterov needs a momentum > 0"),
])
def test_weight_decay_and_momentum_are_checked(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        TrainConfig(**kwargs)


def test_to_toml_and_from_toml_give_back_an_equal_config(tmp_path):
    cfg = TrainConfig(data='a "quoted" \\ path é', lr="auto", wd=0.05, patience=3, clip=1e-3, accumulate=2,
                      device="cpu", tensorboard=True)
    (tmp_path / "c.toml").write_text(cfg.to_toml())
    assert TrainConfig.from_toml(tmp_path / "c.toml") == cfg
    assert "# num_workers: not set (one data-loading process per CPU core, at most 8)" in cfg.to_toml()
    assert TrainConfig.from_toml(_write(tmp_path / "d.toml", "")) == TrainConfig()


def _write(path, text):
    path.write_text(text)
    return path


def test_from_toml_names_an_unknown_key_and_the_closest_valid_one(tmp_path):
    with pytest.raises(ValueError, match=r"e.toml: unknown setting 'patiense' \(did you mean 'patience'\?\)"):
        TrainConfig.from_toml(_write(tmp_path / "e.toml", "patiense = 3\n"))
    with pytest.raises(FileNotFoundError, match=r"config file not found: .*missing.toml"):
        TrainConfig.from_toml(tmp_path / "missing.toml")


def test_lr_auto_reads_the_curve_by_the_rule_measured_for_each_optimizer():
    from groundup.run.config import DEFAULT_LR, auto_lr_rule

    assert TrainConfig().lr == DEFAULT_LR == 0.01
    assert auto_lr_rule("sgd") == {"method": None, "cap": None}  # slide, then the fallbacks
    assert auto_lr_rule("adam") == {"method": "rise", "cap": DEFAULT_LR}  # 0.01 unless the loss rises before it
    with pytest.raises(ValueError, match="--opt"):
        auto_lr_rule("lion")
