"""The sorting station desktop app. Core modules (camera, inference, storage, settings) import without Qt."""
