import pytest

from groundup.utils.checks import check_choice, check_int, check_number


@pytest.mark.parametrize("value, low, match", [
    (0, 1, "DataLoader: bs must be a positive integer, got 0"),
    (True, 1, "must be a positive integer, got True"),
    (2.5, 1, "got 2.5"),
    (-1, 0, "must be an integer >= 0, got -1"),
])
def test_check_int_names_owner_argument_and_value(value, low, match):
    with pytest.raises(ValueError, match=match):
        check_int("DataLoader", "bs", value, low)
    assert check_int("DataLoader", "bs", 3) == 3


@pytest.mark.parametrize("value, kwargs, match", [
    (-1, {}, "lr must be a finite number >= 0, got -1"),
    (0.0, {"low_inclusive": False}, "must be a finite number > 0, got 0.0"),
    (float("nan"), {}, "got nan"),
    (1.0, {"high": 1.0}, r"in \[0, 1\), got 1.0"),
    ("0.1", {}, "got '0.1'"),
])
def test_check_number_says_the_bound(value, kwargs, match):
    with pytest.raises(ValueError, match=match):
        check_number("SGD", "lr", value, **kwargs)
    assert check_number("SGD", "lr", 0.5, high=1.0) == 0.5


def test_check_choice_suggests_the_closest():
    with pytest.raises(ValueError, match=r"unknown --arch 'resnt' \(did you mean 'resnet'\?\); choose from: a, resnet"):
        check_choice("--arch", "resnt", ["a", "resnet"])
    assert check_choice("--arch", "a", ["a"]) == "a"
