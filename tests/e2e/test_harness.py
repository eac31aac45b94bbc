"""The test harness itself: private Redis and PostgreSQL come up on their
own ports and are torn down even when the test using them fails."""

import io
import os
import unittest

from ainbox_harness import AinboxTestCase

SEEN = {}


class _FailingUser(AinboxTestCase):
    """Starts both services, records where they live, then fails."""

    def test_fails_after_starting_services(self):
        redis = self.start_redis()
        pg = self.start_postgres()
        SEEN.update(redis_pid=redis.proc.pid, pg_dir=pg.dir, scratch=self.scratch)
        self.assertTrue(redis.ping())
        self.assertEqual(pg.psql("select 6 * 7"), [["42"]])
        self.fail("on purpose")


class TestHarness(unittest.TestCase):

    def test_services_are_torn_down_when_a_test_fails(self):
        suite = unittest.defaultTestLoader.loadTestsFromTestCase(_FailingUser)
        result = unittest.TextTestRunner(stream=io.StringIO(), verbosity=0).run(suite)
        self.assertEqual(len(result.failures), 1, result.errors)
        self.assertFalse(os.path.exists(f"/proc/{SEEN['redis_pid']}"), "redis still running")
        self.assertFalse(os.path.exists(SEEN["pg_dir"]), "PostgreSQL directory left behind")


def load_tests(loader, tests, pattern):
    # _FailingUser is driven by TestHarness only; never run it on its own.
    return loader.loadTestsFromTestCase(TestHarness)


if __name__ == "__main__":
    unittest.main()
