#!/usr/bin/env bash
# Makes sure a Redis answers, and prints its URL on stdout (logs go to stderr).
#
#   export REDIS_URL="$(scripts/ensure-redis.sh)"
#
# 1. If REDIS_URL (default redis://127.0.0.1:6379) answers PING, that is the one.
# 2. Otherwise, on a loopback URL only, start a private Redis bound to
#    127.0.0.1, as durable as the launcher's (append-only file, fsync every
#    second, maxmemory-policy noeviction) in its dir: installs redis-server with apt-get
#    if it is missing (needs root), and uses the URL's port if it is free or
#    else a free port nearby. The printed URL says which.
#    Its pid file and log are under $ENSURE_REDIS_DIR (default a mktemp dir);
#    stop it with: kill "$(cat "$ENSURE_REDIS_DIR/redis.pid")".
# A non-loopback REDIS_URL that does not answer is an error: never mask it.
set -euo pipefail

url="${REDIS_URL:-redis://127.0.0.1:6379}"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { echo "ensure-redis: $*" >&2; }

# PING through redis-cli, or through ioredis from node_modules when redis-cli is missing.
ping_redis() {
  local u="$1"
  if command -v redis-cli >/dev/null 2>&1; then
    [[ "$(timeout 5 redis-cli --no-auth-warning -u "$u" ping 2>/dev/null)" == "PONG" ]]
  else
    (cd "$repo_root" && timeout 10 node --input-type=module -e '
      import { Redis } from "ioredis";
      const r = new Redis(process.argv[1], { lazyConnect: true, connectTimeout: 3000, maxRetriesPerRequest: 0, retryStrategy: () => null });
      try { await r.connect(); process.exitCode = (await r.ping()) === "PONG" ? 0 : 1; }
      catch { process.exitCode = 1; }
      finally { r.disconnect(); }
    ' "$u" >/dev/null 2>&1)
  fi
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ping_redis "$url"; then
  log "Redis answers at ${url//:*@/:***@}"
  echo "$url"
  exit 0
fi

# Parse redis[s]://[user[:pass]@]host[:port][/db]
if [[ ! "$url" =~ ^redis://(([^@/]*)@)?([^:/@]+|\[[^]]+\])(:([0-9]+))?(/([0-9]+))?/?$ ]]; then
  log "REDIS_URL=${url//:*@/:***@} does not answer, and is not a plain redis:// URL I can stand in for"
  exit 1
fi
auth="${BASH_REMATCH[2]}"
host="${BASH_REMATCH[3]}"
port="${BASH_REMATCH[5]:-6379}"
db="${BASH_REMATCH[7]:-}"
case "$host" in
  127.0.0.1 | localhost | '[::1]') ;;
  *)
    log "REDIS_URL points at $host, which does not answer; not starting a local Redis in its place"
    exit 1
    ;;
esac
if [[ -n "$auth" ]]; then
  log "REDIS_URL carries credentials and does not answer; a private Redis would have none: refusing"
  exit 1
fi

if ! command -v redis-server >/dev/null 2>&1; then
  if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    log "redis-server is not installed, and I can only install it as root with apt-get"
    exit 1
  fi
  log "installing redis-server with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends redis-server >&2
  # On a machine with systemd the package starts its own service: use it if it is ours to use.
  if ping_redis "$url"; then
    log "Redis answers at $url (the packaged service)"
    echo "$url"
    exit 0
  fi
fi

# Something else holds the port (not a Redis that answers us): take a free one.
if port_in_use "$port"; then
  for candidate in $(seq $((port + 1)) $((port + 200))); do
    if ! port_in_use "$candidate"; then
      log "port $port is taken by something that does not answer PING; using $candidate"
      port="$candidate"
      break
    fi
  done
  if port_in_use "$port"; then
    log "no free port near $port"
    exit 1
  fi
fi

dir="${ENSURE_REDIS_DIR:-$(mktemp -d -t interfleet-redis.XXXXXX)}"
mkdir -p "$dir"
log "starting a private redis-server on 127.0.0.1:$port (pid file $dir/redis.pid)"
redis-server --daemonize yes --port "$port" --bind 127.0.0.1 --save '' \
  --appendonly yes --appendfsync everysec --maxmemory-policy noeviction \
  --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >&2

new_url="redis://127.0.0.1:$port${db:+/$db}"
for _ in $(seq 1 100); do
  if ping_redis "$new_url"; then
    log "Redis answers at $new_url"
    echo "$new_url"
    exit 0
  fi
  sleep 0.1
done
log "redis-server did not answer within 10 s; its log:"
tail -n 20 "$dir/redis.log" >&2 || true
exit 1
