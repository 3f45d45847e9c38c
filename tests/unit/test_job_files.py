"""Files of many jobs (app.core.metadata.parse_job_file): JSON arrays and JSON Lines."""

from __future__ import annotations

import json

import pytest

from app.core.metadata import DEFAULT_MAX_JOBS, parse_job_file
from app.errors import InvalidObjectError

CAP = 1024 * 1024
JOBS = [
    {"job_success": True, "job_name": "train", "loss": 0.25},
    {"job_success": False, "job_name": "eval", "accuracy": 0.5},
    {"job_success": 1, "images": {"train": 10}},
]


def lines(*documents: object) -> bytes:
    """``documents`` as JSON Lines."""
    return "".join(json.dumps(d) + "\n" for d in documents).encode()


def reject(raw: bytes, *, name: str = "jobs/x.json", max_jobs: int = DEFAULT_MAX_JOBS) -> InvalidObjectError:
    """Parse ``raw`` expecting the whole file to be rejected; return the error."""
    with pytest.raises(InvalidObjectError) as caught:
        parse_job_file(raw, max_bytes=CAP, name=name, max_jobs=max_jobs)
    return caught.value


def test_a_single_object_is_one_job() -> None:
    """The original format, one object, still yields exactly one job."""
    reports = parse_job_file(json.dumps(JOBS[0]).encode(), max_bytes=CAP, name="jobs/a.json")
    assert [(r.job_name, r.success, r.fields) for r in reports] == [("train", True, (("loss", 0.25),))]


def test_a_top_level_array_is_one_job_per_element_in_order() -> None:
    """An array of job objects yields each job, in file order."""
    reports = parse_job_file(json.dumps(JOBS).encode(), max_bytes=CAP, name="jobs/a.json")
    assert [r.job_name for r in reports] == ["train", "eval", None]
    assert [r.success for r in reports] == [True, False, True]
    assert reports[2].fields == (("images.train", 10.0),)


@pytest.mark.parametrize("name", ["jobs/a.jsonl", "jobs/a.ndjson", "jobs/a.jsonl.gz", "jobs/a.json"])
def test_json_lines_by_name_or_detected(name: str) -> None:
    """JSON Lines are read by a .jsonl/.ndjson name (also gzipped) or detected without one."""
    raw = lines(*JOBS).replace(b"\n", b"\n\n", 1)  # a blank line is allowed
    reports = parse_job_file(raw, max_bytes=CAP, name=name)
    assert [r.job_name for r in reports] == ["train", "eval", None]


def test_a_jsonl_file_with_one_line_is_one_job() -> None:
    """A .jsonl file holding a single line is a single job."""
    assert len(parse_job_file(lines(JOBS[0]), max_bytes=CAP, name="a.jsonl")) == 1


def test_one_invalid_job_in_an_array_rejects_the_file_naming_its_index() -> None:
    """An array with one bad job is rejected whole, with the job's index and the reason."""
    error = reject(json.dumps([JOBS[0], JOBS[1], {"loss": 1}]).encode())
    assert error.reason == "invalid-field"
    assert str(error).startswith("job 2: ")
    assert "job_success" in str(error)


def test_an_array_holding_a_non_object_is_rejected() -> None:
    """Non-objects inside the array are not-an-object, with their index."""
    error = reject(json.dumps([JOBS[0], "done", JOBS[1]]).encode())
    assert error.reason == "not-an-object"
    assert "job 1 is a JSON str" in str(error)


def test_a_broken_json_line_rejects_the_file_naming_the_line() -> None:
    """A JSON Lines file with a broken line is rejected whole, with its index and line number."""
    raw = lines(JOBS[0]) + b"\n" + b'{"job_success": true, "loss": \n' + lines(JOBS[1])
    error = reject(raw, name="jobs/a.jsonl")
    assert error.reason == "invalid-json"
    assert str(error).startswith("job 1 (line 3): ")


def test_a_non_finite_number_on_a_line_keeps_its_own_reason() -> None:
    """The job's own reason (non-finite-number) travels with the file's rejection."""
    error = reject(lines(JOBS[0]) + b'{"job_success": true, "x": NaN}\n', name="a.ndjson")
    assert error.reason == "non-finite-number"
    assert "job 1 (line 2)" in str(error)


@pytest.mark.parametrize(
    ("raw", "name"), [(b"[]", "a.json"), (b"\n \n", "a.jsonl")], ids=["empty-array", "blank-lines"]
)
def test_a_file_without_jobs_is_rejected(raw: bytes, name: str) -> None:
    """An empty array or a JSON Lines file of blank lines holds no job: rejected, not skipped."""
    assert reject(raw, name=name).reason == "no-jobs"


@pytest.mark.parametrize("as_lines", [False, True], ids=["array", "json-lines"])
def test_more_jobs_than_the_cap_rejects_the_file(as_lines: bool) -> None:
    """A file with max_jobs + 1 jobs is too-many-jobs; exactly max_jobs is accepted."""
    documents = [{"job_success": True, "n": i} for i in range(4)]
    raw = lines(*documents) if as_lines else json.dumps(documents).encode()
    assert len(parse_job_file(raw, max_bytes=CAP, name="a.json", max_jobs=4)) == 4
    error = reject(raw, max_jobs=3)
    assert error.reason == "too-many-jobs"
    assert "4 jobs, over the limit of 3" in str(error)


@pytest.mark.parametrize("document", ["7", '"text"', "null"])
def test_a_scalar_top_level_is_still_not_an_object(document: str) -> None:
    """A top level that is neither an object nor an array stays not-an-object."""
    assert reject(document.encode()).reason == "not-an-object"


def test_a_broken_pretty_printed_object_is_not_mistaken_for_json_lines() -> None:
    """Extra data after a multi-line object reports the JSON error, not a line of JSON Lines."""
    raw = b'{\n  "job_success": true\n}\n}\n'
    error = reject(raw)
    assert error.reason == "invalid-json"
    assert "Extra data" in str(error)
    assert "line 1)" not in str(error)
