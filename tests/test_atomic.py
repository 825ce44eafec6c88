import pytest

from groundup.utils.atomic import atomic_write


@pytest.mark.parametrize("durable", [False, True])
def test_atomic_write_replaces_the_file_only_when_complete(tmp_path, durable):
    path = tmp_path / "sub" / "f.txt"
    with atomic_write(path, "w", durable=durable, encoding="utf-8") as f:
        f.write("old")
    with pytest.raises(RuntimeError), atomic_write(path, "w", durable=durable, encoding="utf-8") as f:
        f.write("half of the new")
        raise RuntimeError("crash while writing")
    assert path.read_text() == "old"
    assert [p.name for p in path.parent.iterdir()] == ["f.txt"]  # no temporary file left behind
    with atomic_write(path, durable=durable) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new"


# -- Ctrl-C and SIGTERM wait for the file --------------------------------------------------------------------------
def test_ctrl_c_during_a_write_is_delivered_after_the_file_is_whole(tmp_path):
    import os
    import signal

    target = tmp_path / "a.bin"
    with pytest.raises(KeyboardInterrupt), atomic_write(target) as f:
        f.write(b"first half ")
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, mid-write
        f.write(b"second half")
    assert target.read_bytes() == b"first half second half"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_an_interrupt_inside_torch_save_keeps_the_checkpoint_and_stays_an_interrupt(tmp_path):
    """torch's zip writer turned a KeyboardInterrupt raised in its write callback into a RuntimeError."""
    import os
    import signal

    import torch

    class Interrupted:  # the file torch.save writes to; Ctrl-C arrives at its first write
        def __init__(self, f):
            self.f, self.sent = f, False

        def write(self, data):
            if not self.sent:
                self.sent = True
                os.kill(os.getpid(), signal.SIGINT)
            return self.f.write(data)

        def flush(self):
            return self.f.flush()

    state = {"w": torch.arange(100_000, dtype=torch.float32)}
    with pytest.raises(KeyboardInterrupt), atomic_write(tmp_path / "model.pt") as f:
        torch.save(state, Interrupted(f))
    assert torch.equal(torch.load(tmp_path / "model.pt", weights_only=True)["w"], state["w"])
