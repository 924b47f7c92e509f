"""Filters for the disk_encryption role: read `clevis luks list` and compare it with the inventory."""

from __future__ import annotations

import json
import re

_LINE = re.compile(r"^(\d+): (\w+) '(.*)'$")


def _urls(pin: str, config: dict) -> tuple[int, set[str]] | None:
    """(threshold, tang URLs) of a clevis slot, or None if it is not bound to Tang servers only."""
    if pin == "tang":
        return 1, {config.get("url", "")}
    if pin == "sss" and set(config.get("pins", {})) == {"tang"}:
        return int(config.get("t", 1)), {server.get("url", "") for server in config["pins"]["tang"]}
    return None


def clevis_tang_slots(listing: str, servers: list[dict], threshold: int) -> dict[str, list[int]]:
    """Split the Tang-bound LUKS slots of ``clevis luks list -d DEV`` output into those that match
    the inventory (same URLs, same threshold) and stale ones (bound to other servers)."""
    want = (int(threshold), {server["url"] for server in servers})
    result: dict[str, list[int]] = {"matching": [], "stale": []}
    for line in listing.splitlines():
        found = _LINE.match(line.strip())
        if not found:
            continue
        try:
            config = json.loads(found.group(3))
        except ValueError:
            continue
        bound = _urls(found.group(2), config)
        if bound is None:
            continue
        result["matching" if bound == want else "stale"].append(int(found.group(1)))
    return result


def clevis_sss_config(servers: list[dict], threshold: int) -> str:
    """The clevis `sss` pin configuration for the inventory's Tang servers (thp when given)."""
    tang = [{k: server[k] for k in ("url", "thp") if server.get(k)} for server in servers]
    return json.dumps({"t": int(threshold), "pins": {"tang": tang}}, separators=(",", ":"))


def clevis_slots(results: list[dict], servers: list[dict], threshold: int, kind: str) -> list[dict]:
    """The ``kind`` ("matching" or "stale") Tang slots of a registered loop of `clevis luks list`
    over the volumes: one item per slot, with the volume's name and device."""
    return [{"name": r["item"]["name"], "device": r["item"]["device"], "slot": slot}
            for r in results
            for slot in clevis_tang_slots(r.get("stdout", ""), servers, threshold)[kind]]


class FilterModule:
    def filters(self):
        return {"clevis_tang_slots": clevis_tang_slots, "clevis_sss_config": clevis_sss_config,
                "clevis_slots": clevis_slots}
