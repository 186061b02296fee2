"""Fast retraining: a new softmax head on frozen backbone embeddings.

The backbone stays as it is, so a candidate differs from its parent only in the final
Dense layer; current and candidate can both be scored from stored embeddings, exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize

from training.data import class_weights
from training.model import OUTPUT_LAYER


@dataclass(frozen=True)
class Head:
    """Weights of the final layer: probabilities = softmax(embedding @ kernel + bias)."""

    kernel: NDArray[np.float32]  # (embedding width, classes)
    bias: NDArray[np.float32]  # (classes,)

    def probabilities(self, embeddings: NDArray[np.float32]) -> NDArray[np.float32]:
        logits: NDArray[np.float32] = embeddings @ self.kernel + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        probabilities: NDArray[np.float32] = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
        return probabilities

    @classmethod
    def of(cls, model: keras.Model) -> Head:
        kernel, bias = model.get_layer(OUTPUT_LAYER).get_weights()
        return cls(kernel.astype(np.float32), bias.astype(np.float32))

    def install(self, model: keras.Model) -> None:
        model.get_layer(OUTPUT_LAYER).set_weights([self.kernel, self.bias])


def sample_weights(
    labels: NDArray[np.int64], is_site: NDArray[np.bool_], num_classes: int, site_share: float
) -> NDArray[np.float32]:
    """Class-balanced weights within each group, the site's decisions scaled to ``site_share`` of the total.

    A few dozen corrections among thousands of base images would otherwise barely move the
    head; with ``site_share=0.5`` the site's decisions weigh as much as the whole base set.
    """
    weights = np.zeros(len(labels), dtype=np.float32)
    for group, share in ((~is_site, 1.0 - site_share), (is_site, site_share)):
        if not group.any():
            continue
        balanced = class_weights_present(labels[group], num_classes)
        w = np.array([balanced[int(y)] for y in labels[group]], dtype=np.float32)
        weights[group] = w / w.sum() * share * len(labels)
    if not (~is_site).any() or not is_site.any():  # one group only: it carries everything
        weights *= len(labels) / weights.sum()
    return weights


def class_weights_present(labels: NDArray[np.int64], num_classes: int) -> dict[int, float]:
    """Balanced weights for the classes that occur; absent classes get none (they have no samples)."""
    present = np.unique(labels)
    remap = {int(c): i for i, c in enumerate(present)}
    weights = class_weights(np.array([remap[int(y)] for y in labels]), len(present))
    return {int(c): weights[remap[int(c)]] for c in present} | {
        c: 0.0 for c in range(num_classes) if c not in remap}


@dataclass(frozen=True)
class Standardizer:
    """Per-feature centre and scale (of the base training embeddings): the head is fitted on z-scores,
    where one L2 penalty treats every feature alike, then folded back into a plain Dense layer."""

    center: NDArray[np.float32]
    scale: NDArray[np.float32]

    @classmethod
    def of(cls, embeddings: NDArray[np.float32]) -> Standardizer:
        return cls(embeddings.mean(axis=0), embeddings.std(axis=0) + 1e-6)

    def __call__(self, embeddings: NDArray[np.float32]) -> NDArray[np.float32]:
        return (embeddings - self.center) / self.scale

    def fold(self, head: Head) -> Head:
        """The same function on raw embeddings: softmax(((x - c) / s) @ W + b) = softmax(x @ (W / s) + b')."""
        kernel = head.kernel / self.scale[:, None]
        return Head(kernel.astype(np.float32), (head.bias - self.center @ kernel).astype(np.float32))

    def unfold(self, head: Head) -> Head:
        """The inverse of ``fold``: a head on raw embeddings as the same function on z-scores."""
        return Head((head.kernel * self.scale[:, None]).astype(np.float32),
                    (head.bias + self.center @ head.kernel).astype(np.float32))


def site_share(site_count: int, pseudo_count: float) -> float:
    """The site's share of the training weight, growing with its decisions: n / (n + pseudo_count).

    A handful of corrections must not overrule thousands of base photos (half the weight at
    ``pseudo_count`` decisions), while hundreds of them should shape the head almost alone.
    """
    return site_count / (site_count + pseudo_count) if site_count else 0.0


def fit_head(
    embeddings: NDArray[np.float32],
    labels: NDArray[np.int64],
    weights: NDArray[np.float32],
    num_classes: int,
    l2: float = 1.0,
    standardizer: Standardizer | None = None,
    prior: Head | None = None,
    max_iter: int = 300,
) -> Head:
    """Multinomial logistic regression (the same function as a softmax Dense layer), L-BFGS.

    Minimises sum_i w_i * cross-entropy_i + l2 / 2 * ||W - W_prior||^2, starting from the prior. With a
    prior (the running head), a few corrections move the head only as far as they are evidence for, and
    the fit starts next to its optimum; without one it is the usual L2 penalty towards zero. ``prior`` is
    on raw embeddings, like the result; with a ``standardizer`` the fit runs on z-scores, where one
    penalty treats every feature alike, and is folded back into a plain Dense layer.
    """
    if standardizer is not None:
        z_prior = standardizer.unfold(prior) if prior is not None else None
        return standardizer.fold(fit_head(standardizer(embeddings), labels, weights, num_classes, l2, None,
                                          z_prior, max_iter))
    present = np.unique(labels)
    if prior is None and len(present) < num_classes:
        # Classes without any sample cannot be learnt: keep them impossible rather than random.
        head = fit_head(embeddings, np.searchsorted(present, labels), weights, len(present), l2, None, None, max_iter)
        kernel = np.zeros((embeddings.shape[1], num_classes), dtype=np.float32)
        bias = np.full(num_classes, -1e4, dtype=np.float32)
        kernel[:, present], bias[present] = head.kernel, head.bias
        return Head(kernel, bias)
    start = prior or Head(np.zeros((embeddings.shape[1], num_classes), np.float32), np.zeros(num_classes, np.float32))
    x = np.asarray(embeddings, dtype=np.float32)
    w = np.asarray(weights, dtype=np.float32)[:, None]
    onehot = np.eye(num_classes, dtype=np.float32)[labels]
    shape = start.kernel.shape

    def loss_and_gradient(theta: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        kernel = theta[: kernel_size].reshape(shape).astype(np.float32)
        logits = x @ kernel + theta[kernel_size:].astype(np.float32)
        logits -= logits.max(axis=1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        pull = kernel - start.kernel
        loss = -float((w * onehot * log_p).sum()) + 0.5 * l2 * float((pull.astype(np.float64) ** 2).sum())
        residual = (np.exp(log_p) - onehot) * w
        gradient = np.concatenate([(x.T @ residual + l2 * pull).ravel(), residual.sum(axis=0)])
        return loss, gradient.astype(np.float64)

    kernel_size = start.kernel.size
    theta = np.concatenate([start.kernel.ravel(), start.bias]).astype(np.float64)
    found = minimize(loss_and_gradient, theta, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    return Head(found.x[:kernel_size].reshape(shape).astype(np.float32), found.x[kernel_size:].astype(np.float32))
