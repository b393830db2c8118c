#!/usr/bin/env python3
"""The demo's families: for every simulated wearable, its wearer and two relatives in the privacy
vault, the relatives as the wearable's emergency contacts (docs/privacy.md). A fall's card on the
dashboard then shows whom to call. Usage: demo_people.py <api base url> <admin token>"""
import sys
import time
import urllib.error

from demo_api import caller

api, token = sys.argv[1], sys.argv[2]
SURNAMES = ["王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴"]
ELDERS = ["秀英", "桂兰", "玉兰", "建国", "淑珍", "国华"]
CHILDREN = [("美", "daughter"), ("磊", "son"), ("静", "daughter"), ("伟", "son")]

call = caller(api, token)


def wearables():
    for _ in range(300):  # the simulator provisions its fleet first: wait for it
        items = call("GET", "/api/v1/devices?kind=wearable&limit=1000")["items"]
        if items:
            return items
        time.sleep(1)
    return []


def person(community, unit, kind, name, phone="", relationship=""):
    body = {"community": community, "kind": kind, "unit": unit, "name": name}
    if phone:
        body["phone"] = phone
    if relationship:
        body["relationship"] = relationship
    return call("POST", "/api/v1/people", body)["subject"]


families = []
for i, device in enumerate(wearables()):
    community, unit = device["community"], device.get("unit") or ""
    if not unit:
        continue
    surname = SURNAMES[i % len(SURNAMES)]
    wearer = person(community, unit, "resident", surname + ELDERS[i % len(ELDERS)])
    relatives = []
    for j, (given, relationship) in enumerate(CHILDREN[i % 2 * 2:i % 2 * 2 + 2]):
        phone = "+86 13%d %04d %04d" % ((i + j) % 10, (i * 37 + j) % 10000, (i * 91 + j * 7) % 10000)
        relatives.append(person(community, unit, "family", surname + given, phone, relationship))
    families.append((community, unit, device["id"], wearer, relatives))


def known(community, subject):
    try:
        call("GET", "/api/v1/people/%s/%s" % (community, subject))
        return True
    except urllib.error.HTTPError:
        return False


# Contacts name people the hub already holds: wait until the log has reached the projections.
for community, unit, device, wearer, relatives in families:
    for _ in range(120):
        if all(known(community, s) for s in [wearer] + relatives):
            break
        time.sleep(0.5)
    call("POST", "/api/v1/contacts/" + community, {"unit": unit, "device": device, "wearer": wearer, "contacts": relatives})
print("demo: %d wearers with their families as emergency contacts" % len(families))
