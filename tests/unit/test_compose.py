"""docker-compose.yml: valid Compose Specification, and the line cluster's rules hold.

No Docker engine here: the file is parsed (PyYAML), interpolated with .env.example
and validated against the official Compose Specification schema (jsonschema); the
`docker compose config` check runs only where the Compose CLI plugin exists.
"""
from __future__ import annotations

import copy
from pathlib import Path
import shutil
import subprocess

import jsonschema
import pytest

from tests.unit.compose_support import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    REPO,
    MissingVariable,
    compose_schema,
    interpolate,
    load_compose,
    read_env_file,
    referenced_variables,
)

ONE_SHOT = {"plan-builder"}


@pytest.fixture(scope="module")
def raw() -> dict:
    return load_compose()


@pytest.fixture(scope="module")
def compose(raw: dict) -> dict:
    return interpolate(raw, read_env_file())


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = compose_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _errors(validator: jsonschema.protocols.Validator, doc: dict) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(doc)]


def test_compose_file_is_valid_under_the_compose_specification(validator, raw, compose) -> None:
    assert _errors(validator, raw) == []
    assert _errors(validator, compose) == []


def test_the_schema_check_catches_a_broken_compose_file(validator, compose) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["redis"]["healthcheck"]["interval"] = ["5s"]
    broken["services"]["triton"]["depends_on"]["plan-builder"]["condition"] = "when_it_feels_like_it"
    assert len(_errors(validator, broken)) >= 2


def test_compose_file_has_no_version_key_and_names_the_project(raw) -> None:
    assert "version" not in raw
    assert raw["name"] == "vialguard"


def test_every_long_running_service_has_a_healthcheck(compose) -> None:
    for name, service in compose["services"].items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", f"one-shot {name} must not be restarted"
            continue
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name} has no healthcheck"


def test_redis_keeps_an_append_only_file_and_one_acl_user_per_service(raw, compose) -> None:
    from vialguard import redis_acl

    redis = compose["services"]["redis"]
    assert raw["services"]["redis"]["image"].startswith("redis:7")
    env = read_env_file()
    passwords = {"preprocessor": env["PREPROCESSOR_REDIS_PASSWORD"], "aggregator": env["AGGREGATOR_REDIS_PASSWORD"],
                 "healthcheck": env["HEALTHCHECK_REDIS_PASSWORD"]}
    assert redis["command"] == ["redis-server", "--appendonly", "yes", "--appendfsync", "everysec",
                                *redis_acl.server_args(passwords)]  # the very rules the ACL test runs under
    assert "redis-data:/data" in redis["volumes"]
    test = " ".join(redis["healthcheck"]["test"])
    assert "redis-cli --user healthcheck" in test and "ping" in test
    assert redis["environment"]["REDISCLI_AUTH"] == passwords["healthcheck"]


def test_redis_and_triton_are_only_on_the_internal_network_with_no_host_ports(compose) -> None:
    services, networks = compose["services"], compose["networks"]
    assert networks["backend"]["internal"] is True
    for name in ("redis", "triton", "aggregator"):
        assert "ports" not in services[name], f"{name} must not publish host ports"
        assert list(services[name]["networks"]) == ["backend"], name
    assert sorted(services["preprocessor"]["networks"]) == ["backend", "line"]
    assert [p.rsplit(":", 2)[0] for p in services["preprocessor"]["ports"]] == ["127.0.0.1"]  # loopback by default


def test_tritons_model_control_and_shared_memory_need_the_admin_key(compose) -> None:
    command = compose["services"]["triton"]["command"]
    key = read_env_file()["TRITON_ADMIN_KEY"]
    for flag in ("--grpc-restricted-protocol", "--http-restricted-api"):
        value = next(c.split("=", 1)[1] for c in command if c.startswith(flag + "="))
        protocols, _, header = value.partition(":")
        assert {"model-repository", "shared-memory"} <= set(protocols.split(","))
        assert header == f"vialguard-triton-admin={key}"
    assert compose["services"]["trainer"]["environment"]["VIALGUARD_TRITON_ADMIN_KEY"] == key


def test_the_audit_key_and_anchor_live_on_volumes_apart_from_the_database(compose) -> None:
    agg = compose["services"]["aggregator"]
    env, mounts = agg["environment"], agg["volumes"]
    dirs = {str(Path(env[v]).parent) for v in ("VIALGUARD_AUDIT_DB", "VIALGUARD_AUDIT_KEY_FILE",
                                               "VIALGUARD_AUDIT_ANCHOR")}
    assert len(dirs) == 3
    targets = {m.split(":")[1]: m.split(":")[0] for m in mounts}
    assert len({targets[d] for d in dirs}) == 3  # three different volumes


def test_triton_uses_explicit_model_control_the_gpu_config_and_a_reserved_gpu(compose) -> None:
    triton = compose["services"]["triton"]
    image = triton["image"]
    assert image.startswith("nvcr.io/nvidia/tritonserver:") and image.endswith("-py3")
    assert image.split(":")[1][:2].isdigit(), "the Triton image must be pinned to a release tag"
    command = triton["command"]
    assert command[0] == "tritonserver"
    assert "--model-repository=/models" in command
    assert "--model-control-mode=explicit" in command
    assert "--load-model=inspector" in command
    assert "--model-config-name=gpu" in command
    assert "./model_repository:/models:ro" in triton["volumes"]
    assert "/v2/health/ready" in " ".join(triton["healthcheck"]["test"])
    _assert_one_gpu(triton)


def test_triton_starts_only_after_the_plan_was_built_on_the_same_image(compose) -> None:
    triton, builder = compose["services"]["triton"], compose["services"]["plan-builder"]
    assert triton["depends_on"]["plan-builder"]["condition"] == "service_completed_successfully"
    assert builder["image"] == triton["image"], "a plan only runs under the TensorRT that built it"
    assert "./model_repository:/models" in builder["volumes"]  # read-write for the plan
    assert REPO / "scripts" / "build_trt_plan.sh" in _mounted_paths_in_command(builder)
    _assert_one_gpu(builder)


def test_services_wait_for_healthy_dependencies(compose) -> None:
    services = compose["services"]
    pre, agg = services["preprocessor"]["depends_on"], services["aggregator"]["depends_on"]
    for dependency in ("redis", "triton", "aggregator"):
        assert pre[dependency]["condition"] == "service_healthy"
    assert agg["redis"]["condition"] == "service_healthy"
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"


def test_services_get_their_configuration_from_the_environment(compose) -> None:
    from aggregator.config import ENV_VARS as AGGREGATOR_VARS
    from hmi.config import ENV_VARS as HMI_VARS
    from preprocessor.config import ENV_VARS as PREPROCESSOR_VARS

    for name, known in (("preprocessor", PREPROCESSOR_VARS), ("aggregator", AGGREGATOR_VARS), ("hmi", HMI_VARS)):
        env = compose["services"][name]["environment"]
        if name != "hmi":  # the HMI never talks to Redis: it reads through the preprocessor
            password = read_env_file()[f"{name.upper()}_REDIS_PASSWORD"]
            assert env["VIALGUARD_REDIS_URL"] == f"redis://{name}:{password}@redis:6379/0", name
        unknown = sorted(set(env) - set(known))
        assert unknown == [], f"{name} would silently ignore {unknown}"
    assert "VIALGUARD_REDIS_URL" not in compose["services"]["hmi"]["environment"]
    assert compose["services"]["preprocessor"]["environment"]["VIALGUARD_TRITON_URL"] == "triton:8001"


def test_trainer_runs_only_in_the_train_profile_on_a_gpu(compose) -> None:
    services = compose["services"]
    assert services["trainer"]["profiles"] == ["train"]
    assert {n: s["profiles"] for n, s in services.items() if s.get("profiles")} == {
        "trainer": ["train"], "prometheus": ["monitoring"], "grafana": ["monitoring"]}
    mounts = services["trainer"]["volumes"]
    assert any(m.endswith(":/data:ro") for m in mounts)
    assert "./model_repository:/models" in mounts
    _assert_one_gpu(services["trainer"])


def test_the_trainer_command_is_one_the_trainer_cli_accepts(compose) -> None:
    from trainer.cli import build_parser

    args = build_parser().parse_args(compose["services"]["trainer"]["command"])
    assert str(args.out) == "/models" and args.profile == "paper"


def test_every_variable_compose_uses_is_documented_in_env_example() -> None:
    documented = read_env_file()
    for name, op in referenced_variables(COMPOSE_FILE.read_text(encoding="utf-8")).items():
        required = op in (None, ":?", "?")
        assert not required or name in documented, f"${name} is required but not in {ENV_EXAMPLE.name}"


def test_every_path_compose_references_exists(compose) -> None:
    for name, service in compose["services"].items():
        build = service.get("build")
        if build:
            context = REPO / build["context"]
            assert context.is_dir(), f"{name}: build context {context} missing"
            assert (context / build["dockerfile"]).is_file(), f"{name}: {build['dockerfile']} missing"
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith((".", "/")) and source != "./data":  # ./data: the user's images
                assert (REPO / source).exists(), f"{name}: bind mount source {source} missing"
        for host_path in _mounted_paths_in_command(service):
            assert host_path.exists(), f"{name} runs {host_path.relative_to(REPO)}, which does not exist"
        for env_file in service.get("env_file", []):
            assert (REPO / env_file).is_file(), f"{name}: env_file {env_file} missing"
    assert ENV_EXAMPLE.is_file()


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0,
    reason="the Docker Compose CLI plugin is not installed here",
)
def test_docker_compose_config_accepts_the_file() -> None:
    result = subprocess.run(
        ["docker", "compose", "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE_FILE),
         "--profile", "train", "config", "--quiet"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )
    assert result.returncode == 0, result.stderr


def _mounted_paths_in_command(service: dict) -> list:
    """Host files behind container paths that a service's entrypoint/command names via a bind mount."""
    mounts = [m.split(":")[:2] for m in service.get("volumes", []) if m.startswith(".")]
    words = [*service.get("entrypoint", []), *service.get("command", [])]
    found = []
    for word in (w for w in words if isinstance(w, str) and w.startswith("/")):
        for source, target in mounts:
            if word.startswith(target.rstrip("/") + "/"):
                found.append(REPO / source / word[len(target.rstrip("/")) + 1:])
    return found


def _assert_one_gpu(service: dict) -> None:
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]


def test_the_hmi_reads_the_audit_store_and_the_models_read_only_and_waits_for_the_stack(compose) -> None:
    hmi = compose["services"]["hmi"]
    assert "audit:/var/lib/vialguard/audit:ro" in hmi["volumes"]
    assert "./model_repository:/models:ro" in hmi["volumes"]
    for dependency in ("preprocessor", "aggregator"):
        assert hmi["depends_on"][dependency]["condition"] == "service_healthy"
    assert "/healthz" in " ".join(hmi["healthcheck"]["test"])
    assert hmi["ports"] == ["127.0.0.1:8080:8080"]  # loopback unless HMI_BIND says otherwise


def test_monitoring_binds_to_loopback_and_needs_its_own_password(raw, compose) -> None:
    for name in ("prometheus", "grafana"):
        assert all(p.startswith("127.0.0.1:") for p in compose["services"][name]["ports"]), name
    assert "${GRAFANA_ADMIN_PASSWORD:?" in raw["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    env = read_env_file()
    del env["GRAFANA_ADMIN_PASSWORD"]
    with pytest.raises(MissingVariable, match="GRAFANA_ADMIN_PASSWORD"):
        interpolate(raw, env)
