#!/usr/bin/env python3
"""Writes Mosquitto's first dynamic-security file, mode 0600, with no secret on a command line;
or brings an older one up to today's rules while the broker is stopped.

  dynsec_init.py <file> <secrets-dir>      a new file
  dynsec_init.py --upgrade <file>          an existing one (idempotent)

Reads the passwords of `admin` (people, with mosquitto_ctrl) and `courtyard-service` (Courtyard's
own processes) from <secrets-dir>/mqtt-admin and mqtt-service, and stores only their salted
PBKDF2-SHA512 hashes, as Mosquitto 2.0's plugin does. Every default is deny except unsubscribing:
a client sends, subscribes to and receives only what a role of its own allows.
"""
import base64
import hashlib
import json
import os
import sys

ITERATIONS = 101  # Mosquitto 2.0's own choice for dynamic-security passwords


def read_secret(path):
    with open(path, encoding="utf-8") as f:
        return f.readline().strip()


def client(username, password, roles, text_name):
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, ITERATIONS, 64)
    return {
        "username": username,
        "textName": text_name,
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": ITERATIONS,
        "roles": [{"rolename": r} for r in roles],
    }


def acl(kind, topic):
    return {"acltype": kind, "topic": topic, "allow": True}


DENY_BY_DEFAULT = {"publishClientSend": False, "publishClientReceive": False, "subscribe": False, "unsubscribe": True}


def write_private(path, config):
    tmp = path + ".tmp"
    if os.path.lexists(tmp):  # a leftover keeps its old mode: never write into it
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=1)
    os.rename(tmp, path)


def upgrade(path):
    """Files written before Courtyard bound client ids and denied delivery by default."""
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    config["defaultACLAccess"] = dict(DENY_BY_DEFAULT)
    for role in config.get("roles", []):
        acls = role.setdefault("acls", [])
        if role.get("rolename") == "admin":  # people administer the broker; they do not read devices' traffic
            role["acls"] = [a for a in acls if a.get("topic") not in ("#",)]
        elif role.get("rolename", "").startswith("device-"):
            have = {(a.get("acltype"), a.get("topic")) for a in acls}
            for a in list(acls):
                if a.get("acltype") == "subscribeLiteral" and ("publishClientReceive", a.get("topic")) not in have:
                    acls.append(acl("publishClientReceive", a["topic"]))
    for c in config.get("clients", []):
        if [r.get("rolename") for r in c.get("roles", [])] == ["device-" + c.get("username", "")]:
            c["clientid"] = c["username"]  # a device connects as itself, never as another session
    write_private(path, config)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--upgrade":
        upgrade(sys.argv[2])
        return
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    out, secrets = sys.argv[1], sys.argv[2]
    control = "$CONTROL/dynamic-security/#"
    config = {
        "clients": [
            client("admin", read_secret(os.path.join(secrets, "mqtt-admin")), ["admin"], "People administering the broker"),
            client("courtyard-service", read_secret(os.path.join(secrets, "mqtt-service")), ["courtyard-service"],
                   "Courtyard's ingest, hub and tools"),
        ],
        "roles": [
            {"rolename": "admin", "acls": [
                acl("publishClientSend", control), acl("publishClientReceive", control),
                acl("subscribePattern", control),
                acl("publishClientReceive", "$SYS/#"), acl("subscribePattern", "$SYS/#"),
            ]},
            # Read and write courtyard/#, and manage devices through the plugin.
            {"rolename": "courtyard-service", "acls": [
                acl("publishClientSend", "courtyard/#"), acl("publishClientReceive", "courtyard/#"),
                acl("subscribePattern", "courtyard/#"),
                acl("publishClientSend", control), acl("publishClientReceive", control),
                acl("subscribePattern", control),
            ]},
        ],
        "defaultACLAccess": dict(DENY_BY_DEFAULT),
    }
    write_private(out, config)


if __name__ == "__main__":
    main()
