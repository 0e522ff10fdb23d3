"""The partner interface (DESIGN §8, docs/partners-design.md): other public
agencies receive the platform's events by a feed, signed webhooks and AMQP.

- ``catalogue``: which events, their CloudEvents envelope and scope facts;
- ``scope``: who may see what (the same predicate everywhere);
- ``ssrf``: which webhook URLs may be called;
- ``keys``: partner API keys and webhook secrets;
- ``admin``: the agency's use cases (partners, keys, deliveries, replays);
- ``feed``: ingestion of events and the partner's pull feed;
- ``delivery``: the push channels (webhooks, AMQP) and their retry schedule.
"""
