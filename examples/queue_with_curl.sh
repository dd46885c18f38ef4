#!/usr/bin/env bash
# Queue a transfer through the service's local API with nothing but curl.
#
# Health, queue a transaction (201), queue it again with the same idempotency key (200,
# the same item, nothing new stored), the same key with other content (409), list, wait
# for the confirmation, then read the item's events from the Server-Sent Events stream
# with `curl -N --max-time` (the stream never ends by itself: curl's exit 28 is expected).
#
# Settings (environment, with defaults for the embedded drill setup):
#   EXAMPLE_SOCKET    the API socket ($AIRLOCK_HOME/api.sock, or ~/.airlock/api.sock)
#   EXAMPLE_KEY       HSM label of the sending secp256k1 key (hot-1)
#   EXAMPLE_CHAIN_ID  chain id (31337, anvil)
#   EXAMPLE_TO        recipient (0x000000000000000000000000000000000000dEaD)
#   EXAMPLE_ID        the idempotency key (curl-pay-1)
#   EXAMPLE_WAIT_S    how long to wait for the confirmation, seconds (60)
#
# Exit status: 0 confirmed, 2 not confirmed in time, 1 anything else went wrong.
set -euo pipefail

SOCKET=${EXAMPLE_SOCKET:-${AIRLOCK_HOME:-$HOME/.airlock}/api.sock}
KEY=${EXAMPLE_KEY:-hot-1}
CHAIN_ID=${EXAMPLE_CHAIN_ID:-31337}
TO=${EXAMPLE_TO:-0x000000000000000000000000000000000000dEaD}
IDEMPOTENCY_KEY=${EXAMPLE_ID:-curl-pay-1}
WAIT_S=${EXAMPLE_WAIT_S:-60}
URL=http://airlock  # any host: the connection goes to the socket

fail() { echo "queue_with_curl: $*" >&2; exit 1; }
trap 'fail "a command failed (line $LINENO)"' ERR

# One request; prints the body, then the status on a line of its own.
api() { curl --silent --show-error --unix-socket "$SOCKET" -w '\n%{http_code}\n' "$@"; }
status_of() { tail -n 1 <<<"$1"; }
body_of() { sed '$d' <<<"$1" | sed '/^$/d'; }
# The first "field": "value" of a JSON body (the item's own fields come first).
field() { { grep -o "\"$1\": \"[^\"]*\"" <<<"$2" || true; } | head -n 1 | cut -d '"' -f 4; }

transfer() {  # $1: the value in wei
  printf '{"key": "%s", "chain_id": %s, "to": "%s", "value": "%s", "gas": 21000,' \
    "$KEY" "$CHAIN_ID" "$TO" "$1"
  printf ' "max_fee": "30000000000", "priority_fee": "1000000000", "ladder": 2,'
  printf ' "with_cancel": true, "ttl": 3600, "idempotency_key": "%s"}' "$IDEMPOTENCY_KEY"
}

echo "== health"
reply=$(api "$URL/v1/health") || fail "cannot reach the service at $SOCKET"
[ "$(status_of "$reply")" = 200 ] || fail "health: $(body_of "$reply")"
body_of "$reply"

echo "== queue a transfer (key $IDEMPOTENCY_KEY)"
reply=$(api -H 'Content-Type: application/json' -d "$(transfer 1000)" "$URL/v1/transactions")
status=$(status_of "$reply")
echo "HTTP $status"
case "$status" in
  201|200) ;;  # 200: this key was queued by an earlier run
  *) fail "queueing refused: $(body_of "$reply")" ;;
esac
item=$(field id "$(body_of "$reply")")
[ -n "$item" ] || fail "no item id in: $(body_of "$reply")"
echo "item $item, state $(field state "$(body_of "$reply")")"

echo "== the same request again: the same item, nothing new"
reply=$(api -H 'Content-Type: application/json' -d "$(transfer 1000)" "$URL/v1/transactions")
echo "HTTP $(status_of "$reply")"
[ "$(status_of "$reply")" = 200 ] || fail "replay: $(body_of "$reply")"
[ "$(field id "$(body_of "$reply")")" = "$item" ] || fail "the replay named another item"
grep -q '"replayed": true' <<<"$reply" || fail "the replay was not marked replayed"

echo "== the same key with other content: refused"
reply=$(api -H 'Content-Type: application/json' -d "$(transfer 2000)" "$URL/v1/transactions")
echo "HTTP $(status_of "$reply")"
[ "$(status_of "$reply")" = 409 ] || fail "expected 409: $(body_of "$reply")"
echo "problem: $(field title "$(body_of "$reply")")"

echo "== list"
reply=$(api "$URL/v1/items?kind=evm_tx&limit=10")
[ "$(status_of "$reply")" = 200 ] || fail "list: $(body_of "$reply")"
grep -o '{"id": "[^"]*", "kind": "[^"]*", "state": "[^"]*"' <<<"$reply" | sed 's/^{//'

echo "== wait for the confirmation (at most ${WAIT_S} s)"
state=
end=$((SECONDS + ${WAIT_S%.*}))
while :; do
  reply=$(api "$URL/v1/items/$item")
  state=$(field state "$(body_of "$reply")")
  case "$state" in
    confirmed) break ;;
    expired|cancelled|rejected|replaced|quarantined|needs_operator) fail "item ended $state" ;;
  esac
  if [ "$SECONDS" -ge "$end" ]; then
    echo "still $state after ${WAIT_S} s: not confirmed yet (a queued item goes out when a link returns)"
    exit 2
  fi
  sleep 0.5
done
echo "confirmed: $(sed -n 's/.*"mined": {"hash": "\([^"]*\)".*/\1/p' <<<"$reply")"

echo "== the item's events (the stream stays open: --max-time ends it)"
events=$(curl --silent --unix-socket "$SOCKET" -N --max-time 2 \
  "$URL/v1/events?after=0&item=$item") || [ $? -eq 28 ] || fail "reading the events failed"
grep -E '^(id|event|data):' <<<"$events"
grep -q '"state": "confirmed"' <<<"$events" || fail "no confirmed event in the stream"
echo "done"
