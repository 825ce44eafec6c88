import multiprocessing as mp
import os

import numpy as np
import pytest

from groundup.data.cache import BAD, EMPTY, FILLED, HEADER, DecodeCache
from groundup.data.files import get_image_files
from groundup.data.images import Dataset


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
    with open(c.path, "r+b") as f:  # the file's layout (module notes): header, one flag per image, pixels
        f.seek(HEADER + c.n + 3 * image_bytes)
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


def test_foreign_file_under_the_cache_name_is_refused(image_folder, tmp_path):
    files = get_image_files(image_folder)
    c = DecodeCache(files, 4, folder=tmp_path)
    c.path.write_bytes(b"x" * c.nbytes)
    with pytest.raises(RuntimeError, match="not a groundup decode cache"):
        DecodeCache(files, 4, folder=tmp_path).flags(0)
