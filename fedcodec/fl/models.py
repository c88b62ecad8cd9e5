"""The models of the harness's tasks (torch ``nn.Module``; no buffers, only parameters)."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """Fully connected ReLU network; ``hidden=()`` is multinomial logistic regression."""

    def __init__(self, num_inputs: int, num_classes: int, hidden: tuple[int, ...] = (64,)):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = num_inputs
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CNN(nn.Module):
    """The FedAvg paper's CNN: 5×5 conv 32 → pool → 5×5 conv 64 → pool → 512 → classes.

    1,663,370 parameters for 28×28 inputs and 10 classes.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 28):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.pool = nn.MaxPool2d(2)
        side = image_size // 4
        self.fc1 = nn.Linear(64 * side * side, 512)
        self.fc2 = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


def two_nn(num_inputs: int = 784, num_classes: int = 10) -> MLP:
    """The FedAvg paper's 2NN: two hidden layers of 200 (199,210 parameters on MNIST)."""
    return MLP(num_inputs, num_classes, hidden=(200, 200))


class CharLSTM(nn.Module):
    """The FedAvg paper's character model: 8-dim embedding, stacked LSTM, softmax.

    ``hidden=256, layers=2`` is the paper's size; the output at every position predicts
    the next character.
    """

    def __init__(self, vocab_size: int, *, embed_dim: int = 8, hidden: int = 256, layers: int = 2):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.embed(x))
        return self.out(h)  # (batch, time, vocab)


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
