# Shared by the scripts: where things live and which ports they use.
# Every value can be overridden from the environment (the same COURTYARD_* names the binary reads).
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export COURTYARD_VAR=${COURTYARD_VAR:-$ROOT/var}
export COURTYARD_MQTT_PORT=${COURTYARD_MQTT_PORT:-1883}
export COURTYARD_KAFKA_PORT=${COURTYARD_KAFKA_PORT:-9092}
export COURTYARD_KAFKA_CONTROLLER_PORT=${COURTYARD_KAFKA_CONTROLLER_PORT:-$((COURTYARD_KAFKA_PORT + 1))}
export COURTYARD_HTTP_PORT=${COURTYARD_HTTP_PORT:-8080}
BUILD_DIR=${COURTYARD_BUILD_DIR:-$ROOT/build}
KAFKA_HOME=$ROOT/.deps/kafka
COURTYARD_BIN=$BUILD_DIR/courtyard

log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }
die() { log "error: $*"; exit 1; }
