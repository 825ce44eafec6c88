"""`ValidateEvery`: validate every n-th epoch and the last one, and spend the rest on training.

A validation pass costs about a third of a training epoch's forward passes over the training set:
on a CPU, `resnet_fast` at 64 px validates Imagenette's 3,925 images in about 4 s against about
30 s for a training epoch. In a short run to a time budget, validating only now and then buys
epochs. An epoch that is not validated has no `valid_loss` or validation metric in its row of
`learn.history` (the table shows `-`, `metrics.csv` an empty cell); `Checkpoint(best_by=...)`
and `EarlyStopping` judge only the validated epochs.

Which epochs are validated is a plain function of the epoch (`validates`), so a resumed run
validates the epochs the first one would have; the callback keeps no state.

Example:
    >>> cb = ValidateEvery(3)
    >>> [e for e in range(8) if cb.validates(e, n_epochs=8)]
    [2, 5, 7]
"""

from __future__ import annotations

from groundup.callbacks.core import Callback, CancelValidateException
from groundup.utils.checks import check_int

__all__ = ["ValidateEvery"]


class ValidateEvery(Callback):
    """Run the validation pass only in every `n`-th epoch (epochs n-1, 2n-1, ...) and in the last one.

    Args:
        n: validate one epoch in `n` (1: every epoch, as without this callback).
    """

    order = -20  # before every callback that starts something in before_validate (progress bar, sums)
    during_lr_find = False  # the LR finder skips validation anyway

    def __init__(self, n: int):
        self.n = check_int("ValidateEvery", "n", n)

    def validates(self, epoch: int, n_epochs: int) -> bool:
        """Whether `epoch` (0-based) of `n_epochs` has a validation pass."""
        return (epoch + 1) % self.n == 0 or epoch >= n_epochs - 1

    def before_validate(self) -> None:
        if not self.validates(self.learn.epoch, self.learn.n_epochs):
            raise CancelValidateException

    def __repr__(self) -> str:
        return f"ValidateEvery({self.n})"
