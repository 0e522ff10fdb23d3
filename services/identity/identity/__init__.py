"""Identity: organisations, users, credentials, roles, registration and sessions."""
