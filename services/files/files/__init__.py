"""The files service: file bytes (content-addressed by sha256) and their metadata.

Other services only ever hold a ``file_id``; bytes reach this service once and
never travel in events.
"""
