"""The Docker deployment: compose validates, credentials come from .env, ports stay private by
default, the image is non-root and non-editable without test dependencies (issue 17)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"


def compose_command() -> list[str] | None:
    """``docker compose`` (v2 plugin) or ``docker-compose`` (v1), whichever is installed."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_config_validates() -> None:
    command = compose_command()
    if command is None:
        pytest.skip("docker compose is not installed")
    base = [*command, "--project-directory", str(ROOT), "-f", str(COMPOSE), "--env-file", str(ROOT / ".env.example")]
    for profile in ([], ["--profile", "gpu"]):
        done = subprocess.run([*base, *profile, "config"], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
    # no .env: the missing credentials are named
    missing = subprocess.run([*command, "-f", str(COMPOSE), "--project-directory", "/nonexistent", "config"],
                             capture_output=True, text=True, timeout=60, check=False, cwd="/")
    assert missing.returncode != 0 and "POSTGRES_PASSWORD" in missing.stderr


def test_compose_services_and_settings() -> None:
    import yaml

    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    assert {"postgres", "redis", "labelstudio", "migrate", "worker-cpu", "worker-gpu", "review"} <= set(services)
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["review"]["command"][:2] == ["review", "serve"]
    assert services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert "TORCH_INDEX" in services["worker-gpu"]["build"]["args"]
    for name in ("worker-cpu", "worker-gpu", "review"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
    assert services["review"]["depends_on"]["labelstudio"]["condition"] == "service_healthy"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("${BIND_ADDRESS:-127.0.0.1}:"), (name, port)
    # the same Label Studio line as labeling/server.py
    from labeling.server import LABEL_STUDIO_REQUIREMENT

    line = re.search(r">=(\d+\.\d+)", LABEL_STUDIO_REQUIREMENT).group(1)  # type: ignore[union-attr]
    assert services["labelstudio"]["image"].split(":")[1].startswith(line + ".")
    env = services["labelstudio"]["environment"]
    assert {"LABEL_STUDIO_USERNAME", "LABEL_STUDIO_PASSWORD", "LABEL_STUDIO_USER_TOKEN"} <= set(env)
    # credentials are interpolated from .env, never literals
    text = COMPOSE.read_text()
    assert "mycelium:mycelium@" not in text
    assert re.search(r"PASSWORD:\s*[A-Za-z0-9]", text) is None


def test_dockerfile_and_dockerignore() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root)\S+", dockerfile, re.MULTILINE)
    assert "pip install -e" not in dockerfile and "[test]" not in dockerfile
    assert "COPY . ." not in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "tests", ".env"} <= set(ignored)
