"""Schema migrations against a real, private PostgreSQL: applied once, in
order, each in a transaction, recorded with a checksum, refused when an
applied file changed, and applied by the bundle at start-up."""

import os
import shutil
import subprocess
import threading
import unittest

from ainbox_harness import AinboxTestCase, free_ports

REPO_MIGRATIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "deploy", "migrations")


class TestMigrations(AinboxTestCase):
    allowed_errors = ("failed:", "changed after it was applied", "without gaps")

    def setUp(self):
        super().setUp()
        self.pg = self.start_postgres()
        self.dir = os.path.join(self.scratch, "migrations")
        shutil.copytree(REPO_MIGRATIONS, self.dir)

    def migrate(self, *args):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AINBOX_")}
        env.update({"DATABASE_URL": self.pg.url, "AINBOX_MIGRATIONS_DIR": self.dir})
        return subprocess.run([self.bin, "migrate", *args], env=env, capture_output=True,
                              text=True, timeout=30)

    def write(self, name, sql):
        with open(os.path.join(self.dir, name), "w") as f:
            f.write(sql)

    def versions(self):
        return [int(r[0]) for r in self.pg.psql("select version from schema_migrations order by 1")]

    def test_applies_once_in_order(self):
        out = self.migrate()
        self.assertEqual(out.returncode, 0, out.stderr)
        count = len([f for f in os.listdir(self.dir) if f.endswith(".sql")])
        self.assertEqual(self.versions(), list(range(1, count + 1)))
        self.assertEqual(self.pg.psql("select count(*) from users"), [["0"]])
        again = self.migrate()
        self.assertEqual(again.returncode, 0)
        self.assertIn("0 now", again.stderr)
        self.write(f"{count + 1:04d}_extra.sql", "create table extra (id int);")
        self.assertEqual(self.migrate("--status").stdout.strip(), f"{count} applied, 1 pending")
        self.assertEqual(self.migrate().returncode, 0)
        self.assertEqual(self.versions()[-1], count + 1)

    def test_failing_migration_leaves_nothing_behind(self):
        self.assertEqual(self.migrate().returncode, 0)
        n = len(self.versions())
        self.write(f"{n + 1:04d}_broken.sql",
                   "create table half_done (id int);\nselect * from no_such_table;")
        out = self.migrate()
        self.assertEqual(out.returncode, 1)
        self.assertIn("no_such_table", out.stderr)
        self.assertEqual(len(self.versions()), n)
        self.assertEqual(self.pg.psql("select to_regclass('half_done') is null"), [["t"]])

    def test_edited_applied_migration_is_refused(self):
        self.assertEqual(self.migrate().returncode, 0)
        with open(os.path.join(self.dir, "0001_users.sql"), "a") as f:
            f.write("\n-- edited after the fact\n")
        out = self.migrate()
        self.assertEqual(out.returncode, 1)
        self.assertIn("changed after it was applied", out.stderr)

    def test_gaps_are_refused(self):
        self.write("0009_far.sql", "select 1;")
        out = self.migrate()
        self.assertEqual(out.returncode, 1)
        self.assertIn("without gaps", out.stderr)

    def test_concurrent_runners_apply_once(self):
        results = []
        threads = [threading.Thread(target=lambda: results.append(self.migrate()))
                   for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual([r.returncode for r in results], [0, 0, 0],
                         [r.stderr for r in results])
        self.assertEqual(len(self.versions()), len(set(self.versions())))

    def test_bundle_migrates_at_start_up(self):
        port, = free_ports(1)
        env = self.base_env(port, DATABASE_URL=self.pg.url, AINBOX_MIGRATIONS_DIR=self.dir)
        bundle = self.spawn("bundle", ["run"], env)
        self.wait_health(env)
        self.assertGreaterEqual(len(self.versions()), 1)
        self.assertIn("schema up to date", bundle.log())


if __name__ == "__main__":
    unittest.main()
