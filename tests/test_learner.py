import pytest
import torch
from conftest import Points, groundup_mlp, torch_mlp

from groundup.callbacks.recorder import Recorder
from groundup.callbacks.tracking import COLUMNS, TrackResults
from groundup.learner import (
    EVENTS,
    Callback,
    CancelBatchException,
    CancelEpochException,
    CancelFitException,
    CancelStepException,
    CancelTrainException,
    CancelValidateException,
    Learner,
)
from groundup.losses import cross_entropy
from groundup.nn.bridge import to_torch
from groundup.optim import SGD, Adam


class Events(Callback):
    """Records every event it sees."""
    def __init__(self):
        self.seen = []
    def __getattribute__(self, name):
        if name in EVENTS:
            return lambda: object.__getattribute__(self, "seen").append(name)
        return object.__getattribute__(self, name)


for _e in EVENTS:
    setattr(Events, _e, lambda self: None)


@pytest.mark.parametrize("model_fn, opt_func", [(groundup_mlp, SGD), (groundup_mlp, Adam),
                                                (torch_mlp, torch.optim.SGD), (torch_mlp, torch.optim.AdamW)])
def test_fit_two_epochs_makes_the_loss_go_down(model_fn, opt_func):
    track = TrackResults(print_table=False)
    lr = 0.3 if opt_func in (SGD, torch.optim.SGD) else 0.03
    learn = Learner(model_fn(), Points(), cross_entropy, lr=lr, cbs=[track], opt_func=opt_func)
    learn.fit(2)
    h = track.history
    assert [r["epoch"] for r in h] == [0, 1] and set(h[0]) == {*COLUMNS, "lr", "data_seconds"}
    assert h[1]["train_loss"] < h[0]["train_loss"] and h[1]["valid_acc"] > 0.8


def test_events_fire_in_the_documented_order():
    ev = Events()
    dls = Points(n=64, bs=32)  # 1 training batch (48 samples → 2 batches), 1 validation batch
    learn = Learner(groundup_mlp(), dls, cross_entropy, lr=0.1, cbs=[ev])
    learn.fit(1)
    batch_t = ["before_batch", "after_pred", "after_loss", "after_backward", "after_step", "after_batch"]
    batch_v = ["before_batch", "after_pred", "after_loss", "after_batch"]
    assert ev.seen == (["before_fit", "before_epoch", "before_train"] + batch_t * 2 + ["after_train",
                       "before_validate"] + batch_v + ["after_validate", "after_epoch", "after_fit"])


def test_validation_runs_without_gradients_and_in_eval_mode():
    class Check(Callback):
        def after_pred(self):
            assert self.preds.requires_grad == self.training
            assert self.model.training == self.training
    Learner(groundup_mlp(), Points(n=64), cross_entropy, cbs=[Check()]).fit(1)


def count_cb(cancel_in, exc):
    class Canceller(Events):
        pass
    cb = Canceller()
    original = cb.__class__.__getattribute__
    def get(self, name):
        if name == cancel_in:
            def raise_it():
                object.__getattribute__(self, "seen").append(name)
                raise exc
            return raise_it
        return original(self, name)
    Canceller.__getattribute__ = get
    return cb


@pytest.mark.parametrize("where, exc, expect_after, expect_absent", [
    ("after_loss", CancelBatchException, "after_batch", "after_backward"),
    ("after_backward", CancelStepException, "after_batch", "after_step"),
    ("before_train", CancelTrainException, "after_train", "after_backward"),
    ("before_validate", CancelValidateException, "after_validate", "never-there"),
    ("before_epoch", CancelEpochException, "after_epoch", "before_train"),
    ("before_epoch", CancelFitException, "after_fit", "after_epoch"),
])
def test_cancel_exceptions_skip_their_part_and_still_run_the_after_event(where, exc, expect_after, expect_absent):
    cb = count_cb(where, exc)
    learn = Learner(groundup_mlp(), Points(n=64), cross_entropy, cbs=[cb])
    before = [p.detach().clone() for p in learn.model.parameters()]
    learn.fit(1)
    assert expect_after in cb.seen and expect_absent not in cb.seen and cb.seen[-1] == "after_fit"
    changed = any(not torch.equal(a, b) for a, b in zip(before, learn.model.parameters()))
    assert changed == (exc in (CancelValidateException,))  # every other cancel here skips all steps


def test_after_fit_runs_after_an_error_and_ctrl_c():
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        cb = count_cb("after_loss", exc)
        learn = Learner(groundup_mlp(), Points(n=64), cross_entropy, cbs=[cb])
        with pytest.raises(type(exc)):
            learn.fit(1)
        assert cb.seen[-1] == "after_fit" and torch.is_grad_enabled()
        learn.model(torch.zeros(1, 2)).sum().backward()  # the model is still usable


def test_callback_order_decides_who_runs_first():
    seen = []
    class A(Callback):
        order = 5
        def before_fit(self): seen.append("A")
    class B(Callback):
        order = -5
        def before_fit(self): seen.append("B")
    Learner(groundup_mlp(), Points(n=64), cross_entropy, cbs=[A(), B()]).fit(1, cbs=[CancelAtStart()])
    assert seen == ["B", "A"]


class CancelAtStart(Callback):
    def before_epoch(self):
        raise CancelFitException


def test_a_misspelled_event_is_an_error_when_added():
    class TimerCB(Callback):
        def after_btach(self): ...
    with pytest.raises(ValueError, match=r"no callback event 'after_btach' \(TimerCB.after_btach\); valid events: "):
        Learner(groundup_mlp(), Points(), cross_entropy, cbs=[TimerCB()])
    with pytest.raises(TypeError, match="pass an instance: TimerCB()"):
        Learner(groundup_mlp(), Points(), cross_entropy).add_cb(TimerCB)


def test_callbacks_read_learner_state_but_writes_must_go_through_learn():
    class SetLr(Callback):
        def before_fit(self):
            assert self.lr == 0.5 and self.model is self.learn.model
            self.learn.lr = 0.25
            self.mine = 1  # the callback's own new attribute: fine
            with pytest.raises(AttributeError, match=r"'self.lr = ...' would shadow .*write 'self.learn.lr = ...'"):
                self.lr = 0.1
        def before_epoch(self):
            raise CancelFitException
    learn = Learner(groundup_mlp(), Points(), cross_entropy, lr=0.5, cbs=[SetLr()])
    learn.fit(1)
    assert learn.lr == 0.25 and learn.opt.param_groups[0]["lr"] == 0.25  # opt made after before_fit


def test_callbacks_reach_the_learner_as_self_learner_and_the_batch_index_as_num():
    class Chapter(Callback):  # written with the walkthrough's names
        def before_fit(self):
            assert self.learner is self.learn
            self.learner.lr = 0.25
            self.nums = []
        def before_batch(self):
            xb, yb = self.batch
            self.learner.batch = xb * 0, yb  # replaces the learner's batch
        def after_pred(self):
            assert self.num == self.learn.iter
            self.nums.append((self.learner.training, self.num))
            assert self.xb.abs().sum() == 0
    cb = Chapter()
    learn = Learner(groundup_mlp(), Points(n=128, bs=32), cross_entropy, lr=0.5, cbs=[cb])
    learn.fit(1)
    assert learn.lr == 0.25 and learn.opt.lr == 0.25
    assert cb.nums == [(True, 0), (True, 1), (True, 2), (False, 0)]
    with pytest.raises(AttributeError):
        learn.num = 3  # read-only: the loop owns the index


def test_extra_fit_callbacks_are_removed_afterwards():
    learn = Learner(groundup_mlp(), Points(n=64), cross_entropy)
    learn.fit(1, cbs=[CancelAtStart()])
    assert learn.cbs == []


@pytest.mark.parametrize("kwargs, match", [
    ({"lr": -1}, "Learner: lr must be a finite number > 0, got -1"),
    ({"lr": float("nan")}, "lr must be a finite number > 0, got nan"),
    ({"loss_func": 3}, "loss_func must be callable"),
    ({"dls": [1, 2]}, r"dls must have .train and .valid"),
    ({"model": 3}, "model must be callable and have parameters"),
])
def test_bad_learner_arguments_are_named(kwargs, match):
    args = {"model": groundup_mlp(), "dls": Points(), "loss_func": cross_entropy, "lr": 0.1} | kwargs
    with pytest.raises((ValueError, TypeError), match=match):
        Learner(**args)
    with pytest.raises(ValueError, match="n_epochs must be a positive integer, got 0"):
        Learner(groundup_mlp(), Points(), cross_entropy).fit(0)


# -- the extension points -------------------------------------------------------------------------------

def test_wrap_model_trains_the_wrapper_and_gives_the_model_back_after_fit():
    model, calls = groundup_mlp(), []
    class Counting(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = to_torch(inner)
        def forward(self, x):
            calls.append(len(x))
            return self.inner(x)
    class Wrap(Callback):
        def before_fit(self):
            self.learn.wrap_model(Counting)
        def after_batch(self):
            assert isinstance(self.learn.model, Counting) and self.learn.unwrapped_model is model
    learn = Learner(model, Points(n=64, bs=16), cross_entropy, cbs=[Wrap()])
    learn.fit(1)
    assert learn.model is model and learn.unwrapped_model is model and len(calls) == len(learn.dls.train) + len(learn.dls.valid)


def test_autocast_and_grad_scaler_go_back_to_their_defaults_after_fit():
    seen = []
    class Set(Callback):
        def before_fit(self):
            self.learn.autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)
        def after_pred(self):
            seen.append(self.learn.preds.dtype)
    learn = Learner(groundup_mlp(), Points(n=64), cross_entropy, cbs=[Set()])
    learn.fit(1)
    assert set(seen) == {torch.bfloat16}
    assert learn.grad_scaler is None and not torch.is_autocast_enabled("cpu")
    with learn.autocast():
        assert not torch.is_autocast_enabled("cpu")


def test_hold_cancel_fit_turns_a_cancel_into_a_request():
    class Hold(Callback):
        order = -1
        def before_fit(self):
            self.learn.hold_cancel_fit = True
    class Cancel(Callback):
        def after_batch(self):
            raise CancelFitException
    class Agree(Callback):  # what a distributed callback does at an agreed point
        order = 10
        def after_epoch(self):
            if self.learn.cancel_fit_requested and self.learn.epoch == 1:
                self.learn.hold_cancel_fit = False
                raise CancelFitException
    ev = Events()
    learn = Learner(groundup_mlp(), Points(n=64), cross_entropy, cbs=[Hold(), Cancel(), Agree(), ev])
    learn.fit(4)
    assert ev.seen.count("before_epoch") == 2  # held through epoch 0, stopped at the end of epoch 1
    assert not learn.hold_cancel_fit and not learn.cancel_fit_requested


def test_keep_grads_ends_the_batch_after_backward_and_the_next_backward_adds_up():
    grads = []
    class Keep(Callback):
        order = -1
        def before_batch(self):
            self.learn.keep_grads = self.learn.training and self.learn.iter == 0
        def after_batch(self):
            if self.learn.training:
                grads.append(next(iter(self.learn.model.parameters())).grad)
    ev = Events()
    learn = Learner(groundup_mlp(), Points(n=64, bs=24), cross_entropy, lr=0.1, cbs=[Keep(), ev])
    learn.fit(1)  # two training batches: the first keeps its gradients, the second steps
    assert ev.seen.count("after_backward") == ev.seen.count("after_step") == 1 and ev.seen.count("after_batch") == 3
    assert grads[0] is not None and grads[1] is None  # kept after batch 0; zeroed after the step
    assert not learn.keep_grads  # back to its default after fit


def test_history_belongs_to_the_learner_and_lr_find_leaves_it_alone(tmp_path):
    learn = Learner(groundup_mlp(), Points(n=64), cross_entropy, cbs=[TrackResults(print_table=False)])
    learn.fit(2)
    history = [dict(r) for r in learn.history]
    assert [r["epoch"] for r in history] == [0, 1]
    learn.lr_find(path=None, max_iter=3)
    assert learn.history == history


def test_fit_one_cycle_takes_max_lr():
    learn = Learner(groundup_mlp(), Points(n=64), cross_entropy, cbs=[recorder := Recorder()])
    learn.fit_one_cycle(1, max_lr=0.05)
    assert 0.02 < max(recorder.lrs) <= 0.05 and recorder.lrs[0] == pytest.approx(0.005)  # max_lr / div


class SlowLoader:
    """Batches of `inner`, each after `delay` seconds: a loader that keeps the loop waiting."""

    def __init__(self, inner, delay: float):
        self.inner, self.delay = inner, delay

    def __len__(self):
        return len(self.inner)

    def __iter__(self):
        import time

        for batch in self.inner:
            time.sleep(self.delay)
            yield batch


def test_data_seconds_is_the_time_each_epoch_waited_for_batches():
    dls = Points()  # 6 training and 2 validation batches
    dls.train, dls.valid = SlowLoader(dls.train, 0.02), SlowLoader(dls.valid, 0.02)
    track = TrackResults(print_table=False)
    Learner(groundup_mlp(), dls, cross_entropy, lr=0.1, cbs=[track]).fit(2)
    for row in track.history:
        assert 8 * 0.02 <= row["data_seconds"] < row["seconds"]
    fast = TrackResults(print_table=False)
    Learner(groundup_mlp(), Points(), cross_entropy, lr=0.1, cbs=[fast]).fit(1)
    assert fast.history[0]["data_seconds"] < 0.5 * 8 * 0.02


def test_one_callback_may_be_passed_without_a_list_as_fastai_takes_it():
    ev = Events()
    learn = Learner(groundup_mlp(), Points(n=64, bs=32), cross_entropy, lr=0.1, cbs=ev)
    assert learn.cbs == [ev]
    once = Events()
    learn.fit(1, cbs=once)
    assert once.seen[0] == "before_fit" and once.seen[-1] == "after_fit" and learn.cbs == [ev]
    recorder = Recorder()
    learn.fit_one_cycle(1, 0.05, cbs=recorder)
    assert 0.02 < max(recorder.lrs) <= 0.05 and learn.cbs == [ev]
    with pytest.raises(TypeError, match="pass an instance: Recorder()"):
        learn.fit(1, cbs=Recorder)
