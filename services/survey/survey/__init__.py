"""The survey service: Karoussel campaigns ("enquêtes"), each organisation's
survey and its "données à renseigner", the locked XLSX form, transmissions,
attachments and the agency's exports (docs/architecture.md §1)."""
