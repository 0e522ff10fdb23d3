"""Pure rules of the carte des formations: no nameko, SQLAlchemy, Flask or
spreadsheet library here."""
