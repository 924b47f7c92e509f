"""The disk_encryption role's clevis filters (roles/disk_encryption/filter_plugins/clevis.py)."""

from __future__ import annotations

import importlib.util
import json

from mlops_provision import paths

_spec = importlib.util.spec_from_file_location(
    "clevis_filters", paths.roles_dir() / "disk_encryption" / "filter_plugins" / "clevis.py")
clevis = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(clevis)

A, B = {"url": "http://10.0.0.1"}, {"url": "http://10.0.0.2:7500", "thp": "abc"}


def _sss(t: int, *urls: str) -> str:
    return json.dumps({"t": t, "pins": {"tang": [{"url": u} for u in urls]}}, separators=(",", ":"))


def test_sss_config_keeps_thumbprints_and_threshold():
    config = json.loads(clevis.clevis_sss_config([A, B], 2))
    assert config == {"t": 2, "pins": {"tang": [{"url": "http://10.0.0.1"},
                                                {"url": "http://10.0.0.2:7500", "thp": "abc"}]}}


def test_slots_matching_and_stale():
    listing = "\n".join([
        f"1: sss '{_sss(1, 'http://10.0.0.1')}'",          # matches [A], t=1
        f"2: sss '{_sss(1, 'http://10.0.0.9')}'",          # another server: stale
        f"3: tang '{json.dumps({'url': 'http://10.0.0.1'})}'",  # a plain tang pin to A: matches too
        "4: tpm2 '{\"pcr_ids\":\"7\"}'",                   # not Tang: left alone
        "garbage line",
    ])
    assert clevis.clevis_tang_slots(listing, [A], 1) == {"matching": [1, 3], "stale": [2]}
    # the same slots against two servers with threshold 2: none matches, all Tang ones are stale
    assert clevis.clevis_tang_slots(listing, [A, B], 2) == {"matching": [], "stale": [1, 2, 3]}


def test_threshold_change_makes_a_slot_stale():
    listing = f"1: sss '{_sss(1, 'http://10.0.0.1', 'http://10.0.0.2:7500')}'"
    assert clevis.clevis_tang_slots(listing, [A, B], 1) == {"matching": [1], "stale": []}
    assert clevis.clevis_tang_slots(listing, [A, B], 2) == {"matching": [], "stale": [1]}


def test_slots_over_a_registered_loop():
    results = [{"item": {"name": "data", "device": "/dev/vdb"}, "stdout": f"2: sss '{_sss(1, 'http://10.0.0.9')}'"},
               {"item": {"name": "scratch", "device": "/dev/vdc"}, "stdout": ""}]
    assert clevis.clevis_slots(results, [A], 1, "stale") == [{"name": "data", "device": "/dev/vdb", "slot": 2}]
    assert clevis.clevis_slots(results, [A], 1, "matching") == []
