"""The floor of the RPC comparison: a nameko service that does nothing.

``bench_trivial.ping()`` returns a small dict, so that a call to it costs
only what nameko, kombu and RabbitMQ cost. The bench runs it as its own
``nameko run --config deploy/nameko.yaml bench.trivial`` process, on the
same broker and vhost as the platform's services.
"""

from __future__ import annotations

from nameko.rpc import rpc


class TrivialService:
    name = "bench_trivial"

    @rpc
    def ping(self) -> dict:
        return {"ok": True, "service": "bench_trivial"}
