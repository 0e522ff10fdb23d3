"""Pure rules of identity: no nameko, SQLAlchemy or Flask here."""
