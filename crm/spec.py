"""Assemble the served OpenAPI document from the domain documents in ``specs/``.

Each domain document (``customers.yaml``, ``health.yaml``, ...) is a valid OpenAPI 3.1 document on
its own and refers to the shared ``common-errors.yaml`` by relative ``$ref``. The root document
``openapi.yaml`` refers to the domain documents' path items. Clients and the server want one
self-contained document, so :func:`bundle` turns it into one:

* a reference to a component of another document (``x.yaml#/components/schemas/Problem``) becomes
  a local reference (``#/components/schemas/Problem``) and the component is copied into the root
  document's ``components``; component names are therefore unique across all documents (checked);
* a reference to anything else (a path item) is replaced by the referenced content;
* local references inside a domain document are resolved against that document.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import yaml

SPEC_DIR = Path(__file__).resolve().parent.parent / "specs"
ROOT_SPEC = SPEC_DIR / "openapi.yaml"


class SpecBundleError(ValueError):
    """The domain documents cannot be assembled into one document."""


@cache
def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _pointer(doc: Any, fragment: str) -> Any:
    node = doc
    for part in [p for p in fragment.lstrip("/").split("/") if p]:
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


class _Bundler:
    def __init__(self, root_path: Path) -> None:
        self.root_path = root_path.resolve()
        self.components: dict[str, dict[str, Any]] = {}
        self.origins: dict[tuple[str, str], tuple[Path, str]] = {}

    def _split(self, ref: str, base: Path) -> tuple[Path, str]:
        file_part, _, fragment = ref.partition("#")
        path = (base.parent / file_part).resolve() if file_part else base
        return path, fragment

    def _hoist(self, path: Path, fragment: str) -> str:
        """Copy a component into the root document; return its local reference."""
        # Follow components that are themselves only a reference to another component.
        target = _pointer(_load(path), fragment)
        while isinstance(target, dict) and set(target) == {"$ref"}:
            path, fragment = self._split(target["$ref"], path)
            target = _pointer(_load(path), fragment)
        parts = fragment.lstrip("/").split("/")
        if len(parts) != 3 or parts[0] != "components":
            raise SpecBundleError(f"{path.name}#{fragment} is not a component")
        kind, name = parts[1], parts[2]
        origin = (path, fragment)
        known = self.origins.get((kind, name))
        if known is None:
            self.origins[(kind, name)] = origin
            self.components.setdefault(kind, {})[name] = None  # placeholder against cycles
            self.components[kind][name] = self._walk(copy.deepcopy(target), path)
        elif known != origin:
            raise SpecBundleError(
                f"component {kind}/{name} is defined in both {known[0].name} and {path.name}"
            )
        return f"#/components/{kind}/{name}"

    def _walk(self, node: Any, base: Path) -> Any:
        if isinstance(node, list):
            return [self._walk(item, base) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str):
            path, fragment = self._split(ref, base)
            if fragment.startswith("/components/"):
                if path == self.root_path:
                    return node
                return {**node, "$ref": self._hoist(path, fragment)}
            inlined = self._walk(copy.deepcopy(_pointer(_load(path), fragment)), path)
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            return {**inlined, **siblings}
        return {key: self._walk(value, base) for key, value in node.items()}

    def bundle(self) -> dict[str, Any]:
        root = copy.deepcopy(_load(self.root_path))
        own_components = root.pop("components", {}) or {}
        result = self._walk(root, self.root_path)
        for kind, entries in own_components.items():
            for name, value in entries.items():
                if isinstance(value, dict) and set(value) == {"$ref"}:
                    path, fragment = self._split(value["$ref"], self.root_path)
                    self._hoist(path, fragment)
                else:
                    self.origins[(kind, name)] = (self.root_path, f"/components/{kind}/{name}")
                    self.components.setdefault(kind, {})[name] = self._walk(value, self.root_path)
        result["components"] = {
            kind: dict(sorted(entries.items())) for kind, entries in sorted(self.components.items())
        }
        return result


def bundle(root_path: Path = ROOT_SPEC) -> dict[str, Any]:
    """Return the root document with every external reference resolved (see module docstring)."""
    return _Bundler(root_path).bundle()



_HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _methods(item: dict[str, Any]) -> list[str]:
    methods = [m.upper() for m in _HTTP_METHODS if m in item]
    if "GET" in methods and "HEAD" not in methods:
        methods.append("HEAD")
    return methods


def allowed_methods(spec: dict[str, Any]) -> Callable[[str], str | None]:
    """A lookup from a request path to the ``Allow`` header value of the document's path item
    that matches it (``None`` when none does). ``HEAD`` is allowed wherever ``GET`` is; concrete
    paths match before templated ones, as OpenAPI prescribes.

    The router answers 405 with the methods of the first operation whose path matched, not of
    the whole path item, so the 405 problem takes its ``Allow`` header from here.
    """
    index = []
    for template, item in sorted(spec.get("paths", {}).items(), key=lambda entry: "{" in entry[0]):
        pattern = re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$")
        index.append((pattern, ", ".join(_methods(item))))

    def lookup(path: str) -> str | None:
        return next((methods for pattern, methods in index if pattern.match(path)), None)

    return lookup


def concrete_paths(spec: dict[str, Any]) -> dict[str, frozenset[str]]:
    """The document's paths without templated segments, with their methods (``HEAD`` as above)."""
    return {
        template: frozenset(_methods(item))
        for template, item in spec.get("paths", {}).items()
        if "{" not in template
    }
