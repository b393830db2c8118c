# Sourced by the bench scripts: its own Mosquitto + Kafka (ports and data under build/bench-services),
# a hub (unless BENCH_NO_HUB=1) and ingest, and an admin token. Sets HUB_PID, INGEST_PID, TOKEN,
# BENCH_SERVICE_PASSWORD_FILE and BENCH_PIDS (--pid name=pid of each process, for the drivers' CPU
# columns); stops everything on exit.
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/env.sh"
"$ROOT/scripts/setup" >/dev/null

export COURTYARD_VAR=$BUILD_DIR/bench-services
export COURTYARD_MQTT_PORT=${COURTYARD_BENCH_MQTT_PORT:-23883}
export COURTYARD_KAFKA_PORT=${COURTYARD_BENCH_KAFKA_PORT:-23092}
export COURTYARD_KAFKA_CONTROLLER_PORT=$((COURTYARD_KAFKA_PORT + 1))
export COURTYARD_HTTP_PORT=${COURTYARD_BENCH_HTTP_PORT:-28080}
# The benches open a thousand dashboards from one address with one token: room for them.
export COURTYARD_HTTP_MAX_CONNECTIONS=${COURTYARD_HTTP_MAX_CONNECTIONS:-4096}
export COURTYARD_HTTP_MAX_CONNECTIONS_PER_ADDRESS=${COURTYARD_HTTP_MAX_CONNECTIONS_PER_ADDRESS:-4096}
export COURTYARD_HTTP_MAX_WEBSOCKETS_PER_TOKEN=${COURTYARD_HTTP_MAX_WEBSOCKETS_PER_TOKEN:-4096}
"$ROOT/scripts/services" down >/dev/null 2>&1 || true
rm -rf "$COURTYARD_VAR"
bench_pids=()
bench_cleanup() {
  for pid in "${bench_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$ROOT/scripts/services" down >/dev/null 2>&1
}
trap bench_cleanup EXIT
"$ROOT/scripts/services" up
mkdir -p "$COURTYARD_VAR/log"
HUB_PID=
if [[ ${BENCH_NO_HUB:-0} != 1 ]]; then
  "$COURTYARD_BIN" --config "$ROOT/config/courtyard.toml" hub >"$COURTYARD_VAR/log/hub.log" 2>&1 & bench_pids+=($!)
  HUB_PID=$!
fi
"$COURTYARD_BIN" --config "$ROOT/config/courtyard.toml" ingest >"$COURTYARD_VAR/log/ingest.log" 2>&1 & bench_pids+=($!)
INGEST_PID=$!
if [[ -n $HUB_PID ]]; then
  for _ in $(seq 300); do curl -fsS "http://127.0.0.1:$COURTYARD_HTTP_PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
fi
for _ in $(seq 300); do grep -q "listening on" "$COURTYARD_VAR/log/ingest.log" && break; sleep 0.1; done
TOKEN=$("$COURTYARD_BIN" --config "$ROOT/config/courtyard.toml" token add --role admin --label bench | tail -n 1)
BENCH_SERVICE_PASSWORD_FILE=$COURTYARD_VAR/secrets/mqtt-service
BENCH_PIDS=(--pid "ingest=$INGEST_PID" --pid "mosquitto=$(cat "$COURTYARD_VAR/mosquitto/mosquitto.pid")"
            --pid "kafka=$(cat "$COURTYARD_VAR/kafka/kafka.pid")")
[[ -n $HUB_PID ]] && BENCH_PIDS+=(--pid "hub=$HUB_PID")
echo "machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB; $(date -u +%Y-%m-%dT%H:%MZ)"
