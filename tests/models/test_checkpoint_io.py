"""Reading checkpoints: an unsafe or corrupt file is refused with our own reason, never PyTorch's
advice to retry with weights_only=False."""

import os

import pytest
import torch

from diffusionad_edge.errors import CheckpointError
from diffusionad_edge.models.checkpoint_io import read_checkpoint


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_unsafe_and_corrupt_checkpoints_do_not_advise_weights_only_false(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"format": "diffusionad_edge.checkpoint", "x": Evil()}, evil)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"garbage" * 100)
    for path, reason in ((evil, "posix.system"), (garbage, "")):
        with pytest.raises(CheckpointError) as info:
            read_checkpoint(path)
        msg = str(info.value)
        assert msg.startswith("not a readable checkpoint") and str(path) in msg and reason in msg
        assert "\n" not in msg
        assert "weights_only" not in msg and "will likely succeed" not in msg and "trusted source" not in msg


@pytest.mark.parametrize("content", [b"junk\n", b"\x80\x02}q\x00", b"not a checkpoint at all " * 50])
def test_arbitrary_bytes_are_one_clear_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_checkpoint(path)
