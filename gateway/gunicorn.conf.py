"""gunicorn settings for the gateway (docs/stack-pitfalls.md §11, §12).

    gunicorn -c gateway/gunicorn.conf.py "gateway:create_app()"

gthread workers, no eventlet, no monkey-patching. No ``preload_app``: each
worker imports and builds the app itself, so RPC clients are only ever created
after fork. The paths of the gateway and the shared kit are added here, so the
command works from the repository root without PYTHONPATH.
"""

import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
pythonpath = ",".join([_here, os.path.join(os.path.dirname(_here), "libs", "kit")])

bind = os.environ.get("GATEWAY_BIND", "127.0.0.1:8600")
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY") or os.cpu_count() or 2)
threads = int(os.environ.get("GATEWAY_THREADS") or 8)
preload_app = False

# A worker silent for this long is killed; every RPC is bounded by RPC_TIMEOUT
# (5 s), so only a real hang gets here.
timeout = int(os.environ.get("GATEWAY_WORKER_TIMEOUT") or 30)
# SIGTERM: the master stops accepting, each worker finishes the requests it
# has within this grace period, then exits (SIGKILL after it). Kubernetes'
# terminationGracePeriodSeconds must exceed it.
graceful_timeout = int(float(os.environ.get("SHUTDOWN_GRACE_SECONDS") or 30))  # an int for gunicorn
keepalive = 5

# Bounded request heads (the body is bounded by MAX_CONTENT_LENGTH in the app).
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190

accesslog = os.environ.get("GATEWAY_ACCESS_LOG") or None  # "-" for stdout
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
proc_name = "gateway"

# Heartbeat file of each worker in memory rather than on a possibly slow disk.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"

# Metrics across the worker processes and JSON logs (gateway/gateway/gunicorn_hooks.py).
sys.path.insert(0, _here)
from gateway.gunicorn_hooks import child_exit, logging_config, on_exit, on_starting, when_ready, worker_exit  # noqa: E402,F401,I001,E501  # fmt: skip

logconfig_dict = logging_config(loglevel, accesslog)
