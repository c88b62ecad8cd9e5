"""One rank of the two-process DDP test (tests/test_torch.py starts two of these).

Usage: python ddp_worker.py RANK PORT CODEC_JSON ERROR_FEEDBACK OUT_JSON
"""

from __future__ import annotations

import json
import sys

import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from torch.nn.parallel import DistributedDataParallel

import fedcodec
from fedcodec.torch import ddp_hook


def main() -> None:
    rank, port, codec_json, ef, out = sys.argv[1:6]
    rank_i = int(rank)
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank_i, world_size=2
    )
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    ddp = DistributedDataParallel(model)
    state, hook = ddp_hook(fedcodec.get_codec(json.loads(codec_json)), error_feedback=ef == "1")
    ddp.register_comm_hook(state, hook)
    digits = load_digits()
    x = torch.tensor(digits.data[rank_i::2] / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target[rank_i::2], dtype=torch.int64)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.5)
    gen = torch.Generator().manual_seed(rank_i)
    losses = []
    steps = 100
    for _ in range(steps):
        idx = torch.randint(0, len(y), (64,), generator=gen)
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(ddp(x[idx]), y[idx])
        loss.backward()
        opt.step()
        with torch.no_grad():
            losses.append(float(torch.nn.functional.cross_entropy(model(x), y)))
    params = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy()
    result = {
        "losses": losses,
        "params": params.tolist(),
        "numel": int(params.size),
        "steps": steps,
        "bytes_sent": state.bytes_sent,
        "bytes_received": state.bytes_received,
        "log": state.log,
        "accuracy": float((model(x).argmax(1) == y).float().mean()),
    }
    with open(out, "w") as f:
        json.dump(result, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
