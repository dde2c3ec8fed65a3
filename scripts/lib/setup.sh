# Shared set-up for scripts/dev and scripts/test: sourced, not run.
# Brings up a virtual environment, Postgres and Redis, in that order, and exports
# DATABASE_URL / REDIS_URL for what runs next. Nothing here needs a second command.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DATA="${DATA_DIR:-$ROOT/.data}"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
mkdir -p "$DATA"
# A local .env (git-ignored, see .env.example) is the operator's own configuration.
if [ -f "$ROOT/.env" ]; then set -a; source "$ROOT/.env"; set +a; fi

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }

apt_install() {
  is_root || return 1
  command -v apt-get >/dev/null || return 1
  say "installing Debian packages: $*"
  if [ ! -f "$DATA/.apt-updated" ]; then apt-get update -qq && touch "$DATA/.apt-updated"; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_venv() {
  local stamp="$VENV/.installed" want
  want="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)"
  if [ ! -x "$PY" ]; then
    say "creating virtual environment in .venv"
    python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$VENV"; } \
      || die "python3 -m venv failed; install python3 (3.11+) and python3-venv"
  fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    say "installing Python dependencies"
    # The code runs from the checkout (cwd on sys.path), so only the dependencies are installed:
    # building the project itself would make setuptools walk node_modules, .venv and .data.
    "$PY" - "$ROOT/pyproject.toml" > "$VENV/requirements.txt" <<'PYEOF'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
print("\n".join(project["dependencies"] + project["optional-dependencies"]["test"]))
PYEOF
    "$PY" -m pip install -q -r "$VENV/requirements.txt" || die "pip could not install the dependencies (see above)"
    echo "$want" > "$stamp"
  fi
}

ensure_tools() {
  # ffmpeg converts non-WAV upstream audio; espeak-ng gives the simulator real speech.
  local missing=()
  command -v ffmpeg >/dev/null || missing+=(ffmpeg)
  command -v espeak-ng >/dev/null || missing+=(espeak-ng)
  command -v curl >/dev/null || missing+=(curl)  # the README's development commands use it
  if [ "${NEED_BROWSER:-0}" = 1 ] && [ ! -x /usr/bin/chromium ]; then missing+=(chromium); fi
  if [ "${NEED_NODE:-0}" = 1 ] && ! command -v npm >/dev/null; then missing+=(nodejs npm); fi
  if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}" || say "missing ${missing[*]}: install them (apt-get install ${missing[*]})"
  fi
  if [ "${NEED_PROMTOOL:-0}" = 1 ] && ! command -v promtool >/dev/null; then install_promtool; fi
}

install_promtool() {
  # promtool (tests of deploy/prometheus/alerts.yml) ships only in Debian's `prometheus` package,
  # whose install would start a Prometheus server: a policy-rc.d answering 101 stops that.
  local policy=/usr/sbin/policy-rc.d mine=0
  if is_root && [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; mine=1; fi
  apt_install --no-install-recommends prometheus || say "missing promtool: install it (apt-get install prometheus)"
  if [ "$mine" = 1 ]; then rm -f "$policy"; fi
}

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pg_reachable() { "$PY" - "$1" <<'PYEOF' >/dev/null 2>&1
import asyncio, sys, asyncpg
async def main():
    conn = await asyncio.wait_for(asyncpg.connect(sys.argv[1]), 3)
    await conn.close()
asyncio.run(main())
PYEOF
}

ensure_postgres() {
  if [ -n "${DATABASE_URL:-}" ] && pg_reachable "$DATABASE_URL"; then return; fi
  [ -n "${DATABASE_URL:-}" ] && say "DATABASE_URL is not reachable; trying a local server"
  local local_url="postgresql://postgres@127.0.0.1:5432/postgres"
  if pg_reachable "$local_url"; then export DATABASE_URL="$local_url"; return; fi
  start_private_postgres
}

start_private_postgres() {
  local dir="$DATA/postgres" bin port
  bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
  if [ -z "$bin" ]; then apt_install postgresql || die "no Postgres found: install it (apt-get install postgresql) or set DATABASE_URL"; fi
  bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
  local runas=()
  if is_root; then
    # Postgres refuses to run as root; its Debian package made the postgres user.
    id postgres >/dev/null 2>&1 || useradd --system --home "$dir" postgres
    runas=(runuser -u postgres --)
  fi
  if [ -f "$dir/port" ] && pg_reachable "postgresql://postgres@127.0.0.1:$(cat "$dir/port")/postgres"; then
    export DATABASE_URL="postgresql://postgres@127.0.0.1:$(cat "$dir/port")/postgres"; return
  fi
  say "starting a private Postgres under .data/postgres"
  mkdir -p "$dir"
  is_root && chown -R postgres "$dir"
  if [ ! -f "$dir/db/PG_VERSION" ]; then
    "${runas[@]}" "$bin/initdb" -D "$dir/db" -U postgres --auth=trust >/dev/null
  fi
  port="$(free_port)"
  echo "$port" > "$dir/port"
  "${runas[@]}" "$bin/pg_ctl" -D "$dir/db" -l "$dir/log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
  export DATABASE_URL="postgresql://postgres@127.0.0.1:$port/postgres"
  pg_reachable "$DATABASE_URL" || die "private Postgres did not start; see $dir/log"
}

redis_reachable() { "$PY" - "$1" <<'PYEOF' >/dev/null 2>&1
import sys, redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=2).ping()
PYEOF
}

ensure_redis() {
  if [ -n "${REDIS_URL:-}" ] && redis_reachable "$REDIS_URL"; then return; fi
  [ -n "${REDIS_URL:-}" ] && say "REDIS_URL is not reachable; trying a local server"
  if redis_reachable "redis://127.0.0.1:6379/0"; then export REDIS_URL="redis://127.0.0.1:6379/0"; return; fi
  local dir="$DATA/redis" port
  if [ -f "$dir/port" ] && redis_reachable "redis://127.0.0.1:$(cat "$dir/port")/0"; then
    export REDIS_URL="redis://127.0.0.1:$(cat "$dir/port")/0"; return
  fi
  command -v redis-server >/dev/null || apt_install redis-server || die "no Redis found: install it (apt-get install redis-server) or set REDIS_URL"
  say "starting a private Redis under .data/redis"
  mkdir -p "$dir"
  port="$(free_port)"
  echo "$port" > "$dir/port"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --dir "$dir" --save "" --appendonly no \
    --logfile "$dir/log" --pidfile "$dir/pid"
  export REDIS_URL="redis://127.0.0.1:$port/0"
  for _ in $(seq 50); do redis_reachable "$REDIS_URL" && return; sleep 0.1; done
  die "private Redis did not start; see $dir/log"
}

# Point a server-level URL at one database, creating it when missing.
ensure_database() {
  local base="$1" name="$2"
  "$PY" - "$base" "$name" <<'PYEOF'
import asyncio, sys, asyncpg
base, name = sys.argv[1], sys.argv[2]
import re
if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", name):
    raise SystemExit("bad database name")
async def main():
    conn = await asyncpg.connect(base)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
asyncio.run(main())
PYEOF
  "$PY" -c 'import sys; from urllib.parse import urlsplit, urlunsplit; u = urlsplit(sys.argv[1]); print(urlunsplit(u._replace(path="/" + sys.argv[2])))' "$base" "$name"
}
