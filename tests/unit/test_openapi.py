"""The API reference (docs/api.md, docs/openapi.yaml) against itself and the code: the OpenAPI
document is valid OpenAPI 3.1, it describes exactly the routes the gateway serves, and every
"docs/api.md §N" that the code cites names a section that exists.

The live gateway is checked against the document by tests/fuzz/test_fuzz_openapi.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate

from gateway import errors
from gateway.http import routes
from gateway.http.parser import HttpVersionNotSupported

ROOT = Path(__file__).resolve().parents[2]
SPEC_PATH = ROOT / "docs" / "openapi.yaml"
API_MD = ROOT / "docs" / "api.md"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# A value for each path parameter of the document, to turn a template into a request path.
SAMPLE_PARAMETERS = {
    "cluster_id": "c1",
    "topic": "t1",
    "topic_name": "t1",
    "partition": "0",
    "partition_id": "0",
    "broker_id": "1",
    "group": "g1",
    "instance": "i1",
}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return yaml.safe_load(SPEC_PATH.read_text())


def operations(spec: dict[str, Any]) -> dict[str, set[str]]:
    """Path template -> its methods (upper case), path item references resolved."""
    out: dict[str, set[str]] = {}
    for template, item in spec["paths"].items():
        if "$ref" in item:
            item = spec["components"]["pathItems"][item["$ref"].rsplit("/", 1)[1]]
        out[template] = {m.upper() for m in METHODS if m in item}
    return out


def request_path(template: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLE_PARAMETERS[m.group(1)], template)


def test_the_document_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    assert spec["openapi"] == "3.1.0"
    validate(spec)  # raises on any violation of the OpenAPI 3.1 schema and its rules


def test_every_documented_operation_is_served_with_exactly_its_methods(spec: dict[str, Any]) -> None:
    wrong = {}
    for template, methods in operations(spec).items():
        found = routes.match(request_path(template))
        served = set(found[0]) if found is not None else set()
        if served != methods:
            wrong[template] = (sorted(methods), sorted(served))
    assert not wrong, f"documented methods vs served methods: {wrong}"


def test_every_endpoint_the_gateway_serves_is_documented(spec: dict[str, Any]) -> None:
    endpoints = {
        value
        for name, value in vars(routes).items()
        if name.isupper() and not name.startswith("_") and isinstance(value, str)
    } - {routes.NOT_FOUND}
    reached = set()
    for template, methods in operations(spec).items():
        found = routes.match(request_path(template))
        if found is not None:  # (a documented path that is not served fails the test above)
            reached.update(found[0][m] for m in methods if m in found[0])
    assert endpoints - reached == set()
    documented = set(operations(spec))
    assert set(routes._STATIC) <= documented


def test_every_v3_path_is_documented_under_both_mounts(spec: dict[str, Any]) -> None:
    paths = set(operations(spec))
    v3 = {p for p in paths if p.startswith("/v3/")}
    assert v3
    assert {"/kafka" + p for p in v3} == {p for p in paths if p.startswith("/kafka/")}


def test_every_error_body_is_the_documented_error_shape(spec: dict[str, Any]) -> None:
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["error_code", "message"]
    assert error["additionalProperties"] is False
    assert set(error["properties"]) == {"error_code", "message"}


def _sections() -> set[str]:
    return set(re.findall(r"^## (\d+)\. ", API_MD.read_text(), flags=re.M))


def test_every_cited_section_of_api_md_exists() -> None:
    sections = _sections()
    assert {str(n) for n in range(1, 12)} <= sections
    cited: dict[str, set[str]] = {}
    for folder in ("gateway", "ext", "tests", "bench", "docs"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix not in {".py", ".pyx", ".pxi", ".pxd", ".pyi", ".yaml", ".md"}:
                continue
            text = path.read_text(errors="replace")
            for group in re.findall(r"(?:docs/api\.md|api\.md)((?:,? ?§\d+(?: and §\d+)?)+)", text):
                for n in re.findall(r"§(\d+)", group):
                    cited.setdefault(n, set()).add(str(path.relative_to(ROOT)))
    for doc in ("docs/api.md", "docs/openapi.yaml"):  # their references to each other's sections
        for n in re.findall(r"§(\d+)", (ROOT / doc).read_text()):
            cited.setdefault(n, set()).add(doc)
    assert cited, "no citation found: the pattern above no longer matches the code's comments"
    missing = {n: sorted(where) for n, where in cited.items() if n not in sections}
    assert not missing, f"sections cited but not in docs/api.md: {missing}"


def test_every_error_code_is_in_the_table_of_api_md() -> None:
    text = API_MD.read_text()
    table = text[text.index("## 10. ") : text.index("## 11. ")]
    listed = {int(code) for code in re.findall(r"^\| (?:\d{3}|–) \| (\d+) \|", table, flags=re.M)}
    codes = set()
    for cls in (*vars(errors).values(), HttpVersionNotSupported):
        if isinstance(cls, type) and issubclass(cls, errors.GatewayError):
            codes.add(cls.error_code)
    # (GatewayBug's 500 included: a fault of ours is answered 500/500, §9.)
    codes |= {400, 408, 413, 429, 431, 40101, 40301, 40401, 40402, 50002, 50003}  # v3 reports (§1)
    codes |= {41601, 42206, 42208, 42902, 50001, 50301}
    assert codes - listed == set()
