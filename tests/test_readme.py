"""The README's code runs as printed (so it stays true)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_the_quickstart_runs_and_its_losses_fall(capsys):
    exec(compile(python_blocks()[0], "README quickstart", "exec"), {})  # noqa: S102 - running the README is the point
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    losses = [float(r[1]) for r in rows]
    assert len(rows) == 3 and losses == sorted(losses, reverse=True)
    shown = re.search(r"```\n( +epoch .*?)```", README.read_text(), flags=re.DOTALL).group(1)
    assert [r[:5] for r in rows] == [line.split()[:5] for line in shown.splitlines()[1:]]


def test_the_first_callback_example_stops_after_three_batches():
    quickstart, callback = python_blocks()[0], next(b for b in python_blocks() if "StopAfterBatches" in b)
    namespace: dict = {}
    exec(compile(quickstart.replace("learn.fit(3)", ""), "README quickstart", "exec"), namespace)  # noqa: S102
    seen = []
    from groundup import Callback

    class Count(Callback):
        def after_batch(self):
            seen.append(self.iter)

    namespace["learn"].add_cb(Count())
    exec(compile(callback, "README callback", "exec"), namespace)  # noqa: S102
    assert seen == [0, 1, 2]  # three training batches, then the fit was cancelled
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        namespace["StopAfterBatches"](0)


def test_the_image_example_runs_on_a_folder(image_folder, tmp_path, monkeypatch, capsys):
    block = next(b for b in python_blocks() if "from_folder" in b)
    monkeypatch.chdir(tmp_path)
    code = block.replace('"imagenette2-160"', repr(str(image_folder))).replace("fit(8", "fit(1")
    exec(compile(code, "README image example", "exec"), {})  # noqa: S102
    out = capsys.readouterr().out
    assert "LRSuggestion(lr=" in out and (tmp_path / "lr_find.png").is_file()


def test_where_things_go_names_files_that_exist_and_registrations_that_work(monkeypatch):
    text = README.read_text()
    guide = text[text.index("## Where things go"):]
    guide = guide[:guide.index("\n## ", 1)]
    root = README.parent
    for path in re.findall(r"`((?:src/)?groundup/[\w/.]+\.py)`", guide):
        assert (root / ("" if path.startswith("src/") else "src") / path).is_file(), path
    # an architecture: one decorator, and get_arch and --arch find it
    from groundup.nn.layers import Flatten, Linear, Sequential
    from groundup.nn.models import ARCHS, get_arch, register_arch

    @register_arch
    def tiny_mlp(n_classes: int = 10):
        return Sequential(Flatten(), Linear(3 * 8 * 8, n_classes))
    try:
        assert get_arch("tiny_mlp", n_classes=3).arch_spec == {"name": "tiny_mlp", "kwargs": {"n_classes": 3}}
    finally:
        del ARCHS["tiny_mlp"]
    # a subcommand: a module with add_parser and run, listed in COMMANDS
    import types

    import groundup.commands
    from groundup.cli import main

    hello = types.SimpleNamespace(add_parser=lambda sub: sub.add_parser("hello").set_defaults(
        run=lambda args, argv: 7))
    monkeypatch.setattr(groundup.commands, "COMMANDS", (*groundup.commands.COMMANDS, hello))
    monkeypatch.setattr("groundup.cli.COMMANDS", groundup.commands.COMMANDS)
    assert main(["hello"]) == 7

def test_the_see_what_the_model_learned_example_runs(image_folder, tmp_path, monkeypatch, capsys):
    image_example = next(b for b in python_blocks() if "from_folder" in b)
    block = next(b for b in python_blocks() if "Interpretation.from_learner" in b)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    code = image_example.replace('"imagenette2-160"', repr(str(image_folder))).replace("fit(8", "fit(1")
    code = code.replace("simple_cnn()", "simple_cnn(n_classes=3)")  # the folder has 3 classes, Imagenette 10
    exec(compile(code, "README image example", "exec"), namespace)  # noqa: S102
    image = image_folder / "val" / "dog" / "dog_0.jpg"
    block = block.replace('"tench.jpg"', repr(str(image)))
    exec(compile(block, "README interpretation", "exec"), namespace)  # noqa: S102
    out = capsys.readouterr().out
    assert "'loss'" in out and "'acc'" in out
    assert (tmp_path / "confusion_matrix.png").is_file() and (tmp_path / "top_losses.png").is_file()
    assert namespace["label"] in {"cat", "dog", "emu"} and namespace["interp"].confusion_matrix().sum() == 9

def test_the_pytorch_interop_example_runs():
    block = next(b for b in python_blocks() if "to_torch(model)" in b)
    assert "torch.compile(model)" in block
    code = block.replace("torch.compile(model)", 'torch.compile(model, backend="aot_eager")')  # inductor: +10 s
    lines = []
    exec(compile(code, "README interop", "exec"), {"print": lambda *a: lines.append(" ".join(map(str, a)))})  # noqa: S102
    assert lines == ["torch.Size([8, 10])", "torch.Size([8, 10])", "12",
                     "into ConvLayer(3, 16, stride=2)  # 448 parameters (8, 3, 64, 64)"]

def test_the_train_options_table_lists_every_option_with_its_python_equivalent():
    import argparse

    from groundup.commands.train import add_parser

    text = README.read_text()
    table = text[text.index("### Options of `groundup train`"):]
    table = table[:table.index("\n\n", table.index("| option |"))]
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| `-")]
    documented = {flag for row in rows for flag in re.findall(r"`(--?[\w-]+)", row[0])}
    parser = add_parser(argparse.ArgumentParser().add_subparsers())
    flags = {s for a in parser._actions for s in a.option_strings} - {"-h", "--help"}
    assert documented == flags
    assert all(len(row) == 4 and row[3].strip(" |") for row in rows)  # option, default, what, Python


def test_the_fast_recipe_by_hand_runs_on_a_folder(image_folder, capsys):
    block = next(b for b in python_blocks() if "resnet_fast" in b)
    code = f"path = {str(image_folder)!r}\n" + block.replace("fit_one_cycle(15", "fit_one_cycle(1")
    namespace: dict = {}
    exec(compile(code, "README fast recipe", "exec"), namespace)  # noqa: S102
    assert "'acc'" in capsys.readouterr().out
    assert namespace["dls"].augment is not None and namespace["learn"].history


def test_the_fast_recipe_section_matches_the_recipe():
    from groundup.run.recipes import RECIPES

    fast = RECIPES["fast"].settings
    text = README.read_text()
    section = text[text.index("## The fast recipe"):text.index("## The walkthrough, reproduced")]
    epochs, lr = re.search(r"fit_one_cycle\((\d+), ([\d.e-]+)", section).groups()
    assert (int(epochs), float(lr)) == (fast["epochs"], fast["lr"])
    assert f"scale=({fast['crop_scale']}, 1.0)" in section and f"label_smoothing={fast['label_smoothing']}" in section
    assert "{{" not in section  # no placeholder left


def test_the_start_from_a_trained_model_example_runs(image_folder, tmp_path, monkeypatch, capsys):
    from conftest import make_image_folder

    from groundup.data.folder import ImageDataLoaders
    from groundup.learner import Learner
    from groundup.losses import cross_entropy
    from groundup.nn.models import resnet_fast

    block = next(b for b in python_blocks() if "with_head=False" in b)
    monkeypatch.chdir(tmp_path)
    other = make_image_folder(tmp_path / "other", classes=("ant", "bee", "cow", "doe", "elk"), seed=1)
    body = Learner(resnet_fast(n_classes=5), ImageDataLoaders.from_folder(other, size=16, bs=8, num_workers=0),
                   cross_entropy)
    body.save(tmp_path / "runs" / "body" / "model.pt")
    code = block.replace('"my-images", size=64, bs=32', f"{str(image_folder)!r}, size=16, bs=8, num_workers=0")
    exec(compile(code, "README start from a trained model", "exec"), {})  # noqa: S102
    out = capsys.readouterr().out
    assert "kept 60 tensors of the body, dropped 2 (6.weight, 6.bias), made 2 new (6.weight, 6.bias)" in out
