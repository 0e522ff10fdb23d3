"""Shared contracts and runtime helpers of the platform's services.

Contracts (errors, event names, context keys) are what crosses the bus; runtime
helpers (database session, outbox, inbox) are plumbing every service needs.
Nothing here knows about organisations, surveys or requests.
"""

import warnings

# eventlet warns on import (docs/stack-pitfalls.md §1): filter by message, before nameko is imported
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
