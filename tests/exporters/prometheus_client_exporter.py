#!/usr/bin/python3
"""A service's /metrics exactly as Python prometheus_client serves it.

The end-to-end tests point `soakwatch check` at this on a loopback port to
judge real client-library output (tests/e2e/names.rs). One counter with a
`result` label and constant labels, the process collector
(process_start_time_seconds), served by prometheus_client's own WSGI app,
which picks the text format from the request's Accept header.

  prometheus_client_exporter.py --port-file F --counter orders_processed \
      --label stream=ORDERS_HOT --count success=743 --count dlq=1 [--accept text|openmetrics]

Without --count the counter is declared with no sample (a fresh service).
--accept replaces the scraper's Accept header before prometheus_client reads
it (as a proxy asking for one format would), so both formats are reachable:
prometheus_client answers OpenMetrics to any Accept that lists it.
Needs python3-prometheus-client (scripts/ensure-test-tools.sh).
"""
import argparse
import os
import sys
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, ProcessCollector, make_wsgi_app

ACCEPT = {
    "text": "text/plain; version=0.0.4",
    "openmetrics": "application/openmetrics-text; version=1.0.0",
}


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--counter", required=True)
    ap.add_argument("--label", action="append", default=[], help="name=value, on every series")
    ap.add_argument("--count", action="append", default=[], help="result=N")
    ap.add_argument("--accept", choices=sorted(ACCEPT), default=None)
    a = ap.parse_args()
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    fixed = dict(kv.split("=", 1) for kv in a.label)
    names = ["result"] + sorted(fixed)
    counter = Counter(a.counter, "Messages processed, by result", names, registry=registry)
    for kv in a.count:
        result, n = kv.split("=", 1)
        counter.labels(result=result, **fixed).inc(float(n))
    app = make_wsgi_app(registry)

    def negotiated(environ, start_response):
        if a.accept:
            environ["HTTP_ACCEPT"] = ACCEPT[a.accept]
        return app(environ, start_response)

    server = make_server("127.0.0.1", 0, negotiated, handler_class=Quiet)
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_port))
    os.rename(tmp, a.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
