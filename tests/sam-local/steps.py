"""Helper of tests/sam-local/run (run with the venv's python): checks the built template against
the env-vars file, seeds moto, and drives the steps through `sam local start-api` and
`sam local invoke`.

    steps.py preflight TEMPLATE ENV_FILE
    steps.py seed ENV_FILE
    steps.py steps ENV_FILE API_URL TEMPLATE IMAGE COUNTS_FILE LOG_DIR

ENV_FILE is the env-vars file SAM gets (its "Parameters" apply to every function). Endpoint,
credentials and region come from the environment run sets (AWS_ACCESS_KEY_ID, AWS_REGION, ...).
"""

import datetime
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request

FUNCTIONS = ("TriggersApiFunction", "EventsApiFunction", "FireFunction")
# Without these every function talks to real AWS (or fails to start), so each must declare them.
EVERY_FUNCTION = ("ETP_AWS_ENDPOINT_URL", "TRIGGERS_TABLE", "EVENTS_TABLE", "STATS_TABLE")


def env_params(path):
    with open(path) as f:
        return json.load(f)["Parameters"]


# ------------------------------------------------------------------ preflight


def preflight(template_path, env_file):
    """SAM drops an override the template does not declare for the function, without a word, and
    the SDK then goes to real AWS and times out: fail here instead, naming the variable."""
    from samcli.yamlhelper import yaml_parse

    with open(template_path) as f:
        template = yaml_parse(f.read())
    glob = (
        template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    )
    declared = {}
    for name in FUNCTIONS:
        props = template["Resources"][name]["Properties"]
        own = props.get("Environment", {}).get("Variables", {})
        declared[name] = set(glob) | set(own)
    problems = []
    for var in EVERY_FUNCTION:
        for name in FUNCTIONS:
            if var not in declared[name]:
                problems.append(f"{name} does not declare {var}")
    for var in env_params(env_file):
        if not any(var in d for d in declared.values()):
            problems.append(f"{var} (in {os.path.basename(env_file)}) is declared by no function")
    for p in problems:
        print(f"sam-local: {template_path}: {p}; SAM would drop the override", file=sys.stderr)
    return 1 if problems else 0


# ------------------------------------------------------------------ moto


def client(service):
    import boto3

    return boto3.client(
        service,
        endpoint_url=os.environ["MOTO_URL"],
        region_name=os.environ["AWS_REGION"],
    )


# The API token: the stack keeps it in Secrets Manager (ApiTokenSecret) and the functions read
# the secret named by ETP_API_TOKEN_SECRET at cold start; seed() creates it in moto.
TOKEN = "sam-local-token-0123456789abcdef"


def seed(env_file):
    """The tables as shared/src/aws/dynamo/tables.rs (and template.yaml) define them, the
    schedule group and the token's secret: what the stack would have created."""
    p = env_params(env_file)
    client("secretsmanager").create_secret(Name=p["ETP_API_TOKEN_SECRET"], SecretString=TOKEN)
    ddb = client("dynamodb")

    def s(name):
        return {"AttributeName": name, "AttributeType": "S"}

    def k(name, kind):
        return {"AttributeName": name, "KeyType": kind}

    def gsi(name, hash_key, range_key):
        return {
            "IndexName": name,
            "KeySchema": [k(hash_key, "HASH"), k(range_key, "RANGE")],
            "Projection": {"ProjectionType": "ALL"},
        }

    ddb.create_table(
        TableName=p["TRIGGERS_TABLE"],
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[s("pk"), s("list_pk")],
        KeySchema=[k("pk", "HASH")],
        GlobalSecondaryIndexes=[gsi("by_id", "list_pk", "pk")],
    )
    ddb.create_table(
        TableName=p["EVENTS_TABLE"],
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[s("pk"), s("sk"), s("lc_pk"), s("lc_sk"), s("trigger_key")],
        KeySchema=[k("pk", "HASH"), k("sk", "RANGE")],
        GlobalSecondaryIndexes=[
            gsi("lifecycle", "lc_pk", "lc_sk"),
            gsi("by_trigger", "trigger_key", "lc_sk"),
        ],
    )
    ddb.create_table(
        TableName=p["STATS_TABLE"],
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[s("pk"), s("sk")],
        KeySchema=[k("pk", "HASH"), k("sk", "RANGE")],
    )
    for table in (p["TRIGGERS_TABLE"], p["EVENTS_TABLE"], p["STATS_TABLE"]):
        ddb.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1})
    for table in (p["EVENTS_TABLE"], p["STATS_TABLE"]):
        ddb.update_time_to_live(
            TableName=table,
            TimeToLiveSpecification={"AttributeName": "expires_at", "Enabled": True},
        )
    client("scheduler").create_schedule_group(Name=p["SCHEDULE_GROUP"])
    return 0


# ------------------------------------------------------------------ steps


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def content_type(self):
        return self.headers.get("content-type", "")

    def json(self):
        return json.loads(self.body)

    def __str__(self):
        body = self.body.decode("utf-8", "replace")
        if len(body) > 300:
            body = body[:300] + "..."
        return f"{self.status} {self.content_type or '-'} {body}"


class Api:
    def __init__(self, base, token):
        self.base = base.rstrip("/")
        self.token = token

    def call(self, method, path, body=None, auth=True, timeout=90):
        headers = {"accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        if auth:
            headers["authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return Response(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
        except urllib.error.HTTPError as e:
            return Response(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


class Failed(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise Failed(what)


def expect_status(resp, status, problem=False):
    expect(resp.status == status, f"expected {status}, got {resp}")
    if problem:
        expect(
            resp.content_type.split(";")[0].strip() == "application/problem+json",
            f"expected content-type application/problem+json, got {resp}",
        )


def new_ulid():
    """A well-formed ULID (lowercase, as the API issues them) that no trigger has."""
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    n = (int(time.time() * 1000) << 80) | secrets.randbits(80)
    return "".join(alphabet[(n >> (5 * i)) & 31] for i in reversed(range(26)))


def run_steps(env_file, api_url, template, image, counts_file, log_dir):
    p = env_params(env_file)
    api = Api(api_url, TOKEN)
    state = {}
    results = [0, 0]

    def step(name, fn):
        started = time.monotonic()
        try:
            fn()
            results[0] += 1
            print(f"  ok    {name} ({time.monotonic() - started:.1f} s)", flush=True)
        except Failed as e:
            results[1] += 1
            print(f"  FAIL  {name}: {e}", flush=True)
        except Exception as e:  # a crash of one step must not hide the others' results
            results[1] += 1
            print(f"  FAIL  {name}: {type(e).__name__}: {e}", flush=True)

    def need(key):
        expect(key in state, f"no {key.replace('_', ' ')} from an earlier step")
        return state[key]

    def health():
        # The first request also builds SAM's emulation image on top of the base image.
        r = api.call("GET", "/health", auth=False, timeout=300)
        expect_status(r, 200)
        body = r.json()
        expect(body.get("store") is True and body.get("scheduler") is True, f"body {body}")

    def unauthorized():
        expect_status(api.call("GET", "/triggers", auth=False), 401, problem=True)

    def create_api_trigger():
        r = api.call(
            "POST",
            "/triggers",
            {"name": "orders", "kind": "api", "payload_schema": {"type": "object"}},
        )
        expect_status(r, 201)
        state["api_trigger"] = r.json()["id"]

    def create_cron_trigger():
        r = api.call(
            "POST",
            "/triggers",
            {
                "name": "nightly",
                "kind": "scheduled",
                "schedule": {
                    "type": "cron",
                    "expression": "0 3 * * *",
                    "timezone": "Europe/Berlin",
                },
            },
        )
        expect_status(r, 201)
        state["cron_trigger"] = r.json()["id"]

    def schedule_in_moto():
        tid = need("cron_trigger")
        s = client("scheduler").get_schedule(GroupName=p["SCHEDULE_GROUP"], Name=tid)
        got = {
            "expression": s.get("ScheduleExpression"),
            "timezone": s.get("ScheduleExpressionTimezone"),
            "target": s.get("Target", {}).get("Arn"),
            "role": s.get("Target", {}).get("RoleArn"),
        }
        want = {
            "expression": "cron(0 3 * * ? *)",
            "timezone": "Europe/Berlin",
            "target": p["FIRE_FUNCTION_ARN"],
            "role": p["SCHEDULER_ROLE_ARN"],
        }
        expect(got == want, f"schedule {p['SCHEDULE_GROUP']}/{tid}: got {got}, want {want}")

    def list_triggers():
        r = api.call("GET", "/triggers")
        expect_status(r, 200)
        ids = {t["id"] for t in r.json()["items"]}
        want = {need("api_trigger"), need("cron_trigger")}
        expect(want <= ids, f"listed {sorted(ids)}, want {sorted(want)}")

    def fire_api_trigger():
        r = api.call("POST", f"/triggers/{need('api_trigger')}/fire", {"order_id": 1})
        expect_status(r, 202)
        state["api_event"] = r.json()["id"]

    def list_events():
        r = api.call("GET", "/events")
        expect_status(r, 200)
        ids = [e["id"] for e in r.json()["items"]]
        expect(need("api_event") in ids, f"event {state['api_event']} not in {ids}")

    def get_event():
        eid = need("api_event")
        r = api.call("GET", f"/events/{eid}")
        expect_status(r, 200)
        e = r.json()
        got = (e.get("id"), e.get("trigger_id"), e.get("source"), e.get("payload"))
        want = (eid, state["api_trigger"], "api", {"order_id": 1})
        expect(got == want, f"(id, trigger_id, source, payload) = {got}, want {want}")

    def stats():
        r = api.call("GET", "/events/stats")
        expect_status(r, 200)
        items = r.json()["items"]
        mine = [i for i in items if i.get("trigger_id") == need("api_trigger")]
        expect(mine and mine[0].get("active", 0) >= 1, f"no active count for the trigger in {items}")

    def unknown_trigger():
        expect_status(api.call("GET", f"/triggers/{new_ulid()}"), 404, problem=True)

    def fire_function():
        tid = need("cron_trigger")
        # An occurrence as EventBridge Scheduler would send it: the current minute, from the real
        # clock (the store checks instants against it).
        now = datetime.datetime.now(datetime.timezone.utc).replace(second=0, microsecond=0)
        event_file = os.path.join(os.path.dirname(counts_file), "fire-event.json")
        with open(event_file, "w") as f:
            json.dump({"trigger_id": tid, "scheduled_time": now.strftime("%Y-%m-%dT%H:%M:%SZ")}, f)
        cmd = [
            "sam", "local", "invoke", "FireFunction",
            "--template", template,
            "--event", event_file,
            "--invoke-image", image,
            "--skip-pull-image",
            "--env-vars", env_file,
        ]  # fmt: skip
        log = os.path.join(log_dir, "sam-invoke.log")
        with open(log, "wb") as err:
            out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, timeout=300)
        lines = [line for line in out.stdout.decode().splitlines() if line.strip()]
        expect(out.returncode == 0 and lines, f"sam local invoke exited {out.returncode} (see {log})")
        try:
            report = json.loads(lines[-1])
        except ValueError:
            raise Failed(f"not a JSON result: {lines[-1]!r} (see {log})")
        expect(
            isinstance(report, dict) and report.get("outcome") == "fired" and report.get("event_id"),
            f"result {report} (see {log})",
        )
        state["cron_event"] = report["event_id"]

    def scheduled_event_listed():
        tid = need("cron_trigger")
        eid = need("cron_event")
        r = api.call("GET", f"/events?trigger_id={tid}")
        expect_status(r, 200)
        found = [e for e in r.json()["items"] if e["id"] == eid]
        expect(found, f"event {eid} not listed: {r}")
        expect(found[0].get("source") == "schedule", f"source {found[0].get('source')!r}")

    def occurrences_audit():
        tid = need("cron_trigger")
        eid = need("cron_event")
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        window = {
            "from": (now - datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "to": (now + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        r = api.call("GET", f"/triggers/{tid}/occurrences?from={window['from']}&to={window['to']}")
        expect_status(r, 200)
        fired = [o for o in r.json()["occurrences"] if o.get("event_id") == eid]
        expect(fired and fired[0]["status"] == "fired", f"event {eid} not in the audit: {r}")

    step("GET /health -> 200, store and scheduler up", health)
    step("GET /triggers without token -> 401 problem+json", unauthorized)
    step("POST /triggers (api) -> 201", create_api_trigger)
    step("POST /triggers (cron, Europe/Berlin) -> 201", create_cron_trigger)
    step("schedule in moto: cron(0 3 * * ? *), Europe/Berlin, fire target", schedule_in_moto)
    step("GET /triggers lists both", list_triggers)
    step("POST /triggers/{id}/fire -> 202", fire_api_trigger)
    step("GET /events lists the event", list_events)
    step("GET /events/{id} returns it", get_event)
    step("GET /events/stats counts the trigger", stats)
    step("GET /triggers/{unknown} -> 404 problem+json", unknown_trigger)
    step("sam local invoke FireFunction (scheduled occurrence) -> fired", fire_function)
    step("GET /events?trigger_id= lists it with source schedule", scheduled_event_listed)
    step("GET /triggers/{id}/occurrences (events-api) shows it fired", occurrences_audit)

    with open(counts_file, "w") as f:
        f.write(f"{results[0]} {results[1]}\n")
    return 0


def main(argv):
    if len(argv) == 4 and argv[1] == "preflight":
        return preflight(argv[2], argv[3])
    if len(argv) == 3 and argv[1] == "seed":
        return seed(argv[2])
    if len(argv) == 8 and argv[1] == "steps":
        return run_steps(*argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
