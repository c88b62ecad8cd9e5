"""The ClientApp: local training, with fedcodec's mod on the reply and the broadcast."""

from __future__ import annotations

import json
from typing import Any

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedcodec.flower import fedcodec_mod

from .task import make_model, train


def codec_mod(msg: Message, context: Context, call_next: Any) -> Message:
    """fedcodec's mod with the codecs of the run config (the server reads the same)."""
    config = context.run_config
    downlink = str(config.get("downlink-codec", "")) or "null"
    mod = fedcodec_mod(
        json.loads(str(config["codec"])),
        downlink_codec=json.loads(downlink),
        seed=int(config.get("seed", 0)),  # type: ignore[arg-type]
    )
    return mod(msg, context, call_next)


app = ClientApp(mods=[codec_mod])


@app.train()
def local_train(msg: Message, context: Context) -> Message:
    torch.set_num_threads(1)
    pid = int(context.node_config["partition-id"])  # type: ignore[arg-type]
    num = int(context.node_config["num-partitions"])  # type: ignore[arg-type]
    model = make_model()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    loss, examples = train(model, pid, num)
    content = RecordDict(
        {
            "arrays": ArrayRecord(model.state_dict()),
            "metrics": MetricRecord({"train_loss": loss, "num-examples": examples}),
        }
    )
    return Message(content=content, reply_to=msg)
