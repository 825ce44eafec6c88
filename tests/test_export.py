"""`groundup export`: a model that runs with plain torch, in a process that never imports groundup."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from groundup.cli import main
from groundup.data.files import get_image_files
from groundup.data.images import open_image
from groundup.run.export import ExportedClassifier, export_checkpoint
from groundup.run.predictor import Predictor, load_trained_model

FRESH = """
import json, sys
import numpy as np, torch
extra = {"groundup.json": ""}
program = torch.export.load(sys.argv[1], extra_files=extra)
meta = json.loads(extra["groundup.json"])
probs = program.module()(torch.from_numpy(np.load(sys.argv[2])))
names = [meta["class_names"][i] for i in probs.argmax(1).tolist()]
print(json.dumps({"grad_fn": repr(probs.grad_fn), "names": names, "probs": probs.max(1).values.tolist(), "size": meta["size"],
                  "groundup_imported": any(m.split(".")[0] == "groundup" for m in sys.modules)}))
"""



def test_an_exported_pt2_predicts_like_groundup_predict_without_groundup(run, image_folder, tmp_path, capsys):
    assert main(["export", str(run / "model.pt"), "--out", str(tmp_path / "m.pt2")]) == 0
    assert "wrote" in capsys.readouterr().out
    files = sorted(get_image_files(image_folder / "val"))
    np.save(tmp_path / "images.npy", np.stack([open_image(f, 16) for f in files]))  # what groundup decodes
    r = subprocess.run([sys.executable, "-I", "-c", FRESH, str(tmp_path / "m.pt2"), str(tmp_path / "images.npy")],
                       capture_output=True, text=True, check=False, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert not got["groundup_imported"] and got["size"] == 16 and got["grad_fn"] == "None"
    assert main(["predict", str(run / "model.pt"), *map(str, files)]) == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert got["names"] == [line[1] for line in lines]
    assert got["probs"] == pytest.approx([float(line[2]) for line in lines], abs=1e-4)


def test_the_exported_graph_is_the_predictor_in_one_module(run, image_folder):
    model, pre = load_trained_model(run / "model.pt")
    files = sorted(get_image_files(image_folder / "val"))
    images = torch.from_numpy(np.stack([open_image(f, 16) for f in files]))
    expected = Predictor.from_checkpoint(run / "model.pt", device="cpu").probabilities(images)
    probs = ExportedClassifier(model, pre).eval()(images)
    torch.testing.assert_close(probs, expected)
    assert probs.grad_fn is None and not probs.requires_grad  # inference only, as a user calls it


def test_export_errors_are_clear(run, tmp_path, capsys):
    assert main(["export", str(run / "missing.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["export", str(run / "model.pt"), "--format", "tflite"]) == 2
    assert "invalid choice: 'tflite'" in capsys.readouterr().err


def test_onnx_export_runs_in_onnxruntime(run, image_folder, tmp_path):
    pytest.importorskip("onnxscript", reason="ONNX export needs pip install 'groundup[onnx]'")
    ort = pytest.importorskip("onnxruntime")
    path = export_checkpoint(run / "model.pt", tmp_path / "m.onnx", "onnx")
    meta = json.loads((tmp_path / "m.onnx.json").read_text())
    files = sorted(get_image_files(image_folder / "val"))
    images = np.stack([open_image(f, meta["size"]) for f in files])
    (probs,) = ort.InferenceSession(str(path)).run(None, {"images": images})
    expected = Predictor.from_checkpoint(run / "model.pt", device="cpu").probabilities(torch.from_numpy(images))
    np.testing.assert_allclose(probs, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_export_traces_on_the_models_device_and_saves_the_program_for_the_cpu(monkeypatch, tmp_path):
    """A GPU model is traced on its GPU and saved CPU-loadable (issue 26, point 4); meta stands in for the GPU."""
    import torch.export.passes

    from groundup.data.preprocessing import Preprocessing
    from groundup.nn.models import simple_cnn
    from groundup.run.export import export_model

    model = simple_cnn(3, 2).to("meta")
    seen = {}

    def export(module, example, dynamic_shapes):
        seen["input"] = example[0].device
        seen["tensors"] = {t.device for t in (*module.parameters(), *module.buffers())}
        return "the program"

    def move_to_device_pass(program, device):
        seen["saved for"] = (program, device)
        raise KeyboardInterrupt  # stop here: a meta program has no data to write

    monkeypatch.setattr(torch.export, "export", export)
    monkeypatch.setattr(torch.export.passes, "move_to_device_pass", move_to_device_pass)
    with pytest.raises(KeyboardInterrupt):
        export_model(model, Preprocessing([0.5] * 3, [0.25] * 3, size=8, vocab=["a", "b"]), tmp_path / "m.pt2")
    meta = torch.device("meta")
    assert seen == {"input": meta, "tensors": {meta}, "saved for": ("the program", "cpu")}


def test_the_readmes_resize_gives_the_exported_model_groundup_predicts_probabilities(run):
    """The README says how to resize an image for the exported model; on every shipped validation image
    that gives `groundup predict`'s probabilities to 1e-5."""
    import re
    from pathlib import Path

    from PIL import Image

    from groundup.data.download import shipped_dataset

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.DOTALL) if "torch.export.load" in b)
    recipe = "\n".join(line for line in block.splitlines() if line.startswith("image"))
    assert "image.draft(" in recipe and "resize((size, size), Image.BILINEAR)" in recipe
    model, pre = load_trained_model(run / "model.pt")
    exported = ExportedClassifier(model, pre).eval()
    files = sorted(get_image_files(shipped_dataset() / "val"))
    assert len(files) == 200
    images = []
    for f in files:
        namespace = {"Image": Image, "size": pre.size, "torch": torch, "numpy": np,
                     "image": None}
        exec(recipe.replace(re.search(r'Image\.open\("[^"]+"\)', recipe).group(), f"Image.open({str(f)!r})"),  # noqa: S102
             namespace)
        images.append(torch.from_numpy(np.array(namespace["image"])))
    probs = exported(torch.stack(images))
    expected = Predictor.from_checkpoint(run / "model.pt", device="cpu").predict(files, top_k=len(pre.vocab))
    for p, row in zip(expected, probs):
        by_label = dict(zip(p.labels, p.probs))
        torch.testing.assert_close(row, torch.tensor([by_label[v] for v in pre.vocab]), atol=1e-5, rtol=0)
