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


def test_the_pytorch_interop_example_runs():
    block = next(b for b in python_blocks() if "to_torch(model)" in b)
    assert "torch.compile(model)" in block
    code = block.replace("torch.compile(model)", 'torch.compile(model, backend="aot_eager")')  # inductor: +10 s
    lines = []
    exec(compile(code, "README interop", "exec"), {"print": lambda *a: lines.append(" ".join(map(str, a)))})  # noqa: S102
    assert lines == ["torch.Size([8, 10])", "torch.Size([8, 10])", "12",
                     "into ConvLayer(3, 16, stride=2)  # 448 parameters (8, 3, 64, 64)"]
