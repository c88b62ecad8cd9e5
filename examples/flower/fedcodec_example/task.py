"""The model, the data and the training of the example (digits, a small MLP)."""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord, MetricRecord

from fedcodec.fl import load_digits
from fedcodec.fl.models import MLP


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return MLP(64, 10, (32,))


def train(model: torch.nn.Module, partition_id: int, num_partitions: int) -> tuple[float, int]:
    """One local epoch of SGD (batches of 10, order seeded by the partition id); returns
    (summed loss, examples)."""
    data = load_digits(num_clients=num_partitions, partition="iid", seed=0).clients[partition_id]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.from_numpy(data.train_x), torch.from_numpy(data.train_y)
    gen = torch.Generator().manual_seed(partition_id)
    order = torch.randperm(len(y), generator=gen)
    total = 0.0
    for i in range(0, len(y), 10):
        idx = order[i : i + 10]
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        total += float(loss.detach())
    return total, len(y)


def central_accuracy(arrays: ArrayRecord, num_partitions: int) -> MetricRecord:
    """Accuracy of the global model on every client's held-out digits."""
    model = make_model()
    model.load_state_dict(arrays.to_torch_state_dict())
    x, y = load_digits(num_clients=num_partitions, partition="iid", seed=0).test_set()
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(1)
    return MetricRecord({"accuracy": float((pred == torch.from_numpy(y)).float().mean())})
