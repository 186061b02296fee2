"""A process that saves decisions in a loop and prints each id once its row is committed (killed by a test)."""

from __future__ import annotations

import sys
from pathlib import Path

from station.storage import Storage
from tests.faults.helpers import decision

if __name__ == "__main__":
    with Storage(Path(sys.argv[1])) as storage:
        i = 0
        while True:
            record = storage.save(decision(i))
            print(record.id, flush=True)
            i += 1
