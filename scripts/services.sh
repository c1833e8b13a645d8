#!/usr/bin/env bash
# Provision and start FlowBankOS's local services. Idempotent: run it as often as you like.
#
#   * PostgreSQL 15 with TimescaleDB (Apache build, compiled from Debian's source package,
#     because bookworm ships no TimescaleDB binary) in a DEDICATED cluster "flowbank" on
#     127.0.0.1:${FLOWBANK_PG_PORT:-5434}. Any PostgreSQL already running for other uses
#     (e.g. the "main" cluster on 5432) is left exactly as it is.
#   * Mosquitto with persistence on and no silent queue drops, as a dedicated instance on
#     127.0.0.1:${FLOWBANK_MQTT_PORT:-1884}; a broker already on 1883 is left alone.
#
# When FLOWBANK_PG_DSN (or FLOWBANK_MQTT_URL) is set, that service is the user's own and this
# script provisions nothing for it.
#
# Needs root (apt-get, building the extension); runs on Debian bookworm and Ubuntu alike.
set -euo pipefail

PG_VERSION=15
TSDB_VERSION=2.19.3
PG_CLUSTER=flowbank
PG_PORT=${FLOWBANK_PG_PORT:-5434}
MQTT_PORT=${FLOWBANK_MQTT_PORT:-1884}
STATE_DIR=${FLOWBANK_STATE_DIR:-/var/lib/flowbank}
BUILD_DIR="$STATE_DIR/build"
PG_BIN=/usr/lib/postgresql/$PG_VERSION/bin
PG_LIB=/usr/lib/postgresql/$PG_VERSION/lib

say() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it installs Debian packages and builds TimescaleDB)"

APT_UPDATED=0
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ $APT_UPDATED -eq 0 ]; then
        say "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The Debian mirror this machine already uses, read from its apt sources (deb822 or one-line).
debian_mirror() {
    local uri=""
    if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
        uri=$(awk '/^URIs:/ {for (i = 2; i <= NF; i++) if ($i !~ /security/) {print $i; exit}}' \
              /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
    fi
    if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
        uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' \
              /etc/apt/sources.list | head -n1)
    fi
    [ -n "$uri" ] || die "could not find a Debian mirror in the apt sources"
    printf '%s' "$uri"
}

build_timescaledb() {
    if [ -f "$PG_LIB/timescaledb-$TSDB_VERSION.so" ]; then
        return 0
    fi
    apt_install postgresql-server-dev-$PG_VERSION cmake gcc make dpkg-dev xz-utils libssl-dev
    say "building TimescaleDB $TSDB_VERSION (Apache-only) from Debian's source package"
    local work="$BUILD_DIR/timescaledb"
    rm -rf "$work" && mkdir -p "$work/lists/partial"
    # A private apt configuration: the machine's own sources are not touched.
    cat > "$work/sources.list" <<EOF
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(debian_mirror) trixie main
EOF
    local opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
                -o "Dir::State::Lists=$work/lists" -o "APT::Get::List-Cleanup=0" -o "APT::Sandbox::User=root")
    apt-get "${opts[@]}" update -qq
    (cd "$work" && apt-get "${opts[@]}" source --download-only -qq timescaledb >/dev/null)
    compgen -G "$work/timescaledb_$TSDB_VERSION*.dsc" >/dev/null \
        || die "Debian's timescaledb source is not version $TSDB_VERSION: $(ls "$work"/*.dsc)"
    (cd "$work" && dpkg-source -x --no-check ./timescaledb_*.dsc src >/dev/null)
    (cd "$work/src" && cmake -S . -B build -DAPACHE_ONLY=1 -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF \
        -DWARNINGS_AS_ERRORS=OFF -DSEND_TELEMETRY_DEFAULT=OFF -DCMAKE_BUILD_TYPE=Release \
        -DPG_CONFIG="$PG_BIN/pg_config" >"$work/cmake.log" 2>&1) || die "cmake failed, see $work/cmake.log"
    make -C "$work/src/build" -j"$(nproc)" >"$work/make.log" 2>&1 || die "build failed, see $work/make.log"
    make -C "$work/src/build" install >>"$work/make.log" 2>&1 || die "install failed, see $work/make.log"
    say "TimescaleDB $TSDB_VERSION installed into $PG_LIB"
}

pg_psql() {  # run SQL as the postgres superuser over the cluster's socket
    PGOPTIONS="--client-min-messages=warning" runuser -u postgres -- "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -h /var/run/postgresql "$@"
}

provision_postgres() {
    apt_install postgresql-$PG_VERSION postgresql-client-$PG_VERSION
    build_timescaledb
    if ! pg_lsclusters -h | awk '{print $1, $2}' | grep -qx "$PG_VERSION $PG_CLUSTER"; then
        say "creating PostgreSQL cluster $PG_VERSION/$PG_CLUSTER on port $PG_PORT"
        pg_createcluster "$PG_VERSION" "$PG_CLUSTER" -p "$PG_PORT" -e UTF8 --locale C.UTF-8 \
            -- --auth-local=peer --auth-host=scram-sha-256 >/dev/null
    fi
    local conf_dir="/etc/postgresql/$PG_VERSION/$PG_CLUSTER"
    # Written every time, so a changed default reaches existing clusters.
    cat > "$conf_dir/conf.d/flowbank.conf" <<EOF
# Managed by FlowBankOS scripts/services.sh
port = $PG_PORT
listen_addresses = '127.0.0.1'
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = off
max_connections = 200
synchronous_commit = on
timezone = 'UTC'
log_timezone = 'UTC'
EOF
    local status
    status=$(pg_lsclusters -h | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1 == v && $2 == c {print $4}')
    if [ "$status" != "online" ]; then
        say "starting PostgreSQL $PG_VERSION/$PG_CLUSTER"
        pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" "$PG_CLUSTER" start
    elif [ "$(pg_psql -At -c "show shared_preload_libraries")" != "timescaledb" ]; then
        say "restarting PostgreSQL $PG_VERSION/$PG_CLUSTER to load timescaledb"
        pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" "$PG_CLUSTER" restart
    fi
    for _ in $(seq 1 60); do
        pg_psql -c "select 1" >/dev/null 2>&1 && break
        sleep 0.5
    done
    pg_psql -c "select 1" >/dev/null || die "PostgreSQL $PG_VERSION/$PG_CLUSTER did not come up"
    # A dedicated role and database; the extension goes into template1 too, so the test suite's
    # throw-away databases (created by the flowbank role) have it without superuser rights.
    pg_psql <<'EOF'
do $$ begin
  if not exists (select from pg_roles where rolname = 'flowbank') then
    create role flowbank login createdb password 'flowbank';
  end if;
end $$;
select 'create database flowbank owner flowbank'
 where not exists (select from pg_database where datname = 'flowbank') \gexec
EOF
    pg_psql -d template1 -c "create extension if not exists timescaledb"
    pg_psql -d flowbank -c "create extension if not exists timescaledb"
    pg_psql -d flowbank -At -c "select extversion from pg_extension where extname = 'timescaledb'" \
        | grep -q "^2\." || die "timescaledb extension is not available in database flowbank"
}

provision_mosquitto() {
    apt_install mosquitto
    local dir="$STATE_DIR/mosquitto"
    mkdir -p "$dir/data"
    chown -R mosquitto:mosquitto "$dir" 2>/dev/null || true
    cat > "$dir/mosquitto.conf" <<EOF
# Managed by FlowBankOS scripts/services.sh (local development broker).
# Anonymous access, bound to loopback only; production uses deploy/mosquitto/mosquitto.conf.
per_listener_settings false
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
pid_file $dir/mosquitto.pid
log_dest file $dir/mosquitto.log
log_type error
log_type warning
log_type notice
log_timestamp_format %Y-%m-%dT%H:%M:%S
connection_messages false
# Persistent sessions survive a broker restart: QoS1 messages queued for an offline
# subscriber with a persistent session are kept on disk.
persistence true
persistence_location $dir/data/
autosave_interval 10
persistent_client_expiration 14d
# Mosquitto's defaults drop QoS1 messages silently once 1000 are queued for a slow or
# offline subscriber. No count limit; a byte bound (4 GiB) protects the machine instead.
max_queued_messages 0
max_queued_bytes 4294967296
# Unlimited QoS1 messages in flight per client: the pipeline holds its acks until Bytewax has
# snapshotted (at-least-once), which must not stall delivery at Mosquitto's default of 20.
max_inflight_messages 0
set_tcp_nodelay true
EOF
    local pid=""
    [ -f "$dir/mosquitto.pid" ] && pid=$(cat "$dir/mosquitto.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q mosquitto "/proc/$pid/cmdline" 2>/dev/null; then
        kill -HUP "$pid"  # reload the config
    else
        say "starting Mosquitto on 127.0.0.1:$MQTT_PORT"
        rm -f "$dir/mosquitto.pid"
        /usr/sbin/mosquitto -d -c "$dir/mosquitto.conf"
    fi
    for _ in $(seq 1 40); do
        (exec 3<>"/dev/tcp/127.0.0.1/$MQTT_PORT") 2>/dev/null && return 0
        sleep 0.25
    done
    die "Mosquitto did not start on port $MQTT_PORT (see $dir/mosquitto.log)"
}

stop_services() {
    local dir="$STATE_DIR/mosquitto"
    if [ -f "$dir/mosquitto.pid" ]; then
        local pid
        pid=$(cat "$dir/mosquitto.pid")
        kill "$pid" 2>/dev/null || true
        # It writes its persistence file on the way out: wait for it to finish.
        for _ in $(seq 1 120); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.25
        done
        rm -f "$dir/mosquitto.pid"
    fi
    pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" "$PG_CLUSTER" stop 2>/dev/null || true
    say "stopped"
}

main() {
    mkdir -p "$STATE_DIR"
    case "${1:-up}" in
        up) ;;
        down) stop_services; return 0 ;;
        *) die "usage: $0 [up|down]" ;;
    esac
    apt_install fonts-dejavu-core ca-certificates
    if [ -n "${FLOWBANK_PG_DSN:-}" ]; then
        say "FLOWBANK_PG_DSN is set: using that PostgreSQL, provisioning none"
    else
        provision_postgres
    fi
    if [ -n "${FLOWBANK_MQTT_URL:-}" ]; then
        say "FLOWBANK_MQTT_URL is set: using that broker, provisioning none"
    else
        provision_mosquitto
    fi
    say "ready: PostgreSQL 127.0.0.1:$PG_PORT (cluster $PG_VERSION/$PG_CLUSTER), Mosquitto 127.0.0.1:$MQTT_PORT"
}

main "$@"
