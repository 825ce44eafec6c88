"""Named training recipes: presets of `TrainConfig` settings that `groundup train --recipe NAME` starts from.

A recipe sets the architecture, image size, epochs, learning rate, schedule, optimizer and
augmentation together, as measured to work; any option given on the command line (or in a
`--config` file) overrides the preset's value. `groundup train --list-recipes` prints this table.

    fast     the fastest road to a good Imagenette model on a CPU (`benchmarks/bench_accuracy.py`
             measures its time to accuracy; the README has the plot and the ablation)
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from groundup.run.config import TrainConfig

__all__ = ["RECIPES", "Recipe", "format_recipes", "get_recipe"]


@dataclass(frozen=True)
class Recipe:
    """A named preset: a one-line description and the `TrainConfig` settings it sets."""

    name: str
    description: str
    settings: dict[str, Any] = field(default_factory=dict)

    def config(self, **overrides: Any) -> TrainConfig:
        """The `TrainConfig` of this recipe, with `overrides` on top (e.g. `data=`, `seed=`)."""
        return TrainConfig(**{**self.settings, "recipe": self.name, **overrides})


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("fast", "Imagenette at 64 px on a CPU in under 10 minutes: a ResNet with a two-layer stride-2 stem, "
                   "average-pool shortcuts and torch's init, progressive resizing (32, 48, then 64 px), random "
                   "shifts (reflection-padded) and flips, Nesterov SGD one-cycle (cosine), label smoothing 0.3, no "
                   "weight decay on norms and biases, a moving average of the weights (0.99) validated every third "
                   "epoch and kept, flip TTA, channels-last weights "
                   "(eager: torch.compile gained nothing for this model on a CPU)",
           {"arch": "resnet_fast", "size": 64, "epochs": 25, "bs": 64, "valid_bs": 64, "valid_every": 3, "lr": 0.2,
            "opt": "sgd", "nesterov": True, "wd": 5e-4, "wd_norms": False, "schedule": "one-cycle", "warmup": 0.25,
            "anneal": "cos", "augment": True, "crop": "pad", "start_size": 32, "grow_until": 0.5, "label_smoothing": 0.3,
            "ema": 0.99, "tta": True, "compile": False, "channels_last": True}),
)}


def get_recipe(name: str) -> Recipe:
    """The recipe called `name`, or ValueError listing the names (with the closest one)."""
    if name not in RECIPES:
        close = difflib.get_close_matches(str(name), RECIPES, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(f"--recipe: no recipe {name!r}{hint}; recipes: {', '.join(RECIPES)} "
                         f"(see groundup train --list-recipes)")
    return RECIPES[name]


def format_recipes() -> str:
    """The recipes as text: each name, its description, and its settings as `--flag value`."""
    lines = []
    for r in RECIPES.values():
        flags = " ".join(_flag(k, v) for k, v in r.settings.items())
        lines += [f"{r.name}: {r.description}", f"    {flags}", ""]
    lines.append("Use one with: groundup train --recipe NAME; options given as well override the recipe's.")
    return "\n".join(lines)


def _flag(key: str, value: Any) -> str:
    flag = "--" + key.replace("_", "-")
    if isinstance(value, bool):
        return flag if value else "--no-" + key.replace("_", "-")
    return f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}"
