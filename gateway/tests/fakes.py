"""Test doubles shared by the gateway's view and page tests."""

from __future__ import annotations


class FakeRpc:
    """``rpc().<service>.<method>(...)``: answers from ``answers``, records calls."""

    def __init__(self):
        self.calls: list[tuple[str, str, tuple]] = []
        self.answers: dict[str, object] = {}

    def __call__(self, timeout=None):
        return self

    def __getattr__(self, service):
        fake = self

        class Service:
            def __getattr__(self, method):
                def call(*args, **kwargs):
                    fake.calls.append((service, method, args))
                    answer = fake.answers.get(f"{service}.{method}")
                    if isinstance(answer, Exception):
                        raise answer
                    return answer(*args) if callable(answer) else answer

                return call

        return Service()

    def methods(self):
        return [f"{s}.{m}" for s, m, _a in self.calls]


def signed_in(app, roles, org_id=None):
    """A test client with the session cookie of user ``u1`` holding ``roles``."""
    from gateway.auth import COOKIE, issue_token

    client = app.test_client()
    with app.app_context():
        token = issue_token("sid", {"user_id": "u1", "org_id": org_id, "roles": list(roles)})
    client.set_cookie(COOKIE, token)
    return client


def page_text(response) -> str:
    """A page's HTML with its entities decoded, for ``in`` assertions."""
    import html

    return html.unescape(response.get_data(as_text=True))
