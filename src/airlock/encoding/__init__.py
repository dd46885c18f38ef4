"""Leaves for bytes on the wire and on disk, imported by any room, importing none.

- :mod:`~airlock.encoding.canonical`: canonical JSON (one byte string per value), which
  audit entries, order intents and checkpoints are hashed and signed over.
- :mod:`~airlock.encoding.jsonlimit`: a JSON reader that measures nesting before parsing,
  for every body that comes from outside (relays, the venue, API callers, exports).
"""
