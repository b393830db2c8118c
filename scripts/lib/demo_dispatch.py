#!/usr/bin/env python3
"""The demo's compound structure and duty rosters (docs/alerts.md "Dispatch"): for each community,
its buildings (from the simulated devices' units, b{n}-FFUU), two grids, and a small staff on day
and night shifts, each a person token registered as staff with their name in the vault. New
alerts are then assigned, escalated and counted. Usage: demo_dispatch.py <api base url> <admin token>"""
import sys
import time

from demo_api import caller

api, token = sys.argv[1], sys.argv[2]

call = caller(api, token)


def every_device():
    items, after = [], ""
    while True:
        page = call("GET", "/api/v1/devices?limit=1000" + ("&after=" + after if after else ""))["items"]
        items += page
        if len(page) < 1000:
            return items
        after = page[-1]["id"]


def fleet():
    for _ in range(300):  # the simulator provisions its fleet first: wait for it
        items = every_device()
        if len(items) > 10:
            return items
        time.sleep(1)
    return []


DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def shifts(day_staff, night_staff):
    week = []
    for d in DAYS:
        week.append({"day": d, "from": "08:00", "to": "20:00", "staff": day_staff})
        week.append({"day": d, "from": "20:00", "to": "08:00", "staff": night_staff})
    return {"week": week}


by_community = {}
for device in fleet():
    by_community.setdefault(device["community"], []).append(device)

STAFF = [("grid-a", "grid_worker", "王磊", "李强"), ("grid-b", "grid_worker", "张伟", "刘洋"),
         ("all", "duty_manager", "陈静", "杨帆"), ("all", "security", "赵勇", "黄军"),
         ("all", "maintenance", "周涛", "吴斌")]

for community, devices in sorted(by_community.items()):
    buildings = {}
    for d in devices:
        unit = d.get("unit") or ""
        if unit.startswith("b") and "-" in unit:
            buildings.setdefault(unit.split("-")[0], set()).add(unit)
    for d in devices:  # the simulator's unit doors: door n is building 1 + (n - 1) % 8's (its location says so)
        number = d["id"].rsplit("-", 1)[-1]
        if d.get("kind") == "door" and number.isdigit() and "b%d" % (1 + (int(number) - 1) % 8) in buildings:
            buildings["b%d" % (1 + (int(number) - 1) % 8)].add(d["id"])
    names = sorted(buildings, key=lambda b: int(b[1:]) if b[1:].isdigit() else 0)
    for i, b in enumerate(names):
        call("POST", "/api/v1/site/" + community,
             {"kind": "building", "id": b, "label": "%s号楼" % b[1:], "floors": 18,
              "map": {"x": 40 + (i % 4) * 60, "y": 40 + (i // 4) * 60}, "members": sorted(buildings[b])})
    gates = sorted(d["id"] for d in devices if d.get("kind") in ("gate", "vehicle_gate"))
    half = (len(names) + 1) // 2
    call("POST", "/api/v1/site/" + community,
         {"kind": "grid", "id": "grid-a", "label": "North grid", "members": names[:half] + gates[: len(gates) // 2]})
    call("POST", "/api/v1/site/" + community,
         {"kind": "grid", "id": "grid-b", "label": "South grid", "members": names[half:] + gates[len(gates) // 2:]})
    for n, (grid, role, day_name, night_name) in enumerate(STAFF):
        tokens = []
        for k, name in enumerate((day_name, night_name)):
            staff_token = "staff-%s-%d%d" % (community, n, k)
            call("POST", "/api/v1/registry/" + community, {"kind": "person", "id": staff_token, "role": "staff"})
            call("POST", "/api/v1/people", {"community": community, "kind": "staff", "name": name,
                                            "tokens": [staff_token]})
            tokens.append(staff_token)
        call("POST", "/api/v1/rosters/%s/%s/%s" % (community, grid, role), shifts(tokens[0], tokens[1]))
    print("%s: %d buildings in 2 grids, %d staff on rosters" % (community, len(names), 2 * len(STAFF)), flush=True)
