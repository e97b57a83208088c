"""The compatibility gate: today's message schemas (docs/schemas/<topic>/) against the last released
ones (docs/schemas/released/<topic>/). Standard library only; no broker, no store, no service.

    python deploy/contracts/gate.py [--root ROOT]       judge; exit 1 on a breaking change
    python deploy/contracts/gate.py --release           make today's schemas the released baseline

A breaking change fails unless its topic's version is bumped (a new topic name, e.g.
contacts.events.v2: the old topic's baseline is then retired and the new one has none yet). What
breaks depends on who reads the message (``x-direction`` in each schema file):

``in``  (other teams send it, the service reads it) breaks its producers when
        a field is removed, a field is retyped (a type it accepted is refused), a required field is
        added (or an optional one becomes required), an enum value is removed, unknown fields
        become refused, a constraint is tightened (maxLength, maximum, minItems, pattern, ...),
        or a message type is removed.
``out`` (the service sends it, other teams read it) breaks its consumers when
        a field is removed, a field is retyped (it may now carry a type it never did, null
        included), a field that was always present becomes optional, an enum value is removed,
        or a message type is removed. Added fields (required or not), enum values and message
        types are compatible: consumers must ignore unknown fields and tolerate unknown enum
        values and types (docs/contracts.md); the gate lists them as notes.

Rules and procedure: docs/contracts.md.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RELEASED = "released"
VERSIONED = re.compile(r"^(?P<name>.+)\.v(?P<version>[0-9]+)$")
CONSTRAINTS_TIGHTER_WHEN_LOWER = ("maxLength", "maxItems", "maximum", "exclusiveMaximum", "maxProperties")
CONSTRAINTS_TIGHTER_WHEN_HIGHER = ("minLength", "minItems", "minimum", "exclusiveMinimum", "minProperties")


@dataclass
class Report:
    breaking: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    topics: int = 0
    messages: int = 0

    @property
    def ok(self) -> bool:
        return not self.breaking


def load(root: Path) -> dict[str, dict[str, Any]]:
    """topic -> file name -> schema, for the topic directories directly under ``root``."""
    topics: dict[str, dict[str, Any]] = {}
    if not root.is_dir():
        return topics
    for directory in sorted(p for p in root.iterdir() if p.is_dir() and p.name != RELEASED):
        files = {f.name: json.loads(f.read_text()) for f in sorted(directory.glob("*.json"))}
        if files:
            topics[directory.name] = files
    return topics


def version(topic: str) -> tuple[str, int]:
    """``contacts.events.v2`` -> (``contacts.events``, 2); an unversioned name is version 0."""
    match = VERSIONED.match(topic)
    return (match["name"], int(match["version"])) if match else (topic, 0)


def compare(baseline: dict[str, dict[str, Any]], current: dict[str, dict[str, Any]]) -> Report:
    report = Report()
    for topic, released in sorted(baseline.items()):
        if topic not in current:
            name, number = version(topic)
            successors = sorted(t for t in current if version(t)[0] == name and version(t)[1] > number)
            if successors:
                report.notes.append(f"{topic}: retired, superseded by {', '.join(successors)}")
            else:
                report.breaking.append(f"{topic}: topic removed (no {name}.vN with N > {number} replaces it)")
            continue
        report.topics += 1
        now = current[topic]
        for file, old in sorted(released.items()):
            message = old.get("x-message", file.removesuffix(".json"))
            new = now.get(file)
            if new is None:
                report.breaking.append(f"{topic} {message}: message removed")
                continue
            report.messages += 1
            direction = old.get("x-direction", "in")
            _Diff(topic, message, direction, old, new, report).compare(old, new, "")
        for file in sorted(set(now) - set(released)):
            report.notes.append(f"{topic} {now[file].get('x-message', file)}: new message")
    for topic in sorted(set(current) - set(baseline)):
        report.notes.append(f"{topic}: new topic, no released baseline yet")
    return report


class _Diff:
    def __init__(
        self, topic: str, message: str, direction: str, old_root: Any, new_root: Any, report: Report
    ) -> None:
        self.where = f"{topic} {message}"
        self.direction = direction
        self.old_root, self.new_root = old_root, new_root
        self.report = report
        self.seen: set[tuple[int, int, str]] = set()

    # --- reporting ---

    def _breaks(self, path: str, what: str) -> None:
        self.report.breaking.append(f"{self.where}: {_field(path)} {what} ({self.direction})")

    def _note(self, path: str, what: str) -> None:
        self.report.notes.append(f"{self.where}: {_field(path)} {what} ({self.direction})")

    # --- the walk ---

    def compare(self, old: Any, new: Any, path: str) -> None:
        old, new = _resolve(old, self.old_root), _resolve(new, self.new_root)
        key = (id(old), id(new), path)
        if key in self.seen or len(path) > 2000:
            return
        self.seen.add(key)
        old_branches, new_branches = _branches(old, self.old_root), _branches(new, self.new_root)
        self._types(old_branches, new_branches, path)
        self._enums(old_branches, new_branches, path)
        self._constraints(old_branches, new_branches, path)
        old_objects = [b for b in old_branches if _is_object(b)]
        new_objects = [b for b in new_branches if _is_object(b)]
        for old_object, new_object in _pairs(old_objects, new_objects):
            self._object(old_object, new_object, path)
        old_arrays = [b for b in old_branches if "items" in b]
        new_arrays = [b for b in new_branches if "items" in b]
        if old_arrays and new_arrays:
            self.compare(old_arrays[0]["items"], new_arrays[0]["items"], f"{path}[]")

    def _types(self, old: list[Any], new: list[Any], path: str) -> None:
        old_types, new_types = _types(old), _types(new)
        if old_types is None or new_types is None:
            if old_types is not None and self.direction == "in":
                return  # accepts anything now: looser
            if new_types is not None and self.direction == "out":
                return  # emits fewer kinds of value now: narrower
            if old_types != new_types:
                self._breaks(path, f"retyped: {_show(old_types)} -> {_show(new_types)}")
            return
        if self.direction == "in" and old_types - new_types:
            self._breaks(
                path, f"retyped: {_show(old_types)} -> {_show(new_types)} (refuses what it accepted)"
            )
        if self.direction == "out" and new_types - old_types:
            self._breaks(
                path, f"retyped: {_show(old_types)} -> {_show(new_types)} (may carry what it never did)"
            )

    def _enums(self, old: list[Any], new: list[Any], path: str) -> None:
        old_values, new_values = _values(old), _values(new)
        if new_values is None:
            return
        if old_values is None:
            if self.direction == "in":
                self._breaks(path, f"restricted to {_show(new_values)}")
            return
        removed, added = old_values - new_values, new_values - old_values
        if removed:
            self._breaks(path, f"enum value(s) removed: {_show(removed)}")
        if added and self.direction == "out":
            self._note(path, f"enum value(s) added: {_show(added)} (consumers must tolerate unknown values)")

    def _constraints(self, old: list[Any], new: list[Any], path: str) -> None:
        if self.direction != "in" or len(old) != 1 or len(new) != 1:
            return
        o, n = old[0], new[0]
        for name in CONSTRAINTS_TIGHTER_WHEN_LOWER:
            if name in n and (name not in o or n[name] < o[name]):
                self._breaks(path, f"{name} tightened: {o.get(name, 'none')} -> {n[name]}")
        for name in CONSTRAINTS_TIGHTER_WHEN_HIGHER:
            if name in n and (name not in o or n[name] > o[name]):
                self._breaks(path, f"{name} tightened: {o.get(name, 'none')} -> {n[name]}")
        for name in ("pattern", "format"):
            if name in n and n.get(name) != o.get(name):
                self._breaks(path, f"{name} changed: {o.get(name, 'none')!r} -> {n[name]!r}")

    def _object(self, old: Any, new: Any, path: str) -> None:
        old_props, new_props = old.get("properties", {}), new.get("properties", {})
        old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
        for name in sorted(old_props):
            sub = f"{path}.{name}" if path else name
            if name not in new_props:
                self._breaks(sub, "removed")
            else:
                self.compare(old_props[name], new_props[name], sub)
        for name in sorted(set(new_props) - set(old_props)):
            sub = f"{path}.{name}" if path else name
            if self.direction == "out":
                self._note(sub, "added" + (" (required)" if name in new_required else ""))
            elif name not in new_required:
                self._note(sub, "added (optional)")
        if self.direction == "in":
            for name in sorted(new_required - old_required):
                sub = f"{path}.{name}" if path else name
                self._breaks(sub, "required field added" if name not in old_props else "became required")
            if old.get("additionalProperties") is not False and new.get("additionalProperties") is False:
                self._breaks(path, "now refuses unknown fields")
        else:
            for name in sorted((old_required - new_required) & set(new_props)):
                self._breaks(f"{path}.{name}" if path else name, "no longer always present (was required)")


def _field(path: str) -> str:
    return f"field `{path}`" if path else "message"


def _resolve(schema: Any, root: Any) -> Any:
    for _ in range(64):
        if not isinstance(schema, dict) or "$ref" not in schema:
            return schema
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        if len(schema) > 1:  # siblings of $ref (2020-12): the reference's keywords, then theirs
            target = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        schema = target
    return schema


def _branches(schema: Any, root: Any) -> list[Any]:
    """The alternatives a schema admits (anyOf/oneOf flattened), each resolved."""
    if not isinstance(schema, dict):
        return [schema]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            found: list[Any] = []
            for branch in schema[key]:
                found.extend(_branches(_resolve(branch, root), root))
            return found
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return _branches(_resolve(schema["allOf"][0], root), root)
    return [schema]


_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}


def _types(branches: list[Any]) -> set[str] | None:
    """The JSON types the branches admit; None when one of them admits anything."""
    found: set[str] = set()
    for branch in branches:
        if not isinstance(branch, dict):
            return None
        if "type" in branch:
            declared = branch["type"]
            found.update([declared] if isinstance(declared, str) else declared)
        elif "const" in branch or "enum" in branch:
            values = [branch["const"]] if "const" in branch else branch["enum"]
            found.update(_JSON_TYPES.get(type(v), "object") for v in values)
        elif "properties" in branch:
            found.add("object")
        else:
            return None
    if "number" in found:
        found.add("integer")
    return found


def _values(branches: list[Any]) -> set[Any] | None:
    """The enumerated values the branches admit; None when one branch is not an enumeration
    (``null`` branches aside: nullability is a type question)."""
    values: set[Any] = set()
    enumerated = False
    for branch in branches:
        if isinstance(branch, dict) and branch.get("type") == "null" and len(branch) == 1:
            continue
        if not isinstance(branch, dict) or not ("const" in branch or "enum" in branch):
            return None
        enumerated = True
        for v in [branch["const"]] if "const" in branch else branch["enum"]:
            values.add(json.dumps(v, sort_keys=True))
    return values if enumerated else None


def _is_object(schema: Any) -> bool:
    return isinstance(schema, dict) and ("properties" in schema or schema.get("type") == "object")


def _pairs(old: list[Any], new: list[Any]) -> list[tuple[Any, Any]]:
    """Object alternatives matched by title (the model's name), else by position."""
    if len(old) == 1 and len(new) == 1:
        return [(old[0], new[0])]
    by_title = {b.get("title"): b for b in new}
    return [(b, by_title[b.get("title")]) for b in old if b.get("title") in by_title]


def _show(values: set[str] | None) -> str:
    if values is None:
        return "any"
    return "|".join(sorted(values))


def release(root: Path) -> int:
    """Replaces the released baseline with today's schemas; the number of files copied."""
    schemas = root / "docs" / "schemas"
    released = schemas / RELEASED
    if released.exists():
        shutil.rmtree(released)
    released.mkdir(parents=True)
    count = 0
    for topic, files in load(schemas).items():
        (released / topic).mkdir()
        for name in files:
            shutil.copyfile(schemas / topic / name, released / topic / name)
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2])
    parser.add_argument("--release", action="store_true", help="make today's schemas the baseline")
    args = parser.parse_args(argv)
    schemas = args.root / "docs" / "schemas"
    if args.release:
        print(f"[gate] released baseline: {release(args.root)} schemas copied to {schemas / RELEASED}")
        return 0
    report = compare(load(schemas / RELEASED), load(schemas))
    for line in report.breaking:
        print(f"[gate] BREAKING {line}")
    for line in report.notes:
        print(f"[gate] note: {line}")
    summary = (
        f"{report.topics} topics, {report.messages} schemas compared with docs/schemas/{RELEASED}: "
        f"{len(report.breaking)} breaking, {len(report.notes)} compatible change(s)"
    )
    if report.ok:
        print(f"[gate] ok: {summary}")
        return 0
    print(
        f"[gate] FAILED: {summary}. Undo the change, or bump the topic's version in "
        "contracts/topics.py (docs/contracts.md)."
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
