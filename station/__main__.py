import sys

from station.cli import entry

# "python -m station retrain|export|import ..." -> station.cli.main; anything else -> the GUI (station.app.main)
sys.exit(entry())
