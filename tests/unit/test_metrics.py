"""From a validated job to gauges and an event (DESIGN "Output"), made safe for DogStatsD."""

from __future__ import annotations

import re
from typing import Any

import pytest

from app.core.envelope import ObjectRef
from app.core.metadata import JobReport
from app.core.metrics import (
    LEGACY_TAG,
    MAX_NAME_LENGTH,
    MAX_TAG_LENGTH,
    TIMESTAMP_MAX_AGE_SECONDS,
    TIMESTAMP_MAX_AHEAD_SECONDS,
    Event,
    JobMetrics,
    MetricOptions,
    acceptable_timestamp,
    job_metrics,
    metric_name,
    rejection_event,
    sanitize_metric_name,
    sanitize_tag,
    sanitize_title,
)

NOW = 1_795_572_930.0
DOGSTATSD_SYNTAX = (":", "|", "#", ",", "\n", "\r", "@", " ")
NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_.]*")
EVENT_LIMIT_BYTES = 8 * 1024


def make_report(**overrides: Any) -> JobReport:
    """A successful job with two fields, finished 30 s before NOW; override any attribute."""
    values: dict[str, Any] = {
        "success": True,
        "job_name": "train-resnet",
        "finished_at": NOW - 30,
        "tags": (("team", "ml"),),
        "fields": (("job_result", 123.0), ("images.train", 10.0)),
        "skipped_fields": (),
    }
    values.update(overrides)
    return JobReport(**values)


def make_ref(**overrides: Any) -> ObjectRef:
    """The notified object of make_report, with a version id; override any attribute."""
    values: dict[str, Any] = {
        "bucket": "cloud-job-results",
        "key": "jobs/train-resnet/run-0001.json",
        "size": 87,
        "etag": "0123456789abcdef0123456789abcdef",
        "version_id": "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY",
        "event_time": NOW - 20,
    }
    values.update(overrides)
    return ObjectRef(**values)


def metrics_for(
    report: JobReport | None = None, ref: ObjectRef | None = None, options: MetricOptions | None = None
) -> JobMetrics:
    """job_metrics with the defaults above, at NOW."""
    return job_metrics(report or make_report(), ref or make_ref(), options or MetricOptions(), now=NOW)


def event_datagram(event: Event) -> bytes:
    """The DogStatsD event line for ``event``, per the datagram format (newlines escaped)."""
    title = event.title.replace("\n", "\\n")
    text = event.text.replace("\n", "\\n")
    line = f"_e{{{len(title.encode())},{len(text.encode())}}}:{title}|{text}"
    if event.date_happened:
        line += f"|d:{event.date_happened}"
    line += f"|k:{event.aggregation_key}|t:{event.alert_type}"
    if event.tags:
        line += "|#" + ",".join(event.tags)
    return line.encode("utf-8")


def test_gauges_are_named_with_the_namespace_and_include_success() -> None:
    """Each field is <namespace>.<field>, plus <namespace>.success, with the field's value."""
    gauges = {g.name: g.value for g in metrics_for().gauges}

    assert gauges == {
        "cloud_job.success": 1.0,
        "cloud_job.job_result": 123.0,
        "cloud_job.images.train": 10.0,
    }


def test_custom_and_empty_namespaces() -> None:
    """A custom namespace prefixes every name; an empty one leaves the bare field names."""
    custom = metrics_for(options=MetricOptions(namespace="batch.jobs"))
    bare = metrics_for(options=MetricOptions(namespace=""))

    assert [g.name for g in custom.gauges] == [
        "batch.jobs.success",
        "batch.jobs.job_result",
        "batch.jobs.images.train",
    ]
    assert [g.name for g in bare.gauges] == ["success", "job_result", "images.train"]


def test_failed_job_still_sends_its_gauges_with_success_zero() -> None:
    """A failed job reports success 0 and all its fields, with status:failure and an error event."""
    result = metrics_for(make_report(success=False))
    gauges = {g.name: g.value for g in result.gauges}

    assert gauges["cloud_job.success"] == 0.0
    assert gauges["cloud_job.job_result"] == 123.0
    assert all("status:failure" in g.tags for g in result.gauges)
    assert result.event.alert_type == "error"


def test_successful_job_event_is_a_success_naming_the_job_and_object() -> None:
    """The event is alert type success, its title names the job, its text the S3 URI and version."""
    event = metrics_for().event

    assert event.alert_type == "success"
    assert "train-resnet" in event.title
    assert "succeeded" in event.title
    assert "s3://cloud-job-results/jobs/train-resnet/run-0001.json" in event.text
    assert "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY" in event.text
    assert "job_result = 123" in event.text
    assert "images.train = 10" in event.text


def test_failed_event_title_says_failed() -> None:
    """A failed job's event title says so."""
    assert "failed" in metrics_for(make_report(success=False)).event.title


def test_title_falls_back_to_the_file_name_without_job_name() -> None:
    """Without job_name, the title names the object's file name, and no job: tag is sent."""
    result = metrics_for(make_report(job_name=None))

    assert "run-0001.json" in result.event.title
    assert not any(tag.startswith("job:") for tag in result.event.tags)


def test_skipped_fields_are_counted_in_the_event_text() -> None:
    """Skipped non-numeric fields are mentioned as a count."""
    text = metrics_for(make_report(skipped_fields=("note", "owner"))).event.text

    assert "2 non-numeric fields skipped" in text


def test_event_carries_the_job_time() -> None:
    """date_happened is the job's finish time in whole seconds."""
    assert metrics_for().event.date_happened == int(NOW - 30)


def test_aggregation_key_is_stable_per_object_version() -> None:
    """A redelivery of the same version (other event time, other job content) keeps the key."""
    first = metrics_for().event.aggregation_key
    again = metrics_for(make_report(success=False), make_ref(event_time=NOW - 5)).event.aggregation_key

    assert first == again


@pytest.mark.parametrize(
    "other",
    [
        make_ref(version_id="other-version"),
        make_ref(key="jobs/train-resnet/run-0002.json"),
        make_ref(bucket="another-bucket"),
        make_ref(version_id=None, etag="ffffffffffffffffffffffffffffffff"),
    ],
    ids=["version", "key", "bucket", "etag-without-version"],
)
def test_aggregation_key_differs_for_different_objects_or_versions(other: ObjectRef) -> None:
    """Another version, key, bucket or (unversioned) ETag yields another aggregation key."""
    assert metrics_for(ref=other).event.aggregation_key != metrics_for().event.aggregation_key


def test_tags_on_every_gauge_and_the_event() -> None:
    """Legacy, status, bucket, job, file and constant tags are on every gauge and on the event."""
    result = metrics_for(options=MetricOptions(constant_tags=("env:prod", "service:etl")))
    expected = {
        LEGACY_TAG,
        "status:success",
        "bucket:cloud-job-results",
        "job:train-resnet",
        "team:ml",
        "env:prod",
        "service:etl",
    }

    for tags in [*(g.tags for g in result.gauges), result.event.tags]:
        assert set(tags) == expected
        assert len(tags) == len(set(tags))


def test_key_version_and_timestamps_never_become_tags() -> None:
    """Nothing high-cardinality (key, file name, version, etag, times) is a tag value."""
    result = metrics_for()
    ref = make_ref()
    forbidden = [
        ref.key,
        "run-0001",
        str(ref.version_id),
        str(ref.etag),
        str(int(NOW - 30)),
        str(int(NOW - 20)),
    ]

    for tag in result.event.tags + tuple(t for g in result.gauges for t in g.tags):
        assert not any(value in tag for value in forbidden), tag


@pytest.mark.parametrize(
    ("age_seconds", "accepted"),
    [
        (TIMESTAMP_MAX_AGE_SECONDS, True),
        (TIMESTAMP_MAX_AGE_SECONDS + 1, False),
        (0, True),
        (-TIMESTAMP_MAX_AHEAD_SECONDS, True),
        (-TIMESTAMP_MAX_AHEAD_SECONDS - 1, False),
    ],
    ids=["oldest-accepted", "too-old", "now", "furthest-ahead", "too-far-ahead"],
)
def test_gauge_timestamps_only_inside_the_accepted_window(age_seconds: int, accepted: bool) -> None:
    """Gauges go out at the job time between 1 h back and 10 min ahead (minus the margin), else not at all."""
    finished = NOW - age_seconds

    result = metrics_for(make_report(finished_at=finished))

    if accepted:
        assert {g.timestamp for g in result.gauges} == {int(finished)}
        assert result.late_gauges == 0
    else:
        assert result.gauges == ()
        assert result.late_gauges == 3
        assert result.late_reason == ("too-old" if age_seconds > 0 else "too-new")
    assert result.run.value == 1.0


def test_window_leaves_a_margin_inside_datadogs_limits() -> None:
    """The accepted window is strictly inside Datadog's 1 h back / 10 min ahead."""
    assert 0 < TIMESTAMP_MAX_AGE_SECONDS < 3600
    assert 0 < TIMESTAMP_MAX_AHEAD_SECONDS < 600
    assert acceptable_timestamp(NOW - 3600, now=NOW) is None
    assert acceptable_timestamp(NOW + 600, now=NOW) is None


def test_event_time_is_used_when_the_job_has_no_timestamp() -> None:
    """Without a timestamp in the file, the S3 event time stamps the gauges and the event."""
    result = metrics_for(make_report(finished_at=None))

    assert {g.timestamp for g in result.gauges} == {int(NOW - 20)}
    assert result.event.date_happened == int(NOW - 20)


def test_no_time_at_all_means_no_gauges() -> None:
    """Without job or event time no gauge is sent (never restamped by the agent); the counter and event still are."""
    result = metrics_for(make_report(finished_at=None), make_ref(event_time=None))

    assert result.gauges == ()
    assert result.late_reason == "no-time"
    assert result.run.name == "cloud_job.runs"
    assert result.event.date_happened is None


def test_every_job_gets_one_counter_value_tagged_like_its_gauges() -> None:
    """The job counter is a distribution value of 1 named <namespace>.runs with exactly the gauges' tags."""
    result = metrics_for(make_report(success=False))

    assert result.run.name == "cloud_job.runs"
    assert result.run.value == 1.0
    assert result.run.tags == result.gauges[0].tags
    assert "status:failure" in result.run.tags


def test_distributions_are_opt_in_and_named_apart_from_the_gauges() -> None:
    """With distributions on, every numeric field and success becomes <ns>.distribution.<field>."""
    off = metrics_for()
    on = metrics_for(options=MetricOptions(distributions=True))

    assert off.distributions == ()
    assert {(d.name, d.value) for d in on.distributions} == {
        ("cloud_job.distribution.success", 1.0),
        ("cloud_job.distribution.job_result", 123.0),
        ("cloud_job.distribution.images.train", 10.0),
    }
    gauge_names = {g.name for g in on.gauges}
    assert not gauge_names & {d.name for d in on.distributions}


def test_a_late_job_keeps_its_count_distributions_and_dated_event() -> None:
    """A job 3 h old sends no gauge but its count, distributions and an event dated 3 h back."""
    finished = NOW - 3 * 3600
    result = metrics_for(make_report(finished_at=finished), options=MetricOptions(distributions=True))

    assert result.gauges == ()
    assert result.time is None
    assert len(result.distributions) == 3
    assert result.event.date_happened == int(finished)


def test_an_event_older_than_18_hours_goes_undated_and_says_when() -> None:
    """Datadog drops events dated over 18 h back: such an event is undated and its text names the time."""
    result = metrics_for(make_report(finished_at=NOW - 20 * 3600))

    assert result.event.date_happened is None
    assert "finished at 20" in result.event.text


@pytest.mark.parametrize(
    ("include", "exclude", "expected"),
    [
        ((), (), {"success", "job_result", "images.train"}),
        (("images.*",), (), {"success", "images.train"}),
        ((), ("images.*",), {"success", "job_result"}),
        (("job_*", "images.*"), ("images.train",), {"success", "job_result"}),
        (("nothing",), (), {"success"}),
    ],
)
def test_field_selection_by_glob_keeps_success_always(include, exclude, expected) -> None:
    """FIELDS and EXCLUDE_FIELDS filter the flattened names; success and the counter always stay."""
    options = MetricOptions(include_fields=include, exclude_fields=exclude, distributions=True)
    result = metrics_for(options=options)

    assert {g.name.removeprefix("cloud_job.") for g in result.gauges} == expected
    assert {d.name.removeprefix("cloud_job.distribution.") for d in result.distributions} == expected
    assert result.run.name == "cloud_job.runs"


@pytest.mark.parametrize("field", ["runs", "jobs", "success", "distribution.x"])
def test_fields_named_like_the_forwarders_own_metrics_are_not_sent(field: str) -> None:
    """A field called runs, jobs (the counter's former name), success or distribution.* would clash with a metric type: event text only."""
    result = metrics_for(make_report(fields=((field, 5.0),)), options=MetricOptions(distributions=True))

    assert [g.name for g in result.gauges] == ["cloud_job.success"]
    assert [g.value for g in result.gauges] == [1.0]
    assert field in result.event.text


HOSTILE_NAMES = [
    "a:b",
    "a|b",
    "a#b",
    "a,b",
    "a\nb",
    "a\r\nb",
    "a@b",
    "a b",
    "métrique",
    "数据",
    "loss|g|#evil:tag",
    "x:1|c\nother:2|g",
    "...",
    "9lives",
    "_private",
    "",
    " ",
    "a" * 500,
    "." * 300 + "a",
]


@pytest.mark.parametrize("field", HOSTILE_NAMES)
@pytest.mark.parametrize("namespace", ["cloud_job", ""])
def test_metric_names_never_carry_dogstatsd_syntax(field: str, namespace: str) -> None:
    """Every gauge name matches [A-Za-z][A-Za-z0-9_.]* and stays within 200 characters."""
    result = metrics_for(make_report(fields=((field, 1.0),)), options=MetricOptions(namespace=namespace))

    for gauge in result.gauges:
        assert NAME_PATTERN.fullmatch(gauge.name), gauge.name
        assert len(gauge.name) <= MAX_NAME_LENGTH


@pytest.mark.parametrize("value", HOSTILE_NAMES)
def test_tags_from_the_file_never_carry_dogstatsd_syntax(value: str) -> None:
    """Tag keys, tag values, job names and bucket names cannot inject , | # or line breaks."""
    report = make_report(job_name=value or "j", tags=((value or "k", value or "v"),))
    result = metrics_for(report, make_ref(bucket=f"b{value}"))

    for tag in result.event.tags:
        assert not any(ch in tag for ch in ",|#\n\r @"), tag
        assert len(tag) <= MAX_TAG_LENGTH
        assert tag and not tag[0].isspace()


@pytest.mark.parametrize("value", HOSTILE_NAMES)
def test_titles_never_carry_dogstatsd_syntax(value: str) -> None:
    """A hostile job name gives a one-line title without | # , :."""
    title = metrics_for(make_report(job_name=value or "j")).event.title

    assert not any(ch in title for ch in "|#,:\n\r")
    assert title


def test_constant_tags_are_sanitised_too() -> None:
    """Configured constant tags with DogStatsD syntax are made safe like file tags."""
    tags = metrics_for(options=MetricOptions(constant_tags=("env:prod|x", "a,b"))).event.tags

    assert not any(ch in tag for tag in tags for ch in ",|#")


def test_sanitize_metric_name_examples() -> None:
    """Unsafe runs become one underscore, dots collapse, and a leading digit gets a prefix."""
    assert sanitize_metric_name("images train") == "images_train"
    assert sanitize_metric_name("a..b") == "a.b"
    assert sanitize_metric_name("9lives") == "f_9lives"
    assert sanitize_metric_name("") == "unnamed"
    assert metric_name("cloud_job", "loss|g") == "cloud_job.loss_g"


def test_sanitize_tag_keeps_the_first_colon_as_separator() -> None:
    """The first ':' splits key and value; later colons stay in the value, unsafe runs become '_'."""
    assert sanitize_tag("url:http://x") == "url:http://x"
    assert sanitize_tag("team name:data science") == "team_name:data_science"
    assert sanitize_tag("key:") == "key:none"


def test_sanitize_title_is_bounded() -> None:
    """Titles are cut to at most 100 characters."""
    assert len(sanitize_title("x" * 1000)) <= 100


def test_names_and_tags_are_cut_to_200_characters() -> None:
    """A 500-character field, tag and job name are all cut to 200 characters."""
    long = "n" * 500
    result = metrics_for(make_report(job_name=long, tags=((long, long),), fields=((long, 1.0),)))

    assert max(len(g.name) for g in result.gauges) == MAX_NAME_LENGTH
    assert max(len(t) for t in result.event.tags) == MAX_TAG_LENGTH


def test_event_text_stays_bounded_with_900_long_field_names() -> None:
    """900 fields with 180-character names still serialise to an event under 8 KB."""
    fields = tuple((f"field_{i:04d}_" + "n" * 180, float(i)) for i in range(900))

    event = metrics_for(make_report(fields=fields)).event

    assert len(event_datagram(event)) < EVENT_LIMIT_BYTES
    assert "truncated" in event.text


def test_event_stays_under_8_kb_with_the_most_and_longest_tags_allowed() -> None:
    """32 file tags of 200 characters, plus long fields, still serialise under 8 KB (events over it are dropped)."""
    tags = tuple((f"key{i:02d}", "v" * 300) for i in range(32))
    fields = tuple((f"field_{i:04d}_" + "n" * 180, float(i)) for i in range(900))
    report = make_report(job_name="j" * 200, tags=tags, fields=fields)

    event = metrics_for(report, options=MetricOptions(constant_tags=("env:production",))).event

    assert len(event_datagram(event)) < EVENT_LIMIT_BYTES


def test_small_event_text_is_not_truncated() -> None:
    """A normal job's event text is complete."""
    assert "truncated" not in metrics_for().event.text


def test_rejection_event_names_reason_and_object() -> None:
    """A rejected object makes an error event with the reason, detail, URI and safe tags."""
    event = rejection_event(
        make_ref(),
        "non-finite-number",
        "number 1e999 overflows",
        MetricOptions(constant_tags=("env:prod",)),
        message_id="m-1",
    )

    assert event.alert_type == "error"
    assert event.title == "job metadata rejected"
    assert "reason: non-finite-number" in event.text
    assert "number 1e999 overflows" in event.text
    assert "s3://cloud-job-results/jobs/train-resnet/run-0001.json" in event.text
    assert set(event.tags) == {
        LEGACY_TAG,
        "status:rejected",
        "reason:non-finite-number",
        "bucket:cloud-job-results",
        "env:prod",
    }
    assert event.aggregation_key == metrics_for().event.aggregation_key


def test_rejection_event_without_an_object_names_the_message() -> None:
    """An unreadable envelope has no object: the event names the SQS message instead."""
    event = rejection_event(None, "invalid-envelope", "not JSON", MetricOptions(), message_id="m-42")
    other = rejection_event(None, "invalid-envelope", "not JSON", MetricOptions(), message_id="m-43")

    assert "SQS message m-42" in event.text
    assert not any(tag.startswith("bucket:") for tag in event.tags)
    assert event.aggregation_key != other.aggregation_key


def test_rejection_event_detail_is_bounded() -> None:
    """A huge detail (such as a pydantic dump) still leaves an event under 8 KB."""
    event = rejection_event(make_ref(), "invalid-field", "x\n" * 20_000, MetricOptions(), message_id="m")

    assert len(event_datagram(event)) < EVENT_LIMIT_BYTES


def test_job_metrics_is_pure() -> None:
    """The same inputs give equal outputs (no clock or randomness inside)."""
    assert metrics_for() == metrics_for()


def test_job_without_fields_still_sends_success() -> None:
    """A file with only job_success yields the success gauge alone."""
    assert [g.name for g in metrics_for(make_report(fields=())).gauges] == ["cloud_job.success"]


def test_patterns_matching_names_the_include_and_exclude_globs_that_hit() -> None:
    """patterns_matching reports which FIELDS/EXCLUDE_FIELDS globs matched any of the names."""
    options = MetricOptions(include_fields=("images.*", "loss"), exclude_fields=("typo_*",))

    assert options.patterns_matching(["images.train", "job_result"]) == {"images.*"}
    assert options.patterns_matching([]) == set()
