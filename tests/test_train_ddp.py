"""DDP: 2 gloo processes on the CPU give the same weights as 1 process with the same global batch; with BatchNorm,
the same as 1 process that normalises each rank's half of the batch on its own."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from _train_helpers import TinyBNSNN, TinySNN, tiny_config, tiny_datasets

from spikescope.train import fit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, out_dir, model_fn=TinySNN):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    cfg = tiny_config(out_dir, epochs=2, device="cpu")
    cfg.data.batch_size = 4 // world
    fit(cfg, model_fn=model_fn, datasets=tiny_datasets())


def _spawn(tmp_path, model_fn=TinySNN):
    try:
        mp.spawn(_worker, args=(2, _free_port(), tmp_path / "two", model_fn), nprocs=2, join=True)
    except Exception as err:  # pragma: no cover - sandbox without local sockets
        pytest.skip(f"cannot start a 2-process gloo group here: {err}")
    return torch.load(tmp_path / "two" / "run" / "last.pt", weights_only=True)


def test_two_process_gloo_equals_one_process(tmp_path):
    one = tiny_config(tmp_path / "one", epochs=2, device="cpu")
    one.data.batch_size = 4
    fit(one, model_fn=TinySNN, datasets=tiny_datasets())
    b = _spawn(tmp_path)
    a = torch.load(one.run_dir / "last.pt", weights_only=True)
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-5, atol=1e-6)
    for ra, rb in zip(a["history"], b["history"]):
        assert ra["test_acc1"] == rb["test_acc1"]
        assert abs(ra["train_loss"] - rb["train_loss"]) < 1e-5
    assert len(b["rng"]) == 2
    assert not torch.equal(b["rng"][0]["torch"], b["rng"][1]["torch"])  # ranks draw their own dropout masks


def _bn_ranks2():
    return TinyBNSNN(ranks=2)


@pytest.mark.slow
def test_two_process_batchnorm_equals_per_rank_statistics(tmp_path):
    """Without SyncBatchNorm each rank normalises with its own half batch and rank 0's running statistics are kept:
    equal to one process doing exactly that, not to one process with full-batch BatchNorm."""
    one = tiny_config(tmp_path / "one", epochs=2, device="cpu")
    one.data.batch_size = 4
    fit(one, model_fn=_bn_ranks2, datasets=tiny_datasets())
    full = tiny_config(tmp_path / "full", epochs=2, device="cpu")
    full.data.batch_size = 4
    fit(full, model_fn=TinyBNSNN, datasets=tiny_datasets())
    b = _spawn(tmp_path, TinyBNSNN)
    a = torch.load(one.run_dir / "last.pt", weights_only=True)
    c = torch.load(full.run_dir / "last.pt", weights_only=True)
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-5, atol=1e-6)
    assert [r["test_acc1"] for r in a["history"]] == [r["test_acc1"] for r in b["history"]]
    assert not torch.allclose(c["model"]["bn.running_var"], b["model"]["bn.running_var"])
