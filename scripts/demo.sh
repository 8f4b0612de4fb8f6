#!/bin/sh
# `make demo`: start the gateway on examples/quickstart.yaml in front of the
# built-in static upstream and show what to try. Ctrl-C stops it.
set -eu
cd "$(dirname "$0")/.."
cfg=examples/quickstart.yaml
bin=build/sluice

./$bin validate -c "$cfg"

cat <<'MSG'

sluice is starting on examples/quickstart.yaml:
  gateway (proxy, static upstream)  http://127.0.0.1:8080
  check   (forward-auth)            http://127.0.0.1:8081
  admin                             http://127.0.0.1:9901

Try, in another terminal (in this order: they share your IP's 5/min):

  curl -i http://127.0.0.1:8080/hello
      200 {"ok":true} with X-RateLimit-Limit: 5, X-RateLimit-Remaining: 4,
      X-RateLimit-Reset: <unix seconds>

  curl -i -H 'X-Api-Key: demo-key-123' http://127.0.0.1:8080/hello
      a known key: its own 20/min limit applies as well

  curl -i -H 'X-Api-Key: nope' http://127.0.0.1:8080/hello
      an unknown key: 401 with a JSON body (the per-IP limit still counts it)

  for i in 1 2 3 4; do curl -s -o /dev/null -w '%{http_code}\n' http://127.0.0.1:8080/hello; done
      the per-IP limit is 5/min (the 401 above counted too): 200, 200, then
      429 twice, with Retry-After and a JSON body ("denied_by":"per-ip")

  curl -i http://127.0.0.1:8081/hello
      the check (forward-auth) listener decides the same way, no upstream

  curl -s -X POST http://127.0.0.1:9901/v1/decide -d '{"ip":"203.0.113.9"}'
      the decision API: the full decision as JSON

  curl -s http://127.0.0.1:9901/metrics | head
      Prometheus metrics

Ctrl-C stops sluice.

MSG
exec ./$bin serve -c "$cfg"
