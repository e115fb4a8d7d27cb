"""The dependency files: runtime requirements without test tools, a constraints file that pins the
whole dependency tree, and a Makefile that uses it (`make demo` never installs the test tools)."""

from __future__ import annotations

import re
import subprocess
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
TEST_TOOLS = ("pytest", "playwright")


def pins(name: str) -> dict[str, str]:
    """{canonical name: version} of the ``name==version`` lines of a requirements file."""
    found = {}
    for line in (REPO / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            requirement = Requirement(line)
            (spec,) = requirement.specifier  # exactly one exact pin per line
            assert spec.operator == "==", line
            found[canonicalize_name(requirement.name)] = spec.version
    return found


def test_test_tools_live_in_the_test_requirements_only():
    runtime, tests = pins("requirements.txt"), pins("requirements-test.txt")
    assert not set(TEST_TOOLS) & set(runtime), "test tools are not runtime requirements"
    assert set(TEST_TOOLS) <= set(tests)


def test_constraints_pin_every_requirement_at_its_version():
    constraints = pins("constraints.txt")
    for name in ("requirements.txt", "requirements-test.txt", "requirements-nodeps.txt"):
        for package, version in pins(name).items():
            assert constraints.get(package) == version, f"{name}: {package}=={version} vs constraints.txt"
    assert constraints["torch"] == "2.14.1" and constraints["torchvision"] == "0.29.1"
    assert "emotion-llama" not in constraints  # the project itself is not a constraint


def test_constraints_cover_the_whole_installed_dependency_tree():
    """Every package the requirements pull in (transitively, markers evaluated here) is pinned:
    a fresh `make install` gets no version that was not tested."""
    constraints = pins("constraints.txt")
    todo = [Requirement(f"{p}=={v}") for f in ("requirements.txt", "requirements-test.txt") for p, v in pins(f).items()]
    seen: set[str] = set()
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        assert name in constraints, f"{name} (needed by the requirements) is not pinned in constraints.txt"
        installed = metadata.distribution(name)
        assert installed.version == constraints[name], f"{name}: installed {installed.version}, pinned {constraints[name]}"
        for line in installed.requires or []:
            dependency = Requirement(line)
            if dependency.marker is None or dependency.marker.evaluate({"extra": ""}):
                todo.append(dependency)
    assert len(seen) > 100  # torch's CUDA wheels, transformers' and gradio's trees included


def test_makefile_installs_with_the_constraints_and_only_tests_get_test_tools():
    dry = {target: subprocess.run(["make", "-n", "-B", target, "VENV=/nonexistent-venv"], cwd=REPO, capture_output=True,
                                  text=True, check=True).stdout for target in ("demo", "test")}
    installs = [line for line in dry["test"].splitlines() if "pip install" in line and "-r requirements" in line]
    assert installs and all("-c constraints.txt" in line for line in installs), installs
    assert "requirements-test.txt" in dry["test"] and "requirements-test.txt" not in dry["demo"]
    stamp = next(line for line in (REPO / "Makefile").read_text().splitlines() if line.startswith("STAMP :="))
    assert "constraints.txt" in stamp  # a changed pin reinstalls
    assert re.search(r"^\$\(STAMP\):.*constraints\.txt", (REPO / "Makefile").read_text(), re.M)
