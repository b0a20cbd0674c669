"""A linear classifier on a layer's features: extraction on the engine, softmax regression.

Features come from the engine block (``set_outputs([blob], end=layer)``, batches of
Caffe-preprocessed images, nothing but the chosen blob copied to the host). The
classifier is multinomial logistic regression (softmax) with an L2 penalty, trained
full-batch by L-BFGS (``scipy.optimize.minimize``) on standardised features, like
scikit-learn's ``LogisticRegression(solver="lbfgs")``: convex, so no learning rate to
tune. Each L-BFGS iteration is one pass over the training features (an "epoch").
The standardisation is folded back into the weights, so the result is one
InnerProduct layer reading the raw blob: ``W' = W / std``, ``b' = b - W' @ mean``.

>>> clf = SoftmaxRegression.fit(train_x, train_y, num_classes=2)     # doctest: +SKIP
>>> clf.accuracy(val_x, val_y)                                      # doctest: +SKIP
1.0
>>> weights, bias = clf.inner_product()   # (K, D), (K,)         # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

#: Default L2 penalty on the standardised-feature weights (mean loss + 0.5 * l2 * |W|^2).
DEFAULT_L2 = 1e-3


def extract_features(block, blob: str, end_layer: str, batches, ctx=None) -> np.ndarray:
    """N x D float32 features of ``blob`` (flattened) for every batch of ``batches``."""
    import mxnet as mx
    block.set_outputs([blob], end=end_layer)
    if ctx is None:
        params = list(block.collect_params().values())
        ctx = params[0].list_ctx()[0] if params else None
    chunks = []
    for batch in batches:
        out = block(mx.nd.array(batch, ctx=ctx, dtype="float32"))
        chunks.append(out.reshape((out.shape[0], -1)).asnumpy())
    return np.concatenate(chunks, axis=0)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class SoftmaxRegression:
    """Multinomial logistic regression on raw features: ``scores = x @ weight.T + bias``."""
    weight: np.ndarray     # (K, D)
    bias: np.ndarray       # (K,)
    iterations: int = 0
    loss: float = float("nan")

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, num_classes: int, l2: float = DEFAULT_L2,
            max_iter: int = 100,
            callback: Optional[Callable[[int, "SoftmaxRegression"], None]] = None
            ) -> "SoftmaxRegression":
        """Minimise mean cross-entropy + ``0.5 * l2 * |W|^2`` (on standardised features;
        bias not penalised) with L-BFGS for at most ``max_iter`` iterations.

        ``callback(iteration, current_model)`` runs after every iteration.
        """
        from scipy.optimize import minimize
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.int64)
        n, d = x.shape
        k = int(num_classes)
        if y.min() < 0 or y.max() >= k:
            raise ValueError(f"labels must lie in 0..{k - 1}")
        mu = x.mean(axis=0)
        sd = x.std(axis=0)
        sd[sd < 1e-8] = 1.0          # constant features (dead units) stay as they are
        z = (x - mu) / sd
        onehot = np.zeros((n, k))
        onehot[np.arange(n), y] = 1.0

        def unpack(theta):
            return theta[:k * d].reshape(k, d), theta[k * d:]

        def objective(theta):
            w, b = unpack(theta)
            p = _softmax(z @ w.T + b)
            loss = -np.mean(np.log(p[np.arange(n), y] + 1e-300)) + 0.5 * l2 * np.sum(w * w)
            g = (p - onehot) / n
            return loss, np.concatenate([(g.T @ z + l2 * w).ravel(), g.sum(axis=0)])

        def folded(theta, it, loss):
            w, b = unpack(theta)
            w_raw = w / sd
            return cls(w_raw.astype(np.float32), (b - w_raw @ mu).astype(np.float32), it, loss)

        state = {"it": 0}

        def on_iteration(theta):
            state["it"] += 1
            if callback is not None:
                callback(state["it"], folded(theta, state["it"], objective(theta)[0]))

        res = minimize(objective, np.zeros(k * d + k), jac=True, method="L-BFGS-B",
                       callback=on_iteration,
                       options={"maxiter": int(max_iter), "gtol": 1e-6, "ftol": 1e-10})
        return folded(res.x, int(res.nit), float(res.fun))

    def scores(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float32) @ self.weight.T + self.bias

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.scores(x).argmax(axis=1)

    def accuracy(self, x: np.ndarray, y: Sequence[int]) -> float:
        return float(np.mean(self.predict(x) == np.asarray(y)))

    def inner_product(self) -> tuple[np.ndarray, np.ndarray]:
        """(weight K x D, bias K) for Caffe's InnerProduct layer."""
        return self.weight, self.bias
