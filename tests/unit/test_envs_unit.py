"""Requirement sets and reading a service from its source (no server, no environment built)."""

from __future__ import annotations

import sys
import textwrap
import types
from pathlib import Path

import pytest

from podium.bundle import describe, make_bundle
from podium.envs.requirements import Requirements, read_requirement_files
from podium.errors import BundleError, ServiceDefinitionError
from podium.sdk.discovery import find_service
from podium.source import read_service, route_shape

SERVICE = """
import podium

LIMIT = 3

@podium.service(name="shapes", max_workers=LIMIT, requirements=["numpy==2.1"], python="3.11", retry_on=(ValueError,))
def init():
    return {"scale": 2}

@init.endpoint("/double", default=True)
def double(x: int, scale=1, *, note="n", **extra):
    return x * scale

@init.endpoint("/count-up")
def count(n: int):
    yield from range(n)

@init.endpoint("/later")
async def later(a, b=None):
    return a
"""


def _imported(source: str) -> object:
    module = types.ModuleType("svc_under_test")
    exec(compile(source, "svc_under_test.py", "exec"), module.__dict__)
    return find_service(vars(module))


@pytest.mark.parametrize(
    "source",
    [
        SERVICE,
        "import podium\n\n@podium.handler(max_workers=2)\ndef handle(job):\n    return job['input']\n",
        "def handler(job):\n    yield job['input']\n",
        "from podium import service\n\n@service\ndef my_init():\n    pass\n\n@my_init.endpoint('/a')\ndef a(x, y=[1, 2]):\n    return x\n",
        "from flask import Flask\n\napp = Flask(__name__)\n",
        "import fastapi\n\napi = fastapi.FastAPI()\n",
        "async def app(scope, receive, send):\n    pass\n",
    ],
)
def test_a_service_read_from_source_has_the_shape_of_the_imported_one(source):
    found = read_service(source, module="svc_under_test")
    svc = _imported(source)
    assert found.name == svc.name  # type: ignore[attr-defined]
    assert route_shape(found.routes) == route_shape(svc.route_table())  # type: ignore[attr-defined]


def test_settings_and_requirements_are_read_from_the_decorator():
    found = read_service(SERVICE)
    assert found.config["max_workers"] == 3  # a module constant
    assert found.config["retry_on"] == ["builtins.ValueError"]
    assert found.requirements == Requirements(("numpy==2.1",), "3.11")
    assert [r["path"] for r in found.routes if r["default"]] == ["/double"]


def test_a_setting_that_is_not_a_literal_is_a_clear_error():
    src = "import podium, os\n@podium.service(max_workers=int(os.environ['N']), requirements=['x'])\ndef i():\n    pass\n@i.endpoint('/a')\ndef a():\n    pass\n"
    with pytest.raises(ServiceDefinitionError, match="max_workers = int.* must be a literal value"):
        read_service(src)


def test_deploy_reads_a_service_whose_dependency_is_missing_here(tmp_path: Path):
    (tmp_path / "app.py").write_text(
        textwrap.dedent("""
        import not_installed_anywhere_podium
        import podium

        @podium.service(name="needs")
        def init():
            return {}

        @init.endpoint("/v")
        def v():
            return not_installed_anywhere_podium.VERSION
    """)
    )
    (tmp_path / "requirements.txt").write_text("# pinned\nnot-installed-anywhere-podium==1.0  # the one\n\n")
    version = describe(make_bundle(tmp_path))
    assert version["service"] == "needs"
    assert version["requirements"] == {"packages": ["not-installed-anywhere-podium==1.0"], "python": None}
    assert [r["path"] for r in version["routes"]] == ["/v"]


def test_without_requirements_deploy_still_imports(tmp_path: Path):
    (tmp_path / "app.py").write_text("import not_installed_anywhere_podium\n")
    with pytest.raises(BundleError, match="No module named 'not_installed_anywhere_podium'"):
        describe(make_bundle(tmp_path))


def test_pyproject_dependencies_and_decorator_requirements_merge(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["a==1", "b>=2"]\n')
    assert read_requirement_files(tmp_path, ["pyproject.toml"]) == Requirements(("a==1", "b>=2"))
    (tmp_path / "app.py").write_text(SERVICE)
    version = describe(make_bundle(tmp_path))
    assert version["requirements"] == {"packages": ["a==1", "b>=2", "numpy==2.1"], "python": "3.11"}


@pytest.mark.parametrize(
    ("packages", "python", "message"),
    [
        (("podium==1.0",), None, "do not list podium"),
        (("Podium[dev]>=0",), None, "do not list podium"),
        (("a\nb",), None, "one non-empty line"),
        ((), "3.10", "too old"),
        ((), "three", "version like"),
    ],
)
def test_bad_requirement_sets_are_refused(packages, python, message):
    with pytest.raises(ValueError, match=message):
        Requirements(packages, python)


@pytest.mark.parametrize(
    "line",
    [
        "-r /srv/podium/.env",
        "--requirement=/etc/passwd",
        "-c /etc/passwd",
        "--index-url https://evil.example/simple",
        "-i https://evil.example/simple",
        "--extra-index-url https://evil.example/simple",
        "--find-links /tmp/wheels",
        "-f /tmp",
        "-e /srv/dir",
        "--editable=git+https://evil.example/x.git",
        "./local/dir",
        "/abs/pkg.whl",
        "https://evil.example/pkg-1.0.whl",
        "pkg @ https://evil.example/pkg-1.0.whl",
        "pkg @ file:///srv/pkg",
        "pkg==1.0 --hash=sha256:00",
        "pkg===${PODIUM_ADMIN_KEY}",
        "pkg; python_version >= '${HOME}'",
    ],
)
def test_only_pep508_requirements_of_the_index_are_accepted(line):
    """Issue 22, finding 6: option lines and URLs reached uv verbatim (`-r /path/.env` put a
    server file's first line into the build error). Each is refused, the line named."""
    with pytest.raises(ValueError) as caught:
        Requirements((line,)).checked()
    assert repr(line) in str(caught.value)


@pytest.mark.parametrize(
    "line",
    [
        "numpy",
        "numpy>=1.2,<2",
        "requests[socks]==2.31; python_version >= '3.8'",
        "Foo_Bar.baz~=1.0",
        "torch==2.1.0+cpu",
        "pkg ; sys_platform == 'linux'",
    ],
)
def test_pep508_requirements_are_accepted(line):
    assert Requirements((line,)).checked().packages == (line,)


def test_a_requirements_file_with_an_option_line_is_refused_naming_it(tmp_path: Path):
    (tmp_path / "requirements.txt").write_text("numpy==2.1\n-r /srv/podium/.env\n")
    with pytest.raises(ValueError, match="'-r /srv/podium/.env' is not a PEP 508 requirement"):
        read_requirement_files(tmp_path, ["requirements.txt"])


def test_the_hash_ignores_order_and_spacing_but_not_the_python():
    a = Requirements(("b==2", "a==1"))
    assert a.env_hash() == Requirements(("a==1", "b==2 ")).env_hash()
    own = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert a.env_hash() == Requirements(("a==1", "b==2"), own).env_hash()  # the server's own Python
    assert a.env_hash() != Requirements(("a==1", "b==2"), "3.12").env_hash()
    assert a.env_hash() != Requirements(("a==1",)).env_hash()


TYPED = """
import typing

import podium
from mylib import Point


@podium.service(name="typed-reqs", requirements=["numpy"])
def init():
    return {"model": object()}


@init.endpoint("/predict")
def predict(model, xs: list[float], mode: typing.Literal["a", "b"] = "a", tags: "dict[str, int] | None" = None,
            at: Point | None = None) -> list[float]:
    return xs
"""


def test_a_service_with_requirements_keeps_its_annotations_and_what_its_initializer_provides(tmp_path):
    """Read from source (its `mylib` is not installed here), the route table has the schemas an
    import gives for builtin and typing annotations, none for a class it cannot see, and marks
    the initializer's `model`."""
    from podium.sdk.service import json_schema

    (tmp_path / "app.py").write_text(TYPED)
    version = describe(make_bundle(tmp_path, None))
    route = version["routes"][0]
    params = {p["name"]: p for p in route["params"]}
    assert params["model"]["source"] == "initializer" and "schema" not in params["model"]
    assert params["xs"]["schema"] == json_schema(list[float]) == {"type": "array", "items": {"type": "number"}}
    assert params["mode"]["schema"] == {"enum": ["a", "b"], "type": "string"}
    assert params["tags"]["schema"] == json_schema(dict[str, int] | None)
    assert "schema" not in params["at"]
    assert route["returns"] == json_schema(list[float])
