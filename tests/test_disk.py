"""Byte formatting for download and disk messages."""

import pytest

from groundup.utils.disk import format_size


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
