import sys

from station.cli import entry

sys.exit(entry())  # "python -m station retrain ..." -> station.cli.main; anything else -> the GUI (station.app.main)
