"""Training-time augmentation: Keras random layers applied in the input pipeline only.

Evaluation, prediction and the station never see these layers; the saved model is
backbone + head.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def augmenter(strength: float, seed: int) -> keras.Sequential:
    """Flip, rotation, zoom, shift, contrast and brightness scaled by ``strength`` (0..1).

    Items lie in any orientation under the camera, so flips go both ways and rotation
    covers a full turn at strength 1.
    """
    s = max(0.0, min(1.0, strength))
    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal_and_vertical", seed=seed),
            keras.layers.RandomRotation(0.5 * s, fill_mode="reflect", seed=seed + 1),
            keras.layers.RandomZoom((-0.3 * s, 0.2 * s), fill_mode="reflect", seed=seed + 2),
            keras.layers.RandomTranslation(0.1 * s, 0.1 * s, fill_mode="reflect", seed=seed + 3),
            keras.layers.RandomContrast(0.3 * s, seed=seed + 4),
            keras.layers.RandomBrightness(0.2 * s, value_range=(0, 255), seed=seed + 5),
        ],
        name="augmentation",
    )


def mixup(
    images: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor, alpha: float
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Blend each example of a batch with another one of the same batch (Zhang et al. 2018)."""
    batch = tf.shape(images)[0]
    a = tf.random.gamma([batch], alpha)
    b = tf.random.gamma([batch], alpha)
    lam = a / (a + b)
    order = tf.random.shuffle(tf.range(batch))
    lam_img = tf.reshape(lam, [-1, 1, 1, 1])
    lam_lab = tf.reshape(lam, [-1, 1])
    images = lam_img * images + (1.0 - lam_img) * tf.gather(images, order)
    labels = lam_lab * labels + (1.0 - lam_lab) * tf.gather(labels, order)
    weights = lam * weights + (1.0 - lam) * tf.gather(weights, order)
    return images, labels, weights
