"""Transfer-learning pipeline for the sorting station: explore, train, evaluate, predict.

This package never imports Qt; the station imports it, never the other way round.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter
