"""Pure rules of the survey service: no nameko, SQLAlchemy, Flask or openpyxl
import here. Use cases turn the problems these modules report into the shared
error classes."""
