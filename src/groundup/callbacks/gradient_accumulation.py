"""`GradientAccumulation`: step every K batches, as if each step had seen one batch K times larger."""

from __future__ import annotations

from groundup.callbacks.core import Callback
from groundup.utils.checks import check_int
from groundup.utils.process_group import is_distributed

__all__ = ["GradientAccumulation"]


class GradientAccumulation(Callback):
    """Add up the gradients of `k` batches, then take one step: a batch `k` times larger, in the memory of one.

    Each batch's loss is divided by the size of its group before `backward` (in `after_loss`,
    through `learn.loss_grad`; `learn.loss`, which the metrics read, is left alone), so the summed
    gradient is the mean over the group, as one big batch's mean loss would give. Between steps it
    sets the Learner's `keep_grads` extension point, which ends those batches after `backward` (no
    step, no `zero_grad`); see `Learner`. The last group of an epoch may be shorter (7 batches with
    k=3: 3, 3, 1): it is divided by its own length and still steps, so no batch is lost.

    The equivalence with one large batch is exact (to float rounding) when the batches of a group
    have equal sizes and the model has no BatchNorm (BatchNorm's statistics are per forward pass).
    Schedules still set the lr per batch: the step uses the lr of its group's last batch.

    Args:
        k: batches per optimizer step; 1 steps every batch.

    Example:
        >>> learn.fit(3, cbs=[GradientAccumulation(4)])   # bs 16 per batch, one step per 64 samples
    """

    order = 0  # in before_batch, before callbacks that look at keep_grads; after_loss before Recorder (20)

    def __init__(self, k: int) -> None:
        self.k = check_int("GradientAccumulation", "k", k)
        self._divide_by = 1

    def before_train(self) -> None:
        if is_distributed() and self.k > 1:
            raise ValueError("GradientAccumulation does not work with distributed training yet (each backward "
                             "would all-reduce); raise the global batch with more processes or a larger batch "
                             "size instead")
        self.learn.opt.zero_grad()  # nothing left over from a pass that was cancelled mid-group

    def before_batch(self) -> None:
        learn = self.learn
        if not learn.training:
            return
        i, n = learn.iter, learn.n_iter  # n: 0 when the loader has no len (then every group has k batches)
        start = i - i % self.k
        size = min(self.k, n - start) if n else self.k
        self._divide_by = size
        learn.keep_grads = i - start + 1 < size  # the last batch of its group steps

    def after_loss(self) -> None:
        if self.learn.training and self._divide_by > 1:
            self.learn.loss_grad = self.learn.loss_grad / self._divide_by

    def after_train(self) -> None:
        self.learn.keep_grads = False

    def __repr__(self) -> str:
        return f"GradientAccumulation(k={self.k})"
