"""Widgets of the station window. Everything here runs on the GUI thread."""
