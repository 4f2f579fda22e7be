"""The monitoring profile: Prometheus scrapes what the services serve, the dashboard plots what they export.

No Docker here, so the files are checked against the code: scrape targets against
compose's services and the services' default metrics ports, and every metric a
dashboard query names against the metrics the registries of the preprocessor, the
aggregator, the HMI (and Triton's documented nv_* ones) really define.
"""
from __future__ import annotations

import json
import re

import yaml
from prometheus_client import CollectorRegistry

from aggregator.config import AggregatorConfig
from aggregator.metrics import AggregatorMetrics, RedisQueueCollector
from hmi.config import HmiConfig
from hmi.metrics import HmiMetrics
from preprocessor.config import PreprocessorConfig
from preprocessor.metrics import PreprocessorMetrics
from tests.unit.compose_support import REPO, load_compose

MONITORING = REPO / "monitoring"
TRITON_METRICS = {"nv_inference_request_success", "nv_inference_compute_infer_duration_us", "nv_inference_exec_count"}
PROMQL_WORDS = {"sum", "by", "rate", "histogram_quantile", "clamp_min", "le", "stage", "decision", "model_version",
                "region", "method", "code", "stream", "model", "version", "without", "avg", "max"}


def _exported_names() -> set[str]:
    names: set[str] = set()
    registries = [PreprocessorMetrics().registry, AggregatorMetrics().registry, HmiMetrics().registry]
    for registry in registries:
        for family in registry.collect():
            names.update(sample.name for sample in family.samples)
            names.add(family.name)
    # The Redis collector's families, read without a Redis (it reports itself down, then names the rest).
    source = (REPO / "aggregator" / "metrics.py").read_text(encoding="utf-8")
    names.update(re.findall(r'GaugeMetricFamily\("(\w+)"', source))
    for family in list(names):
        names.update({f"{family}_total", f"{family}_bucket", f"{family}_count", f"{family}_sum"})
    return names


def test_prometheus_scrapes_every_service_at_its_configured_metrics_port() -> None:
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text(encoding="utf-8"))
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert targets == {
        "triton": ["triton:8002"],
        "preprocessor": [f"preprocessor:{PreprocessorConfig().metrics_port}"],
        "aggregator": [f"aggregator:{AggregatorConfig().metrics_port}"],
        "hmi": [f"hmi:{HmiConfig().port}"],
    }
    services = load_compose()["services"]
    assert set(targets) <= set(services)
    for name in ("preprocessor", "aggregator"):
        env = services[name]["environment"]
        prefix = name.upper()
        assert env[f"{prefix}_METRICS_HOST"] == "0.0.0.0" and env[f"{prefix}_METRICS_PORT"] == targets[name][0].split(":")[1]


def test_every_dashboard_query_uses_metrics_that_exist() -> None:
    dashboard = json.loads((MONITORING / "grafana" / "dashboards" / "vialguard.json").read_text(encoding="utf-8"))
    exported = _exported_names() | TRITON_METRICS
    datasource = yaml.safe_load((MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
                                .read_text(encoding="utf-8"))["datasources"][0]
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"]
        for target in panel["targets"]:
            # Label matchers, strings, ranges and numbers (1e-9) out: what is left are names.
            expr = re.sub(r'\{[^}]*\}|"[^"]*"|\[[^\]]*\]|\b\d+(\.\d+)?(e-?\d+)?\b', "", target["expr"])
            used = {w for w in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr) if w not in PROMQL_WORDS}
            unknown = sorted(u for u in used if u not in exported)
            assert unknown == [], f"panel '{panel['title']}' queries {unknown}, which no service exports"


def test_grafana_provisions_the_dashboard_folder_that_compose_mounts() -> None:
    provider = yaml.safe_load((MONITORING / "grafana" / "provisioning" / "dashboards" / "vialguard.yml")
                              .read_text(encoding="utf-8"))["providers"][0]
    grafana = load_compose()["services"]["grafana"]
    mounted = {m.split(":")[1]: m.split(":")[0] for m in grafana["volumes"] if m.startswith("./")}
    assert provider["options"]["path"] in mounted
    assert (REPO / mounted[provider["options"]["path"]] / "vialguard.json").is_file()


def test_metric_names_follow_prometheus_conventions() -> None:
    registry = CollectorRegistry()
    for metrics in (PreprocessorMetrics(registry), AggregatorMetrics(registry), HmiMetrics(registry)):
        assert metrics.registry is registry  # one registry holds them all: no name is defined twice
    for family in registry.collect():
        assert re.fullmatch(r"vialguard_(preprocessor|aggregator|hmi)_[a-z_]+", family.name), family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
        if family.type == "counter":
            assert not family.name.endswith("_total")  # the client adds _total to the samples
    assert RedisQueueCollector  # collected at scrape time; its names are checked above
