"""Keep library start-up chatter off the terminal; the project's own messages stay. ``--verbose`` shows all.

TensorFlow prints its oneDNN/CUDA notes from C++ before it reads ``TF_CPP_MIN_LOG_LEVEL``, so they are
caught at the file-descriptor level while ``tensorflow`` is imported; any other line written meanwhile
is passed on unchanged. OpenCV's camera-probe warnings are silenced by its log-level variable, which it
reads when it is imported. No import of TensorFlow or OpenCV happens here until asked.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

# Lines TensorFlow writes on import that read like errors but only describe the build and the machine.
TENSORFLOW_NOISE = (
    "All log messages before absl::InitializeLog()",
    "oneDNN custom operations are on",
    "Could not find cuda drivers",
    "cudart_stub.cc",
    "Unable to register cu",
    "computation_placer.cc",
    "This TensorFlow binary is optimized",
    "TF-TRT Warning",
)

_verbose = False


def quiet_libraries(verbose: bool = False) -> None:
    """Call first thing in a command, before TensorFlow or OpenCV are imported."""
    global _verbose
    _verbose = verbose
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ info and warnings; errors stay
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # "can't open camera by index", libavdevice notes


def import_tensorflow() -> None:
    """Import TensorFlow now (it takes seconds), without its start-up notes unless ``--verbose`` was given."""
    if "tensorflow" in sys.modules or _verbose:
        importlib.import_module("tensorflow")
        return
    with _filtered_stderr(TENSORFLOW_NOISE):
        importlib.import_module("tensorflow")


@contextmanager
def _filtered_stderr(noise: tuple[str, ...]) -> Iterator[None]:
    """Send file descriptor 2 to a temporary file, then replay every line that is not ``noise``."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if not any(marker in line for marker in noise):
                    sys.stderr.write(line)
            sys.stderr.flush()
