#!/bin/sh
# Starts PostgreSQL in the foreground, creating its cluster in $PGDATA on the
# first start. Any command other than "postgres" (psql, pg_dump, ...) is run
# as given, so one image serves the database and its one-off tools.
set -eu

if [ "${1:-}" != postgres ]; then
	exec "$@"
fi
shift

if [ "$(id -u)" = 0 ]; then
	# The volume may be new and owned by root; the server refuses to run
	# as root, so fix ownership and start again as postgres.
	mkdir -p "$PGDATA" /run/postgresql
	chown postgres:postgres "$PGDATA" /run/postgresql
	chmod 700 "$PGDATA"
	exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" postgres "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set to create the database}"
	user=${POSTGRES_USER:-postgres}
	db=${POSTGRES_DB:-$user}
	pwfile=$(mktemp)
	printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
	# Local (socket) connections inside the container are trusted, as in
	# the official image; everything over the network needs the password.
	initdb -D "$PGDATA" --username="$user" --pwfile="$pwfile" \
		--encoding=UTF8 --locale=C \
		--auth-local=trust --auth-host=scram-sha-256
	rm -f "$pwfile"
	echo 'host all all all scram-sha-256' >>"$PGDATA/pg_hba.conf"
	echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"

	if [ "$db" != postgres ]; then
		# Started on the socket only, so nobody connects before the
		# database exists.
		pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
		psql -v ON_ERROR_STOP=1 --username="$user" --dbname=postgres -v db="$db" <<-'SQL'
			CREATE DATABASE :"db";
		SQL
		pg_ctl -D "$PGDATA" -m fast -w stop
	fi
	echo "postgres-entrypoint: created database $db owned by $user"
fi

exec postgres -D "$PGDATA" "$@"
