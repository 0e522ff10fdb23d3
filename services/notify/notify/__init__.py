"""The notify service: turns identity events into e-mails, once each."""
