"""Pure rules of the files service: what a valid upload is and who may see it.

No nameko, SQLAlchemy or storage import here; use cases translate the
``Rejected`` and ``Denied`` outcomes into the shared error classes.
"""
