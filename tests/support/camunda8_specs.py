"""The Camunda 8 OpenAPI documents vendored in tests/fixtures/specs, ready to validate with.

Shared by the contract tests of process starts, messages and definition
searches. Two adaptations, each asserted so it is dropped when the spec
changes: 8.9 writes the ``ProcessDefinitionId`` pattern with
``\\p{L}``/``\\p{N}``, which Python's ``re`` cannot compile, so it is translated
to the nearest ``re`` form; everything else is read verbatim.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import yaml
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from tests.support.vendored import spec_path

SPEC_88 = "camunda8-8.8-orchestration-cluster-rest-api.yaml"
SPEC_89 = "camunda8-8.9-orchestration-cluster-rest-api.bundle.json"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
UNICODE_PATTERNS = {r"^[\p{L}_][\p{L}\p{N}_\-\.]*$": r"^[^\W\d][\w\-.]*$"}


def load(name: str) -> dict[str, Any]:
    path = spec_path(name)
    text = path.read_text(encoding="utf-8")
    spec: dict[str, Any] = json.loads(text) if name.endswith(".json") else yaml.load(text, _LOADER)
    return spec


def python_patterns(node: Any, translated: set[str]) -> Any:
    """The document with the patterns Python's ``re`` cannot compile translated."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "pattern" and isinstance(v, str) and v in UNICODE_PATTERNS:
                translated.add(v)
                out[k] = UNICODE_PATTERNS[v]
            else:
                out[k] = python_patterns(v, translated)
        return out
    if isinstance(node, list):
        return [python_patterns(v, translated) for v in node]
    return node


class Spec:
    """One OpenAPI document, registered so that fragments can keep their ``#/…`` refs."""

    def __init__(self, document: dict[str, Any], uri: str) -> None:
        self.document = document
        self.uri = uri
        resource = Resource.from_contents(document, default_specification=DRAFT4)
        self.registry: Registry[Any] = Registry().with_resource(uri, resource)

    def validator(self, schema: dict[str, Any]) -> OAS30Validator:
        return OAS30Validator(
            self.rebase(schema), registry=self.registry, format_checker=oas30_format_checker
        )

    def rebase(self, schema: Any) -> Any:
        if isinstance(schema, dict):
            return {
                k: (self.uri + v if k == "$ref" and v.startswith("#") else self.rebase(v))
                for k, v in schema.items()
            }
        if isinstance(schema, list):
            return [self.rebase(v) for v in schema]
        return schema

    def operation(self, path: str, method: str = "post") -> dict[str, Any]:
        assert path in self.document["paths"], f"{path} is not in the spec"
        op: dict[str, Any] = self.document["paths"][path][method]
        return op

    def request_schema(self, path: str) -> dict[str, Any]:
        schema: dict[str, Any] = self.operation(path)["requestBody"]["content"]["application/json"][
            "schema"
        ]
        return schema

    def schema(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.document["components"]["schemas"][name]
        return found

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            section, kind, name = node["$ref"].removeprefix("#/").split("/")
            node = self.document[section][kind][name]
        return node


@lru_cache(maxsize=1)
def spec88() -> Spec:
    return Spec(load(SPEC_88), "urn:startproc:camunda8-8.8")


@lru_cache(maxsize=1)
def spec89() -> Spec:
    translated: set[str] = set()
    document = python_patterns(load(SPEC_89), translated)
    assert translated == set(UNICODE_PATTERNS), "the 8.9 \\p{L} pattern changed: update the map"
    return Spec(document, "urn:startproc:camunda8-8.9")


def errors_of(validator: OAS30Validator, instance: Any) -> list[str]:
    out = []
    for error in validator.iter_errors(instance):
        out.append(f"{list(error.absolute_path)}: {error.message}")
        out.extend(f"  {list(sub.absolute_path)}: {sub.message}" for sub in error.context or ())
    return out


def validate(validator: OAS30Validator, instance: Any) -> None:
    problems = errors_of(validator, instance)
    assert not problems, "\n".join([json.dumps(instance), *problems])


