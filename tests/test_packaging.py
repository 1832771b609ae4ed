"""The built package works on its own: `python -m build` makes an sdist and a wheel that hold the templates,
the starter files and `py.typed`, and the wheel installed in a fresh virtual environment, far from this
checkout, runs a whole issue: `--version`, `init`, `check`, `render` and a `send` to the outbox.

No network at test time: the build runs without isolation (setuptools and build come with the test extras),
the wheel is installed with `--no-deps --no-index`, and the fresh environment borrows its dependencies from
the environment running the tests through a `.pth` line. That line adds their folder as a plain path, so the
editable install's finder in it is never run: `newsletter` and its templates can only come from the wheel,
which the test checks before running anything.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from conftest import ROOT

SOURCES = ["pyproject.toml", "README.md", "newsletter", "templates"]
"""What the build reads; copied, so the build's own droppings (build/, *.egg-info) never land in the checkout."""
SHIPPED = [
    "templates/email.mjml.j2",
    "templates/email.txt.j2",
    "templates/archive-index.html.j2",
    "templates/preview.html.j2",
    "templates/preview-errors.html.j2",
    "starter/newsletter.toml.j2",
    "starter/draft.yaml.j2",
    "py.typed",
]


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, (
        f"{' '.join(map(str, args))} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m build` (sdist, then the wheel from the sdist) on a copy of the sources."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, source, cwd=source)
    return out


def test_the_sdist_and_the_wheel_hold_the_templates_and_py_typed(dist: Path) -> None:
    (wheel,) = dist.glob("newsletter-*.whl")
    (sdist,) = dist.glob("newsletter-*.tar.gz")
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    with tarfile.open(sdist) as archive:
        in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for name in SHIPPED:
        assert f"newsletter/{name}" in in_wheel, f"{name} is not in the wheel"
        assert (name if name.startswith("templates/") else f"newsletter/{name}") in in_sdist, (
            f"{name} is not in the sdist"
        )


def test_the_wheel_installed_outside_the_checkout_runs_an_issue(dist: Path, tmp_path: Path) -> None:
    (wheel,) = dist.glob("newsletter-*.whl")
    version = wheel.name.split("-")[1]
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--quiet",
        "--no-deps",
        "--no-index",
        wheel,
        cwd=tmp_path,
    )
    site = Path(
        run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path).stdout.strip()
    )
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "_dependencies_from_the_test_environment.pth").write_text("".join(f"{p}\n" for p in ours))

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}/usr/bin:/bin"
    work = tmp_path / "work"
    work.mkdir()

    where = run(
        python,
        "-c",
        "import json, sys, newsletter, newsletter.templates as t, importlib.metadata as m; "
        "print(json.dumps([newsletter.__file__, list(t.__path__)[0], "
        "str(m.distribution('newsletter').locate_file('')), sys.path]))",
        cwd=work,
        env=env,
    )
    module, templates, metadata, path = json.loads(where.stdout)
    for found in (module, templates, metadata):
        assert Path(found).is_relative_to(venv), f"{found} is not from the installed wheel"
    assert not any(Path(entry or work).resolve() in (ROOT, ROOT / "newsletter") for entry in path)

    assert run("newsletter", "--version", cwd=work, env=env).stdout.strip() == f"newsletter {version}"
    run(
        "newsletter",
        "init",
        "northshire",
        "--title",
        "Northshire Bulletin",
        "--network",
        "Northshire Partnership",
        cwd=work,
        env=env,
    )
    deployment = work / "northshire"
    (draft,) = (deployment / "drafts").glob("*.yaml")
    relative = f"drafts/{draft.name}"
    assert "error" not in run("newsletter", "check", relative, cwd=deployment, env=env).stdout

    run("newsletter", "render", relative, "--out", "out", cwd=deployment, env=env)
    html = (deployment / "out" / "email.html").read_text(encoding="utf-8")
    text = (deployment / "out" / "email.txt").read_text(encoding="utf-8")
    assert "Northshire Bulletin" in html and "Northshire Bulletin" in text and "<h1" in html

    draft.write_text(draft.read_text(encoding="utf-8").replace("status: draft", "status: approved"), encoding="utf-8")
    run("newsletter", "send", relative, cwd=deployment, env=env)
    sent = sorted((deployment / "outbox" / "new").iterdir())
    assert sent, "nothing reached the outbox"
    message = email.message_from_bytes(sent[0].read_bytes(), policy=email.policy.default)
    assert "Northshire Bulletin" in str(message["Subject"])
    assert {part.get_content_type() for part in message.walk()} >= {"text/plain", "text/html"}


def test_the_floors_ci_installs_are_the_lower_bounds_in_pyproject() -> None:
    """`make floors` (CI) runs the tests on .ci/floors.txt: it must pin every runtime dependency at the lowest
    version pyproject.toml allows, or a floor could be raised in one place and go untested."""
    bounds = {}
    for line in tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]:
        requirement = Requirement(line)
        (floor,) = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        bounds[canonicalize_name(requirement.name)] = Version(floor)
    pinned = {}
    for line in (ROOT / ".ci" / "floors.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pinned[canonicalize_name(name)] = Version(version)
    assert pinned == bounds
