#!/usr/bin/env bash
# Runs deployd for real on this machine: builds the demo app images, starts
# a private nginx on a loopback port and deployd in front of the local Docker
# engine, then deploys v1, deploys v2 (blue-green) and rolls back.
# Everything lives in run/demo; `scripts/demo.sh stop` tears it down.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUN=$ROOT/run/demo
API_PORT=${DEMO_API_PORT:-7400}
WEB_PORT=${DEMO_WEB_PORT:-8080}
API=http://127.0.0.1:$API_PORT
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

stop() {
	if [ -f "$RUN/deployd.pid" ]; then
		kill "$(cat "$RUN/deployd.pid")" 2>/dev/null || true
		for _ in $(seq 1 100); do kill -0 "$(cat "$RUN/deployd.pid")" 2>/dev/null || break; sleep 0.1; done
		rm -f "$RUN/deployd.pid"
	fi
	# The traffic switch process outlives deployd by design: stop it too.
	if [ -f "$RUN/data/switchd.pid" ]; then
		kill "$(cat "$RUN/data/switchd.pid")" 2>/dev/null || true
		rm -f "$RUN/data/switchd.pid"
	fi
	if [ -f "$RUN/nginx/nginx.pid" ]; then
		"$NGINX" -p "$RUN/nginx" -c "$RUN/nginx/nginx.conf" -s quit 2>/dev/null || true
	fi
	ids=$(docker ps -aq --filter label=deployd.service=demoweb)
	[ -z "$ids" ] || docker rm -f $ids >/dev/null
}

if [ "${1:-}" = "stop" ]; then
	stop
	echo "demo stopped (state kept in run/demo; delete it to start over)"
	exit 0
fi

bash scripts/ensure-deps.sh
stop

say "Building the demo app images demoapp:v1 and demoapp:v2 (FROM scratch, nothing pulled)"
mkdir -p "$RUN/image" "$RUN/nginx/upstreams" "$RUN/nginx/logs"
CGO_ENABLED=0 go build -trimpath -o "$RUN/image/demoapp" ./examples/demoapp
cp examples/demoapp/Dockerfile "$RUN/image/Dockerfile"
for v in v1 v2; do
	DOCKER_BUILDKIT=0 docker build -q --build-arg APP_VERSION=$v -t demoapp:$v "$RUN/image" >/dev/null 2>&1
done
docker images demoapp --format '   {{.Repository}}:{{.Tag}}  {{.Size}}'

# A fresh token and webhook secret for this demo, kept out of the config
# file and the logs.
for f in token webhook-secret; do
	if [ ! -s "$RUN/$f" ]; then
		(umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$RUN/$f")
	fi
done
export DEPLOYD_ADMIN_TOKEN DEPLOYD_WEBHOOK_SECRET
DEPLOYD_ADMIN_TOKEN=$(cat "$RUN/token")
DEPLOYD_WEBHOOK_SECRET=$(cat "$RUN/webhook-secret")

cat >"$RUN/deployd.yml" <<YAML
listen: 127.0.0.1:$API_PORT
data_dir: ./data
log_format: text
auth:
  tokens:
    - name: admin
      role: operator
      token_env: DEPLOYD_ADMIN_TOKEN
  webhook_secret_env: DEPLOYD_WEBHOOK_SECRET
nginx:
  mode: exec
  upstream_dir: ./nginx/upstreams
  test_command: ["$NGINX", "-p", "$RUN/nginx", "-c", "$RUN/nginx/nginx.conf", "-t", "-q"]
  reload_command: ["$NGINX", "-p", "$RUN/nginx", "-c", "$RUN/nginx/nginx.conf", "-s", "reload"]
  pid_file: ./nginx/nginx.pid
services:
  demoweb:
    image: demoapp
    replicas: 2
    port: 8000
    env: {APP_ENV: demo}
    health:
      path: /health
      interval: 500ms
      healthy_threshold: 2
      start_timeout: 30s
      expect_body: healthy
    pre_deploy:
      command: ["migrate"]   # the image's entrypoint runs it, as "python manage.py migrate" would
      timeout: 1m
    drain: 2s
    standby: running
    allowed_refs: [refs/heads/main]
YAML

cat >"$RUN/nginx/nginx.conf" <<NGINX
worker_processes 1;
pid nginx.pid;
error_log logs/error.log notice;
$( [ "$(id -u)" -eq 0 ] && echo "user root;" )
events { worker_connections 1024; }
http {
    access_log logs/access.log;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    include upstreams/*.conf;
    server {
        listen 127.0.0.1:$WEB_PORT;
        location / {
            proxy_pass http://demoweb;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
        }
    }
}
NGINX
mkdir -p "$RUN/nginx/tmp"

say "Starting deployd on $API (log: run/demo/deployd.log)"
nohup bin/deployd serve --config "$RUN/deployd.yml" >"$RUN/deployd.log" 2>&1 &
echo $! >"$RUN/deployd.pid"
for _ in $(seq 1 100); do curl -fs "$API/healthz" >/dev/null && break; sleep 0.1; done
curl -fs "$API/healthz" >/dev/null || { echo "deployd did not start:"; tail -20 "$RUN/deployd.log"; exit 1; }

say "Starting nginx on http://127.0.0.1:$WEB_PORT (it answers 502 until the first deploy)"
"$NGINX" -p "$RUN/nginx" -c "$RUN/nginx/nginx.conf"
sleep 0.3
printf '   GET / -> %s\n' "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$WEB_PORT/")"

# The client commands of the same binary talk to the daemon.
export DEPLOYD_SERVER=$API DEPLOYD_TOKEN=$DEPLOYD_ADMIN_TOKEN

show() {
	printf '   GET http://127.0.0.1:%s/ -> %s\n' "$WEB_PORT" "$(curl -s "http://127.0.0.1:$WEB_PORT/")"
}

say "Deploying demoapp:v1 with the CLI (first deploy goes to blue): deployd deploy --wait"
bin/deployd deploy --service demoweb --image v1 --commit demo-v1 --on-behalf-of demo --wait
show

say "Deploying demoapp:v2 through the signed webhook, as GitHub Actions does (goes to green)"
body='{"service":"demoweb","image":"v2","commit":"demo-v2","actor":"demo","ref":"refs/heads/main"}'
ts=$(date +%s)
sig=$(printf '%s.%s' "$ts" "$body" | openssl dgst -sha256 -hmac "$DEPLOYD_WEBHOOK_SECRET" | awk '{print $NF}')
answer=$(curl -fsS -H "X-Hub-Signature-256: sha256=$sig" -H "X-Deployd-Timestamp: $ts" -H "X-GitHub-Delivery: demo-$(date +%s%N)" \
	-H 'Content-Type: application/json' --data-binary "$body" "$API/hooks/deploy")
url=$(printf '%s' "$answer" | grep -o '"url":"[^"]*"' | cut -d'"' -f4)
echo "   202 Accepted: $url"
echo "   following its live events ($url/events):"
curl -sN -H "Authorization: Bearer $DEPLOYD_TOKEN" "$API$url/events" | sed -n 's/^data: /     /p'
show

say "Rolling back (traffic returns to the warm blue standby): deployd rollback --wait"
bin/deployd rollback --service demoweb --wait
show

bin/deployd status

say "deployd keeps running. Try:"
cat <<TXT
   open $API/ and log in with the token in run/demo/token   # the status page, with its Rollback button
   export DEPLOYD_SERVER=$API DEPLOYD_TOKEN=\$(cat run/demo/token)
   bin/deployd deploy --service demoweb --image v2 --wait
   bin/deployd history
   curl -s -H "Authorization: Bearer \$DEPLOYD_TOKEN" $API/api/v1/services/demoweb
   curl -s -H "Authorization: Bearer \$DEPLOYD_TOKEN" $API/api/v1/audit
   curl -s http://127.0.0.1:$WEB_PORT/        # the app, through nginx
   docker ps --filter label=deployd.service=demoweb
   tail -f run/demo/deployd.log
   make demo-stop                                # stop deployd, nginx and the containers
TXT
