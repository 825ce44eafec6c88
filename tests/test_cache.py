import multiprocessing as mp
import os

import numpy as np
import pytest

from groundup.data.cache import BAD, EMPTY, FILLED, HEADER, MAGIC, DecodeCache
from groundup.data.files import get_image_files
from groundup.data.images import Dataset
from groundup.utils.errors import GroundupWarning


def test_cache_stores_and_reads_back_pixels(image_folder, tmp_path):
    files = get_image_files(image_folder)
    c = DecodeCache(files, 4, folder=tmp_path)
    assert c.flags([0, 1]).tolist() == [EMPTY, EMPTY]
    px = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    c.write(1, px)
    c.mark_bad(2)
    assert c.flags([0, 1, 2]).tolist() == [EMPTY, FILLED, BAD]
    again = DecodeCache(files, 4, folder=tmp_path)  # a second opener sees the same file
    assert again.path == c.path and np.array_equal(again.read([1])[0], px) and again.n_filled() == 1


def test_cache_key_changes_when_a_file_or_the_size_changes(image_folder, tmp_path):
    files = get_image_files(image_folder)
    a = DecodeCache(files, 4, folder=tmp_path).path
    assert DecodeCache(files, 5, folder=tmp_path).path != a
    os.utime(files[0], ns=(1, 1))
    assert DecodeCache(files, 4, folder=tmp_path).path != a


def test_a_half_written_image_is_never_read_as_filled(image_folder, tmp_path):
    # Simulate a writer killed after the pixels but before the flag: the image stays EMPTY and
    # is decoded again (the real pixels, not the garbage).
    ds = Dataset(get_image_files(image_folder), size=8)
    c = ds.cache
    image_bytes = c.size * c.size * 3
    with open(c.path, "r+b") as f:  # the layout (module notes): header, checksums, flags, pixels
        f.seek(HEADER + 9 * c.n + 3 * image_bytes)
        f.write(b"\x07" * image_bytes)  # garbage pixels for image 3, its flag untouched
    assert (c.read([3]) == 7).all() and c.flags(3) == EMPTY  # garbage where image 3's pixels go
    x, _ = ds[3]
    assert not (x.numpy() == 7).all()
    assert c.flags(3) == FILLED and np.array_equal(c.read([3])[0], x.numpy())


def _fill(files, size, idxs, folder, q):
    c = DecodeCache(files, size, folder=folder)
    for i in idxs:
        c.write(i, np.full((size, size, 3), i, np.uint8))
    q.put(c.path)


def test_processes_filling_one_cache_at_once_agree(image_folder, tmp_path):
    files = get_image_files(image_folder)
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_fill, args=(files, 4, range(k, len(files), 3), tmp_path, q)) for k in range(3)]
    for p in procs:
        p.start()
    paths = {q.get(timeout=20) for _ in procs}
    for p in procs:
        p.join(timeout=20)
    assert len(paths) == 1  # one file won the creation race; every writer used it
    c = DecodeCache(files, 4, folder=tmp_path)
    assert c.n_filled() == len(files)
    assert [int(c.read([i])[0, 0, 0, 0]) for i in range(len(files))] == list(range(len(files)))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("damage", ["foreign bytes", "truncated", "too long"])
def test_a_damaged_cache_file_is_made_again_with_one_warning(image_folder, tmp_path, damage):
    files = get_image_files(image_folder)
    c = DecodeCache(files, 4, folder=tmp_path)
    c.write(0, np.full((4, 4, 3), 9, np.uint8))
    good = c.path.read_bytes()
    c.path.write_bytes({"foreign bytes": b"x" * c.nbytes, "truncated": good[:100],
                        "too long": good + b"\0" * 10}[damage])
    with pytest.warns(GroundupWarning, match=r"decode cache .* is damaged .*groundup made it, so it makes it again"):
        again = DecodeCache(files, 4, folder=tmp_path)
    assert again.path == c.path and again.path.stat().st_size == c.nbytes
    assert again.n_filled() == 0 and again.flags([0, 1]).tolist() == [EMPTY, EMPTY]
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary file left


def test_the_cache_file_has_its_space_reserved_on_disk(image_folder, tmp_path):
    c = DecodeCache(get_image_files(image_folder), 32, folder=tmp_path)
    assert c.path.stat().st_blocks * 512 >= c.nbytes  # not sparse: no store into the map can fault


def test_a_sparse_cache_from_an_older_groundup_gets_its_space_reserved(image_folder, tmp_path):
    files = get_image_files(image_folder)
    c = DecodeCache(files, 32, folder=tmp_path)
    c.path.unlink()
    with open(c.path, "wb") as f:  # as groundup 0.2 made it: the header, then a hole
        f.write(MAGIC.ljust(HEADER, b"\0"))
        f.truncate(c.nbytes)
    assert c.path.stat().st_blocks * 512 < c.nbytes
    DecodeCache(files, 32, folder=tmp_path)
    assert c.path.stat().st_blocks * 512 >= c.nbytes


def test_without_posix_fallocate_the_space_is_reserved_by_writing_zeros(image_folder, tmp_path, monkeypatch):
    monkeypatch.delattr("groundup.data.cache.os.posix_fallocate")  # as on macOS
    c = DecodeCache(get_image_files(image_folder), 32, folder=tmp_path)
    assert c.path.stat().st_size == c.nbytes and c.path.stat().st_blocks * 512 >= c.nbytes
    assert c.path.read_bytes()[:len(MAGIC)] == MAGIC and c.n_filled() == 0
