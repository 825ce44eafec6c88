import json

import pytest
from conftest import make_image_folder

from groundup.utils.checkpoint_file import checkpoint_preprocessing, read_checkpoint
from groundup.data.class_names import (
    IMAGENETTE_CLASS_NAMES,
    IMAGEWOOF_CLASS_NAMES,
    load_class_name_file,
    read_class_names,
)
from groundup.data.download import DATASETS, registry_class_names
from groundup.data.files import get_image_files
from groundup.data.folder import ImageDataLoaders
from groundup.learner import Learner
from groundup.losses import cross_entropy
from groundup.nn.models import simple_cnn
from groundup.run.build import shipped_dataset


def loaders(folder):
    return ImageDataLoaders.from_folder(folder, size=16, bs=4, num_workers=0, seed=0)


def test_without_a_names_file_the_folder_names_are_shown(image_folder):
    assert loaders(image_folder).preprocessing.class_names == ["cat", "dog", "emu"]


def test_classes_json_maps_folders_to_display_names(image_folder):
    (image_folder / "classes.json").write_text(json.dumps({"cat": "house cat", "emu": "Emu (bird)"}))
    pre = loaders(image_folder).preprocessing
    assert pre.vocab == ["cat", "dog", "emu"]
    assert pre.class_names == ["house cat", "dog", "Emu (bird)"]  # a folder it leaves out keeps its name


def test_labels_txt_takes_folder_whitespace_name_lines(image_folder):
    (image_folder / "labels.txt").write_text("# folder name\ncat\tdomestic cat\n\ndog   good dog \n")
    assert loaders(image_folder).preprocessing.class_names == ["domestic cat", "good dog", "emu"]


@pytest.mark.parametrize("name, text, match", [
    ("classes.json", "{not json", r"classes.json is not valid JSON"),
    ("classes.json", '["tench", "dog"]', r"must be a JSON object mapping folder names.*got list"),
    ("labels.txt", "cat house cat\ndog\n", r"labels.txt, line 2: expected a folder name.*got 'dog'"),
])
def test_a_malformed_names_file_is_an_error_naming_it(tmp_path, name, text, match):
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=match):
        load_class_name_file(tmp_path)


def test_registry_folders_are_named_by_the_registry(tmp_path):
    folder = make_image_folder(tmp_path / "nette", classes=("n01440764", "n03888257", "mine"), n_train=2,
                               n_valid=1)
    assert loaders(folder).preprocessing.class_names == ["mine", "tench", "parachute"]  # sorted by folder
    assert read_class_names(None, ["n02093754"], known=registry_class_names()) == ["Border terrier"]


def test_every_registry_data_set_carries_its_ten_class_names():
    for archive in DATASETS.values():
        assert archive.class_names is not None and len(archive.class_names) == 10, archive.name
    assert DATASETS["imagenette-160"].class_names == IMAGENETTE_CLASS_NAMES
    assert DATASETS["imagewoof-320"].class_names == IMAGEWOOF_CLASS_NAMES
    assert list(IMAGENETTE_CLASS_NAMES.values())[:3] == ["tench", "English springer", "cassette player"]


def test_the_imagenette_ids_are_the_folders_of_the_data(shared_data):
    # the registry's ids are checked against real Imagenette folders (the parachute is n03888257)
    folders = {f.parent.name for f in get_image_files(shared_data / "imagenette2-224" / "val")}
    assert folders == set(IMAGENETTE_CLASS_NAMES)


def test_the_shipped_mini_set_has_a_classes_json_with_the_imagenette_names():
    root = shipped_dataset()
    assert json.loads((root / "classes.json").read_text()) == IMAGENETTE_CLASS_NAMES
    assert read_class_names(root, sorted(IMAGENETTE_CLASS_NAMES))[0] == "tench"


def test_class_names_are_stored_with_the_vocabulary_in_checkpoints(image_folder, tmp_path):
    (image_folder / "classes.json").write_text(json.dumps({"cat": "Cat", "dog": "Dog", "emu": "Emu"}))
    dls = loaders(image_folder)
    learn = Learner(simple_cnn(n_classes=3), dls, cross_entropy)
    pre = checkpoint_preprocessing(read_checkpoint(learn.save(tmp_path / "m.pt")))
    assert pre.vocab == ["cat", "dog", "emu"] and pre.class_names == ["Cat", "Dog", "Emu"]
