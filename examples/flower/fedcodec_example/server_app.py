"""The ServerApp: FedAvg wrapped in fedcodec's strategy (both links compressed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, Context, Message
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from fedcodec.flower import METRIC_BYTES, FedcodecStrategy, reply_client_key

from .task import central_accuracy, make_model


class ReportingStrategy(FedcodecStrategy):
    """Also records, per round and client, the payload bytes that arrived next to the size
    the client says it sent (they match unless the transport changed the payload)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received: dict[int, list[dict[str, int]]] = {}

    def decode_reply(self, server_round: int, reply: Message) -> int:
        nbytes = super().decode_reply(server_round, reply)
        sent = int(next(iter(reply.content.metric_records.values()))[METRIC_BYTES])  # type: ignore[arg-type]
        self.received.setdefault(server_round, []).append(
            {"client": reply_client_key(reply), "received": nbytes, "sent": sent}
        )
        return nbytes


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    num_nodes = int(config["min-nodes"])  # type: ignore[arg-type]
    downlink = str(config.get("downlink-codec", "")) or "null"
    strategy = ReportingStrategy(
        FedAvg(
            fraction_train=float(config["fraction-train"]),  # type: ignore[arg-type]
            fraction_evaluate=0.0,
            min_available_nodes=num_nodes,
        ),
        json.loads(str(config["codec"])),
        downlink_codec=json.loads(downlink),
        seed=int(config.get("seed", 0)),  # type: ignore[arg-type]
    )
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(make_model().state_dict()),
        num_rounds=int(config["num-server-rounds"]),  # type: ignore[arg-type]
        evaluate_fn=lambda rnd, arrays: central_accuracy(arrays, num_nodes),
    )
    rounds = []
    for rnd in sorted(strategy.history):
        acc = float(result.evaluate_metrics_serverapp[rnd]["accuracy"])
        up, down = strategy.history[rnd], strategy.downlink_history[rnd]
        print(
            f"round {rnd}: {sum(up.values())} uplink and {sum(down.values())} downlink "
            f"payload bytes, {len(up)} clients, accuracy {acc:.3f}"
        )
        rounds.append(
            {
                "round": rnd,
                "uplink_bytes": up,
                "downlink_bytes": down,
                "replies": strategy.received.get(rnd, []),
                "accuracy": acc,
            }
        )
    if str(config.get("report", "")):
        doc = {
            "initial_accuracy": float(result.evaluate_metrics_serverapp[0]["accuracy"]),
            "rounds": rounds,
        }
        Path(str(config["report"])).write_text(json.dumps(doc, indent=1) + "\n")
