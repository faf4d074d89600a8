"""DDP: 2 gloo processes on the CPU give the same weights as 1 process with the same global batch."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from _train_helpers import TinySNN, tiny_config, tiny_datasets

from spikescope.train import fit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    cfg = tiny_config(out_dir, epochs=2, device="cpu")
    cfg.data.batch_size = 4 // world
    fit(cfg, model_fn=TinySNN, datasets=tiny_datasets())


def test_two_process_gloo_equals_one_process(tmp_path):
    one = tiny_config(tmp_path / "one", epochs=2, device="cpu")
    one.data.batch_size = 4
    fit(one, model_fn=TinySNN, datasets=tiny_datasets())
    try:
        mp.spawn(_worker, args=(2, _free_port(), tmp_path / "two"), nprocs=2, join=True)
    except Exception as err:  # pragma: no cover - sandbox without local sockets
        pytest.skip(f"cannot start a 2-process gloo group here: {err}")
    a = torch.load(one.run_dir / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "two" / "run" / "last.pt", weights_only=True)
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-5, atol=1e-6)
    for ra, rb in zip(a["history"], b["history"]):
        assert ra["test_acc1"] == rb["test_acc1"]
        assert abs(ra["train_loss"] - rb["train_loss"]) < 1e-5
    assert len(b["rng"]) == 2
