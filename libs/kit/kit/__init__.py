"""Shared contracts and runtime helpers of the platform's services.

Contracts (errors, event names, context keys) are what crosses the bus; runtime
helpers (database session, outbox, inbox) are plumbing every service needs.
Nothing here knows about organisations, surveys or requests.
"""
