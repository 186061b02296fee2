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
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

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
    "Created TensorFlow Lite XNNPACK delegate",  # LiteRT, once per process, at its first interpreter
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


def tensorflow_notes_kept_quiet() -> AbstractContextManager[None]:
    """While the block runs, TensorFlow's and LiteRT's notes stay off the terminal (all of it under --verbose)."""
    return nullcontext() if _verbose else _filtered_stderr(TENSORFLOW_NOISE)


def import_tensorflow() -> None:
    """Import TensorFlow now (it takes seconds), without its start-up notes unless ``--verbose`` was given."""
    if "tensorflow" in sys.modules:
        return
    with tensorflow_notes_kept_quiet():
        importlib.import_module("tensorflow")


def run_quietly(module: str, function: str, *args: object) -> None:
    """Entry point of a spawned child: TensorFlow imported without its notes, then ``module.function(*args)``.

    A target passed to the child directly would have its module imported while unpickling, before any of its code
    runs: with TensorFlow, the notes would be out by then.
    """
    import_tensorflow()
    with tensorflow_notes_kept_quiet():  # the target's own imports (Keras, LiteRT) print them again
        target = getattr(importlib.import_module(module), function)
    target(*args)


_stderr_swap = threading.Lock()  # one swap of file descriptor 2 at a time: two threads' swaps would restore each
# other's temporary file


@contextmanager
def _filtered_stderr(noise: tuple[str, ...]) -> Iterator[None]:
    """Send file descriptor 2 to a temporary file, then replay every line that is not ``noise``."""
    with _stderr_swap, tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        saved = os.dup(2)
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
