"""The fault suite: each fault a station meets in the field, reproduced, with what must hold afterwards.

The GUI fixtures (a real window on a folder source, a tiny model) are the ones of ``tests/gui``.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from tests.gui.conftest import image_folder, make_settings, tiny_classifier, windows  # noqa: F401
