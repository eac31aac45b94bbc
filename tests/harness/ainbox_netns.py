"""ainbox_netns: "hosts" on one machine, as network namespaces.

The layout of ../shared/docs/platform-notes.md section 4: a hub namespace
holding a bridge, and one namespace per host with a veth into the bridge,
its own address on 10.201.0.0/24 and its own loopback. No address or route
of that network ever exists in the root namespace: whatever must reach a
host runs inside a namespace too (ainbox_agent.py). A host is cut off with
its link down, or from one address with a blackhole route. Names carry a
per-run prefix, and everything made is deleted at the end.

Also the reader of the top README's "Running on several hosts" recipe,
which tests/e2e/test_hosts.py runs as it stands.
"""

import json
import os
import re
import select
import subprocess
import time
import unittest

NET = "10.201.0"
README = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), "README.md")
AGENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ainbox_agent.py")


def ip(*args, check=True):
    out = subprocess.run(["ip"] + list(args), capture_output=True, text=True, timeout=10)
    if check and out.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)}: {out.stderr.strip()}")
    return out


def skip_unless_possible():
    """Skips the test (with why) where namespaces cannot be made."""
    if os.geteuid() != 0:
        raise unittest.SkipTest("network namespaces need root")
    try:
        probe = ip("netns", "list", check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise unittest.SkipTest(f"`ip netns` unavailable: {exc}")
    if probe.returncode != 0:
        raise unittest.SkipTest(f"`ip netns` unavailable: {probe.stderr.strip()}")


class Hosts:
    """A hub with a bridge and hosts on it; `add(name, last_octet)`."""

    def __init__(self):
        self.prefix = f"ab{os.getpid() % 100000}-"
        self.hub = self.prefix + "hub"
        self.names = []  # namespaces made, hub first
        self.addr = {}
        ip("netns", "add", self.hub)
        self.names.append(self.hub)
        ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        ip("-n", self.hub, "link", "set", "br0", "up")
        ip("-n", self.hub, "link", "set", "lo", "up")

    def ns(self, host):
        return self.prefix + host

    def add(self, host, octet):
        ns = self.ns(host)
        ip("netns", "add", ns)
        self.names.append(ns)
        veth = f"v-{host}"[:15]
        ip("link", "add", veth, "netns", self.hub, "type", "veth", "peer", "name", "eth0",
           "netns", ns)
        ip("-n", self.hub, "link", "set", veth, "master", "br0", "up")
        ip("-n", ns, "addr", "add", f"{NET}.{octet}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "link", "set", "lo", "up")
        self.addr[host] = f"{NET}.{octet}"
        return ns

    def exec_argv(self, host, argv):
        return ["ip", "netns", "exec", self.ns(host)] + list(argv)

    def link(self, host, up):
        ip("-n", self.ns(host), "link", "set", "eth0", "up" if up else "down")

    def blackhole(self, host, to, on):
        ip("-n", self.ns(host), "route", "add" if on else "del", "blackhole",
           f"{self.addr[to]}/32")

    def destroy(self):
        for ns in reversed(self.names):
            ip("netns", "del", ns, check=False)
        self.names = []


class AgentProc:
    """ainbox_agent.py inside a host's namespace, one command at a time."""

    def __init__(self, hosts, host, env):
        self.popen = subprocess.Popen(hosts.exec_argv(host, ["python3", AGENT]), env=env,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True, start_new_session=True)

    def __call__(self, op, wait=60, **args):
        self.popen.stdin.write(json.dumps(dict(args, op=op)) + "\n")
        self.popen.stdin.flush()
        ready, _, _ = select.select([self.popen.stdout], [], [], wait)
        if not ready:
            raise AssertionError(f"agent: no answer to {op} within {wait}s")
        line = self.popen.stdout.readline()
        if not line:
            raise AssertionError(f"agent: gone during {op}")
        answer = json.loads(line)
        if "agent_error" in answer:
            raise AssertionError(f"agent: {op} failed: {answer['agent_error']}")
        return answer

    def close(self):
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(5)
        self.popen.stdin.close()
        self.popen.stdout.close()


# ------------------------------------------------------------------ the recipe

def recipe_block(text=None):
    """The shell block of the README's "Running on several hosts"."""
    if text is None:
        with open(README) as f:
            text = f.read()
    part = text[text.index("## Running on several hosts"):]
    m = re.search(r"^```sh\n(.*?)^```", part, re.S | re.M)
    if not m:
        raise AssertionError("README: no ```sh block under 'Running on several hosts'")
    return m.group(1)


def recipe_sections(block):
    """[(section, [command lines])]: continuation lines joined, comments
    and blank lines dropped. A section starts at a comment `# operator`,
    `# every host` or `# host X (ADDRESS)`; its name is `operator`,
    `every` or X (and ADDRESS is kept in the returned addresses)."""
    sections, addresses = [], {}
    joined = block.replace("\\\n", " ")
    for line in joined.split("\n"):
        line = " ".join(line.split())
        m = re.match(r"#\s*(operator|every host|host (\w+) \(([\d.]+)\))", line)
        if m:
            name = m.group(2) or m.group(1).split()[0]
            if m.group(3):
                addresses[name] = m.group(3)
            sections.append((name, []))
        elif line and not line.startswith("#"):
            if not sections:
                raise AssertionError(f"README recipe: a command before any section: {line}")
            sections[-1][1].append(line)
    return sections, addresses


def wait_for(check, timeout, what, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
