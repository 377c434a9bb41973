"""Generators for the fuzzer: values the document describes in words rather than in JSON Schema.

The document states every rule JSON Schema can express; these hooks make the generated
*valid* requests also meet the rules it can only describe (an instant in the accepted window,
an end that leaves room for a firing, a cron that fires, a public webhook URL), so the
positive-data check holds the server to "the document allows it, so it is accepted".
Values that break the document's own rules are left as generated: the negative-data check
still sees them.
"""

import json
import re
from datetime import datetime, timedelta, timezone

import jsonschema
import schemathesis
from hypothesis import strategies as st

INSTANT = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)

# A host under the reserved `.invalid` name: never resolves, so a fired target fails fast.
schemathesis.openapi.format(
    "webhook-url",
    st.builds(
        lambda scheme, host, path: f"{scheme}://{host}.example.invalid{path}",
        st.sampled_from(["https", "http"]),
        st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
        st.from_regex(r"(/[A-Za-z0-9._~-]{0,12}){0,3}", fullmatch=True),
    ),
)

# Expressions that fire at least once a day, so any window of two days or more holds one.
CRONS = ["*/5 * * * *", "0 9 * * *", "0 0 * * *", "0 */6 * * *", "0 0 12 * * *", "15,45 * * * *"]
schemathesis.openapi.format("cron", st.sampled_from(CRONS))
# The document's own examples (examples and coverage phases send them). `0 9 * * MON-FRI` has
# no occurrence from a Friday morning to a Sunday: a window of two days is not enough, a week
# and a day always is.
DOCUMENT_CRONS = ["0 9 * * MON-FRI", "*/15 * * * *", "0 * * * *"]
DAILY = timedelta(days=2)
WEEKLY = timedelta(days=8)


MAX_EVERY_SECONDS = 10 * 365 * 24 * 3600


def _whole(n) -> bool:
    return isinstance(n, (int, float)) and not isinstance(n, bool) and n == int(n)


def _fmt(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _instant(value, now: datetime, offset: timedelta):
    """A document-valid instant moved into the window the server accepts (same shape)."""
    if isinstance(value, str) and INSTANT.match(value):
        return now + offset
    return None


@schemathesis.hook
def before_call(context, case, kwargs):
    # Runs for every phase (coverage and examples included), after the case was classified as
    # valid or not; it only swaps document-valid values for other document-valid ones.
    if isinstance(case.body, dict):
        _fit(case.body, test_run=case.operation.path == "/triggers/test")
        now = datetime.now(timezone.utc).replace(microsecond=0)
        # A pause's end lies after now.
        until = _instant(case.body.get("until"), now, timedelta(hours=1))
        if until is not None:
            case.body["until"] = _fmt(until)
    if case.operation.path.endswith("/occurrences") and isinstance(case.query, dict):
        # The window's ends in order, at most 31 days apart.
        now = datetime.now(timezone.utc).replace(microsecond=0)
        for name, offset in (("from", timedelta(hours=-1)), ("to", timedelta(hours=1))):
            moved = _instant(case.query.get(name), now, offset)
            if moved is not None:
                case.query[name] = _fmt(moved)


def _fit(body, test_run):
    schedule = body.get("schedule") if isinstance(body, dict) else None
    if isinstance(schedule, dict):
        now = datetime.now(timezone.utc).replace(microsecond=0)
        if test_run:
            # A test run's first occurrence must be within ETP_TEST_RUN_MAX_LEAD (24 h).
            every = schedule.get("every_seconds")
            if _whole(every) and 1 <= every <= MAX_EVERY_SECONDS:
                schedule["every_seconds"] = min(int(every), 3600)
            # Every known expression becomes one that fires within the 24 h lead, whatever
            # the weekday the run falls on.
            if schedule.get("expression") in CRONS + DOCUMENT_CRONS:
                schedule["expression"] = "*/5 * * * *"
        at = _instant(schedule.get("at"), now, timedelta(hours=1 if test_run else 48))
        if at is not None:
            schedule["at"] = _fmt(at)
        start = _instant(schedule.get("start_at"), now, timedelta(hours=1))
        if start is not None:
            schedule["start_at"] = _fmt(start)
        every = schedule.get("every_seconds")
        every = int(every) if _whole(every) and 0 <= every <= MAX_EVERY_SECONDS else 0
        if test_run and start is not None:
            schedule["start_at"] = _fmt(now + timedelta(minutes=1))
            start = now + timedelta(minutes=1)
        room = DAILY if schedule.get("expression", CRONS[0]) in CRONS else WEEKLY
        end = _instant(
            schedule.get("end_at"),
            start or now,
            timedelta(seconds=min(every, 11 * 365 * 86400)) + room,
        )
        if end is not None:
            schedule["end_at"] = _fmt(end)
    if isinstance(body, dict) and isinstance(body.get("payload_schema"), dict):
        # The document says "a JSON Schema"; a random object that uses a keyword wrongly (say
        # `"then": "x"`) is not one. Such a value becomes the empty schema, which is. Patterns
        # are left out too: Python's regex dialect accepts what the server's linear-time
        # engine refuses (and the server says so, with a 422).
        schema = body["payload_schema"]
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
            usable = '"pattern' not in json.dumps(schema)
        except Exception:
            usable = False
        if not usable:
            body["payload_schema"] = {}
    if isinstance(body, dict) and body.get("kind") == "api" and test_run:
        # A test run fires with its payload, which must match its schema (the document says
        # so in words): when the generated pair does not, fire against a schema allowing all.
        try:
            fits = jsonschema.Draft202012Validator(body.get("payload_schema")).is_valid(
                body.get("payload", {})
            )
        except Exception:  # not a schema the document allows: leave the case as generated
            fits = True
        if not fits:
            body["payload_schema"] = True
