"""The HTTP side of labelwise: API, settings, database and storage."""
