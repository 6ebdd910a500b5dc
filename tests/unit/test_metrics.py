"""Prometheus metrics: instrument names, per-app registries, bounded labels, scrape over HTTP."""

from __future__ import annotations

import math

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.routing import Route

from bot.core.metrics import CALLBACK_RESULTS, MAX_VALUES_PER_LABEL, Metrics
from bot.serving import ServerThread

INSTRUMENTS = (
    "tsbot_commands_total",
    "tsbot_ack_seconds",
    "tsbot_callbacks_total",
    "tsbot_inbox_depth",
    "tsbot_outbox_depth",
    "tsbot_slack_rate_limited_total",
    "tsbot_slack_dead_letters_total",
    "tsbot_slack_calls_total",
    "tsbot_thingspace_call_seconds",
    "tsbot_thingspace_errors_total",
    "tsbot_scheduler_job_runs_total",
    "tsbot_scheduler_job_misses_total",
    "tsbot_alerts_firing",
)


def scripted_session(metrics: Metrics) -> None:
    """What a short session records: commands, acks, callbacks, Slack and ThingSpace calls, jobs."""
    metrics.count_command("diag", "ok")
    metrics.count_command("diag", "ok")
    metrics.count_command("suspend", "denied")
    metrics.observe_ack(0.04)
    metrics.observe_ack(1.5)
    metrics.count_callback("accepted")
    metrics.count_callback("accepted")
    metrics.count_callback("duplicate")
    metrics.count_callback("too_large")
    metrics.inbox_depth_from(lambda: 2)
    metrics.outbox_depth_from(lambda: 5)
    metrics.count_slack_call("chat.postMessage", "ok")
    metrics.count_slack_call("chat.update", "ratelimited")
    metrics.count_slack_rate_limited("chat.update")
    metrics.count_dead_letter()
    metrics.observe_thingspace_call("devices.actions.suspend", 0.3)
    metrics.count_thingspace_error("session.login", "ThingSpaceAuthError")
    metrics.count_job_run("evaluate_reachability")
    metrics.count_job_miss("digest")
    metrics.alerts_firing_from(lambda: 1)


def test_render_names_every_instrument_after_a_session() -> None:
    """The exposition holds all thirteen instruments with the recorded values."""
    metrics = Metrics()
    scripted_session(metrics)
    body, content_type = metrics.render()
    text = body.decode()
    assert content_type.startswith("text/plain")
    for name in INSTRUMENTS:
        assert name in text
    assert 'tsbot_commands_total{outcome="ok",verb="diag"} 2.0' in text
    assert 'tsbot_callbacks_total{result="accepted"} 2.0' in text
    assert "tsbot_ack_seconds_count 2.0" in text
    assert 'tsbot_ack_seconds_bucket{le="0.05"} 1.0' in text
    assert "tsbot_outbox_depth 5.0" in text
    assert "tsbot_slack_dead_letters_total 1.0" in text


def test_value_reads_samples_and_zero_for_unseen() -> None:
    """value() reads one sample by name and labels; a label set never recorded reads as 0."""
    metrics = Metrics()
    scripted_session(metrics)
    assert metrics.value("commands_total", verb="suspend", outcome="denied") == 1
    assert metrics.value("slack_rate_limited_total", method="chat.update") == 1
    assert (
        metrics.value("thingspace_errors_total", operation="session.login", error="ThingSpaceAuthError") == 1
    )
    assert metrics.value("thingspace_call_seconds_count", operation="devices.actions.suspend") == 1
    assert metrics.value("scheduler_job_misses_total", job="digest") == 1
    assert metrics.value("alerts_firing") == 1
    assert metrics.value("commands_total", verb="resume", outcome="ok") == 0


def test_two_apps_do_not_share_or_collide() -> None:
    """Two Metrics() in one process register the same names without error and count separately."""
    first, second = Metrics(), Metrics()
    first.count_command("help", "ok")
    assert first.value("commands_total", verb="help", outcome="ok") == 1
    assert second.value("commands_total", verb="help", outcome="ok") == 0
    assert first.registry is not second.registry


def test_every_callback_result_starts_at_zero() -> None:
    """All five callback results are exported from the start, so dashboards see zeros, not gaps."""
    text = Metrics().render()[0].decode()
    for result in CALLBACK_RESULTS:
        assert f'tsbot_callbacks_total{{result="{result}"}} 0.0' in text


def test_unknown_callback_result_is_refused_and_counts_nothing() -> None:
    """A callback result outside the fixed set raises and leaves every counter unchanged."""
    metrics = Metrics()
    before = metrics.render()[0]
    with pytest.raises(ValueError, match="accepted, duplicate, rejected, too_large, malformed"):
        metrics.count_callback("weird")
    assert b"weird" not in metrics.render()[0]
    assert _samples(metrics.render()[0]) == _samples(before)


def _samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_labels_stay_bounded_and_free_of_identifiers() -> None:
    """Unknown verbs, id-like values and values past the cap are folded into unknown/other."""
    metrics = Metrics()
    metrics.count_command("89148000000800139708", "ok")
    metrics.count_command("DROP TABLE", "ok")
    metrics.count_slack_call("chat.postMessage", "U012ABCDE99999")
    metrics.count_thingspace_error("devices/89148000000800139708", "http 503")
    for i in range(MAX_VALUES_PER_LABEL + 10):
        metrics.count_job_run(f"job_{chr(97 + i % 26)}{i // 26}")
    text = metrics.render()[0].decode()
    assert "8914800000" not in text and "99999" not in text and "DROP" not in text
    assert metrics.value("commands_total", verb="unknown", outcome="ok") == 2
    assert metrics.value("slack_calls_total", method="chat.postMessage", result="other") == 1
    assert metrics.value("thingspace_errors_total", operation="other", error="other") == 1
    jobs = {
        s.labels["job"] for f in text_string_to_metric_families(text) for s in f.samples if "job" in s.labels
    }
    assert len(jobs) == MAX_VALUES_PER_LABEL + 1
    assert metrics.value("scheduler_job_runs_total", job="other") == 10


def test_extra_verbs_can_be_declared() -> None:
    """A verb added by the commands package is counted under its own name once declared."""
    metrics = Metrics(verbs={"approve"})
    metrics.count_command("approve", "ok")
    assert metrics.value("commands_total", verb="approve", outcome="ok") == 1


def test_gauges_read_probes_at_scrape_time_and_survive_failures() -> None:
    """A probe is read at every scrape; one that raises reports NaN and the scrape still works."""
    metrics = Metrics()
    depth = [3]
    metrics.inbox_depth_from(lambda: depth[0])
    metrics.alerts_firing_from(lambda: 2)

    def broken() -> float:
        raise RuntimeError("database is locked")

    metrics.outbox_depth_from(broken)
    assert metrics.value("inbox_depth") == 3
    depth[0] = 7
    assert metrics.value("inbox_depth") == 7
    assert metrics.value("alerts_firing") == 2
    assert math.isnan(metrics.value("outbox_depth"))
    assert b"tsbot_outbox_depth NaN" in metrics.render()[0]


def test_scrape_over_http_shows_the_session_counts() -> None:
    """GET /metrics served by the Starlette endpoint parses as Prometheus text with the right counts."""
    metrics = Metrics()
    scripted_session(metrics)
    app = Starlette(routes=[Route("/metrics", metrics.endpoint)])
    with ServerThread(app) as server:
        reply = httpx.get(f"{server.url}/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    samples = _samples(reply.content)
    assert samples[("tsbot_commands_total", (("outcome", "ok"), ("verb", "diag")))] == 2
    assert samples[("tsbot_commands_total", (("outcome", "denied"), ("verb", "suspend")))] == 1
    assert samples[("tsbot_callbacks_total", (("result", "duplicate"),))] == 1
    assert samples[("tsbot_callbacks_total", (("result", "rejected"),))] == 0
    assert samples[("tsbot_inbox_depth", ())] == 2
    assert samples[("tsbot_slack_calls_total", (("method", "chat.update"), ("result", "ratelimited")))] == 1
    assert samples[("tsbot_scheduler_job_runs_total", (("job", "evaluate_reachability"),))] == 1
