import pytest

from groundup.utils.atomic import atomic_write


@pytest.mark.parametrize("durable", [False, True])
def test_atomic_write_replaces_the_file_only_when_complete(tmp_path, durable):
    path = tmp_path / "sub" / "f.txt"
    with atomic_write(path, "w", durable=durable, encoding="utf-8") as f:
        f.write("old")
    with pytest.raises(RuntimeError), atomic_write(path, "w", durable=durable, encoding="utf-8") as f:
        f.write("half of the new")
        raise RuntimeError("crash while writing")
    assert path.read_text() == "old"
    assert [p.name for p in path.parent.iterdir()] == ["f.txt"]  # no temporary file left behind
    with atomic_write(path, durable=durable) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new"
