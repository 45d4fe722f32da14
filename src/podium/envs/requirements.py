"""A version's requirement set: what its environment installs, and the hash that names it.

The deploying machine reads it (requirements.txt, pyproject.toml's [project].dependencies, the
service's `requirements=`); the server checks it and names the environment after it.

A line is a PEP 508 requirement naming a project on the index (name, extras, versions, markers),
nothing else: the lines reach the installer as a requirements file, where an option line (`-r
/server/file`, `-e /dir`, `--index-url`, `--find-links`) or a URL (`pkg @ https://...`, `file:`)
would read the server's files or fetch from where the deployer says. Where packages come from is
the operator's to configure (PIP_INDEX_URL and friends, envs/builder.py).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podium import _json

#: What Podium's worker runtime imports besides the standard library (bounds: Podium's own).
RUNTIME_PACKAGES = ("orjson", "pydantic")
#: The oldest Python the worker runtime runs on.
MIN_PYTHON = (3, 11)
PYTHON = re.compile(r"^3\.\d{1,2}(\.\d{1,2})?$")
#: A requirement line's project name (what is no requirement may still match: check_line decides).
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
MAX_LINES = 500
MAX_LINE = 1000


def project_name(line: str) -> str | None:
    """The normalised project a requirement line names (PEP 503), None for an option line."""
    m = _NAME.match(line)
    return re.sub(r"[-_.]+", "-", m.group(1)).lower() if m else None


def check_line(line: str) -> str:
    """A requirement line as the installer may read it; ValueError naming it otherwise."""
    # Imported here: the SDK makes Requirements in workers, whose environments lack packaging.
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        req = Requirement(line)
    except InvalidRequirement:
        raise ValueError(
            f"requirement {line!r} is not a PEP 508 requirement (a project name, with optional extras, "
            "versions and markers); options such as -r, -e, --index-url and --find-links are not "
            "accepted: the server's operator configures where packages come from"
        ) from None
    if req.url is not None:
        raise ValueError(
            f"requirement {line!r} names a URL or a file: name a project on the package index "
            "instead (the server's operator configures where packages come from)"
        )
    if "$" in line:  # requirements files expand ${VARIABLES} from the installer's environment
        raise ValueError(f"requirement {line!r} may not contain '$'")
    return line


@dataclass(frozen=True)
class Requirements:
    """What one environment installs: requirement lines (as pip/uv read them) and the Python
    version, None meaning the server's own."""

    packages: tuple[str, ...]
    python: str | None = None

    def __post_init__(self) -> None:
        if len(self.packages) > MAX_LINES:
            raise ValueError(f"at most {MAX_LINES} requirement lines")
        for line in self.packages:
            if not isinstance(line, str) or not line.strip() or "\n" in line or len(line) > MAX_LINE:
                raise ValueError(f"requirement {line!r} must be one non-empty line of at most {MAX_LINE} characters")
            if project_name(line) == "podium":
                raise ValueError("do not list podium in the requirements: every environment has the server's own")
        if self.python is not None:
            if not isinstance(self.python, str) or not PYTHON.match(self.python):
                raise ValueError(f'python must be a version like "3.11", not {self.python!r}')
            if tuple(int(p) for p in self.python.split(".")[:2]) < MIN_PYTHON:
                raise ValueError(
                    f"python {self.python} is too old: Podium's worker runtime needs "
                    f"{'.'.join(map(str, MIN_PYTHON))} or newer"
                )

    def checked(self) -> Requirements:
        """This set, once every line is a PEP 508 requirement of the index (check_line): what is
        deployed or built is checked; the SDK's own record of a decorator's list is not."""
        for line in self.packages:
            check_line(line)
        return self

    def as_dict(self) -> dict[str, Any]:
        return {"packages": list(self.packages), "python": self.python}

    @classmethod
    def from_dict(cls, data: Any) -> Requirements:
        """The set a version records; ValueError says what is wrong with it."""
        if not isinstance(data, dict) or not isinstance(data.get("packages"), list):
            # A malformed request body: ValueError, like every other check here (answered 400).
            raise ValueError('requirements must be an object {"packages": [...], "python": "3.11" or null}')  # noqa: TRY004
        return cls(tuple(data["packages"]), data.get("python")).checked()

    def merged(self, other: Requirements) -> Requirements:
        """Both sets' lines (each once, in order); a Python version given by both must agree."""
        if self.python and other.python and self.python != other.python:
            raise ValueError(f"two Python versions asked for: {self.python} and {other.python}")
        lines = dict.fromkeys(self.packages + other.packages)
        return Requirements(tuple(lines), self.python or other.python)

    def resolved_python(self) -> str:
        """The Python version the environment gets (the server's own when none is asked for)."""
        return self.python or f"{sys.version_info.major}.{sys.version_info.minor}"

    def env_hash(self) -> str:
        """The environment's name: the same lines (in any order), Python and runtime needs give
        the same hash, so versions and endpoints share one environment."""
        key = {
            "packages": sorted({" ".join(p.split()) for p in self.packages}),
            "python": self.resolved_python(),
            "runtime": runtime_requirements(),
        }
        return hashlib.sha256(_json.dumpb(key)).hexdigest()[:24]


def runtime_requirements() -> list[str]:
    """The worker runtime's needs, with the bounds Podium itself declares (pyproject.toml)."""
    try:
        declared = importlib.metadata.requires("podium") or []
    except importlib.metadata.PackageNotFoundError:
        declared = []
    found = {project_name(r): r for r in declared if "extra ==" not in r}
    return [found.get(name) or name for name in RUNTIME_PACKAGES]


def read_requirement_files(root: Path, files: list[str]) -> Requirements | None:
    """The requirements a deployed directory declares: requirements.txt, else pyproject.toml's
    [project].dependencies; None when it declares none."""
    if "requirements.txt" in files:
        text = (root / "requirements.txt").read_text(encoding="utf-8")
        lines = [line.split(" #")[0].strip() for line in text.splitlines()]
        return Requirements(tuple(line for line in lines if line and not line.startswith("#"))).checked()
    if "pyproject.toml" in files:
        try:
            data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"pyproject.toml: {exc}") from None
        deps = data.get("project", {}).get("dependencies")
        if deps:
            if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
                raise ValueError("pyproject.toml: [project].dependencies must be a list of strings")
            return Requirements(tuple(deps)).checked()
    return None
