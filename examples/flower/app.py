"""Flower + fedcodec: FedAvg on scikit-learn's digits with RDQ-compressed client updates.

Run (one command, Flower's simulation engine, 4 SuperNodes, 3 rounds)::

    .venv/bin/python examples/flower/app.py

The ClientApp trains a small torch MLP on its share of the digits (the harness's data
loader, IID split by partition id); ``fedcodec_mod`` compresses its reply; the ServerApp's
FedAvg is wrapped in ``FedcodecStrategy``, which decodes the replies and reports the bytes
received per round.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation

from fedcodec.fl import load_digits
from fedcodec.fl.models import MLP
from fedcodec.flower import FedcodecStrategy, fedcodec_mod

CODEC = {"id": "rdq", "bits_per_param": 2.0}


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return MLP(64, 10, (32,))


def make_client_app(codec: Mapping[str, Any] = CODEC, error_feedback: bool = False) -> ClientApp:
    app = ClientApp(mods=[fedcodec_mod(codec, error_feedback=error_feedback)])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        pid = int(context.node_config["partition-id"])
        num = int(context.node_config["num-partitions"])
        data = load_digits(num_clients=num, partition="iid", seed=0).clients[pid]
        model = make_model()
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x, y = torch.from_numpy(data.train_x), torch.from_numpy(data.train_y)
        gen = torch.Generator().manual_seed(pid)
        total = 0.0
        for i in range(0, len(y), 10):
            idx = torch.randperm(len(y), generator=gen)[:10] if i else torch.arange(min(10, len(y)))
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach())
        content = RecordDict(
            {
                "arrays": ArrayRecord(model.state_dict()),
                "metrics": MetricRecord({"train_loss": total, "num-examples": len(y)}),
            }
        )
        return Message(content=content, reply_to=msg)

    return app


def evaluate_central(server_round: int, arrays: ArrayRecord) -> MetricRecord:
    """Accuracy of the global model on all clients' held-out digits."""
    model = make_model()
    model.load_state_dict(arrays.to_torch_state_dict())
    x, y = load_digits(num_clients=4, partition="iid", seed=0).test_set()
    with torch.no_grad():
        acc = float((model(torch.from_numpy(x)).argmax(1) == torch.from_numpy(y)).float().mean())
    return MetricRecord({"accuracy": acc})


def make_server_app(
    strategy: FedcodecStrategy, num_rounds: int = 3, on_result: Callable[[Any], None] | None = None
) -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        result = strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(make_model().state_dict()),
            num_rounds=num_rounds,
            evaluate_fn=evaluate_central,
        )
        if on_result is not None:
            on_result(result)

    return app


def default_strategy(codec: Mapping[str, Any] = CODEC, num_nodes: int = 4) -> FedcodecStrategy:
    fedavg = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_available_nodes=num_nodes)
    return FedcodecStrategy(fedavg, codec)


def main() -> int:
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    results: list[Any] = []
    strategy = default_strategy()
    run_simulation(
        server_app=make_server_app(strategy, on_result=results.append),
        client_app=make_client_app(),
        num_supernodes=4,
        backend_config={"client_resources": {"num_cpus": 1}},
    )
    result = results[0]
    for rnd, sizes in strategy.history.items():
        acc = result.evaluate_metrics_serverapp[rnd]["accuracy"]
        total = sum(sizes.values())
        print(f"round {rnd}: {total} payload bytes from {len(sizes)} nodes, accuracy {acc:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
