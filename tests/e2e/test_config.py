"""Configuration: names from the original server still work, a bad value is
a start-up error naming the variable, secrets are never printed, a .env file
is read with the environment winning."""

import os
import subprocess
import unittest

from ainbox_harness import AinboxTestCase, free_ports, wait_until


class TestConfig(AinboxTestCase):

    def run_ainbox(self, args, env_extra=None, timeout=10):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("AINBOX_") and k not in ("HTTP_PORT", "DATABASE_URL")}
        env.update(env_extra or {})
        return subprocess.run([self.bin] + args, env=env, capture_output=True, text=True,
                              timeout=timeout)

    def test_bad_values_are_errors_naming_the_variable(self):
        cases = {"HTTP_PORT": "80a", "MAX_CONNECTIONS": "-5", "ENABLE_MONITORING": "maybe",
                 "LOG_LEVEL": "loud", "NODE_ENV": "staging", "AINBOX_BROKER": "udp://x:1",
                 "DATABASE_URL": "mysql://u@h/db", "REDIS_URL": "rediss://h:6380",
                 "AINBOX_HEARTBEAT_MS": "10", "AINBOX_TOKEN_KEY": "hunter2-not-a-key",
                 "AINBOX_TOKEN_KEYS_OLD": "1:hunter2-not-a-key"}
        for name, value in cases.items():
            out = self.run_ainbox(["config"], {name: value})
            self.assertEqual(out.returncode, 2, f"{name}={value}: {out.stdout}")
            self.assertIn(name, out.stderr)
            if name.startswith("AINBOX_TOKEN_KEY"):  # a secret: named, never shown
                self.assertNotIn("hunter2", out.stderr)
        out = self.run_ainbox(["run"], {"NODE_ENV": "production", "AINBOX_DEV_TOKEN": "x"})
        self.assertEqual(out.returncode, 2)
        self.assertIn("AINBOX_DEV_TOKEN", out.stderr)

    def test_secrets_are_masked(self):
        out = self.run_ainbox(["config"], {
            "DATABASE_URL": "postgres://ainbox:hunter2@db.lan:5432/ainbox",
            "JWT_ACCESS_SECRET": "very-secret-access", "REDIS_URL": "redis://:r3dispass@h:6379"})
        self.assertEqual(out.returncode, 0, out.stderr)
        for secret in ("hunter2", "very-secret-access", "r3dispass"):
            self.assertNotIn(secret, out.stdout)
        self.assertIn("postgres://ainbox:****@db.lan:5432/ainbox", out.stdout)
        json_out = self.run_ainbox(["config", "--json"], {"JWT_REFRESH_SECRET": "abc"})
        self.assertNotIn('"abc"', json_out.stdout)

    def test_dotenv_file_with_the_environment_winning(self):
        path = os.path.join(self.scratch, "ainbox.env")
        with open(path, "w") as f:
            f.write("# an operator's existing .env\nGOOGLE_CLIENT_ID=not-ours\n"
                    "HTTP_PORT=4321\nexport MAX_CONNECTIONS='777'\nLOG_LEVEL=warn\n")
        out = self.run_ainbox(["--config", path, "config"], {"LOG_LEVEL": "debug"})
        self.assertEqual(out.returncode, 0, out.stderr)
        rows = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines()}
        self.assertEqual(rows["HTTP_PORT"], ["4321", "file"])
        self.assertEqual(rows["MAX_CONNECTIONS"], ["777", "file"])
        self.assertEqual(rows["LOG_LEVEL"], ["debug", "env"])
        out = self.run_ainbox(["config"], {"AINBOX_CONFIG": path})
        self.assertIn("4321", out.stdout)

    def test_misspelt_setting_in_a_file_is_an_error(self):
        path = os.path.join(self.scratch, "bad.env")
        with open(path, "w") as f:
            f.write("AINBOX_HEARTBEAT=100\n")
        out = self.run_ainbox(["--config", path, "config"])
        self.assertEqual(out.returncode, 2)
        self.assertIn("AINBOX_HEARTBEAT", out.stderr)
        with open(path, "w") as f:
            f.write("HTTP_PORT 3000\n")
        out = self.run_ainbox(["--config", path, "config"])
        self.assertEqual(out.returncode, 2)
        self.assertIn("line 1", out.stderr)

    def test_the_scaling_guides_cache_ttl_is_refused_with_units_accepted(self):
        """The original's SCALING_GUIDE.md .env says CACHE_TTL=30000 for 30 s: read as
        seconds it was an 8-hour L2 TTL, silently. A bare number that large is refused,
        naming the guide; units are accepted."""
        path = os.path.join(self.scratch, "guide.env")
        with open(path, "w") as f:
            f.write("REDIS_HOST=localhost\nCACHE_TTL=30000\n")
        out = self.run_ainbox(["--config", path, "config"])
        self.assertEqual(out.returncode, 2, out.stdout)
        self.assertIn("CACHE_TTL", out.stderr)
        self.assertIn("SCALING_GUIDE", out.stderr)
        self.assertIn("30000ms", out.stderr)
        for value in ("30s", "30000ms", "30"):
            with open(path, "w") as f:
                f.write(f"CACHE_TTL={value}\n")
            out = self.run_ainbox(["--config", path, "config"])
            self.assertEqual(out.returncode, 0, out.stderr)
            rows = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines()}
            self.assertEqual(rows["CACHE_TTL"], [value, "file"])

    def test_usage_errors(self):
        self.assertEqual(self.run_ainbox([]).returncode, 2)
        self.assertEqual(self.run_ainbox(["frobnicate"]).returncode, 2)
        out = self.run_ainbox(["actor", "nope"])
        self.assertEqual(out.returncode, 2)
        self.assertIn("echo", out.stderr)

    def test_port_in_use_is_a_clear_start_up_failure(self):
        port, = free_ports(1)
        env = self.base_env(port)
        first = self.spawn("broker-1", ["broker"], env)
        wait_until(lambda: "MDP on" in first.log(), 5, "the first broker to bind")
        second = self.spawn("broker-2", ["broker"], env, allow_errors=("cannot bind",))
        wait_until(lambda: not second.alive(), 5, "the second broker to give up")
        self.assertEqual(second.popen.returncode, 1)
        self.assertIn("cannot bind", second.log())


if __name__ == "__main__":
    unittest.main()
