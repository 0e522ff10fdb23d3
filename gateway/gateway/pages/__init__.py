"""Server-rendered HTML pages of the platform, one blueprint per area of the
guides (``accounts``: section I of the Karoussel guide). They render through
``gateway.web.page`` and call the services as the JSON API does."""
