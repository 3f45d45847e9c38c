"""A poison corpus: every malformed input ends in the DLQ with its own reason, and nothing crashes.

The corpus covers the SQS body (not JSON, wrong shapes, truncated or half-filled notifications, SNS
and EventBridge variants) and the job-metadata object (not JSON, NaN, huge numbers, deep nesting,
wrong types, invalid UTF-8, oversized, missing, superseded, in a bucket we may not read). The
expected ``reason`` of each case is the code the forwarder documents in ``app/errors.py``,
``app/core/metadata.py`` and ``app/aws/resources.py``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from app.local.dogstatsd import DogStatsdReceiver, EventLine
from app.local.provision import Stack
from tests.conftest import Aws, CliResult
from tests.faults.conftest import (
    StoredObject,
    env_for,
    job_results,
    notification,
    put_object,
    s3_record,
    send_bodies,
    summary_counts,
)

pytestmark = pytest.mark.fault

Cli = Callable[..., CliResult]
MAX_OBJECT_BYTES = 64 * 1024
REJECTED_TITLE = "job metadata rejected"
VALID_NEIGHBOUR_RESULT = 4242


@dataclass(frozen=True, slots=True)
class Poison:
    """One malformed input and the ``reason`` it must carry into the DLQ.

    Either ``body`` is sent as the SQS message as it is, or ``build`` writes whatever objects it
    needs and returns the body.
    """

    name: str
    reason: str
    body: str | None = None
    build: Callable[[Aws, Stack], str] | None = field(default=None, compare=False)


def valid_record(bucket: str = "job-results", key: str = "jobs/x.json") -> dict[str, Any]:
    """A well-formed record about an object that need not exist (for envelope cases)."""
    return s3_record(StoredObject(bucket, key, 20, "0123456789abcdef0123456789abcdef", None))


def mutated_record(mutate: Callable[[dict[str, Any]], None]) -> str:
    """A notification whose only record was changed by ``mutate``."""
    record = valid_record()
    mutate(record)
    return notification(record)


def with_object(body: bytes, *, key: str | None = None, **overrides: Any) -> Callable[[Aws, Stack], str]:
    """Builder: write ``body`` to the stack's bucket and announce it (``overrides`` change the record)."""

    def build(aws: Aws, stack: Stack) -> str:
        stored = put_object(aws, stack.bucket, key or f"jobs/{uuid.uuid4().hex}.json", body)
        return notification(s3_record(stored, **overrides))

    return build


def document(**fields: Any) -> bytes:
    """A job document with ``job_success`` set, plus ``fields``."""
    return json.dumps({"job_success": True, **fields}).encode()


def raw_document(fragment: str) -> bytes:
    """A job document written by hand, for what ``json.dumps`` cannot produce (NaN, 1e999 …)."""
    return ('{"job_success": true, ' + fragment + "}").encode()


def nested(depth: int) -> dict[str, Any]:
    """``{"a": {"a": … {"value": 1}}}`` with ``depth`` levels."""
    value: dict[str, Any] = {"value": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def missing_object(aws: Aws, stack: Stack) -> str:
    """A notification about a key that was never written."""
    return notification(s3_record(StoredObject(stack.bucket, "jobs/never-written.json", 30, "0" * 32, None)))


def missing_version(aws: Aws, stack: Stack) -> str:
    """A notification naming a version that exists, but of another key."""
    other = put_object(aws, stack.bucket, "jobs/other.json", document())
    target = put_object(aws, stack.bucket, "jobs/versioned.json", document())
    return notification(s3_record(target, versionId=other.version_id))


def superseded(aws: Aws, stack: Stack) -> str:
    """A notification without a version whose object was overwritten since (its ETag is stale)."""
    key = "jobs/overwritten.json"
    first = put_object(aws, stack.bucket, key, document(job_result=1))
    put_object(aws, stack.bucket, key, document(job_result=2))
    record = s3_record(first)
    del record["s3"]["object"]["versionId"]
    return notification(record)


def foreign_bucket(aws: Aws, stack: Stack) -> str:
    """A notification about a bucket outside ``--allowed-buckets`` (it must never be read)."""
    return notification(valid_record(bucket=f"{stack.bucket}-stranger"))


def ghost_bucket(aws: Aws, stack: Stack) -> str:
    """A notification about an allowed bucket that does not exist."""
    return notification(valid_record(bucket=f"{stack.bucket}-ghost"))


def oversized_honest(aws: Aws, stack: Stack) -> str:
    """An object over the cap whose notification says so (refused before download)."""
    return with_object(document(pad="x" * MAX_OBJECT_BYTES))(aws, stack)


def oversized_lying(aws: Aws, stack: Stack) -> str:
    """An object over the cap whose notification claims it is small (refused on ContentLength)."""
    return with_object(document(pad="x" * MAX_OBJECT_BYTES), size=40)(aws, stack)


def eventbridge_missing(aws: Aws, stack: Stack) -> str:
    """An EventBridge "Object Created" event about an object that does not exist."""
    return json.dumps(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Object Created",
            "source": "aws.s3",
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": "us-east-1",
            "resources": [f"arn:aws:s3:::{stack.bucket}"],
            "detail": {
                "version": "0",
                "bucket": {"name": stack.bucket},
                "object": {"key": "jobs/eventbridge-ghost.json", "size": 10, "etag": "0" * 32},
                "reason": "PutObject",
            },
        }
    )


def sns_wrapped_invalid(aws: Aws, stack: Stack) -> str:
    """An SNS notification carrying an S3 event about an object that is not JSON."""
    inner = with_object(b"<xml>not json</xml>")(aws, stack)
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:job-results",
            "Subject": "Amazon S3 Notification",
            "Message": inner,
            "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        }
    )


def valid_next_to_nan(aws: Aws, stack: Stack) -> str:
    """Two records: a valid job and a NaN one; the message is rejected, the valid job still sent."""
    good = put_object(
        aws, stack.bucket, "jobs/good.json", document(job_result=VALID_NEIGHBOUR_RESULT, job_name="neighbour")
    )
    bad = put_object(aws, stack.bucket, "jobs/nan.json", raw_document('"loss": NaN'))
    return notification(s3_record(good), s3_record(bad))


TRUNCATED = notification(valid_record())[:120]

CORPUS: tuple[Poison, ...] = (
    # --- the SQS body -----------------------------------------------------------------------------
    Poison("body is plain text", "invalid-envelope", body="job finished OK"),
    Poison("body is a truncated notification", "invalid-envelope", body=TRUNCATED),
    Poison("body is a JSON array", "invalid-envelope", body="[1, 2, 3]"),
    Poison("body is a JSON string", "invalid-envelope", body='"Records"'),
    Poison("body is an unknown object", "invalid-envelope", body='{"hello": "world"}'),
    Poison("Records is empty", "invalid-envelope", body='{"Records": []}'),
    Poison("Records is an object", "invalid-envelope", body='{"Records": {"0": {}}}'),
    Poison("a record is a number", "invalid-envelope", body='{"Records": [42]}'),
    Poison(
        "eventSource is not S3",
        "invalid-envelope",
        body=mutated_record(lambda r: r.update(eventSource="aws:sqs")),
    ),
    Poison("eventName is missing", "invalid-envelope", body=mutated_record(lambda r: r.pop("eventName"))),
    Poison("s3.object is missing", "invalid-envelope", body=mutated_record(lambda r: r["s3"].pop("object"))),
    Poison(
        "the key is a number",
        "invalid-envelope",
        body=mutated_record(lambda r: r["s3"]["object"].update(key=7)),
    ),
    Poison(
        "the bucket name is empty",
        "invalid-envelope",
        body=mutated_record(lambda r: r["s3"]["bucket"].update(name="")),
    ),
    Poison(
        "the size is negative",
        "invalid-envelope",
        body=mutated_record(lambda r: r["s3"]["object"].update(size=-1)),
    ),
    Poison(
        "the size is a string",
        "invalid-envelope",
        body=mutated_record(lambda r: r["s3"]["object"].update(size="87")),
    ),
    Poison(
        "SNS Message is not a string",
        "invalid-envelope",
        body=json.dumps({"Type": "Notification", "Message": {"Records": []}}),
    ),
    Poison(
        "SNS Message is not JSON",
        "invalid-envelope",
        body=json.dumps({"Type": "Notification", "Message": "S3 says hi"}),
    ),
    Poison(
        "SNS inside SNS",
        "invalid-envelope",
        body=json.dumps(
            {"Type": "Notification", "Message": json.dumps({"Type": "Notification", "Message": "{}"})}
        ),
    ),
    Poison(
        "EventBridge event without a bucket",
        "invalid-envelope",
        body=json.dumps(
            {"source": "aws.s3", "detail-type": "Object Created", "detail": {"object": {"key": "a.json"}}}
        ),
    ),
    Poison("body nested 50,000 deep", "invalid-envelope", body="[" * 50_000 + "]" * 50_000),
    # --- the object's bytes and JSON ----------------------------------------------------------
    Poison("object is not JSON", "invalid-json", build=with_object(b"job_success=true\njob_result=1\n")),
    Poison("object is empty", "invalid-json", build=with_object(b"")),
    Poison("object is truncated JSON", "invalid-json", build=with_object(document(job_result=1)[:-3])),
    Poison("object has a trailing comma", "invalid-json", build=with_object(b'{"job_success": true,}')),
    # A JSON array of jobs is a multi-job file; one element that is not an object spoils it whole.
    Poison(
        "object is an array holding a number",
        "not-an-object",
        build=with_object(b'[{"job_success": true}, 7]'),
    ),
    Poison("object is an empty array", "no-jobs", build=with_object(b"[]")),
    Poison("object is JSON null", "not-an-object", build=with_object(b"null")),
    Poison("object holds NaN", "non-finite-number", build=with_object(raw_document('"loss": NaN'))),
    Poison(
        "object holds -Infinity", "non-finite-number", build=with_object(raw_document('"loss": -Infinity'))
    ),
    Poison(
        "object holds 1e999 (overflows)",
        "non-finite-number",
        build=with_object(raw_document('"loss": 1e999')),
    ),
    Poison(
        "object holds a 400-digit integer",
        "non-finite-number",
        build=with_object(raw_document('"rows": 1' + "0" * 400)),
    ),
    Poison("object nested 9 deep", "too-deep", build=with_object(document(stats=nested(9)))),
    Poison(
        "object nested 30,000 deep",
        "too-deep",
        build=with_object(raw_document('"a": ' + "[" * 30_000 + "]" * 30_000)),
    ),
    Poison(
        "object has 1,001 numeric fields",
        "too-many-fields",
        build=with_object(document(**{f"f{i}": i for i in range(1001)})),
    ),
    Poison(
        "object is not UTF-8 (Latin-1)",
        "invalid-utf8",
        build=with_object(raw_document('"site": "Zürich"').decode().encode("latin-1")),
    ),
    Poison(
        "object is UTF-16",
        "invalid-utf8",
        build=with_object(document(job_result=1).decode().encode("utf-16")),
    ),
    # --- the object's fields ----------------------------------------------------------------------
    Poison("job_success is missing", "invalid-field", build=with_object(b'{"job_result": 1}')),
    Poison("job_success is null", "invalid-field", build=with_object(b'{"job_success": null}')),
    Poison("job_success is a string", "invalid-field", build=with_object(b'{"job_success": "yes"}')),
    Poison("job_success is 2", "invalid-field", build=with_object(b'{"job_success": 2}')),
    Poison("job_name is a number", "invalid-field", build=with_object(document(job_name=17))),
    Poison("tags is a list", "invalid-field", build=with_object(document(tags=["team:ml"]))),
    Poison("a tag value is a number", "invalid-field", build=with_object(document(tags={"shard": 3}))),
    Poison("timestamp is not a time", "invalid-field", build=with_object(document(timestamp="yesterday"))),
    Poison("timestamp is a boolean", "invalid-field", build=with_object(document(timestamp=True))),
    # --- where the object is (or is not) --------------------------------------------------------
    Poison("object over the size cap", "object-too-large", build=oversized_honest),
    Poison("object over the cap, notification says small", "object-too-large", build=oversized_lying),
    Poison("object was never written", "object-not-found", build=missing_object),
    Poison("the notified version does not exist", "object-not-found", build=missing_version),
    Poison("the bucket does not exist", "object-not-found", build=ghost_bucket),
    Poison("EventBridge event about a missing object", "object-not-found", build=eventbridge_missing),
    Poison("object overwritten since the event", "object-superseded", build=superseded),
    Poison("bucket outside the allow-list", "bucket-not-allowed", build=foreign_bucket),
    Poison("SNS-wrapped event about a non-JSON object", "invalid-json", build=sns_wrapped_invalid),
    Poison("a valid record next to a NaN one", "non-finite-number", build=valid_next_to_nan),
)


def rejection_events(receiver: DogStatsdReceiver) -> list[EventLine]:
    """The "job metadata rejected" events received."""
    return [event for event in receiver.events() if event.title == REJECTED_TITLE]


def reason_tag(event: EventLine) -> str | None:
    """The ``reason:`` tag of an event, without its key."""
    return next((tag.removeprefix("reason:") for tag in event.tags if tag.startswith("reason:")), None)


def test_the_corpus_is_large_and_names_are_unique() -> None:
    """The corpus has at least 30 inputs, each with its own name, covering every rejection reason."""
    assert len(CORPUS) >= 30
    assert len({case.name for case in CORPUS}) == len(CORPUS)
    assert {case.reason for case in CORPUS} >= {
        "invalid-envelope",
        "invalid-json",
        "not-an-object",
        "non-finite-number",
        "too-deep",
        "too-many-fields",
        "invalid-utf8",
        "invalid-field",
        "object-too-large",
        "object-not-found",
        "object-superseded",
        "bucket-not-allowed",
    }


def test_every_poison_input_is_dead_lettered_with_its_reason(
    aws: Aws,
    quiet_stack: Callable[..., Stack],
    run_cli: Cli,
    receiver: DogStatsdReceiver,
    report_figure: Callable[[str], None],
) -> None:
    """Each malformed input lands in the DLQ with its exact reason and one rejection event; the drain survives."""
    stack = quiet_stack()
    bodies = [case.body if case.build is None else case.build(aws, stack) for case in CORPUS]
    assert all(bodies), "SQS refuses empty bodies: a case built nothing"
    ids = send_bodies(aws, stack.queue_url, bodies)
    case_of = dict(zip(ids, CORPUS, strict=True))

    result = run_cli(
        "drain",
        "--allowed-buckets",
        f"{stack.bucket},{stack.bucket}-ghost",
        "--max-object-bytes",
        str(MAX_OBJECT_BYTES),
        "--wait-time-seconds",
        "1",
        env=env_for(receiver.url, SQS_QUEUE_URL=stack.queue_url),
    )

    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 1, result.stderr[-3000:]
    counts = summary_counts(result)
    assert counts["rejected"] == counts["dead_lettered"] == counts["received"] == len(CORPUS), counts
    assert aws.queue_depth(stack.queue_url) == (0, 0)

    dead = aws.drain_raw(stack.dead_letter_queue_url)
    assert len(dead) == len(CORPUS)
    got: dict[str, str] = {}
    for message in dead:
        attributes = {name: value["StringValue"] for name, value in message["MessageAttributes"].items()}
        case = case_of[attributes["source_message_id"]]
        got[case.name] = attributes["reason"]
        assert attributes["detail"], case.name
        assert attributes["receive_count"] == "1", case.name
        assert message["Body"] == bodies[CORPUS.index(case)], f"{case.name}: the body changed on its way"
    wrong = {name: reason for name, reason in got.items() if reason != case_by_name(name).reason}
    assert wrong == {}, {
        name: f"got {reason}, want {case_by_name(name).reason}" for name, reason in wrong.items()
    }

    assert receiver.wait_for(lambda r: len(rejection_events(r)) >= len(CORPUS))
    events = rejection_events(receiver)
    assert len(events) == len(CORPUS)
    assert all(event.alert_type == "error" for event in events)
    assert Counter(reason_tag(event) for event in events) == Counter(case.reason for case in CORPUS)
    assert receiver.errors == []
    # The valid record sharing a message with a NaN one is forwarded, not held hostage.
    assert job_results(receiver) == [VALID_NEIGHBOUR_RESULT]
    report_figure(
        f"poison: {len(CORPUS)} malformed inputs, {len(dead)} dead-lettered with the expected reason, "
        f"{len(events)} rejection events, exit code {result.returncode}"
    )


def case_by_name(name: str) -> Poison:
    """The corpus entry called ``name``."""
    return next(case for case in CORPUS if case.name == name)


NASTY_FIELDS: dict[str, float] = {
    "rows|c": 101,
    "loss:0.5|g|#team:ml": 102,
    "files,processed": 103,
    "#hash": 104,
    "multi\nline": 105,
    "tab\tbed": 106,
    "_e{5,5}:title": 107,
    "émoji 🚀": 108,
    "x" * 500: 109,
    "dots..in...name.": 110,
}


def test_dogstatsd_syntax_in_field_names_is_sanitised_and_forwarded(
    aws: Aws,
    quiet_stack: Callable[..., Stack],
    run_cli: Cli,
    receiver: DogStatsdReceiver,
) -> None:
    """Field names, tags and job names full of DogStatsD syntax are not poison: sanitised, forwarded, never raw."""
    stack = quiet_stack()
    body = document(
        job_name="evil|job:1\n#x,y",
        tags={"team|x": "a,b#c\nd", "env:prod": "e|f"},
        nested={"a|b": 111, "c:d": {"e#f": 112}},
        **NASTY_FIELDS,
    )
    stored = put_object(aws, stack.bucket, "jobs/nasty name #1.json", body)
    send_bodies(aws, stack.queue_url, [notification(s3_record(stored))])

    result = run_cli(
        "drain", "--wait-time-seconds", "1", env=env_for(receiver.url, SQS_QUEUE_URL=stack.queue_url)
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert summary_counts(result)["forwarded"] == 1
    expected_values = {*NASTY_FIELDS.values(), 111.0, 112.0}
    assert receiver.wait_for(
        lambda r: expected_values <= {m.value for m in r.metrics()} and len(r.events()) >= 1
    )
    assert receiver.errors == [], "a malformed datagram reached the wire"
    gauges = [m for m in receiver.metrics() if m.name.startswith("cloud_job.") and m.type == "g"]
    assert len(gauges) == len(NASTY_FIELDS) + 3  # success + the two nested fields
    assert all(len(m.name) <= 200 and all(len(tag) <= 200 for tag in m.tags) for m in gauges)
    assert aws.drain_raw(stack.dead_letter_queue_url) == []
    assert aws.queue_depth(stack.queue_url) == (0, 0)


def surrogate_key(aws: Aws, stack: Stack) -> str:
    """A notification whose object key holds a lone UTF-16 surrogate, which no S3 key can."""
    record = valid_record(bucket=stack.bucket)
    record["s3"]["object"]["key"] = "jobs/\ud800.json"
    return notification(record)


EDGE_CASES: tuple[Poison, ...] = (
    Poison("a body key is a lone surrogate", "invalid-envelope", body=json.dumps({"\ud800": 1})),
    Poison("the object key is a lone surrogate", "invalid-envelope", build=surrogate_key),
    Poison(
        "object holds a 5,000-digit integer",
        "non-finite-number",
        build=with_object(raw_document('"rows": 1' + "0" * 5000)),
    ),
)


@pytest.mark.parametrize("case", EDGE_CASES, ids=[case.name for case in EDGE_CASES])
def test_edge_poison_is_dead_lettered_at_once_with_its_reason(
    case: Poison,
    aws: Aws,
    quiet_stack: Callable[..., Stack],
    run_cli: Cli,
    receiver: DogStatsdReceiver,
) -> None:
    """Text that is not valid Unicode, or a number too long to parse, is rejected at once, its valid neighbours forwarded."""
    stack = quiet_stack()
    neighbours = [
        put_object(aws, stack.bucket, f"jobs/n{index}.json", document(job_result=index, job_name=f"n{index}"))
        for index in range(3)
    ]
    poison_body = case.body if case.build is None else case.build(aws, stack)
    send_bodies(aws, stack.queue_url, [poison_body, *(notification(s3_record(n)) for n in neighbours)])

    result = run_cli(
        "drain", "--wait-time-seconds", "1", env=env_for(receiver.url, SQS_QUEUE_URL=stack.queue_url)
    )

    counts = summary_counts(result)
    assert (result.returncode, counts["forwarded"], counts["retried"]) == (1, 3, 0), result.stderr[-3000:]
    dead = aws.drain_raw(stack.dead_letter_queue_url)
    assert [m["MessageAttributes"]["reason"]["StringValue"] for m in dead] == [case.reason]
    assert aws.queue_depth(stack.queue_url) == (0, 0)
    assert receiver.wait_for(lambda r: len(rejection_events(r)) == 1)
    assert reason_tag(rejection_events(receiver)[0]) == case.reason
