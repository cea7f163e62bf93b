"""What to apply: a pure decision from (desired manifest, live object, the fields our manager owns).

A child is applied when it is missing, when what the operator wants differs from what it last
applied (a hash of the desired manifest kept in an annotation on the child), when a field it wants
is no longer owned by its field manager (someone else took it over), or when it still owns a field it
no longer wants (server-side apply under the same manager then removes that field). Live values are
never compared, so a quantity stored in another form (0.5 -> 500m) or a field rewritten by an
admission policy causes no write; an object that is neither ours by ownerReference nor by an earlier
apply of ours is never touched.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterator

from .naming import APPLIED_HASH_ANNOTATION, FIELD_MANAGER

# How many field paths an Event or a condition names before "and N more".
SHOWN_PATHS = 6

# Fields the apiserver does not record in managedFields.
UNTRACKED = ("apiVersion", "kind")
UNTRACKED_METADATA = ("name", "namespace", "generateName")

# Actions of a decision.
CREATE, UPDATE, SKIP, REFUSE = "create", "update", "skip", "refuse"


@dataclass(frozen=True)
class ApplyDecision:
    """Whether to send the apply, and why, in words a person can read in an Event."""

    action: str  # CREATE, UPDATE, SKIP or REFUSE
    reason: str
    changed: tuple[str, ...] = ()  # fields whose wanted value changed (or that are wanted and not ours)
    removed: tuple[str, ...] = ()  # fields we own and no longer want

    @property
    def send(self) -> bool:
        return self.action in (CREATE, UPDATE)


def desired_hash(manifest: dict[str, Any]) -> str:
    """A stable digest of what the operator wants, stamped on the child as it is applied."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:20]


def stamped(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest as sent: its own hash in an annotation (computed without it)."""
    digest = desired_hash(manifest)
    meta = dict(manifest["metadata"])
    meta["annotations"] = {**(meta.get("annotations") or {}), APPLIED_HASH_ANNOTATION: digest}
    return {**manifest, "metadata": meta}


def owned_fields(live: dict[str, Any], manager: str = FIELD_MANAGER) -> dict[str, Any] | None:
    """The fieldsV1 tree of `manager`'s apply on the object itself (not a subresource), or None."""
    for entry in live.get("metadata", {}).get("managedFields") or []:
        if entry.get("manager") == manager and entry.get("operation") == "Apply" and not entry.get("subresource"):
            return entry.get("fieldsV1") or {}
    return None


def foreign_owner(owner_uid: str, live: dict[str, Any], owned: dict[str, Any] | None) -> str | None:
    """Why the live object is not ours to apply, or None when it is.

    Ours: it names our VoiceAgent (by uid) as an owner, or it has no controller and our field manager
    applied it before (a retained model volume that a VoiceAgent of the same name takes back).
    """
    live_refs = live.get("metadata", {}).get("ownerReferences") or []
    if any(ref.get("uid") == owner_uid for ref in live_refs):
        return None
    controller = next((ref for ref in live_refs if ref.get("controller")), None)
    if controller is not None:
        return f"it is controlled by {controller.get('kind')} {controller.get('name')} (uid {controller.get('uid')})"
    if owned is not None:
        return None
    return f"it was not created by {FIELD_MANAGER} (no ownerReference to this VoiceAgent)"


def decide_apply(desired: dict[str, Any], live: dict[str, Any] | None, owner_uid: str) -> ApplyDecision:
    """Apply `desired` (as `stamped` makes it) onto `live`, or not, and why; `owner_uid` is our VoiceAgent's."""
    if live is None:
        return ApplyDecision(CREATE, "created")
    owned = owned_fields(live)
    refusal = foreign_owner(owner_uid, live, owned)
    if refusal is not None:
        return ApplyDecision(REFUSE, f"left untouched: {refusal}")
    # Without managedFields (an apiserver or emulator that does not track them) only the hash can tell.
    tracked = {k: v for k, v in desired.items() if k not in UNTRACKED}
    tracked["metadata"] = {k: v for k, v in desired.get("metadata", {}).items() if k not in UNTRACKED_METADATA}
    missing = tuple(path_text(p) for p in _unowned(tracked, owned, ())) if owned is not None else ()
    removed = tuple(path_text(p) for p in _unwanted(owned, desired, ())) if owned is not None else ()
    previous = (live.get("metadata", {}).get("annotations") or {}).get(APPLIED_HASH_ANNOTATION)
    wanted = (desired.get("metadata", {}).get("annotations") or {}).get(APPLIED_HASH_ANNOTATION)
    changed = tuple(path_text(p) for p in _differences(desired, live, ())) if previous != wanted else ()
    changed = tuple(dict.fromkeys(changed + missing))
    if previous == wanted and not missing and not removed:
        return ApplyDecision(SKIP, "up to date")
    parts = []
    if changed:
        parts.append("updated " + _listing(changed))
    if removed:
        parts.append("removed " + _listing(removed))
    if missing and previous == wanted:
        parts.append("(fields taken over by another field manager are taken back)")
    return ApplyDecision(UPDATE, " ".join(parts) or "the desired state changed", changed, removed)


def _listing(paths: tuple[str, ...]) -> str:
    shown = ", ".join(paths[:SHOWN_PATHS])
    more = len(paths) - SHOWN_PATHS
    return shown + (f" and {more} more" if more > 0 else "")


# A path is a tuple of steps: a field name (str), or a list item located by ("key", {...}),
# ("value", v) or ("index", i), as in the apiserver's fieldsV1 (f:, k:, v:, i:).
Path = tuple[Any, ...]


def path_text(path: Path) -> str:
    out = ""
    for step in path:
        if isinstance(step, str):
            out += ("." if out else "") + step
        elif step[0] == "key":
            out += "[" + ",".join(f"{k}={v}" for k, v in step[1].items()) + "]"
        elif step[0] == "value":
            out += f"[{json.dumps(step[1])}]"
        else:
            out += f"[{step[1]}]"
    return out


def _list_item(items: list[Any], key: str) -> tuple[Any, Any] | None:
    """The item of `items` that a fieldsV1 list key (k:{...}, v:..., i:N) names, with its step."""
    kind, _, text = key.partition(":")
    if kind == "i":
        index = int(text)
        return (("index", index), items[index]) if 0 <= index < len(items) else None
    value = json.loads(text)
    if kind == "v":
        return (("value", value), value) if any(_same_scalar(value, item) for item in items) else None
    for item in items:
        if isinstance(item, dict) and all(k not in item or _same_scalar(v, item[k]) for k, v in value.items()):
            return ("key", value), item
    return None


def _unwanted(tree: dict[str, Any], desired: Any, path: Path) -> Iterator[Path]:
    """Leaves our manager owns that `desired` no longer sets."""
    for key, sub in tree.items():
        if key == ".":
            continue
        if key.startswith("f:"):
            name = key[2:]
            if not isinstance(desired, dict) or desired.get(name) is None:
                yield (*path, name)
            elif sub:
                yield from _unwanted(sub, desired[name], (*path, name))
            continue
        found = _list_item(desired, key) if isinstance(desired, list) else None
        if found is None:
            kind, _, text = key.partition(":")
            yield (*path, ("key", json.loads(text)) if kind == "k" else ("value", text) if kind == "v" else ("index", text))
        elif sub:
            yield from _unwanted(sub, found[1], (*path, found[0]))


def _unowned(desired: Any, tree: dict[str, Any] | None, path: Path) -> Iterator[Path]:
    """Fields `desired` sets that our manager does not own (another manager took them, or never applied)."""
    if tree is None:
        yield path
        return
    if isinstance(desired, dict):
        for name, value in desired.items():
            if value is None:
                continue
            sub = tree.get(f"f:{name}")
            if sub is None:
                yield (*path, name)
            elif isinstance(value, (dict, list)) and value and sub:
                yield from _unowned(value, sub, (*path, name))
        return
    if isinstance(desired, list) and tree:  # a map or set list; an atomic list is one leaf
        keys = [key for key in tree if key != "."]
        for index, item in enumerate(desired):
            match = next((k for k in keys if _list_item([item], k) is not None), None)
            if match is None:
                yield (*path, ("index", index))
            elif isinstance(item, dict) and tree[match]:
                yield from _unowned(item, tree[match], (*path, _list_item([item], match)[0]))


def _differences(desired: Any, live: Any, path: Path) -> Iterator[Path]:
    """Fields whose wanted value is not the live one (for the message only: it decides nothing)."""
    if isinstance(desired, dict):
        live_map = live if isinstance(live, dict) else {}
        for key, value in desired.items():
            if key in ("annotations",) and path == ("metadata",):
                value = {k: v for k, v in (value or {}).items() if k != APPLIED_HASH_ANNOTATION}
                yield from _differences(value, live_map.get(key) or {}, (*path, key))
            else:
                yield from _differences(value, live_map.get(key), (*path, key))
    elif isinstance(desired, list):
        live_list = live if isinstance(live, list) else []
        if len(desired) != len(live_list):
            yield path
            return
        for index, (d, l) in enumerate(zip(desired, live_list)):
            step = ("key", {"name": d["name"]}) if isinstance(d, dict) and "name" in d else ("index", index)
            yield from _differences(d, l, (*path, step))
    elif desired is not None and not _same_scalar(desired, live):
        yield path


# Kubernetes quantity suffixes (resource.Quantity): binary, then decimal SI.
_SUFFIXES = {
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"), "P": Decimal("1e15"), "E": Decimal("1e18"),
}


def quantity(value: str | int | float) -> Decimal:
    """A Kubernetes quantity's value ("500m" -> 0.5, "2Gi" -> 2147483648, "1e3" -> 1000)."""
    text = str(value).strip()
    number = text.rstrip("KMGTPEikmnu")
    suffix = text[len(number):]
    if suffix not in _SUFFIXES or not number:
        raise ValueError(f"{value!r} is not a quantity")
    return Decimal(number) * _SUFFIXES[suffix]


def _same_scalar(desired: Any, live: Any) -> bool:
    if isinstance(desired, bool) or isinstance(live, bool):
        return desired is live
    if desired == live:
        return True
    # The apiserver stores quantities in canonical form ("0.5" -> "500m", 1 -> "1"): compare values.
    if isinstance(desired, (str, int, float)) and isinstance(live, (str, int, float)):
        try:
            return quantity(desired) == quantity(live)
        except (ValueError, ArithmeticError):
            return False
    return False
