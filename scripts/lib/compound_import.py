"""A whole compound from one CSV file, for day-one set-up (docs/operations.md "Importing a compound"):
its buildings, units and doors, its grids, and its staff with their duty shifts. Every row is
checked before anything is sent; then each piece goes through the hub's API, which checks it again
and appends it to the log like any other change (site.entry, registry, person.recorded, roster.set).

Columns (a header row names them; any order; empty cells are empty):
  type      building | unit | door | grid | staff
  id        the building, unit, door device, grid or staff person token (an id: 1..64 of [A-Za-z0-9_.-])
  label     building, grid: its name on the map (one line, up to 64 bytes)
  building  unit, door: the building that lists it
  grid      building, door: the grid it belongs to; staff: the grid of the shift ("all": any grid)
  floors    building: 0..200
  x, y      building: metres from the compound's corner, for the site map
  role      staff: grid_worker | duty_manager | security | maintenance
  name      staff: their name (into the vault, never the log)
  phone     staff: optional, into the vault
  days      staff: mon..sun, a range (mon-fri), a list (sat;sun) or daily
  from, to  staff: HH:MM; a shift whose "to" is not after its "from" runs past midnight

Running it again with the same file changes nothing: site entries and rosters replace the ones
before them whole, registry entries are the same, and a staff member the vault already holds (by
token) is not recorded twice. The rosters of the grids and roles the file names are the file's.
"""
import csv
import io
import re

ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
TIME = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$")
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ROLES = {"grid_worker", "duty_manager", "security", "maintenance"}
TYPES = {"building", "unit", "door", "grid", "staff"}
MAX_ROWS = 100_000
MAX_MEMBERS = 500  # the hub's limit on a site entry's members


class ImportError_(Exception):
    """The file is not a compound: every reason, by line."""

    def __init__(self, problems):
        super().__init__("\n".join(problems))
        self.problems = problems


def parse_days(text):
    text = text.strip().lower()
    if text == "daily":
        return list(DAYS)
    out = []
    for part in filter(None, (p.strip() for p in re.split(r"[;,\s]+", text))):
        if "-" in part:
            first, last = part.split("-", 1)
            if first not in DAYS or last not in DAYS:
                raise ValueError("days: %r is not a range of mon..sun" % part)
            i, j = DAYS.index(first), DAYS.index(last)
            span = DAYS[i:j + 1] if i <= j else DAYS[i:] + DAYS[:j + 1]
            out += [d for d in span if d not in out]
        elif part in DAYS:
            if part not in out:
                out.append(part)
        else:
            raise ValueError("days: %r is not one of mon..sun, a range or daily" % part)
    if not out:
        raise ValueError("days: empty")
    return out


def plan(text):
    """The API calls that set the compound up, in order: [(method, path suffix, body)] relative to
    the community. Raises ImportError_ with every problem found (line numbers are the file's)."""
    problems = []
    try:
        rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    except csv.Error as e:
        raise ImportError_(["not CSV: %s" % e])
    if not rows:
        raise ImportError_(["no rows: the first line names the columns (type,id,...), the rest are the compound"])
    if len(rows) > MAX_ROWS:
        raise ImportError_(["%d rows: at most %d" % (len(rows), MAX_ROWS)])
    buildings, grids, units, doors, staff, seen = {}, {}, [], [], {}, set()
    shifts = {}  # (grid, role) -> [shift]

    def cell(row, name):
        value = row.get(name)
        return value.strip() if isinstance(value, str) else ""

    for n, row in enumerate(rows, start=2):
        bad = lambda why: problems.append("line %d: %s" % (n, why))
        kind, id_ = cell(row, "type").lower(), cell(row, "id")
        if None in row:
            bad("more cells than the header has columns")
            continue
        if kind not in TYPES:
            bad("type %r is not one of %s" % (kind, ", ".join(sorted(TYPES))))
            continue
        if not ID.match(id_):
            bad("id %r is not an id (1..64 of A-Z a-z 0-9 _ . -)" % id_)
            continue
        if (kind, id_) in seen and kind != "staff":
            bad("%s %s is already in the file" % (kind, id_))
            continue
        seen.add((kind, id_))
        label = cell(row, "label")
        if len(label.encode()) > 64 or any(ord(c) < 32 for c in label):
            bad("label: one line of up to 64 bytes")
            continue
        if kind == "building":
            entry = {"kind": "building", "id": id_, "label": label, "members": []}
            try:
                floors = int(cell(row, "floors") or 0)
                x, y = int(cell(row, "x") or 0), int(cell(row, "y") or 0)
            except ValueError:
                bad("floors, x and y are whole numbers")
                continue
            if not 0 <= floors <= 200 or abs(x) > 100_000 or abs(y) > 100_000:
                bad("floors 0..200, x and y within 100,000 m")
                continue
            entry.update(floors=floors, map={"x": x, "y": y})
            buildings[id_] = (entry, cell(row, "grid"), n)
        elif kind == "grid":
            grids[id_] = {"kind": "grid", "id": id_, "label": label, "members": []}
        elif kind in ("unit", "door"):
            (units if kind == "unit" else doors).append((id_, cell(row, "building"), cell(row, "grid"), n))
        else:
            role, name, grid = cell(row, "role"), cell(row, "name"), cell(row, "grid") or "all"
            if role not in ROLES:
                bad("role %r is not one of %s" % (role, ", ".join(sorted(ROLES))))
                continue
            if not ID.match(grid):
                bad("grid %r is not an id" % grid)
                continue
            try:
                days = parse_days(cell(row, "days"))
            except ValueError as e:
                bad(str(e))
                continue
            start, end = cell(row, "from"), cell(row, "to")
            if not TIME.match(start) or not TIME.match(end):
                bad("from and to are HH:MM (00:00..24:00)")
                continue
            person = staff.setdefault(id_, {"name": "", "phone": "", "line": n})
            for field in ("name", "phone"):
                value = cell(row, field)
                if value and person[field] and value != person[field]:
                    bad("staff %s has another %s on line %d" % (id_, field, person["line"]))
                person[field] = person[field] or value
            # (the grid is checked below, once every grid row is read)
            shifts.setdefault((grid, role), []).extend({"day": d, "from": start, "to": end, "staff": id_} for d in days)
    for id_, (entry, grid, n) in buildings.items():
        if grid:
            if grid not in grids:
                problems.append("line %d: building %s is in grid %r, which the file does not have" % (n, id_, grid))
            else:
                grids[grid]["members"].append(id_)
    for kind, rows_of_kind in (("unit", units), ("door", doors)):
        for id_, building, grid, n in rows_of_kind:
            if kind == "unit" and not building:
                problems.append("line %d: unit %s needs its building" % (n, id_))
            if building:
                if building not in buildings:
                    problems.append("line %d: %s %s is in building %r, which the file does not have" % (n, kind, id_, building))
                else:
                    buildings[building][0]["members"].append(id_)
            if grid:
                if kind == "unit":
                    problems.append("line %d: a unit belongs to a grid through its building" % n)
                elif grid not in grids:
                    problems.append("line %d: door %s is in grid %r, which the file does not have" % (n, id_, grid))
                else:
                    grids[grid]["members"].append(id_)
    for id_, person in staff.items():
        if not person["name"]:
            problems.append("line %d: staff %s needs a name" % (person["line"], id_))
    for (grid, role) in shifts:
        if grid != "all" and grid not in grids:
            problems.append("staff shifts for grid %r, which the file does not have" % grid)
    for entry in [b[0] for b in buildings.values()] + list(grids.values()):
        if len(entry["members"]) > MAX_MEMBERS:
            problems.append("%s %s lists %d members: at most %d" % (entry["kind"], entry["id"], len(entry["members"]), MAX_MEMBERS))
    if problems:
        line = lambda p: int(p.split(":")[0][5:]) if p.startswith("line ") else 1 << 30
        raise ImportError_(sorted(problems, key=line))

    calls = []
    for id_, *_ in units:
        calls.append(("POST", "registry", {"kind": "household", "id": id_}))
    for entry, _, _ in buildings.values():
        calls.append(("POST", "site", entry))
    for entry in grids.values():
        calls.append(("POST", "site", entry))
    for id_, person in staff.items():
        fields = {"kind": "staff", "name": person["name"], "tokens": [id_]}
        if person["phone"]:
            fields["phone"] = person["phone"]
        calls.append(("PERSON", id_, fields))
        calls.append(("POST", "registry", {"kind": "person", "id": id_, "role": "staff"}))
    for (grid, role), week in shifts.items():
        calls.append(("POST", "rosters/%s/%s" % (grid, role), {"week": week}))
    return calls


def apply(calls, community, call, log=print):
    """Sends the plan through the API (`call(method, path, body)` -> JSON, raising on a refusal).
    Staff the vault already holds by token are not recorded again. Returns counts by kind."""
    held = set()
    after = ""
    while True:  # every staff token the vault already holds for this community
        page = call("GET", "/api/v1/people?kind=staff&limit=1000&community=%s%s" % (community, "&after=" + after if after else ""))
        for p in page.get("items", []):
            if not p.get("erased"):
                held.update(p.get("tokens", []))
        if len(page.get("items", [])) < 1000:
            break
        after = page["items"][-1]["id"]
    counts = {}
    for method, where, body in calls:
        if method == "PERSON":
            if where in held:
                counts["staff already in the vault"] = counts.get("staff already in the vault", 0) + 1
                continue
            call("POST", "/api/v1/people", dict(body, community=community))
            counts["staff recorded"] = counts.get("staff recorded", 0) + 1
            continue
        base = where.split("/")[0]
        path = "/api/v1/%s/%s" % (base, community) + where[len(base):]
        call(method, path, body)
        what = body.get("kind", base) if base != "rosters" else "roster"
        counts[what] = counts.get(what, 0) + 1
    return counts
