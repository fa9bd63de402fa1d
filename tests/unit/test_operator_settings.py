"""The operator process's settings: leader-election timing, namespaces, endpoints, log format."""

from __future__ import annotations

import logging

import pytest

from mlkube_operator.main import QuietFilter
from mlkube_operator.settings import Settings


def test_defaults() -> None:
    s = Settings.from_env({})
    assert (
        s.leader_lease_duration_seconds,
        s.leader_renew_deadline_seconds,
        s.leader_retry_period_seconds,
    ) == (
        15,
        10,
        2,
    )
    assert s.leader_election and s.namespaces == () and (s.health_port, s.metrics_port) == (8080, 8081)


def test_from_environment() -> None:
    s = Settings.from_env(
        {
            "MLKUBE_LEADER_LEASE_DURATION_SECONDS": "30",
            "MLKUBE_LEADER_RENEW_DEADLINE_SECONDS": "20",
            "MLKUBE_LEADER_RETRY_PERIOD_SECONDS": "5",
            "MLKUBE_LEADER_ELECTION": "false",
            "MLKUBE_NAMESPACES": "a, b,",
            "MLKUBE_LOG_FORMAT": "json",
        }
    )
    assert (s.leader_lease_duration_seconds, s.leader_renew_deadline_seconds) == (30, 20)
    assert not s.leader_election and s.namespaces == ("a", "b") and s.log_format == "json"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"MLKUBE_LEADER_RENEW_DEADLINE_SECONDS": "15"}, "MLKUBE_LEADER_RENEW_DEADLINE_SECONDS"),
        ({"MLKUBE_LEADER_RETRY_PERIOD_SECONDS": "10"}, "MLKUBE_LEADER_RETRY_PERIOD_SECONDS"),
        ({"MLKUBE_LOG_FORMAT": "xml"}, "MLKUBE_LOG_FORMAT"),
        ({"MLKUBE_METRICS_PORT": "http"}, "MLKUBE_METRICS_PORT"),
    ],
)
def test_invalid_values_stop_the_operator_naming_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SystemExit, match=named):
        Settings.from_env(env)


def test_quiet_filter_drops_only_kopf_success_lines() -> None:
    def record(name: str, level: int, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, msg, None, None)

    quiet = QuietFilter()
    assert not quiet.filter(
        record("kopf.objects", logging.INFO, "Timer 'model_deployment_monitor' succeeded.")
    )
    assert not quiet.filter(record("kopf.objects", logging.INFO, "Handler 'dataset_event' succeeded."))
    assert quiet.filter(record("kopf.objects", logging.ERROR, "Handler 'dataset_event' failed: x"))
    assert quiet.filter(record("kopf.objects", logging.INFO, "Created Job iris-profile-1"))
    assert quiet.filter(record("mlkube_operator.main", logging.INFO, "Leading: it succeeded."))


def test_json_log_format_writes_one_object_per_line_and_stays_quiet(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from mlkube_operator.main import configure_logging

    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    try:
        configure_logging(Settings.from_env({"MLKUBE_LOG_FORMAT": "json"}))
        logging.getLogger("mlkube_operator.main").info("Leading: %s", "starting the handlers")
        logging.getLogger("kopf.objects").info("Timer 'model_deployment_monitor' succeeded.")
        for handler in root.handlers:
            handler.flush()
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["message"] == "Leading: starting the handlers" and record["severity"] == "info"


def test_api_retries_never_run_out_and_wait_at_most_the_cap() -> None:
    import itertools

    from mlkube_operator.handlers.lifecycle import RetryForever

    default = RetryForever(Settings.from_env({}).api_retry_max_seconds)
    assert list(itertools.islice(default, 11)) == [1, 1, 2, 3, 5, 8, 13, 21, 30, 30, 30]
    short = RetryForever(Settings.from_env({"MLKUBE_API_RETRY_MAX_SECONDS": "2"}).api_retry_max_seconds)
    assert list(itertools.islice(short, 6)) == [1, 1, 2, 2, 2, 2]
    assert list(itertools.islice(short, 3)) == [1, 1, 2]  # kopf iterates it afresh per request
    with pytest.raises(TypeError):
        len(short)  # type: ignore[arg-type]  # unsized: kopf retries without a limit
