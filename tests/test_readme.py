"""The README's code runs as printed (so it stays true)."""

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


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
    code = f"path = {str(image_folder)!r}\n" + re.sub(r"fit_one_cycle\(\d+", "fit_one_cycle(1", block)
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
    assert f'crop="{fast["crop"]}"' in section and f"label_smoothing={fast['label_smoothing']}" in section
    assert f"ProgressiveResize({fast['start_size']}, until={fast['grow_until']})" in section
    assert f"valid_bs={fast['valid_bs']}" in section
    assert f"ValidateEvery({fast['valid_every']})" in section
    assert "{{" not in section  # no placeholder left


def test_the_your_own_data_example_runs(capsys):
    block = next(b for b in python_blocks() if "from_csv" in b)
    exec(compile(block, "README your own data", "exec"), {})  # noqa: S102
    out = capsys.readouterr().out
    assert "647 153 ['tench', 'English springer']" in out, out  # the hash split is the same on every machine
    assert "True 15" in out and "micro-F1 " in out


# -- the README, run as written ------------------------------------------------------------------------
# Every fenced block runs, in the README's order, in one fresh folder (with the clone's examples/,
# benchmarks/, scripts/ and src/ beside it) and one Python namespace, as a newcomer would:
#   ```python        executed; a following block marked `<!-- readme-test: output -->` is its shown output
#   ```bash          each command runs with bash and must exit 0
#   ``` with `$ `    a console session: each `$ command` runs and its stdout must match the lines shown
# A block marked `<!-- readme-test: skip: why -->` is not run; SKIPPED below lists every such block,
# so a new skip is a test failure. Shown output matches when every line matches in order: `...` (alone
# on a line, or inside one) stands for anything, and every number is within NUMBER_TOLERANCE of the
# shown one, except timings (a number before " s", and the table's last column, seconds).
NUMBER_TOLERANCE = "25 % of the shown value + 0.05"
SKIPPED = {
    "pip install torch==2.13.0": "installs packages",
    "fit(n_epochs):": "pseudo-code",
    "DistributedTraining()": "a fragment of a script started by torchrun (tests/test_distributed.py runs it)",
    "torchrun --nproc_per_node=4 train.py": "needs 4 GPUs",
    "torchrun --nnodes=2": "needs 2 machines",
    "python -m pytest -q ": "the test suite itself, benchmarks (minutes), Chromium",
    "groundup train --data ../shared/data/imagenette2-224\n": "needs imagenette2-224 (not in a clone)",
    "groundup train --recipe fast --data": "the 10-minute recipe, on imagenette2-224",
    "resnet_fast().to(": "the 10-minute recipe, on imagenette2-224",
    "== fit(1), lr 0.1": "the walkthrough's output on imagenette2-224",
    "groundup train --data data/ --labels labels.csv": "illustrative paths (your data/, photo.jpg)",
    "groundup train --data big-set --arch resnet_fast": "illustrative data (big-set/, my-images/, a torchvision weights file)",
    "python benchmarks/bench_transfer.py --seeds": "about 6 minutes on imagenette2-224",
    'ImageDataLoaders.from_folder("my-images"': "your own my-images/ and runs/body (run on a made folder by "
                                               "test_the_start_from_a_trained_model_example_runs)",
}
NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?![\w.])")
BLOCK = re.compile(r"(?:<!-- readme-test: (?P<mark>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.DOTALL)


def readme_blocks() -> list[dict]:
    return [m.groupdict() for m in BLOCK.finditer(README.read_text())]


def line_pattern(shown: str, table_row: bool) -> tuple[re.Pattern, list[tuple[float, bool]]]:
    """A regex for one shown line, and its numbers (value, is it a timing?) in order."""
    parts, numbers, pos = [], [], 0
    found = list(NUMBER.finditer(shown))
    for k, m in enumerate(found):
        parts.append(re.escape(shown[pos:m.start()]))
        parts.append(r"(\S+?)")
        timing = shown[m.end():m.end() + 2] == " s" or (table_row and k == len(found) - 1)
        numbers.append((float(m.group()), timing))
        pos = m.end()
    parts.append(re.escape(shown[pos:]))
    pattern = "".join(parts).replace(re.escape("..."), ".*").replace(re.escape("…"), ".*")
    pattern = re.sub(r"(?:\\ )+", lambda m: r"\s+", pattern)  # column widths follow the numbers' widths
    return re.compile(pattern), numbers


def assert_output_matches(shown: str, actual: str, where: str) -> None:
    expected = [line.rstrip() for line in shown.strip("\n").splitlines()]
    got = [line.rstrip() for line in actual.strip("\n").splitlines()]
    j, anything = 0, False
    table = False
    for line in expected:
        if line.strip() in ("...", "…"):
            anything = True
            continue
        table = table or line.split()[-1:] == ["seconds"]
        row = table and re.fullmatch(r"\s*\d+(\s+[-\d.]+)+", line) is not None
        pattern, numbers = line_pattern(line, row)
        while True:
            assert j < len(got), f"{where}: the README shows {line!r}, the output ends before it:\n{actual}"
            m = pattern.fullmatch(got[j])
            j += 1
            if m:
                break
            assert anything, f"{where}: the README shows\n  {line!r}\nthe output has\n  {got[j - 1]!r}\n{actual}"
        anything = False
        for (value, timing), text in zip(numbers, m.groups()):
            if timing:
                continue
            assert abs(float(text) - value) <= 0.25 * abs(value) + 0.05, \
                f"{where}: {text} where the README shows {value} (tolerance {NUMBER_TOLERANCE}):\n  {line}\n  {got[j - 1]}"
    assert anything or j == len(got), f"{where}: output the README does not show: {got[j:]}"


def run_shell(command: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "200"}
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600, check=False)


def test_only_the_blocks_listed_as_skipped_are_skipped():
    marks = [(b["mark"], b["body"]) for b in readme_blocks() if b["mark"] and b["mark"].startswith("skip")]
    found = {key for key in SKIPPED for _, body in marks if key in body}
    assert found == set(SKIPPED), set(SKIPPED) - found
    for mark, body in marks:
        assert any(key in body for key in SKIPPED), f"a block is skipped that SKIPPED does not list:\n{body}"
        assert mark.startswith("skip: ") and len(mark) > 8, f"a skip must say why: {mark!r}"
    assert all(b["lang"] in ("python", "bash", "") for b in readme_blocks())


def test_every_block_of_the_readme_runs_as_written_and_shows_what_it_prints(tmp_path, capsys, monkeypatch):
    for name in ("examples", "benchmarks", "scripts", "src", "pyproject.toml"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__main__"}
    printed = ""
    for k, block in enumerate(readme_blocks()):
        mark, lang, body = block["mark"] or "", block["lang"], block["body"]
        where = f"README block {k + 1} ({body.strip().splitlines()[0][:60]!r})"
        if mark.startswith("skip"):
            continue
        if mark == "output":
            assert_output_matches(body, printed, where)
        elif lang == "python":
            capsys.readouterr()
            exec(compile(body, where, "exec"), namespace)  # noqa: S102 - running the README is the point
            printed = capsys.readouterr().out
        elif lang == "bash":
            for command in (line.split("  #")[0].strip() for line in body.splitlines()):
                if command and not command.startswith("#"):
                    r = run_shell(command, tmp_path)
                    assert r.returncode == 0, f"{where}: `{command}` failed:\n{r.stdout}\n{r.stderr}"
        else:
            session = re.split(r"^\$ ", body, flags=re.MULTILINE)
            assert session[0] == "", f"{where}: a plain block must be a console session (`$ ...`) or be marked"
            for part in session[1:]:
                command, _, shown = part.partition("\n")
                r = run_shell(command.split("  #")[0], tmp_path)
                assert r.returncode == 0, f"{where}: `{command}` failed:\n{r.stdout}\n{r.stderr}"
                if shown.strip():
                    assert_output_matches(shown, r.stdout, f"{where}, `{command}`")


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
    assert "kept 65 tensors of the body, dropped 2 (7.weight, 7.bias), made 2 new (7.weight, 7.bias)" in out
