"""Updates to try codecs on: heavy-tailed synthetic vectors and a real training update.

The real update comes from a few local epochs of a small NumPy MLP on one client's share
of scikit-learn's bundled 8×8 digits (offline data shipped inside scikit-learn).
"""

from __future__ import annotations

import numpy as np

SKLEARN_HINT = "pip install scikit-learn (or pip install 'fedcodec[bench]')"


def laplace(n: int, *, seed: int = 0, scale: float = 1e-3) -> np.ndarray:
    """Float32 Laplace samples: the shape of a typical update's histogram."""
    return np.random.default_rng(seed).laplace(scale=scale, size=n).astype(np.float32)


def student_t(n: int, *, df: float = 3.0, seed: int = 0, scale: float = 1e-3) -> np.ndarray:
    """Float32 Student-t samples: heavier tails than any real update we have seen."""
    return (scale * np.random.default_rng(seed).standard_t(df, size=n)).astype(np.float32)


def structured_matrix(
    rows: int, cols: int, *, seed: int = 0, zero_every: int = 0, scale: float = 1e-3
) -> np.ndarray:
    """A float32 ``rows × cols`` matrix update with row and column structure: Laplace
    noise times a rank-1 scale (row scale × column scale, each ``|Student-t(3)|``), every
    ``zero_every``-th column zero (inputs that never fired), like a dense layer's update
    after a few local steps. Signs are random (no sign structure).

    Examples
    --------
    >>> structured_matrix(4, 6, zero_every=3)[:, ::3].any()
    np.False_
    """
    rng = np.random.default_rng(seed)
    s = np.outer(np.abs(rng.standard_t(3, rows)), np.abs(rng.standard_t(3, cols)))
    if zero_every:
        s[:, ::zero_every] = 0.0
    return (s * rng.laplace(size=(rows, cols)) * scale).astype(np.float32)


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"the digits data set needs scikit-learn: {SKLEARN_HINT}") from exc
    data = load_digits()
    return (data.data / 16.0).astype(np.float32), data.target.astype(np.int64)


def digits_mlp_update(
    *,
    hidden: int = 128,
    client: int = 0,
    num_clients: int = 10,
    epochs: int = 2,
    lr: float = 0.1,
    batch_size: int = 16,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """The update (new − old weights) of one client after local SGD on its digits.

    The global model is a seeded random MLP (64 → ``hidden`` → 10, ReLU, softmax); client
    ``client`` of ``num_clients`` holds an IID share of the 1,797 digits.

    Examples
    --------
    >>> update = digits_mlp_update(hidden=32, epochs=1)
    >>> sorted(update), update["w1"].shape
    (['b1', 'b2', 'w1', 'w2'], (64, 32))
    """
    x, y = _load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    mine = order[client::num_clients]
    x, y = x[mine], y[mine]
    init = np.random.default_rng(12345)
    params = {
        "w1": (init.standard_normal((64, hidden)) * np.sqrt(2.0 / 64)).astype(np.float32),
        "b1": np.zeros(hidden, dtype=np.float32),
        "w2": (init.standard_normal((hidden, 10)) * np.sqrt(1.0 / hidden)).astype(np.float32),
        "b2": np.zeros(10, dtype=np.float32),
    }
    start = {k: v.copy() for k, v in params.items()}
    for _ in range(epochs):
        perm = rng.permutation(len(y))
        for i in range(0, len(y), batch_size):
            idx = perm[i : i + batch_size]
            xb, yb = x[idx], y[idx]
            h = np.maximum(xb @ params["w1"] + params["b1"], 0.0)
            logits = h @ params["w2"] + params["b2"]
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(yb)), yb] -= 1.0
            g_logits = p / len(yb)
            g_h = (g_logits @ params["w2"].T) * (h > 0)
            params["w2"] -= lr * (h.T @ g_logits)
            params["b2"] -= lr * g_logits.sum(axis=0)
            params["w1"] -= lr * (xb.T @ g_h)
            params["b1"] -= lr * g_h.sum(axis=0)
    return {k: (params[k] - start[k]).astype(np.float32) for k in params}
