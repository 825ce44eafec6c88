"""Tests for groundup.progress: drawing, rate limiting, byte formatting, wrapping iterables."""

import io

import pytest

from groundup.progress import ProgressBar, format_duration, format_size


def test_enabled_bar_shows_count_percent_and_desc():
    out = io.StringIO()
    with ProgressBar(total=4, desc="epoch 1", file=out, enabled=True, min_interval=0) as bar:
        bar.update(2)
        assert "epoch 1:  50%|" in out.getvalue()
        assert "2/4 it" in out.getvalue()
        bar.update(2)
    text = out.getvalue()
    assert text.rstrip("\n").split("\r")[-1].startswith("epoch 1: 100%|" + "#" * 20 + "|")
    assert "4/4 it" in text
    assert text.endswith("\n")


def test_disabled_bar_prints_nothing():
    out = io.StringIO()
    with ProgressBar(total=10, file=out, enabled=False, min_interval=0) as bar:
        for _ in range(10):
            bar.update()
        bar.set_postfix("loss 0.5")
        bar.write("hello")
    assert out.getvalue() == ""
    assert bar.n == 10  # counting still works


def test_default_is_disabled_when_file_is_not_a_terminal():
    out = io.StringIO()  # StringIO.isatty() is False
    with ProgressBar(total=3, file=out) as bar:
        bar.update(3)
    assert not bar.enabled
    assert out.getvalue() == ""


def test_redraws_are_rate_limited_by_min_interval():
    out = io.StringIO()
    with ProgressBar(total=1000, file=out, enabled=True, min_interval=3600) as bar:
        for _ in range(1000):
            bar.update()
    # One draw when made, one when closed; none of the 1000 updates came an hour apart.
    assert out.getvalue().count("\r") == 2
    assert "1000/1000" in out.getvalue()


def test_min_interval_zero_redraws_on_every_update():
    out = io.StringIO()
    with ProgressBar(total=5, file=out, enabled=True, min_interval=0) as bar:
        for _ in range(5):
            bar.update()
    assert out.getvalue().count("\r") == 1 + 5 + 1  # made, 5 updates, closed


def test_bytes_unit_formats_sizes():
    out = io.StringIO()
    with ProgressBar(total=3 * 1024**2, unit="B", file=out, enabled=True, min_interval=0) as bar:
        bar.update(1536 * 1024)
    assert "1.5 MiB/3.0 MiB" in out.getvalue()
    assert "[00:02<00:02, 768.0 KiB/s]" in bar.format_line(elapsed=2.0)


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


@pytest.mark.parametrize("seconds, expected", [(0, "00:00"), (75, "01:15"), (3600 + 62, "1:01:02")])
def test_format_duration_reads_as_clock_time(seconds, expected):
    assert format_duration(seconds) == expected


def test_format_line_shows_rate_and_eta():
    bar = ProgressBar(total=100, unit="batch", enabled=False)
    bar.update(50)
    line = bar.format_line(elapsed=10.0)
    assert "50/100 batch" in line
    assert "[00:10<00:10, 5.0 batch/s]" in line


def test_slow_steps_show_seconds_per_unit():
    bar = ProgressBar(total=10, enabled=False)
    bar.update(2)
    assert "2.50 s/it" in bar.format_line(elapsed=5.0)


def test_unknown_total_shows_count_without_percent():
    bar = ProgressBar(total=None, unit="B", enabled=False)
    bar.update(2048)
    line = bar.format_line(elapsed=1.0)
    assert "%" not in line
    assert line.startswith("2.0 KiB [00:01, 2.0 KiB/s]")


def test_initial_counts_towards_percent_but_not_rate():
    bar = ProgressBar(total=100, enabled=False, initial=50)
    bar.update(10)
    line = bar.format_line(elapsed=1.0)
    assert " 60%|" in line
    assert "10.0 it/s" in line


def test_set_postfix_appears_after_counters():
    out = io.StringIO()
    with ProgressBar(total=2, file=out, enabled=True, min_interval=0) as bar:
        bar.set_postfix("loss 0.123")
        bar.update()
    assert "it/s] loss 0.123" in out.getvalue()


def test_write_prints_a_line_above_the_bar():
    out = io.StringIO()
    with ProgressBar(total=2, file=out, enabled=True, min_interval=0) as bar:
        bar.write("epoch 0: loss 1.0")
    assert "\repoch 0: loss 1.0" in out.getvalue()


def test_shorter_redraw_covers_the_previous_line():
    out = io.StringIO()
    bar = ProgressBar(total=2, file=out, enabled=True, min_interval=0)
    bar.set_postfix("a long postfix text")
    bar.set_postfix("")
    last = out.getvalue().split("\r")[-1]
    previous = out.getvalue().split("\r")[-2]
    assert len(last) >= len(previous)


def test_close_is_idempotent():
    out = io.StringIO()
    bar = ProgressBar(total=1, file=out, enabled=True)
    bar.close()
    bar.close()
    assert out.getvalue().count("\n") == 1


def test_wrap_yields_items_and_counts_them():
    out = io.StringIO()
    items = list(ProgressBar.wrap(["a", "b", "c"], desc="files", file=out, enabled=True, min_interval=0))
    assert items == ["a", "b", "c"]
    assert "3/3 it" in out.getvalue()
    assert out.getvalue().endswith("\n")


def test_wrap_of_a_generator_has_no_total():
    out = io.StringIO()
    assert sum(ProgressBar.wrap((i for i in range(4)), file=out, enabled=True)) == 6
    assert "4 it [" in out.getvalue()


@pytest.mark.parametrize(
    "kwargs, match",
    [({"total": -1}, "total must be >= 0"), ({"total": 1, "min_interval": -0.5}, "min_interval")],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ProgressBar(**kwargs)
