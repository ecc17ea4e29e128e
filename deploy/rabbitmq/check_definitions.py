#!/usr/bin/env python3
"""Import-check deploy/rabbitmq/definitions.json against a running RabbitMQ (3.10+)
without touching the vhost "/" it targets.

What it does, all under throw-away names that are deleted at the end (even on failure):
  1. creates vhost deploy-check-<random>, grants the API user full permissions on it;
  2. imports the exchanges/queues/bindings (re-pointed at that vhost) through the
     per-vhost endpoint POST /api/definitions/<vhost>, twice (boot-time re-import must be
     a no-op);
  3. compares queue/exchange arguments and bindings with the file, exactly;
  4. publishes one message per routing-key family and checks routing, the alternate
     exchange (unrouted), and at-least-once dead-lettering into the *.dlq queues;
  5. checks that re-declaring a queue with a different x-max-length is refused
     (the PRECONDITION_FAILED situation deploy/README.md warns about);
  6. imports the "hookline" user under the name deploy-check-user-<random> with the same
     password_hash and verifies `rabbitmqctl authenticate_user <name> hookline`.

Needs: python3 (stdlib only), the management plugin, and rabbitmqctl on PATH (queue depths
are read with rabbitmqctl because the HTTP API's counters lag). Environment:
  RABBITMQ_API (default http://127.0.0.1:15672/api), RABBITMQ_API_USER / RABBITMQ_API_PASS
  (default guest / guest), HOOKLINE_DEV_PASSWORD (default hookline).
Exit status 0 = all checks passed.
"""
import base64
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
API = os.environ.get("RABBITMQ_API", "http://127.0.0.1:15672/api")
USER = os.environ.get("RABBITMQ_API_USER", "guest")
PASS = os.environ.get("RABBITMQ_API_PASS", "guest")
DEV_PASSWORD = os.environ.get("HOOKLINE_DEV_PASSWORD", "hookline")
AUTH = "Basic " + base64.b64encode(f"{USER}:{PASS}".encode()).decode()


class ApiError(Exception):
    pass


def call(method, path, body=None, ok=(200, 201, 204)):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(API + path, data=data, method=method,
                                 headers={"Authorization": AUTH, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            code, txt = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        code, txt = e.code, e.read().decode()
    if code not in ok:
        raise ApiError(f"{method} {path} -> {code}: {txt}")
    return json.loads(txt) if txt.strip() else None


def q(name):
    return urllib.parse.quote(name, safe="")


def main():
    src = json.load(open(os.path.join(HERE, "definitions.json")))
    vhost = "deploy-check-" + secrets.token_hex(4)
    user = "deploy-check-user-" + secrets.token_hex(4)
    ev = q(vhost)
    failures = []

    def adapt(items):
        out = []
        for it in items:
            assert it["vhost"] == "/", it
            out.append(dict(it, vhost=vhost))
        return out

    scratch = {k: adapt(src[k]) for k in ("exchanges", "queues", "bindings")}

    def depth(queue, want):
        # Quorum-queue message counters are refreshed on a periodic tick: poll.
        for _ in range(30):
            out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "messages",
                                  "--no-table-headers"], capture_output=True, text=True, check=True).stdout
            got = {l.split()[0]: int(l.split()[1]) for l in out.splitlines() if l.strip()}[queue]
            if got == want:
                break
            time.sleep(1)
        return got

    print(f"scratch vhost: {vhost}")
    try:
        call("PUT", f"/vhosts/{ev}", {})
        call("PUT", f"/permissions/{ev}/{q(USER)}", {"configure": ".*", "write": ".*", "read": ".*"})
        call("POST", f"/definitions/{ev}", scratch)
        call("POST", f"/definitions/{ev}", scratch)
        print("import + re-import: OK")

        got_q = {x["name"]: x for x in call("GET", f"/queues/{ev}")}
        for want in src["queues"]:
            g = got_q.get(want["name"])
            if g is None:
                failures.append(f"queue missing: {want['name']}")
                continue
            print(f"  queue    {want['name']:24} type={g.get('type')} durable={g['durable']} "
                  f"args={json.dumps(g['arguments'], sort_keys=True)}")
            if g["arguments"] != want["arguments"] or not g["durable"] or g.get("type") != "quorum":
                failures.append(f"queue {want['name']} differs: {g['arguments']}")
        got_x = {x["name"]: x for x in call("GET", f"/exchanges/{ev}")}
        for want in src["exchanges"]:
            g = got_x.get(want["name"])
            if g is None or (g["type"], g["durable"], g["arguments"]) != (want["type"], True, want["arguments"]):
                failures.append(f"exchange {want['name']} differs: {g}")
            else:
                print(f"  exchange {want['name']:24} type={g['type']} durable={g['durable']} "
                      f"args={json.dumps(g['arguments'])}")
        got_b = {(b["source"], b["destination"], b["routing_key"]) for b in call("GET", f"/bindings/{ev}") if b["source"]}
        want_b = {(b["source"], b["destination"], b["routing_key"]) for b in src["bindings"]}
        if got_b != want_b:
            failures.append(f"bindings differ: extra={got_b - want_b} missing={want_b - got_b}")
        else:
            print(f"  bindings: all {len(got_b)} match")

        for rk in ("orders.create", "refunds.create", "inventory_levels.update",
                   "inventory_items.update", "products.update", "carts.create"):
            call("POST", f"/exchanges/{ev}/hookline.events/publish",
                 {"properties": {"delivery_mode": 2}, "routing_key": rk, "payload": rk, "payload_encoding": "string"})
        for name, want in {"hookline.orders": 2, "hookline.inventory": 3, "hookline.unrouted": 1}.items():
            got = depth(name, want)
            print(f"  routing: {name} holds {got} (want {want})")
            if got != want:
                failures.append(f"{name} holds {got}, want {want}")
        for name in ("hookline.orders", "hookline.inventory"):
            call("POST", f"/queues/{ev}/{q(name)}/get",
                 {"count": 1, "ackmode": "reject_requeue_false", "encoding": "auto"})
        for name in ("hookline.orders.dlq", "hookline.inventory.dlq"):
            got = depth(name, 1)
            print(f"  dead-lettering: {name} holds {got} (want 1)")
            if got != 1:
                failures.append(f"{name} holds {got}, want 1")

        orders = next(x for x in src["queues"] if x["name"] == "hookline.orders")
        try:
            call("PUT", f"/queues/{ev}/hookline.orders",
                 {"durable": True, "auto_delete": False,
                  "arguments": dict(orders["arguments"], **{"x-max-length": orders["arguments"]["x-max-length"] // 2})})
            failures.append("a different x-max-length was accepted")
        except ApiError as e:
            print(f"  mismatched x-max-length refused: {str(e)[:160]}...")

        u = dict(src["users"][0], name=user)
        call("POST", "/definitions", {"users": [u]})
        g = call("GET", f"/users/{q(user)}")
        ok_pw = subprocess.run(["rabbitmqctl", "-q", "authenticate_user", user, DEV_PASSWORD],
                               capture_output=True, text=True).returncode == 0
        bad_pw = subprocess.run(["rabbitmqctl", "-q", "authenticate_user", user, DEV_PASSWORD + "x"],
                                capture_output=True, text=True).returncode == 0
        print(f"  user: tags={g['tags']} algorithm={g['hashing_algorithm']} "
              f"right password accepted={ok_pw} wrong password accepted={bad_pw}")
        if not ok_pw or bad_pw or g["hashing_algorithm"] != "rabbit_password_hashing_sha256":
            failures.append("user/password_hash check failed")
    finally:
        call("DELETE", f"/users/{q(user)}", ok=(204, 404))
        call("DELETE", f"/vhosts/{ev}", ok=(204, 404))
        print(f"cleanup: vhost {vhost} and user {user} deleted")

    print("RESULT:", "PASS" if not failures else "FAIL " + "; ".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
