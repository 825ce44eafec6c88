"""Byte formatting, and the old `groundup.progress` module: clear errors for the names tqdm replaced."""

import re

import pytest

import groundup.progress
from groundup.data.download import format_size


@pytest.mark.parametrize(
    "num_bytes, expected",
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (99_003_388, "94.4 MiB"),
        (5 * 1024**3, "5.0 GiB"),
    ],
)
def test_format_size_uses_binary_prefixes(num_bytes, expected):
    assert format_size(num_bytes) == expected


def test_removed_progress_bar_says_to_use_tqdm():
    with pytest.raises(ImportError, match="groundup.progress.ProgressBar was removed in favour of tqdm.*tqdm.auto"):
        from groundup.progress import ProgressBar  # noqa: F401
    with pytest.raises(ImportError, match="in favour of tqdm"):
        groundup.progress.ProgressBar  # noqa: B018 - the attribute read is what is tested


def test_removed_format_duration_names_tqdms_format_interval():
    with pytest.raises(ImportError, match=re.escape("tqdm.tqdm.format_interval(seconds)")):
        from groundup.progress import format_duration  # noqa: F401


def test_other_missing_names_are_plain_attribute_errors():
    assert not hasattr(groundup.progress, "no_such_name")


def test_format_size_moved_to_the_download_module_with_a_warning():
    with pytest.warns(DeprecationWarning, match="groundup.data.download.format_size"):
        assert groundup.progress.format_size is format_size
