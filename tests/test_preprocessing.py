import pytest
import torch

from groundup.callbacks.setup import SetupLearnerCB
from groundup.data.folder import ImageDataLoaders
from groundup.data.loader import DataLoaders
from groundup.data.preprocessing import Preprocessing
from groundup.learner import Learner
from groundup.losses import cross_entropy
from groundup.nn.models import simple_cnn


def test_preprocessing_round_trips_through_plain_data():
    pre = Preprocessing([0.4, 0.5, 0.6], [0.2, 0.25, 0.3], size=32, vocab={"b": 1, "a": 0},
                        class_names=["Apple", "Banana"])
    d = pre.to_dict()
    assert d == {"mean": pytest.approx([0.4, 0.5, 0.6]), "std": pytest.approx([0.2, 0.25, 0.3]), "size": 32,
                 "vocab": ["a", "b"], "class_names": ["Apple", "Banana"], "exif_orientation": True,
                 "multi_label": False, "threshold": 0.5}
    back = Preprocessing.from_dict(d)
    assert back.to_dict() == d and back.vocab == ["a", "b"] and back.class_names == ["Apple", "Banana"]
    xb = torch.full((1, 2, 2, 3), 255, dtype=torch.uint8)
    torch.testing.assert_close(back.normalize(xb), pre.normalize(xb))


def test_class_names_default_to_the_vocabulary_and_must_match_it():
    assert Preprocessing([0.5] * 3, [0.2] * 3, vocab=["x", "y"]).class_names == ["x", "y"]
    with pytest.raises(ValueError, match="3 class names for 2 labels"):
        Preprocessing([0.5] * 3, [0.2] * 3, vocab=["x", "y"], class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="size must be a positive integer, got 0"):
        Preprocessing([0.5] * 3, [0.2] * 3, size=0)
    with pytest.raises(ValueError, match="every std must be > 0"):
        Preprocessing([0.5] * 3, [0.0] * 3)


def test_image_folder_loaders_make_it_and_the_learner_carries_it(image_folder):
    dls = ImageDataLoaders.from_folder(image_folder, size=8, bs=4, num_workers=0, seed=0)
    pre = dls.preprocessing
    assert pre.size == 8 and pre.vocab == ["cat", "dog", "emu"] and dls.path == image_folder
    assert dls.vocab == {"cat": 0, "dog": 1, "emu": 2} and dls.stats[0] is pre.mean  # the walkthrough's pieces
    learn = Learner(simple_cnn(n_classes=3), dls, cross_entropy, cbs=[SetupLearnerCB("cpu")])
    assert learn.preprocessing is pre


def test_loose_vocab_and_stats_become_a_preprocessing():
    dls = DataLoaders([], [], vocab={"a": 0, "b": 1}, stats=(torch.tensor([0.5] * 3), torch.tensor([0.2] * 3)))
    assert dls.preprocessing.vocab == ["a", "b"] and dls.vocab == {"a": 0, "b": 1}
    assert DataLoaders([], []).preprocessing is None and DataLoaders([], []).stats is None
