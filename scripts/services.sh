#!/usr/bin/env bash
# Makes sure the local services hookline's tests and demo use are up:
# RabbitMQ (with the management API, which tests use to create a vhost each),
# PostgreSQL and Redis. Starts whichever is down, with the same commands a
# fresh machine of ours uses; does nothing to a service that already answers.
set -euo pipefail

log() { printf 'services: %s\n' "$*" >&2; }

wait_for() { # wait_for <what> <seconds> <command...>
  local what=$1 secs=$2; shift 2
  for _ in $(seq 1 $((secs * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  log "$what did not come up within ${secs}s"; return 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# RabbitMQ
if ! port_open 5672; then
  command -v rabbitmq-server >/dev/null || { log "rabbitmq-server is not installed (docker compose up rabbitmq gives you one)"; exit 1; }
  log "starting RabbitMQ"
  rabbitmq-server -detached
  wait_for "RabbitMQ" 90 rabbitmq-diagnostics -q check_port_connectivity
fi
if ! curl -fsS -u guest:guest http://127.0.0.1:15672/api/overview >/dev/null 2>&1; then
  log "enabling the RabbitMQ management API"
  rabbitmq-plugins enable rabbitmq_management >/dev/null
  wait_for "RabbitMQ management API" 60 curl -fsS -u guest:guest http://127.0.0.1:15672/api/overview
fi

# PostgreSQL
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  log "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  wait_for "PostgreSQL" 60 pg_isready -q -h 127.0.0.1 -p 5432
fi

# Redis (keeps nothing on disk)
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  log "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for "Redis" 30 redis-cli -h 127.0.0.1 -p 6379 ping
fi

log "RabbitMQ, PostgreSQL and Redis are up"
