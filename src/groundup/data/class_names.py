"""Human-readable class names: `tench` for the folder `n01440764`.

A model's outputs are numbered by its vocabulary, the class folders' names (`n01440764`,
`n02102040`, ...). People read names, so every data set also carries a display name per class,
found in this order (the first that knows a folder wins; a folder nobody knows shows its own name):

1. `classes.json` in the data folder: `{"n01440764": "tench", ...}`.
2. `labels.txt` in the data folder: one class per line, the folder name, then whitespace (a tab
   or spaces), then the display name (`n01440764 tench`); blank lines and `#` comments are skipped.
3. `known`: names the caller knows by folder, such as the registry's for Imagenette and
   Imagewoof (`groundup.data.download.registry_class_names`).

Example:
    >>> read_class_names("imagenette2-160", ["n01440764", "n02102040"])
    ['tench', 'English springer']
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["CLASS_NAME_FILES", "IMAGENETTE_CLASS_NAMES", "IMAGEWOOF_CLASS_NAMES", "load_class_name_file",
           "read_class_names"]

CLASS_NAME_FILES = ("classes.json", "labels.txt")

# The ten ImageNet (WordNet) synsets of Imagenette, named as fastai's Imagenette README names them.
# NOTE: the parachute folder of the published archives is n03888257 (WordNet "parachute, chute";
# torchvision's Imagenette, which checks the same archive md5 as our registry, agrees); n03888605,
# which some copies of the label list show, is ImageNet's "parallel bars".
IMAGENETTE_CLASS_NAMES: dict[str, str] = {
    "n01440764": "tench",
    "n02102040": "English springer",
    "n02979186": "cassette player",
    "n03000684": "chain saw",
    "n03028079": "church",
    "n03394916": "French horn",
    "n03417042": "garbage truck",
    "n03425413": "gas pump",
    "n03445777": "golf ball",
    "n03888257": "parachute",
}

# The ten dog breeds of Imagewoof, with their ImageNet (WordNet) names. NOTE: the list in
# fastai's README swaps the two terriers; WordNet and the Stanford Dogs folders (built from the same
# synsets) give n02093754 = Border terrier and n02096294 = Australian terrier.
IMAGEWOOF_CLASS_NAMES: dict[str, str] = {
    "n02086240": "Shih-Tzu",
    "n02087394": "Rhodesian ridgeback",
    "n02088364": "beagle",
    "n02089973": "English foxhound",
    "n02093754": "Border terrier",
    "n02096294": "Australian terrier",
    "n02099601": "golden retriever",
    "n02105641": "Old English sheepdog",
    "n02111889": "Samoyed",
    "n02115641": "dingo",
}


def load_class_name_file(root: str | os.PathLike) -> dict[str, str] | None:
    """The `{folder: display name}` mapping in `root/classes.json` or `root/labels.txt`; None without either.

    Raises:
        ValueError: the file is not in the expected form; the message names the file and the line.
    """
    root = Path(root)
    path = root / "classes.json"
    if path.is_file():
        try:
            names = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e}); it must map folder names to display names, "
                             f'e.g. {{"n01440764": "tench"}}') from None
        if not isinstance(names, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                  for k, v in names.items()):
            raise ValueError(f"{path} must be a JSON object mapping folder names to display names "
                             f'(strings), e.g. {{"n01440764": "tench"}}; got {type(names).__name__}')
        return {k: v.strip() for k, v in names.items()}
    path = root / "labels.txt"
    if path.is_file():
        names = {}
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(maxsplit=1)
            if len(parts) < 2:
                raise ValueError(f"{path}, line {n}: expected a folder name, whitespace and a display name "
                                 f"(e.g. 'n01440764 tench'), got {line!r}")
            names[parts[0]] = parts[1].strip()
        return names
    return None


def read_class_names(root: str | os.PathLike | None, vocab: Sequence[str],
                     known: Mapping[str, str] | None = None) -> list[str]:
    """The display name of each label of `vocab`, in its order (see the module docstring for the sources).

    Args:
        root: the data folder that may hold `classes.json` or `labels.txt` (None: no folder).
        vocab: the labels (folder names) in index order.
        known: further names by folder, used where the folder's files say nothing.
    """
    from_file = load_class_name_file(root) if root is not None else None
    names = []
    for label in vocab:
        if from_file and from_file.get(label):
            names.append(from_file[label])
        elif known and known.get(label):
            names.append(known[label])
        else:
            names.append(label)
    return names
