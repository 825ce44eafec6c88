"""Labels from a CSV file: one row per image, a file-name column and a label column (Kaggle's layout).

    fname,labels,is_valid
    img/0001.jpg,cat,0
    img/0002.jpg,dog cat,1          <- several space-separated tags: a multi-label set

The first row names the columns; `fn_col`, `label_col` and `valid_col` pick them by number (0 is
the first) or by name. File names are relative to the data folder (an absolute name is taken as
it is). Every problem with a row (a file that is not there, an empty label, a file listed twice, a
row too short for a column, a validation flag that is not 0/1) is one error naming the CSV's line
and the fix; with `skip_corrupt` such a row is skipped with a warning instead, and counted.

Example:
    >>> table = read_label_csv("data/labels.csv", "data")
    >>> table.files[0], table.labels[0]
    (PosixPath('data/img/0001.jpg'), 'cat')
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from groundup.utils.errors import GroundupError

__all__ = ["LabelCSVError", "LabelTable", "read_label_csv"]

log = logging.getLogger(__name__)

TRUE_VALUES = ("1", "true", "yes", "valid", "y", "t")
FALSE_VALUES = ("0", "false", "no", "train", "n", "f", "")
SKIP_HINT = "or skip such rows with --skip-corrupt (skip_corrupt=True in Python)"


class LabelCSVError(GroundupError, ValueError):
    """A label CSV that cannot be read as it is; the message names the file, the line and the fix."""


@dataclass
class LabelTable:
    """What a label CSV says, row by row (the rows kept): the files, their names as written, their
    label cells, whether each is for validation (None without a `valid_col`), and how many rows were skipped."""

    files: list[Path]
    names: list[str]
    labels: list[str]
    is_valid: list[bool] | None
    skipped: int = 0


def _column(csv_path: Path, header: list[str], col: int | str, arg: str) -> int:
    """The index of column `col` (a number or a header name), or a LabelCSVError listing the columns."""
    columns = ", ".join(f"{i}: {h!r}" for i, h in enumerate(header))
    if isinstance(col, str) and col not in header and col.isdigit():  # a number from the command line
        col = int(col)
    if isinstance(col, int) and not isinstance(col, bool):
        if 0 <= col < len(header):
            return col
        raise LabelCSVError(f"{csv_path}: no column {col} ({arg}); its first line names {len(header)} columns "
                            f"({columns}); pass {arg}= one of those numbers or names")
    if col in header:
        return header.index(col)
    raise LabelCSVError(f"{csv_path}: no column named {col!r} ({arg}); its first line names the columns {columns}; "
                        f"pass {arg}= one of those numbers or names")


def read_label_csv(csv_path: str | os.PathLike, root: str | os.PathLike, fn_col: int | str = 0,
                   label_col: int | str = 1, valid_col: int | str | None = None,
                   skip_corrupt: bool = False) -> LabelTable:
    """Read and check a label CSV (see the module docstring); file names are relative to `root`.

    Raises:
        FileNotFoundError: no such CSV file.
        LabelCSVError (a ValueError): an empty file, a column that is not there, or (without
            `skip_corrupt`) a bad row; the message names the line and what to do.
    """
    csv_path, root = Path(csv_path), Path(root)
    if not csv_path.is_file():
        raise FileNotFoundError(f"label CSV not found: {csv_path} (expected a file with a header line, then one "
                                f"row per image: file name, label)")
    with open(csv_path, newline="", encoding="utf-8-sig") as f:  # -sig: a BOM from Excel is not part of a name
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise LabelCSVError(f"{csv_path} is empty; expected a header line (e.g. 'fname,labels'), then one "
                                f"row per image")
        header = [h.strip() for h in header]
        cols = {"fn_col": _column(csv_path, header, fn_col, "fn_col"),
                "label_col": _column(csv_path, header, label_col, "label_col")}
        if valid_col is not None:
            cols["valid_col"] = _column(csv_path, header, valid_col, "valid_col")
        table = LabelTable([], [], [], [] if valid_col is not None else None)
        first_line: dict[str, int] = {}
        n_rows = 0
        line = reader.line_num
        for row in reader:
            start, line = line + 1, reader.line_num  # a quoted field may span lines: report where the row starts
            if not any(cell.strip() for cell in row):
                continue  # blank lines are no rows
            n_rows += 1
            problem = _row_problem(row, cols, header, root, first_line)
            if problem is not None:
                message = f"{csv_path}, line {start}: {problem}"
                if not skip_corrupt:
                    raise LabelCSVError(f"{message}; {SKIP_HINT}")
                log.warning("%s; skipping the row", message)
                table.skipped += 1
                continue
            name = row[cols["fn_col"]].strip()
            first_line[name] = start
            table.names.append(name)
            table.files.append(root / name)
            table.labels.append(row[cols["label_col"]].strip())
            if table.is_valid is not None:
                table.is_valid.append(row[cols["valid_col"]].strip().lower() in TRUE_VALUES)
    if table.skipped:
        log.warning("skipped %d of the %d rows of %s (--skip-corrupt)", table.skipped, n_rows, csv_path)
    if not table.files:
        raise LabelCSVError(f"{csv_path} lists no usable images ({n_rows} rows"
                            f"{f', {table.skipped} skipped' if table.skipped else ''}); expected one row per "
                            f"image after the header: file name, label")
    return table


def _row_problem(row: list[str], cols: dict[str, int], header: list[str], root: Path,
                 first_line: dict[str, int]) -> str | None:
    """What is wrong with one row (a sentence with the fix), or None."""
    for arg, i in cols.items():
        if i >= len(row):
            return (f"the row has {len(row)} fields, so no {header[i]!r} (column {i}, {arg}); give every row "
                    f"the {len(header)} columns of the header")
    name, label = row[cols["fn_col"]].strip(), row[cols["label_col"]].strip()
    if not name:
        return f"the file name ({header[cols['fn_col']]!r}) is empty; fill it in or remove the row"
    if not label:
        return f"{name} has an empty label ({header[cols['label_col']]!r}); give it a label or remove the row"
    if name in first_line:
        return (f"{name} is listed again (first on line {first_line[name]}); list each file once (several labels "
                f"go in one cell, separated by spaces)")
    if "valid_col" in cols:
        flag = row[cols["valid_col"]].strip().lower()
        if flag not in TRUE_VALUES and flag not in FALSE_VALUES:
            return (f"{name} has {row[cols['valid_col']]!r} in the validation column ({header[cols['valid_col']]!r}); "
                    f"write 1/true for a validation image, 0/false for a training one")
    if not (root / name).is_file():
        return f"the file {name} is not there ({root / name}); correct the name or remove the row"
    return None
