"""
promote and rollback against an in-memory TrafficOps that enforces the platform rules.

The five cases of issue 13 (smoke failure at 10 %, metrics breach at 50 %, resume after an
interruption, a second concurrent promotion refused, rollback after success), plus the
strategy, the no-op re-run and the dry-run contract. Bakes run on a fake clock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ops.fakes import NEW_IMAGE, OLD_IMAGE, FakeClock, MemoryOps, ScriptedMetrics
from targets.conftest import make_endpoint_args

from mdeploy.errors import EXIT_CLOUD, EXIT_POLICY, CloudError, InputError, PolicyError
from mdeploy.ops.checks import CommandSmoke, PromptSmoke
from mdeploy.ops.promote import (
    PromotionFailed,
    Settings,
    parse_bake,
    parse_steps,
    plan_promotion,
    promote,
    rollback,
)
from mdeploy.ops.state import StateStore
from mdeploy.targets.base import EndpointHealth

STACK = "mistral-7b-chat-default-gcp"


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path / "promotions")


def _plan(settings: Settings | None = None, **kw: object) -> object:
    args = make_endpoint_args(image=NEW_IMAGE, model_revision="r2", model_version="2")
    return plan_promotion(STACK, "gcp", args, settings or Settings(bake_s=60), version="v-2", **kw)


def _smoke() -> PromptSmoke:
    return PromptSmoke("mistralai/Mistral-7B-Instruct-v0.3", "Reply with one word: ready.")


def test_a_canary_promotion_shifts_step_by_step_then_removes_the_old_version(
    store: StateStore,
) -> None:
    ops, clock = MemoryOps(), FakeClock()
    report = promote(ops, _plan(), store, clock=clock, smoke=_smoke())
    assert report["result"] == "promoted" and report["removed"] == ["v-1"]
    assert ops.named("deploy_version") == ["v-2"]
    assert ops.named("set_traffic") == [
        {"v-1": 90, "v-2": 10},
        {"v-1": 50, "v-2": 50},
        {"v-1": 0, "v-2": 100},
    ]
    # the old version goes only after the last set_traffic and its checks
    verbs = [c for c, _ in ops.calls]
    assert verbs.index("remove_version") > max(i for i, v in enumerate(verbs) if v == "invoke")
    assert ops.traffic == {"v-2": 100} and clock.slept == [60, 60, 60]
    assert [c["name"] for c in report["steps"][0]["checks"]] == ["health", "smoke"]
    state = store.load(STACK)
    assert state["last_good"]["name"] == "v-1" and state["current"]["name"] == "v-2"
    assert state["promotion"]["phase"] == "done" and state["promotion"]["completed"] == 3


def test_a_smoke_test_failing_at_10_percent_rolls_back_and_exits_1_with_the_report(
    store: StateStore,
) -> None:
    ops = MemoryOps(broken={"v-2"})
    with pytest.raises(PromotionFailed) as err:
        promote(ops, _plan(), store, clock=FakeClock(), smoke=_smoke())
    assert err.value.exit_code == EXIT_CLOUD
    report = err.value.report
    assert report["result"] == "rolled-back" and len(report["steps"]) == 1
    step = report["steps"][0]
    assert step["to_percent"] == 10 and not step["ok"]
    assert "model crashed" in report["error"] and "step 1 (10 %)" in report["error"]
    assert ops.named("set_traffic")[-1] == {"v-1": 100}
    assert ops.traffic == {"v-1": 100} and report["removed"] == ["v-2"]
    state = store.load(STACK)
    assert state["promotion"]["phase"] == "rolled-back" and state["last_good"] is None
    assert json.loads(json.dumps(report)) == report  # the report is plain JSON


def test_a_metrics_breach_at_50_percent_rolls_back(store: StateStore) -> None:
    ops = MemoryOps()
    metrics = ScriptedMetrics(ops, {10: (100, 0, 800), 50: (400, 40, 900)})
    settings = Settings(bake_s=60, max_error_rate=0.05, max_p95_ms=2000)
    with pytest.raises(PromotionFailed) as err:
        promote(ops, _plan(settings, metrics=metrics), store, clock=FakeClock(),
                smoke=_smoke(), metrics=metrics)  # fmt: skip
    report = err.value.report
    assert [s["to_percent"] for s in report["steps"]] == [10, 50]
    assert report["steps"][0]["ok"] and not report["steps"][1]["ok"]
    assert "error rate 0.1000 > 0.05" in report["error"]
    assert ops.traffic == {"v-1": 100}


def test_a_latency_breach_fails_too_and_unmeasured_numbers_are_said_so(
    store: StateStore,
) -> None:
    ops = MemoryOps()
    metrics = ScriptedMetrics(ops, {10: (100, None, 5000)})
    with pytest.raises(PromotionFailed) as err:
        promote(ops, _plan(Settings(bake_s=0, max_p95_ms=2000)), store, clock=FakeClock(),
                metrics=metrics)  # fmt: skip
    assert "error rate not measured" in err.value.report["error"]
    assert "p95 5000 ms > 2000 ms" in err.value.report["error"]


def test_an_interrupted_promotion_resumes_at_the_first_step_not_completed(
    store: StateStore,
) -> None:
    ops, clock = MemoryOps(), FakeClock()

    def ctrl_c(bakes: int) -> None:
        if bakes == 2:
            raise KeyboardInterrupt

    clock.on_sleep = ctrl_c
    with pytest.raises(KeyboardInterrupt):
        promote(ops, _plan(), store, clock=clock, smoke=_smoke())
    state = store.load(STACK)
    assert state["promotion"]["completed"] == 1 and state["promotion"]["phase"] == "shifting"
    assert not store.lock(STACK, "x").path.exists()  # released on the way out
    assert ops.traffic == {"v-1": 50, "v-2": 50}  # left where it was, not rolled back

    clock.on_sleep = None
    ops.calls.clear()
    report = promote(ops, _plan(), store, clock=clock, smoke=_smoke())
    assert report["result"] == "promoted" and report["resumed_after_step"] == 1
    assert ops.named("deploy_version") == []  # v2 was already deployed
    assert ops.named("set_traffic") == [{"v-1": 50, "v-2": 50}, {"v-1": 0, "v-2": 100}]
    assert ops.traffic == {"v-2": 100}

    ops.calls.clear()  # a third run is a no-op
    again = promote(ops, _plan(), store, clock=clock, smoke=_smoke())
    assert again["result"] == "unchanged" and ops.calls == []


def test_a_crash_before_the_first_step_resumes_by_deploying_nothing_twice(
    store: StateStore,
) -> None:
    ops = MemoryOps()

    def crash(weights: dict[str, int]) -> None:
        raise KeyboardInterrupt

    ops.on_set_traffic = crash
    with pytest.raises(KeyboardInterrupt):
        promote(ops, _plan(), store, clock=FakeClock())
    ops.on_set_traffic = None
    assert promote(ops, _plan(), store, clock=FakeClock())["result"] == "promoted"
    assert ops.named("deploy_version") == ["v-2"]


def test_a_second_concurrent_promotion_is_refused_with_a_message(store: StateStore) -> None:
    ops = MemoryOps()
    # the lock is held by this (live) process
    with store.lock(STACK, "promote"), pytest.raises(PolicyError) as err:
        promote(ops, _plan(), store, clock=FakeClock())
    assert err.value.exit_code == EXIT_POLICY
    assert f"pid {os.getpid()}" in err.value.message and "another promote" in err.value.message
    assert ops.calls == []  # refused before reading anything


def test_a_stale_lock_of_a_dead_process_is_taken_over(store: StateStore) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    lock = store.lock(STACK, "promote")
    lock.acquire()
    data = json.loads(lock.path.read_text())
    lock.path.write_text(json.dumps({**data, "pid": int(dead.stdout)}))
    assert promote(MemoryOps(), _plan(), store, clock=FakeClock())["result"] == "promoted"
    assert not lock.path.exists()


def test_rollback_after_success_restores_the_previous_version(store: StateStore) -> None:
    ops = MemoryOps()
    promote(ops, _plan(), store, clock=FakeClock())
    assert "v-1" not in ops.traffic
    report = rollback(ops, STACK, "gcp", store)
    assert report["result"] == "rolled-back" and report["removed"] == ["v-2"]
    assert ops.traffic == {"v-1": 100}
    assert ops.versions_["v-1"]["image"].endswith("11" * 32)  # redeployed as it was
    assert ops.versions_["v-1"]["model_revision"] == "r1"
    ops.calls.clear()
    assert rollback(ops, STACK, "gcp", store)["result"] == "unchanged"  # idempotent
    assert [c for c, _ in ops.calls] == []  # only status() was read
    history = store.load(STACK)["history"]
    assert [(h["operation"], h["result"]) for h in history] == [
        ("promote", "promoted"),
        ("rollback", "rolled-back"),
    ]


def test_rollback_of_an_interrupted_promotion_returns_all_traffic(store: StateStore) -> None:
    ops, clock = MemoryOps(), FakeClock()
    clock.on_sleep = lambda n: (_ for _ in ()).throw(KeyboardInterrupt) if n == 2 else None
    with pytest.raises(KeyboardInterrupt):
        promote(ops, _plan(), store, clock=clock)
    report = rollback(ops, STACK, "gcp", store)
    assert report["result"] == "rolled-back" and ops.traffic == {"v-1": 100}
    assert store.load(STACK)["promotion"]["phase"] == "rolled-back"


def test_rollback_without_a_recorded_promotion_is_bad_input(store: StateStore) -> None:
    with pytest.raises(InputError, match="no promotion is recorded"):
        rollback(MemoryOps(), STACK, "gcp", store)


def test_blue_green_warms_at_0_then_switches_at_once(store: StateStore) -> None:
    ops = MemoryOps()
    plan = _plan(Settings(strategy="blue-green", bake_s=30))
    report = promote(ops, plan, store, clock=FakeClock(), smoke=_smoke())
    assert ops.named("set_traffic") == [{"v-1": 100, "v-2": 0}, {"v-1": 0, "v-2": 100}]
    assert [c["name"] for c in report["steps"][0]["checks"]] == ["health"]  # no smoke at 0 %
    assert [c["name"] for c in report["steps"][1]["checks"]] == ["health", "smoke"]


def test_a_platform_error_mid_promotion_rolls_back(store: StateStore) -> None:
    ops = MemoryOps()

    def refuse(weights: dict[str, int]) -> None:
        if weights.get("v-2") == 50:
            raise CloudError("HTTP 409: endpoint is updating")

    ops.on_set_traffic = refuse
    with pytest.raises(PromotionFailed, match="endpoint is updating"):
        promote(ops, _plan(), store, clock=FakeClock())
    assert ops.traffic == {"v-1": 100}


def test_a_target_without_traffic_splitting_is_refused() -> None:
    class StatusOnly:
        def status(self) -> EndpointHealth:
            return EndpointHealth(state="ready")

        def invoke(self, body: object, *, stream: bool = False) -> bytes:
            return b"{}"

    with pytest.raises(PolicyError, match="weighted traffic"):
        promote(StatusOnly(), _plan(), StateStore(Path("/nonexistent")))


def test_the_smoke_command_gets_the_step_and_its_exit_status_decides(tmp_path: Path) -> None:
    ok = CommandSmoke('test "$MDEPLOY_PROMOTE_PERCENT" = 10 && echo fine')
    assert ok(MemoryOps(), version="v-2", percent=10).ok
    bad = CommandSmoke("echo broken >&2; exit 3")
    result = bad(MemoryOps(), version="v-2", percent=10)
    assert not result.ok and "exited 3" in result.detail and "broken" in result.detail


def test_the_dry_run_plan_lists_versions_weights_bake_and_checks() -> None:
    plan = _plan(Settings(steps=(25, 100), bake_s=300, max_error_rate=0.01))
    doc = plan.to_json(live="v-1")
    assert doc["contract"] == "mdeploy/promote-plan/v1"
    assert doc["to"]["name"] == "v-2" and doc["to"]["image"] == NEW_IMAGE
    assert [s["weights"] for s in doc["steps"]] == [{"v-1": 75, "v-2": 25}, {"v-1": 0, "v-2": 100}]
    assert doc["steps"][0]["checks"] == ["health"]  # no smoke, no metrics source
    assert doc["checks"]["metrics_available"] is False
    assert "only smoke checks" in doc["checks"]["metrics"]


def test_the_default_version_name_is_stable_and_tells_builds_apart() -> None:
    args = make_endpoint_args(model_version="1.10")
    other = make_endpoint_args(model_version="1.10", image=NEW_IMAGE)
    a = plan_promotion(STACK, "gcp", args, Settings()).version.name
    assert a == plan_promotion(STACK, "gcp", args, Settings()).version.name
    assert a.startswith("v1-10-") and len(a) <= 32
    assert a != plan_promotion(STACK, "gcp", other, Settings()).version.name


@pytest.mark.parametrize("text", ["50,10,100", "10,50", "0,100", "a,b", "", "10,10,100"])
def test_bad_steps_are_refused(text: str) -> None:
    with pytest.raises(InputError, match="--steps"):
        parse_steps(text)


def test_bake_durations() -> None:
    assert [parse_bake(t) for t in ("90s", "10m", "1h", "0", "2.5m")] == [90, 600, 3600, 0, 150]
    for bad in ("10 minutes", "-1m", "25h"):
        with pytest.raises(InputError, match="--bake"):
            parse_bake(bad)


def test_a_corrupt_state_file_is_an_error_not_a_reset(store: StateStore) -> None:
    store.folder.mkdir(parents=True)
    store.path(STACK).write_text("{not json")
    with pytest.raises(CloudError, match="cannot be read"):
        promote(MemoryOps(), _plan(), store, clock=FakeClock())


def test_rollback_warns_when_the_last_good_revision_was_not_recorded(store: StateStore) -> None:
    ops = MemoryOps()
    ops.versions_["v-1"]["model_revision"] = None
    promote(ops, _plan(), store, clock=FakeClock())
    report = rollback(ops, STACK, "gcp", store)
    assert report["result"] == "rolled-back" and "without a model revision" in report["warning"]


def test_resuming_with_another_image_under_the_same_name_is_refused(store: StateStore) -> None:
    ops, clock = MemoryOps(), FakeClock()
    clock.on_sleep = lambda n: (_ for _ in ()).throw(KeyboardInterrupt) if n == 1 else None
    with pytest.raises(KeyboardInterrupt):
        promote(ops, _plan(), store, clock=clock)
    other = make_endpoint_args(image=OLD_IMAGE, model_revision="r2", model_version="2")
    plan = plan_promotion(STACK, "gcp", other, Settings(bake_s=0), version="v-2")
    with pytest.raises(PolicyError, match="refusing to resume"):
        promote(ops, plan, store, clock=FakeClock())
    assert ops.traffic == {"v-1": 90, "v-2": 10}  # untouched


def test_status_only_ops_are_refused_before_any_state(store: StateStore) -> None:
    from mdeploy.targets.kubernetes.ops import KubernetesOps  # without TrafficOps

    ops = KubernetesOps({"endpoint_name": "m", "endpoint_url": "http://127.0.0.1:9"})
    with pytest.raises(PolicyError, match="kubernetes: this target cannot run two versions"):
        promote(ops, plan_promotion(STACK, "kubernetes", make_endpoint_args(), Settings()), store)
    with pytest.raises(PolicyError, match="weighted traffic"):
        rollback(ops, STACK, "kubernetes", store)
    assert not store.folder.exists()  # refused before any state or lock was written


def test_the_lock_holds_across_processes_and_a_killed_holder_is_taken_over(
    store: StateStore,
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from mdeploy.ops.state import StateStore; "
         "StateStore(Path(sys.argv[1])).lock(sys.argv[2], 'promote').acquire(); "
         "print('held', flush=True); time.sleep(60)", str(store.folder), STACK],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(PolicyError, match=f"pid {holder.pid}"):
            promote(MemoryOps(), _plan(), store, clock=FakeClock())
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert store.lock(STACK, "x").path.exists()  # a killed holder leaves its lock behind
    assert promote(MemoryOps(), _plan(), store, clock=FakeClock())["result"] == "promoted"


def test_sigterm_stops_like_ctrl_c_without_rolling_back(store: StateStore) -> None:
    from mdeploy.errors import MdeployError

    class Terminated(MdeployError):  # what the CLI's SIGTERM handler raises (exit 143)
        exit_code = 143

    ops, clock = MemoryOps(), FakeClock()

    def term(bakes: int) -> None:
        if bakes == 2:
            raise Terminated("terminated by SIGTERM")

    clock.on_sleep = term
    with pytest.raises(Terminated):
        promote(ops, _plan(), store, clock=clock)
    assert ops.traffic == {"v-1": 50, "v-2": 50} and "remove_version" not in dict(ops.calls)
    assert store.load(STACK)["promotion"]["completed"] == 1
    clock.on_sleep = None
    assert promote(ops, _plan(), store, clock=clock)["resumed_after_step"] == 1


class SnappingOps(MemoryOps):
    """Routing as coarse as a single replica per endpoint: the larger weight gets it all."""

    def set_traffic(self, weights: dict[str, int]) -> EndpointHealth:
        top = max(weights, key=lambda name: (weights[name], name))
        health = super().set_traffic({name: 100 if name == top else 0 for name in weights})
        health.details["traffic_model"] = "replica-proportional"
        return health


def test_a_step_that_gets_all_or_nothing_is_reported_as_no_canary(store: StateStore) -> None:
    report = promote(SnappingOps(), _plan(), store, clock=FakeClock())
    first, second, last = report["steps"]
    assert first["weights"] == {"v-1": 90, "v-2": 10}
    assert first["achieved"] == {"v-1": 100, "v-2": 0}
    assert first["split"] == "degenerate" and "not a canary" in first["note"]
    assert "HTTPRoute" in first["note"] and "serving.replicas" in first["note"]
    assert second["split"] == "degenerate" and second["achieved"]["v-2"] == 100
    assert last["achieved"] == {"v-1": 0, "v-2": 100} and "note" not in last
    assert report["result"] == "promoted"


def test_exact_splits_carry_no_note_and_the_text_report_shows_a_note(
    store: StateStore, capsys: pytest.CaptureFixture[str]
) -> None:
    from mdeploy.cli.promote_cmd import _render_report

    report = promote(MemoryOps(), _plan(), store, clock=FakeClock())
    assert all("note" not in s and s["achieved"] == s["weights"] for s in report["steps"])
    report["steps"][0].update(split="coarse", note="asked 10 % for v-2, got 50 %")
    _render_report(report, json_out=False)
    assert "coarse asked 10 % for v-2, got 50 %" in " ".join(capsys.readouterr().out.split())


def test_a_step_refused_before_any_traffic_moved_counts_as_rolled_back(
    store: StateStore,
) -> None:
    ops = MemoryOps()

    def refuse(weights: dict[str, int]) -> None:
        from mdeploy.errors import PrerequisiteError

        raise PrerequisiteError("a HorizontalPodAutoscaler owns the replicas of m")

    ops.on_set_traffic = refuse
    with pytest.raises(PromotionFailed) as err:
        promote(ops, _plan(), store, clock=FakeClock())
    report = err.value.report
    assert report["result"] == "rolled-back" and "HorizontalPodAutoscaler" in report["error"]
    assert report["removed"] == ["v-2"] and ops.traffic == {"v-1": 100}
