"""The operator HMI for real: the whole local stack, a simulated kit with defects, a headless Chromium.

Everything is real: redis-server, tritonserver serving the committed model, the
aggregator, two preprocessors, the HMI, and Debian's chromium driven by selenium.
The camera pushes through preprocessor B while the HMI watches preprocessor A, so
A can be stopped and restarted mid-kit: the verdicts decided meanwhile must reach
the page after it resumes (WatchVerdicts after_id), each exactly once.

Checked: the live page's counts equal the verdicts the camera received; a reject's
detail page renders every over-threshold patch with its heatmap images really
decoded; the product view agrees with the verdicts' run-policy state; the model and
audit pages show the serving version and a holding chain; every /metrics figure
matches the traffic; the page says "STACK DOWN" when the preprocessor is gone.
Screenshots go to runs/test-artifacts/hmi-browser/<time>/.
"""
from __future__ import annotations

import json
import sys
import urllib.request
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.browser_support import artifacts_dir, chromium_driver
from tests.integration.triton_support import require_local_stack
from vialguard.inspector_io import MODEL_NAME
from vialguard.model_repository import latest_version, load_version_calibration
from vialguard.recipe import load_recipe
from vialguard.v1 import inspection_pb2 as pb
from vialguard_stack import probes
from vialguard_stack.camera import FrameEncoding, SimulatedCamera
from vialguard_stack.demo import LABELS_FILE, _labelled
from vialguard_stack.kit_source import HELD_OUT_SEED, simulated_shots
from vialguard_stack.local_stack import REPO_ROOT, StackSettings, local_stack
from vialguard_stack.supervisor import free_port

pytestmark = pytest.mark.integration

REPOSITORY = REPO_ROOT / "model_repository"
RECIPE = load_recipe()
GOOD, DEFECTIVE, RUNS = 2, 2, 3
WAIT_S = 120


def _start_preprocessor(stack, name: str, port: int, metrics_port: int = 0) -> None:  # type: ignore[no-untyped-def]
    """Another preprocessor process on the same Redis and Triton (or the HMI's one again, on its port)."""
    target = f"127.0.0.1:{port}"
    child = stack.supervisor.start(name, [sys.executable, "-m", "preprocessor"], cwd=REPO_ROOT, env={
        "VIALGUARD_GRPC_PORT": str(port), "PREPROCESSOR_HOST": "127.0.0.1", "VIALGUARD_REDIS_URL": stack.preprocessor_redis_url,
        "VIALGUARD_TRITON_URL": stack.triton_grpc_url, "VIALGUARD_MODEL_NAME": MODEL_NAME,
        "PREPROCESSOR_METRICS_PORT": str(metrics_port)})
    stack.supervisor.wait_ready(child, lambda: probes.grpc_serving(target), 60)


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The stack, the HMI and a browser on its live page, after the whole kit went through."""
    require_local_stack()
    version = latest_version(REPOSITORY)
    assert version is not None, "no committed model version in model_repository/inspector"
    run_dir = tmp_path_factory.mktemp("hmi") / "run"
    labels = run_dir / LABELS_FILE
    shots = list(simulated_shots(RECIPE, GOOD, DEFECTIVE, RUNS, seed=HELD_OUT_SEED + 11))
    shots_dir = artifacts_dir("hmi-browser")
    driver = chromium_driver()
    settings = StackSettings(run_dir=run_dir, repository=REPOSITORY, version=version, labels=labels)
    try:
        with local_stack(settings) as stack:
            b_port, b_metrics = free_port(), free_port()
            _start_preprocessor(stack, "preprocessor-b", b_port, b_metrics)
            driver.get(stack.hmi_url + "/live")
            results = []
            with SimulatedCamera(f"127.0.0.1:{b_port}", RECIPE, FrameEncoding.RAW, deadline_ms=10_000) as camera:
                pushed = _labelled(shots, labels)
                for i, result in enumerate(camera.run(pushed)):
                    results.append(result)
                    if i == len(shots) // 3:  # the HMI's preprocessor goes away; the line goes on through B
                        stack.supervisor.stop("preprocessor")
                    if i == 2 * len(shots) // 3:
                        _start_preprocessor(stack, "preprocessor", int(stack.preprocessor_target.rsplit(":", 1)[1]))
            yield {"stack": stack, "driver": driver, "shots": shots, "results": results, "dir": shots_dir,
                   "version": version, "b_metrics": f"http://127.0.0.1:{b_metrics}/metrics"}
    finally:
        driver.quit()


def _verdicts(line) -> list[pb.Verdict]:  # type: ignore[no-untyped-def]
    assert [r.status for r in line["results"]] == ["OK"] * len(line["shots"])
    return [r.verdict for r in line["results"]]


def _text(driver, element_id: str) -> str:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    return driver.find_element(By.ID, element_id).text


def _wait(driver, condition, what: str):  # type: ignore[no-untyped-def]
    from selenium.webdriver.support.ui import WebDriverWait
    try:
        return WebDriverWait(driver, WAIT_S, poll_frequency=0.25).until(condition)
    except Exception as exc:  # selenium's TimeoutException: say what the page showed
        raise AssertionError(f"{what} not seen within {WAIT_S} s; page: {driver.page_source[:3000]}") from exc


def test_the_live_page_shows_every_verdict_once_even_across_a_reconnection(line) -> None:  # type: ignore[no-untyped-def]
    driver, verdicts = line["driver"], _verdicts(line)
    decisions = Counter(pb.Decision.Name(v.decision) for v in verdicts)
    _wait(driver, lambda d: _text(d, "kpi-received") == str(len(verdicts)), "all verdicts on the live page")
    assert _text(driver, "kpi-accepts") == str(decisions["ACCEPT"])
    assert _text(driver, "kpi-rejects") == str(decisions["REJECT"])
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#live-table tbody tr')].map(r => "
        "[r.dataset.acquisition, r.querySelector('.decision').textContent])")
    assert sorted(a for a, _ in rows) == sorted(v.acquisition_id for v in verdicts)   # each once, none missing
    assert dict(rows) == {v.acquisition_id: pb.Decision.Name(v.decision) for v in verdicts}
    assert _text(driver, "kpi-model") == f"v{line['version']}"
    cells = driver.execute_script("return [...document.querySelectorAll('#strip-grid td.cell')].length")
    assert cells == len(RECIPE.vials) * len(RECIPE.regions)
    assert "stack connected" in _text(driver, "stack-status")
    driver.save_screenshot(str(line["dir"] / "live.png"))


def test_a_reject_detail_renders_each_over_threshold_patch_with_its_heatmap(line) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    driver, verdicts = line["driver"], _verdicts(line)
    rejects = [v for v in verdicts if v.decision == pb.REJECT]
    assert rejects, "the kit with defects produced no reject: nothing to open"
    driver.get(line["stack"].hmi_url + "/live")
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "a.reject-link"), "a reject link")
    link = driver.find_elements(By.CSS_SELECTOR, "a.reject-link")[0]
    acquisition_id = link.text
    link.click()
    verdict = next(v for v in rejects if v.acquisition_id == acquisition_id)
    over = [p for p in verdict.patches if p.over] or [max(verdict.patches, key=lambda p: p.score - p.threshold)]
    _wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".patch-card")) == len(over), "the patch cards")
    images = _wait(driver, lambda d: (lambda s: s if s and all(i[0] for i in s) else False)(driver.execute_script(
        "return [...document.querySelectorAll('img.patch-image')].map(i => [i.complete, i.naturalWidth, "
        "i.naturalHeight, i.getAttribute('src')])")), "every heatmap image loaded")
    assert len(images) == 3 * len(over)  # patch, heatmap over the patch, heatmap alone
    assert all(w > 0 and h > 0 for _, w, h, _ in images), images
    patch_size = load_version_calibration(REPOSITORY, line["version"]).patch_size
    for _, width, _, src in images[:3]:
        with urllib.request.urlopen(line["stack"].hmi_url + src, timeout=10) as reply:
            decoded = cv2.imdecode(np.frombuffer(reply.read(), np.uint8), cv2.IMREAD_UNCHANGED)
        assert decoded is not None and decoded.shape[0] == decoded.shape[1] == width
        assert width % patch_size == 0 and decoded.std() > 0  # the patch's own size, scaled; not a blank image
    shown = {c.get_attribute("data-patch") for c in driver.find_elements(By.CSS_SELECTOR, ".patch-card")}
    assert shown == {f"{p.frame}-{p.vial}-{p.region}" for p in over}
    worst = max(over, key=lambda p: p.score / p.threshold)
    first = driver.find_elements(By.CSS_SELECTOR, ".patch-card .score")[0].text
    assert f"score {worst.score:.4f} vs threshold {worst.threshold:.4f}" in first
    driver.save_screenshot(str(line["dir"] / "reject.png"))


def test_the_product_view_agrees_with_the_verdicts(line) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    driver, verdicts = line["driver"], _verdicts(line)
    last = {v.product_id: v for v in verdicts}
    driver.get(line["stack"].hmi_url + "/products")
    _wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#products-table tbody tr")) == len(last),
          "one row per product")
    rows = driver.execute_script("return [...document.querySelectorAll('#products-table tbody tr')].map(r => "
                                 "[...r.cells].map(c => c.textContent))")
    labels = {s.product_id: s.label for s in line["shots"]}
    for product, label, runs, accepts, rejects, verdict, _correct, why in rows:
        rp = last[product].run_policy
        assert (label, accepts, rejects) == (labels[product], str(rp.accepts), str(rp.rejects))
        assert verdict == pb.ProductDecision.Name(rp.product_decision).removeprefix("PRODUCT_")
        assert runs == f"{rp.accepts + rp.rejects} / {rp.n}" and why
    driver.save_screenshot(str(line["dir"] / "products.png"))


def test_model_and_audit_pages_show_the_serving_version_and_a_holding_chain(line) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    driver, verdicts = line["driver"], _verdicts(line)
    driver.get(line["stack"].hmi_url + "/model")
    _wait(driver, lambda d: f"serving v{line['version']}" in _text(d, "model-summary"), "the serving version")
    assert "in service here since 20" in _text(driver, "model-summary")
    assert "Table 1" in _text(driver, "report") and "Table 3" in _text(driver, "report")
    assert len(driver.find_elements(By.CSS_SELECTOR, "#thresholds tbody tr")) >= 1
    driver.save_screenshot(str(line["dir"] / "model.png"))
    driver.get(line["stack"].hmi_url + "/audit?id=" + verdicts[-1].acquisition_id)
    _wait(driver, lambda d: "Chain holds" in _text(d, "chain"), "the chain's verification")
    assert f"{len(verdicts)} records" in _text(driver, "chain")
    record = json.loads(_text(driver, "audit-record"))
    assert record["acquisition_id"] == verdicts[-1].acquisition_id
    assert record["verdict"]["decision"] == pb.Decision.Name(verdicts[-1].decision)
    driver.save_screenshot(str(line["dir"] / "audit.png"))


def _scrape(url: str) -> dict[tuple[str, frozenset], float]:
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _get(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_every_services_metrics_match_the_traffic(line) -> None:  # type: ignore[no-untyped-def]
    stack, verdicts = line["stack"], _verdicts(line)
    n = len(verdicts)
    decisions = Counter(pb.Decision.Name(v.decision) for v in verdicts)
    over_by_region = Counter(p.region_id for v in verdicts for p in v.patches if p.over)
    version = str(line["version"])

    camera_side = _scrape(line["b_metrics"])  # the preprocessor the camera called
    assert _get(camera_side, "vialguard_preprocessor_grpc_requests_total", method="Inspect", code="OK") == n
    for decision in ("ACCEPT", "REJECT"):
        assert _get(camera_side, "vialguard_preprocessor_verdicts_total", decision=decision, model_version=version,
                    replayed="false") == decisions[decision]
    for stage in ("decode", "patching", "inference", "queue", "aggregation"):
        assert _get(camera_side, "vialguard_preprocessor_stage_seconds_count", stage=stage) == n
    assert _get(camera_side, "vialguard_preprocessor_end_to_end_seconds_count") == n
    assert _get(camera_side, "vialguard_preprocessor_grpc_in_flight_requests", method="Inspect") == 0

    aggregator = _scrape(stack.aggregator_metrics_url)
    for decision in ("ACCEPT", "REJECT"):
        assert _get(aggregator, "vialguard_aggregator_verdicts_total", decision=decision,
                    model_version=version) == decisions[decision]
    for region in ("R0", "R1", "R2", "R3"):
        assert _get(aggregator, "vialguard_aggregator_over_threshold_patches_total", region=region) == \
            over_by_region[region]
    assert _get(aggregator, "vialguard_aggregator_entries_total", outcome="decided") == n
    assert _get(aggregator, "vialguard_aggregator_queue_wait_seconds_count") == n
    assert _get(aggregator, "vialguard_redis_up") == 1
    assert _get(aggregator, "vialguard_redis_stream_length", stream="vialguard:scores") == n
    assert _get(aggregator, "vialguard_redis_stream_length", stream="vialguard:verdicts") == n
    assert _get(aggregator, "vialguard_redis_consumer_group_pending", stream="vialguard:scores",
                group="aggregators") == 0
    assert _get(aggregator, "vialguard_redis_consumer_group_lag", stream="vialguard:scores", group="aggregators") == 0

    hmi = _scrape(stack.hmi_url + "/metrics")
    for decision in ("ACCEPT", "REJECT"):
        assert _get(hmi, "vialguard_hmi_verdicts_received_total", decision=decision,
                    model_version=version) == decisions[decision]
    assert _get(hmi, "vialguard_hmi_watch_connections_total") >= 2   # it came back after the restart
    assert _get(hmi, "vialguard_hmi_watch_connected") == 1
    assert _get(hmi, "vialguard_hmi_heatmap_requests_total", code="OK") >= 1


def test_the_page_says_plainly_when_the_stack_is_down(line) -> None:  # type: ignore[no-untyped-def]
    driver, stack = line["driver"], line["stack"]
    driver.get(stack.hmi_url + "/live")
    _wait(driver, lambda d: "stack connected" in _text(d, "stack-status"), "the connected state")
    stack.supervisor.stop("preprocessor")
    _wait(driver, lambda d: _text(d, "stack-status") == "STACK DOWN", "the STACK DOWN status")
    banner = _text(driver, "stack-down")
    assert "Stack DOWN" in banner and stack.preprocessor_target in banner
    assert _text(driver, "kpi-received") == str(len(line["shots"]))   # the last known state stays on screen
    driver.save_screenshot(str(line["dir"] / "stack-down.png"))
    assert Path(line["dir"] / "live.png").stat().st_size > 0
