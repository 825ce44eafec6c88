from groundup.data.files import get_image_files
from groundup.run.build import shipped_dataset


def test_the_shipped_dataset_has_600_train_and_200_val_images_of_10_classes():
    files = get_image_files(shipped_dataset())
    train = [f for f in files if f.parent.parent.name == "train"]
    valid = [f for f in files if f.parent.parent.name == "val"]
    assert len(train) == 600 and len(valid) == 200
    assert len({f.parent.name for f in files}) == 10
    assert (shipped_dataset() / "ATTRIBUTION.md").is_file()


def test_the_shipped_dataset_is_byte_for_byte_the_shared_imagenette_mini(shared_data):
    ours = shipped_dataset()
    theirs = shared_data / "imagenette-mini"
    rel = lambda root: sorted(f.relative_to(root) for f in get_image_files(root))
    assert rel(ours) == rel(theirs)
    assert all((ours / r).read_bytes() == (theirs / r).read_bytes() for r in rel(ours))
