"""The HTTP gateway: authentication, limits and composition over the services.

``create_app`` builds a Flask app from the environment (``gateway.config``);
nothing connects or reads configuration at import time, so gunicorn workers
create their RPC clients after fork (``gateway.rpc``). The gateway process is
never monkey-patched by eventlet (docs/stack-pitfalls.md §11): it uses plain threads.
Browser hardening (security headers, CSRF) is ``gateway.security``; the
pages' stylesheets and scripts are files under ``gateway/static``, served by
Flask at ``/static``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

# Importing nameko imports eventlet, which warns on import (docs/stack-pitfalls.md §1).
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")


def create_app(test_config: Mapping[str, Any] | None = None):
    """The WSGI app; ``test_config`` overrides the environment's settings."""
    from flask import Flask

    from gateway import (
        auth,
        config,
        errors,
        health,
        metrics,
        multipart,
        openapi,
        rpc,
        security,
        web,
    )
    from gateway.api import carte, identity, partners, personal_data, survey
    from gateway.pages import accounts as account_pages
    from gateway.pages import agency_surveys as agency_survey_pages
    from gateway.pages import carte as carte_pages
    from gateway.pages import carte_admin as carte_admin_pages
    from gateway.pages import partners as partner_pages
    from gateway.pages import personal_data as personal_data_pages
    from gateway.pages import surveys as survey_pages
    from gateway.pages import undelivered_emails as undelivered_email_pages

    multipart.install()  # uploads parsed without two regex compilations each
    app = Flask(__name__)
    app.config.from_mapping(config.load(overrides=test_config))
    app.add_template_filter(web.date_fr, "date_fr")  # the pages' one date format

    metrics.init_app(app)  # first: its timer starts before anything else
    errors.init_app(app)
    security.init_app(app)  # headers on every answer; cross-site posts refused
    rpc.init_app(app)

    app.register_blueprint(health.bp)
    app.register_blueprint(openapi.bp)

    auth.init_app(app)
    app.register_blueprint(identity.bp, url_prefix="/api/v1")
    app.register_blueprint(web.bp)
    app.register_blueprint(account_pages.bp)
    app.register_blueprint(carte.bp, url_prefix="/api/v1")
    app.register_blueprint(carte_pages.bp, url_prefix="/carte")
    app.register_blueprint(carte_admin_pages.bp)
    app.register_blueprint(survey.bp, url_prefix="/api/v1")
    app.register_blueprint(survey_pages.bp)
    app.register_blueprint(agency_survey_pages.bp)
    app.register_blueprint(partners.bp, url_prefix="/api/v1")
    app.register_blueprint(partners.admin, url_prefix="/api/v1")
    app.register_blueprint(partner_pages.bp)
    app.register_blueprint(undelivered_email_pages.bp)
    app.register_blueprint(personal_data.bp, url_prefix="/api/v1")
    app.register_blueprint(personal_data_pages.bp)
    return app
