"""The compound import's reading of a CSV file (scripts/lib/compound_import.py): what it sends for a
good file, and every reason it gives for a bad one before sending anything. Run by ctest
(compound_import); the import against a real hub is tests/integration/dispatch_test.cpp."""
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "lib"))
from compound_import import ImportError_, apply, parse_days, plan  # noqa: E402

HEADER = "type,id,label,building,grid,floors,x,y,role,name,phone,days,from,to\n"
GOOD = HEADER + """grid,grid-a,北区,,,,,,,,,,,
building,b1,1号楼,,grid-a,18,0,0,,,,,,
unit,b1-0101,,b1,,,,,,,,,,
door,door-b1,,b1,,,,,,,,,,
door,gate-east,,,grid-a,,,,,,,,,
staff,staff-wang,,,grid-a,,,,grid_worker,王磊,+86 138 0000 0001,mon-fri,08:00,20:00
staff,staff-wang,,,grid-a,,,,grid_worker,,,sat;sun,00:00,24:00
staff,staff-chen,,,,,,,duty_manager,陈静,,daily,20:00,08:00
"""


def refusals(text):
    try:
        plan(text)
    except ImportError_ as e:
        return e.problems
    raise AssertionError("the file was accepted")


class GoodFile(unittest.TestCase):
    def test_buildings_list_their_units_and_doors_and_grids_their_buildings_and_gates(self):
        calls = plan(GOOD)
        site = [body for method, where, body in calls if where == "site"]
        self.assertEqual(site[0], {"kind": "building", "id": "b1", "label": "1号楼", "floors": 18,
                                   "map": {"x": 0, "y": 0}, "members": ["b1-0101", "door-b1"]})
        self.assertEqual(site[1], {"kind": "grid", "id": "grid-a", "label": "北区", "members": ["b1", "gate-east"]})

    def test_units_are_households_and_staff_are_registered_people_with_their_names_for_the_vault(self):
        calls = plan(GOOD)
        self.assertIn(("POST", "registry", {"kind": "household", "id": "b1-0101"}), calls)
        self.assertIn(("POST", "registry", {"kind": "person", "id": "staff-wang", "role": "staff"}), calls)
        self.assertIn(("PERSON", "staff-wang", {"kind": "staff", "name": "王磊", "phone": "+86 138 0000 0001",
                                                "tokens": ["staff-wang"]}), calls)
        people = [c for c in calls if c[0] == "PERSON"]
        self.assertEqual(len(people), 2)  # one per staff member, however many shifts

    def test_shifts_become_one_roster_per_grid_and_role_and_a_staff_row_without_a_grid_is_all_grids(self):
        rosters = {where: body for method, where, body in plan(GOOD) if where.startswith("rosters/")}
        self.assertEqual(sorted(rosters), ["rosters/all/duty_manager", "rosters/grid-a/grid_worker"])
        week = rosters["rosters/grid-a/grid_worker"]["week"]
        self.assertEqual([s["day"] for s in week], ["mon", "tue", "wed", "thu", "fri", "sat", "sun"])
        self.assertEqual(week[5], {"day": "sat", "from": "00:00", "to": "24:00", "staff": "staff-wang"})
        self.assertEqual(len(rosters["rosters/all/duty_manager"]["week"]), 7)

    def test_the_site_goes_before_the_rosters_and_a_person_before_their_registry_entry(self):
        calls = plan(GOOD)
        order = [(m, w) for m, w, _ in calls]
        self.assertLess(order.index(("POST", "site")), order.index(("POST", "rosters/grid-a/grid_worker")))
        registered = calls.index(("POST", "registry", {"kind": "person", "id": "staff-wang", "role": "staff"}))
        self.assertLess(order.index(("PERSON", "staff-wang")), registered)

    def test_days_read_ranges_lists_and_daily_and_a_range_may_wrap_the_week(self):
        self.assertEqual(parse_days("mon-wed"), ["mon", "tue", "wed"])
        self.assertEqual(parse_days("fri-mon"), ["fri", "sat", "sun", "mon"])
        self.assertEqual(parse_days("sat;sun"), ["sat", "sun"])
        self.assertEqual(len(parse_days("daily")), 7)

    def test_a_byte_order_mark_and_spaces_around_cells_are_tolerated(self):
        self.assertEqual(plan("\ufeff" + GOOD.replace("grid,grid-a,北区", "grid, grid-a ,北区")), plan(GOOD))


class ApplyingIt(unittest.TestCase):
    def test_a_staff_member_the_vault_holds_is_not_recorded_twice_and_paths_name_the_community(self):
        sent = []

        def call(method, path, body=None):
            sent.append((method, path))
            if method == "GET":
                return {"items": [{"id": "c1/p-1", "tokens": ["staff-wang"]}, {"id": "c1/p-2", "tokens": ["staff-chen"], "erased": True}]}
            return {}
        counts = apply(plan(GOOD), "c1", call)
        self.assertEqual(counts["staff already in the vault"], 1)
        self.assertEqual(counts["staff recorded"], 1)  # an erased record holds nobody
        self.assertIn(("POST", "/api/v1/site/c1"), sent)
        self.assertIn(("POST", "/api/v1/rosters/c1/grid-a/grid_worker"), sent)
        self.assertIn(("POST", "/api/v1/registry/c1"), sent)


class BadFiles(unittest.TestCase):
    def test_every_problem_is_given_with_its_line_and_in_line_order(self):
        problems = refusals(HEADER + "unit,b9-1,,b9,,,,,,,,,,\nhouse,x,,,,,,,,,,,,\nstaff,s1,,,,,,,chef,A,,daily,08:00,20:00\n")
        self.assertEqual([p.split(":")[0] for p in problems], ["line 2", "line 3", "line 4"])
        self.assertIn("building 'b9'", problems[0])
        self.assertIn("type 'house'", problems[1])
        self.assertIn("role 'chef'", problems[2])

    def test_attack_ids_that_are_not_ids_paths_and_separators_are_refused(self):
        for bad in ["../etc", "a/b", "", "x" * 65, "a b", "b1\u00e9"]:
            self.assertTrue(any("is not an id" in p for p in refusals(HEADER + "grid,%s,,,,,,,,,,,,\n" % bad)), bad)
        self.assertTrue(refusals(HEADER + "staff,s1,,,../x,,,,grid_worker,A,,daily,08:00,20:00\n"))

    def test_a_row_given_twice_more_cells_than_columns_and_a_label_of_two_lines_are_refused(self):
        self.assertIn("already in the file", refusals(HEADER + "grid,g,,,,,,,,,,,,\ngrid,g,,,,,,,,,,,,\n")[0])
        self.assertIn("more cells", refusals(HEADER + "grid,g,,,,,,,,,,,,,,extra\n")[0])
        self.assertIn("label", refusals(HEADER + 'grid,g,"two\nlines",,,,,,,,,,,\n')[0])
        self.assertIn("label", refusals(HEADER + "grid,g,%s,,,,,,,,,,,\n" % ("楼" * 22))[0])

    def test_numbers_times_and_days_out_of_range_are_refused(self):
        self.assertIn("floors", refusals(HEADER + "building,b,,,,201,0,0,,,,,,\n")[0])
        self.assertIn("whole numbers", refusals(HEADER + "building,b,,,,ten,0,0,,,,,,\n")[0])
        self.assertIn("100,000", refusals(HEADER + "building,b,,,,1,100001,0,,,,,,\n")[0])
        self.assertIn("HH:MM", refusals(HEADER + "staff,s,,,,,,,security,A,,daily,8:00,20:00\n")[0])
        self.assertIn("HH:MM", refusals(HEADER + "staff,s,,,,,,,security,A,,daily,24:30,20:00\n")[0])
        self.assertIn("days", refusals(HEADER + "staff,s,,,,,,,security,A,,someday,08:00,20:00\n")[0])

    def test_staff_need_a_name_once_and_the_same_one_each_time(self):
        self.assertIn("needs a name", refusals(HEADER + "staff,s,,,,,,,security,,,daily,08:00,20:00\n")[0])
        self.assertIn("another name", refusals(HEADER + "staff,s,,,,,,,security,A,,mon,08:00,20:00\n"
                                               "staff,s,,,,,,,security,B,,tue,08:00,20:00\n")[0])

    def test_references_to_what_the_file_does_not_have_and_units_in_grids_are_refused(self):
        self.assertIn("grid 'g9'", refusals(HEADER + "building,b,,,g9,1,0,0,,,,,,\n")[0])
        self.assertIn("needs its building", refusals(HEADER + "unit,u,,,,,,,,,,,,\n")[0])
        self.assertIn("through its building", refusals(HEADER + "grid,g,,,,,,,,,,,,\nbuilding,b,,,,1,0,0,,,,,,\n"
                                                      "unit,u,,b,g,,,,,,,,,\n")[0])
        self.assertIn("grid 'g9'", refusals(HEADER + "staff,s,,,g9,,,,security,A,,daily,08:00,20:00\n")[0])

    def test_more_members_than_the_hub_takes_and_an_empty_file_are_refused(self):
        many = HEADER + "building,b,,,,1,0,0,,,,,,\n" + "".join("unit,u%d,,b,,,,,,,,,,\n" % i for i in range(501))
        self.assertIn("at most 500", refusals(many)[0])
        self.assertIn("no rows", refusals(HEADER)[0])
        self.assertIn("no rows", refusals("")[0])


TOOL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "import-compound")


class TheTool(unittest.TestCase):
    """scripts/import-compound --check: the file is read and judged; nothing needs a hub."""

    def check(self, path):
        env = dict(os.environ)
        env.pop("COURTYARD_TOKEN", None)
        return subprocess.run([sys.executable, TOOL, "--community", "c1", "--check", path], capture_output=True, text=True,
                              env=env, timeout=60)

    def test_a_good_file_is_good_and_says_how_many_changes_it_would_send(self):
        with tempfile.NamedTemporaryFile("w", suffix=".csv", encoding="utf-8", delete=False) as f:
            f.write(GOOD)
        run = self.check(f.name)
        os.unlink(f.name)
        self.assertEqual(run.returncode, 0, run.stderr)
        self.assertIn("is good: %d changes" % len(plan(GOOD)), run.stdout)

    def test_attack_bytes_that_are_not_utf8_a_file_that_is_not_csv_and_a_directory_are_refused_with_a_reason(self):
        with tempfile.NamedTemporaryFile("wb", suffix=".csv", delete=False) as f:
            f.write(HEADER.encode() + b"grid,g\xff\xfe,\xc3\x28,,,,,,,,,,,\n")
        run = self.check(f.name)
        os.unlink(f.name)
        self.assertNotEqual(run.returncode, 0)
        self.assertIn("codec can't decode", run.stderr)
        run = self.check("/etc/passwd")
        self.assertEqual(run.returncode, 1)
        self.assertIn("nothing was sent", run.stderr)
        run = self.check("/")
        self.assertNotEqual(run.returncode, 0)
        self.assertIn("import-compound: /:", run.stderr)
        self.assertNotIn("Traceback", run.stderr)


if __name__ == "__main__":
    unittest.main()
