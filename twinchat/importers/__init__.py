"""Importers turn a known real-world file layout into raw event records, numbered by file and line."""
