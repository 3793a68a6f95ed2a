#!/usr/bin/env bash
# Print a PostgreSQL URL the tests can use, starting a server if none is reachable.
# 1. $CONVEX_TEST_PG_URL if it answers; 2. the machine's server on 127.0.0.1:5432 (trust auth);
# 3. otherwise install Debian's postgresql package if needed and start a private cluster in .pg/.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"

answers() { PGCONNECT_TIMEOUT=3 psql "$1" -Atqc 'select 1' >/dev/null 2>&1; }

if ! command -v psql >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "installing PostgreSQL (Debian package)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq postgresql >&2
fi

for url in "${CONVEX_TEST_PG_URL:-}" "postgresql://postgres@127.0.0.1:5432/test" \
           "postgresql://postgres@127.0.0.1:5432/postgres"; do
  if [ -n "$url" ] && answers "$url"; then echo "$url"; exit 0; fi
done

# A private cluster owned by the postgres user (the server refuses to run as root).
bindir="$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")"
pgdir="$here/.pg"
port=54329
url="postgresql://postgres@127.0.0.1:$port/postgres"
if answers "$url"; then echo "$url"; exit 0; fi
mkdir -p "$pgdir"
owner=postgres
id -u postgres >/dev/null 2>&1 || owner="$(id -un)"
chown "$owner" "$pgdir" 2>/dev/null || true
run() { if [ "$(id -un)" = "$owner" ]; then "$@"; else runuser -u "$owner" -- "$@"; fi; }
if [ ! -f "$pgdir/data/PG_VERSION" ]; then
  run "$bindir/initdb" -D "$pgdir/data" -U postgres --auth=trust >/dev/null
fi
run "$bindir/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -w \
  -o "-p $port -k $pgdir -c listen_addresses=127.0.0.1 -c fsync=off" start >&2
answers "$url" || { echo "PostgreSQL did not start; see $pgdir/server.log" >&2; exit 1; }
echo "$url"
