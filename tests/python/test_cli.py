"""The `norn` CLI against a real nornd: every command, as a subprocess.

Checks exit codes (0 ok, 1 error status, 2 usage, 3 unreachable), that the
table output has the expected rows, that `-o json` parses and carries the
expected fields, that `config set` round-trips through `config get`, and that
each command answers --help. Sessions, swarms and audit events are seeded
through the Python stubs.

Run: cd tests/python && NORND=... NORN_CLI=... NORN_PROTO_DIR=... NORN_PY_GEN=... \
     /usr/bin/python3 -m unittest -v test_cli
"""

import json
import os
import socket
import subprocess
import threading
import time
import unittest

import nornd_proc
from nornd_proc import start_nornd

nornd_proc.ensure_stubs()

import grpc  # noqa: E402
from google.protobuf import struct_pb2  # noqa: E402
from norn.v1 import agent_service_pb2 as A  # noqa: E402
from norn.v1 import agent_service_pb2_grpc as A_grpc  # noqa: E402
from norn.v1 import common_pb2 as C  # noqa: E402
from norn.v1 import config_service_pb2 as CFG  # noqa: E402
from norn.v1 import session_service_pb2 as S  # noqa: E402
from norn.v1 import session_service_pb2_grpc as S_grpc  # noqa: E402

RPC_TIMEOUT = 10.0
CLI_TIMEOUT = 60.0

_ids = iter(range(1, 1 << 62))
_ids_lock = threading.Lock()


def uid(prefix):
    with _ids_lock:
        return "%s-%d-%d" % (prefix, int(time.time() * 1000) % 100000000, next(_ids))


def fresh_input():
    """A tool input never sent before, so the analyzer sees no loop."""
    s = struct_pb2.Struct()
    with _ids_lock:
        s.update({"query": "notes about topic %d" % next(_ids)})
    return s


def free_port():
    """A local port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def table_rows(out, first_column):
    """The rows of a table whose first column is `first_column`."""
    return [line for line in out.splitlines() if line.split()[:1] == [first_column]]


class CliCase(unittest.TestCase):
    """A nornd of the class's own, seeded by seed(), and the CLI runners."""

    nornd = None

    @classmethod
    def setUpClass(cls):
        cls.cli = os.environ.get("NORN_CLI")
        if not cls.cli:
            raise RuntimeError("NORN_CLI is not set (path of the norn binary)")
        cls.nornd = start_nornd(cls)
        ch = cls.nornd.channel()
        grpc.channel_ready_future(ch).result(timeout=10)
        cls.sessions = S_grpc.SessionServiceStub(ch)
        cls.agents = A_grpc.AgentServiceStub(ch)
        cls.seed()

    # -- seeding through the stubs -------------------------------------------------
    @classmethod
    def open_session(cls, sid, **kw):
        return cls.sessions.OpenSession(S.OpenSessionRequest(session_id=sid, **kw),
                                        timeout=RPC_TIMEOUT).session

    @classmethod
    def record(cls, sid, n, tool="read_file", status=C.RESULT_STATUS_SUCCESS):
        steps = [C.Step(tool_use_id=uid("tu"), tool_name=tool, tool_input=fresh_input(),
                        result_text="ok", result_status=status) for _ in range(n)]
        cls.sessions.RecordSteps(S.RecordStepsRequest(session_id=sid, steps=steps),
                                 timeout=RPC_TIMEOUT)

    @classmethod
    def complete(cls, sid):
        cls.sessions.CompleteSession(S.CompleteSessionRequest(session_id=sid),
                                     timeout=RPC_TIMEOUT)

    @classmethod
    def make_swarm(cls, swarm_id, tasks, handoffs):
        """One member per task, in order; returns the session ids."""
        ids = []
        for order, (task, handoff) in enumerate(zip(tasks, handoffs), start=1):
            sid = uid("%s-m%d" % (swarm_id, order))
            cls.open_session(sid, agent_name="%s-agent-%d" % (swarm_id, order),
                             task=C.TaskDefinition(description=task), swarm_id=swarm_id,
                             swarm_order=order, handoff_input=handoff)
            cls.record(sid, order)
            cls.complete(sid)
            ids.append(sid)
        return ids

    @classmethod
    def seed(cls):
        # A plain session with a failed step (a critical tool_call event).
        cls.agent_name = uid("cli-agent")
        cls.sid = uid("cli-s")
        cls.open_session(cls.sid, agent_name=cls.agent_name,
                         task=C.TaskDefinition(description="read the notes"))
        cls.record(cls.sid, 3)
        cls.record(cls.sid, 1, tool="fetch_url", status=C.RESULT_STATUS_EXCEPTION)
        cls.complete(cls.sid)
        # A session stuck in a loop: INFINITE_LOOP and INEFFICIENCY issues.
        cls.loop_sid = uid("cli-loop")
        cls.open_session(cls.loop_sid, agent_name=uid("looper"),
                         task=C.TaskDefinition(description="search once"))
        same = struct_pb2.Struct()
        same.update({"q": "the same query"})
        cls.sessions.RecordSteps(S.RecordStepsRequest(session_id=cls.loop_sid, steps=[
            C.Step(tool_use_id=uid("loop"), tool_name="search", tool_input=same,
                   result_text="ok", result_status=C.RESULT_STATUS_SUCCESS)
            for _ in range(6)]), timeout=RPC_TIMEOUT)
        cls.complete(cls.loop_sid)
        # A three-member swarm with two hand-offs.
        cls.swarm_id = uid("cli-swarm")
        cls.swarm_tasks = ["plan the report about rivers", "write the report about rivers",
                           "review the report"]
        cls.swarm_sessions = cls.make_swarm(
            cls.swarm_id, cls.swarm_tasks, ["", "the plan: three parts", "the draft report"])

    # -- running the CLI -----------------------------------------------------------
    def norn(self, *args, json_out=False, server=None, timeout_ms=None):
        argv = [self.cli, "--server", server or self.nornd.target]
        if timeout_ms is not None:
            argv += ["--timeout-ms", str(timeout_ms)]
        if json_out:
            argv += ["-o", "json"]
        argv += list(args)
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=CLI_TIMEOUT)
        return r.returncode, r.stdout.decode(), r.stderr.decode()

    def ok(self, *args):
        rc, out, err = self.norn(*args)
        self.assertEqual(rc, 0, "norn %s: exit %d\n%s%s" % (" ".join(args), rc, out, err))
        return out

    def ok_json(self, *args):
        rc, out, err = self.norn(*args, json_out=True)
        self.assertEqual(rc, 0, "norn -o json %s: exit %d\n%s%s" % (" ".join(args), rc, out,
                                                                   err))
        try:
            return json.loads(out)
        except ValueError as e:
            self.fail("norn -o json %s: not JSON (%s):\n%s" % (" ".join(args), e, out))

    def fails(self, code, *args, says=None):
        """The command exits with `code`, its stderr naming `says`; returns stderr."""
        rc, out, err = self.norn(*args)
        self.assertEqual(rc, code, "norn %s: exit %d, expected %d\n%s%s"
                         % (" ".join(args), rc, code, out, err))
        if says is not None:
            self.assertIn(says, err)
        return err



class CliTest(CliCase):
    # -- help, usage and reachability ---------------------------------------------
    COMMANDS = [
        ["health"], ["sessions", "list"], ["sessions", "get"], ["sessions", "delete"],
        ["steps", "list"], ["watch"],
        ["agents", "list"], ["agents", "get"], ["agents", "register"], ["agents", "delete"],
        ["swarms", "list"], ["swarms", "get"], ["swarms", "delete"],
        ["audit", "list"], ["audit", "delete"],
        ["config", "get"], ["config", "set"], ["stats"],
    ]

    def test_help_on_every_command(self):
        for cmd in self.COMMANDS:
            with self.subTest(cmd=cmd):
                out = self.ok(*(cmd + ["--help"]))
                self.assertIn("usage: norn " + " ".join(cmd), out)
        out = self.ok("--help")
        for cmd in self.COMMANDS:
            self.assertIn(" ".join(cmd), out)

    def test_usage_errors(self):
        self.fails(2, "agents")
        self.fails(2, "agents", "frobnicate")
        self.fails(2, "agents", "get", says="agent id")
        self.fails(2, "agents", "get", "a", "b")
        self.fails(2, "agents", "list", "--bogus")
        self.fails(2, "agents", "list", "extra")
        self.fails(2, "swarms", "get")
        self.fails(2, "swarms", "delete")
        self.fails(2, "audit", "delete")
        self.fails(2, "config", "get", "extra")
        self.fails(2, "config", "set")
        self.fails(2, "stats", "extra")
        self.fails(2, "--output", "yaml", "stats")

    def test_unreachable_server_exits_3(self):
        dead = "127.0.0.1:%d" % free_port()
        commands = [
            ["agents", "list"], ["agents", "get", "x"], ["agents", "register", "x"],
            ["agents", "delete", "x"], ["swarms", "list"], ["swarms", "get", "x"],
            ["swarms", "delete", "x"], ["audit", "list"], ["audit", "delete", "x"],
            ["config", "get"], ["config", "set", "guard_mode=monitor"], ["stats"],
        ]
        for cmd in commands:
            for json_out in (False, True):
                with self.subTest(cmd=cmd, json=json_out):
                    rc, out, err = self.norn(*cmd, server=dead, timeout_ms=3000,
                                             json_out=json_out)
                    self.assertEqual(rc, 3, "%s: %s" % (cmd, err))
                    self.assertEqual(out, "", "nothing on stdout when the server is away")
                    self.assertIn("UNAVAILABLE", err)

    # -- agents ----------------------------------------------------------------------
    def test_agents_register_get_list_delete(self):
        name = uid("reg")
        out = self.ok("agents", "register", name, "--task", "watch the logs",
                      "--source-file", "agent.py")
        self.assertIn("registered %s as hook-" % name, out)
        again = self.ok_json("agents", "register", name)
        self.assertFalse(again.get("created", False), "a second register is not a creation")
        agent_id = again["agent"]["agent_id"]
        self.assertTrue(agent_id.startswith("hook-"))
        self.assertIn("already registered as " + agent_id, self.ok("agents", "register", name))

        out = self.ok("agents", "get", agent_id)
        self.assertIn("agent      " + agent_id, out)
        self.assertIn("name       " + name, out)
        self.assertIn("source     HOOK", out)
        self.assertIn("task       watch the logs", out)
        self.assertIn("file       agent.py", out)
        self.assertIn("type       Hook Agent", out)
        got = self.ok_json("agents", "get", agent_id)["agent"]
        self.assertEqual(got["name"], name)
        self.assertEqual(got["source"], "AGENT_SOURCE_HOOK")
        self.assertEqual(got["task_description"], "watch the logs")
        self.assertEqual(got["source_file"], "agent.py")
        self.assertIn("added_at", got)

        out = self.ok("agents", "list", "--limit", "0")
        self.assertEqual(out.splitlines()[0].split()[:4], ["AGENT", "NAME", "SOURCE", "STATUS"])
        rows = table_rows(out, agent_id)
        self.assertEqual(len(rows), 1, out)
        self.assertEqual(rows[0].split()[1:4], [name, "HOOK", "ANALYZED"])
        listed = self.ok_json("agents", "list", "--source", "hook", "--limit", "0")
        self.assertIsInstance(listed, list)
        self.assertIn(agent_id, [a["agent_id"] for a in listed])
        self.assertTrue(all(a["source"] == "AGENT_SOURCE_HOOK" for a in listed))
        self.assertEqual(self.ok_json("agents", "list", "--source", "git"), [])
        self.assertEqual(table_rows(self.ok("agents", "list", "--source", "zip"), agent_id), [])

        out = self.ok("agents", "delete", agent_id)
        self.assertIn("deleted " + agent_id, out)
        self.fails(1, "agents", "get", agent_id, says="NOT_FOUND")
        self.fails(1, "agents", "delete", agent_id, says="NOT_FOUND")
        self.assertNotIn(agent_id, [a["agent_id"] for a in
                                    self.ok_json("agents", "list", "--limit", "0")])

    def test_agents_delete_with_sessions(self):
        agent = self.ok_json("agents", "register", uid("doomed"))["agent"]
        sid = uid("doomed-s")
        self.open_session(sid, agent_name=agent["name"], agent_id=agent["agent_id"])
        self.complete(sid)
        # Options may follow the operand.
        r = self.ok_json("agents", "delete", agent["agent_id"], "--with-sessions")
        self.assertEqual(r["deleted_sessions"], 1)
        self.fails(1, "sessions", "get", sid, says="NOT_FOUND")

    def test_agents_list_follows_pages_and_limits(self):
        prefix = uid("many")
        for i in range(70):  # more than one default page of 50
            self.agents.RegisterAgent(A.RegisterAgentRequest(name="%s-%02d" % (prefix, i)),
                                      timeout=RPC_TIMEOUT)
        listed = self.ok_json("agents", "list", "--limit", "0")
        ids = [a["agent_id"] for a in listed]
        self.assertEqual(len(ids), len(set(ids)), "no agent twice across pages")
        names = {a["name"] for a in listed}
        self.assertTrue({"%s-%02d" % (prefix, i) for i in range(70)} <= names)
        # Above the largest page size the pages are followed up to the limit.
        self.assertEqual(len(self.ok_json("agents", "list", "--limit", "1001")), len(listed))
        self.assertEqual(len(self.ok_json("agents", "list", "--limit", "3")), 3)
        self.assertEqual(len(self.ok_json("agents", "list")), 50, "default limit")
        out = self.ok("agents", "list", "--limit", "55")
        self.assertEqual(len(out.splitlines()), 1 + 55, "header and 55 rows")

    def test_agents_bad_input(self):
        self.fails(2, "agents", "list", "--source", "ftp", says="--source")
        self.fails(2, "agents", "list", "--limit", "many", says="--limit")
        self.fails(2, "agents", "list", "--limit", "-1", says="--limit")
        self.fails(1, "agents", "get", "not an id!", says="INVALID_ARGUMENT")
        self.fails(1, "agents", "register", "   ", says="INVALID_ARGUMENT")

    # -- swarms ----------------------------------------------------------------------
    def test_swarms_list(self):
        out = self.ok("swarms", "list", "--limit", "0")
        self.assertEqual(out.splitlines()[0].split()[:3], ["SWARM", "AGENTS", "QUALITY"])
        rows = table_rows(out, self.swarm_id)
        self.assertEqual(len(rows), 1, out)
        self.assertEqual(rows[0].split()[1], "3")
        listed = self.ok_json("swarms", "list", "--limit", "0")
        mine = [s for s in listed if s["swarm_id"] == self.swarm_id]
        self.assertEqual(len(mine), 1)
        self.assertEqual(mine[0]["agent_count"], 3)
        self.assertEqual([m["swarm_order"] for m in mine[0]["agents"]], [1, 2, 3])
        self.assertEqual(len(self.ok_json("swarms", "list", "--limit", "1")), 1)

    def test_swarms_get(self):
        out = self.ok("swarms", "get", self.swarm_id)
        self.assertIn("swarm      " + self.swarm_id, out)
        self.assertIn("agents     3", out)
        self.assertRegex(out, r"alignment  [01]\.\d{3}")
        # Members in pipeline order, each with its quality.
        lines = out.splitlines()
        header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["ORDER",
                                                                               "SESSION"])
        members = [line.split() for line in lines[header + 1:header + 4]]
        self.assertEqual(lines[header + 4], "", "three members, then a blank line")
        self.assertEqual([m[0] for m in members], ["1", "2", "3"], out)
        self.assertEqual([m[1] for m in members], self.swarm_sessions)
        for m in members:
            self.assertIn(m[3], ("EXCELLENT", "GOOD", "POOR", "FAILED", "STUCK", "PENDING"))
        self.assertIn("handoffs", out)
        self.assertIn("1 %s-agent-1 -> 2 %s-agent-2: the plan: three parts"
                      % (self.swarm_id, self.swarm_id), out)
        self.assertIn("2 %s-agent-2 -> 3 %s-agent-3: the draft report"
                      % (self.swarm_id, self.swarm_id), out)

        got = self.ok_json("swarms", "get", self.swarm_id)
        sw = got["swarm"]
        self.assertEqual(sw["swarm_id"], self.swarm_id)
        self.assertEqual([m["session_id"] for m in sw["agents"]], self.swarm_sessions)
        self.assertEqual([m["task"] for m in sw["agents"]], self.swarm_tasks)
        self.assertEqual(len(sw["handoffs"]), 2)
        self.assertEqual(sw["handoffs"][0]["target_order"], 2)
        self.assertIn("alignment_score", sw)
        self.assertTrue(0 <= sw["alignment_score"] <= 1)
        self.assertIn("overall_quality", sw)
        self.assertNotIn("sessions", got)

        with_sessions = self.ok_json("swarms", "get", self.swarm_id, "--sessions")
        self.assertEqual([s["session_id"] for s in with_sessions["sessions"]],
                         self.swarm_sessions)
        out = self.ok("swarms", "get", "--sessions", self.swarm_id)
        for sid in self.swarm_sessions:
            self.assertEqual(len(table_rows(out, sid)), 1, out)

    def test_swarms_delete(self):
        swarm_id = uid("cli-gone")
        ids = self.make_swarm(swarm_id, ["a b", "a c"], ["", "x"])
        out = self.ok("swarms", "delete", swarm_id)
        self.assertIn("deleted %s (2 sessions)" % swarm_id, out)
        for sid in ids:
            self.fails(1, "sessions", "get", sid, says="NOT_FOUND")
        self.fails(1, "swarms", "get", swarm_id, says="NOT_FOUND")
        self.fails(1, "swarms", "delete", swarm_id, says="NOT_FOUND")
        # One member: no alignment score (it needs two), shown as "-".
        swarm_id = uid("cli-solo")
        self.make_swarm(swarm_id, ["one"], [""])
        self.assertNotIn("alignment_score", self.ok_json("swarms", "get", swarm_id)["swarm"])
        self.assertIn("alignment  -\n", self.ok("swarms", "get", swarm_id))
        self.assertEqual(self.ok_json("swarms", "delete", swarm_id), {"deleted_sessions": 1})

    def test_swarms_bad_input(self):
        self.fails(1, "swarms", "get", "no-such-swarm", says="NOT_FOUND")
        self.fails(1, "swarms", "delete", "bad id!", says="INVALID_ARGUMENT")
        self.fails(2, "swarms", "list", "--limit", "x", says="--limit")
        # `swarms get "bad id!"` is in SwarmBadIdTest: it can bring the server down.

    # -- audit -----------------------------------------------------------------------
    def test_audit_list_for_a_session(self):
        events = self.ok_json("audit", "list", "--session", self.sid)
        types = sorted(e["event_type"] for e in events)
        self.assertEqual(types.count("AUDIT_EVENT_TYPE_TOOL_CALL"), 4)
        self.assertEqual(types.count("AUDIT_EVENT_TYPE_SESSION_START"), 1)
        self.assertEqual(types.count("AUDIT_EVENT_TYPE_SESSION_END"), 1)
        for e in events:
            for field in ("event_id", "timestamp", "event_type", "session_id", "agent_name",
                          "summary", "severity"):
                self.assertIn(field, e)
            self.assertEqual(e["session_id"], self.sid)
            self.assertEqual(e["agent_name"], self.agent_name)
        stamps = [e["timestamp"] for e in events]
        self.assertEqual(stamps, sorted(stamps, reverse=True), "newest first")

        out = self.ok("audit", "list", "--session", self.sid)
        self.assertEqual(out.splitlines()[0].split()[:2], ["EVENT", "TIME"])
        for e in events:
            rows = table_rows(out, e["event_id"])
            self.assertEqual(len(rows), 1, out)
            self.assertIn(self.sid, rows[0])
        self.assertEqual(len(out.splitlines()), 1 + len(events))

    def test_audit_filters(self):
        calls = self.ok_json("audit", "list", "--session", self.sid, "--type", "tool_call")
        self.assertEqual(len(calls), 4)
        self.assertTrue(all(e["event_type"] == "AUDIT_EVENT_TYPE_TOOL_CALL" for e in calls))
        out = self.ok("audit", "list", "--session", self.sid, "--type", "session_start")
        self.assertEqual(len(out.splitlines()), 2)
        self.assertIn("SESSION_START", out.splitlines()[1])

        by_agent = self.ok_json("audit", "list", "--agent", self.agent_name, "--limit", "0")
        self.assertEqual(len(by_agent), 6)
        critical = self.ok_json("audit", "list", "--agent", self.agent_name,
                                "--min-severity", "critical")
        self.assertGreaterEqual(len(critical), 1, "the failed step is critical")
        self.assertTrue(all(e["severity"] == "AUDIT_SEVERITY_CRITICAL" for e in critical))
        self.assertTrue(any("fetch_url" in e["summary"] for e in critical))
        warning = self.ok_json("audit", "list", "--agent", self.agent_name,
                               "--min-severity", "WARNING")
        self.assertTrue(all(e["severity"] in ("AUDIT_SEVERITY_WARNING",
                                              "AUDIT_SEVERITY_CRITICAL") for e in warning))
        self.assertGreaterEqual(len(warning), len(critical))

        issues = self.ok_json("audit", "list", "--type", "issue", "--limit", "0")
        mine = [e for e in issues if e["session_id"] == self.loop_sid]
        self.assertGreaterEqual(len(mine), 2)
        self.assertTrue(all(e["event_type"] == "AUDIT_EVENT_TYPE_ISSUE" for e in issues))
        self.assertTrue(any(e["summary"].startswith("[INFINITE_LOOP]") for e in mine))
        out = self.ok("audit", "list", "--type", "issue", "--session", self.loop_sid,
                      "--limit", "0")
        self.assertEqual(len(out.splitlines()), 1 + len(mine))
        self.assertTrue(all(" ISSUE " in line for line in out.splitlines()[1:]))

        self.assertEqual(len(self.ok_json("audit", "list", "--session", self.sid,
                                          "--since", "2000-01-01")), 6)
        self.assertEqual(self.ok_json("audit", "list", "--session", self.sid,
                                      "--until", "2000-01-01T00:00:00Z"), [])
        self.assertEqual(self.ok_json("audit", "list", "--session", self.sid,
                                      "--since", "2999-01-01"), [])
        self.assertEqual(len(self.ok_json("audit", "list", "--session", self.sid,
                                          "--limit", "2")), 2)

    def test_audit_list_follows_pages(self):
        sid = uid("cli-long")
        self.open_session(sid, agent_name=uid("long-agent"))
        for _ in range(3):
            self.record(sid, 100)
        self.complete(sid)
        events = self.ok_json("audit", "list", "--session", sid, "--limit", "0")
        self.assertEqual(len(events), 302, "more than one page of 200")
        self.assertEqual(len({e["event_id"] for e in events}), 302)
        self.assertEqual(len(self.ok_json("audit", "list", "--session", sid,
                                          "--limit", "1500")), 302)
        out = self.ok("audit", "list", "--session", sid, "--limit", "250")
        self.assertEqual(len(out.splitlines()), 1 + 250)
        self.assertEqual(len(self.ok_json("steps", "list", sid)), 300)

    def test_audit_delete(self):
        sid = uid("cli-audit-del")
        self.open_session(sid, agent_name="auditee")
        self.record(sid, 1)
        events = self.ok_json("audit", "list", "--session", sid)
        self.assertEqual(len(events), 2)
        victim = events[0]["event_id"]
        out = self.ok("audit", "delete", victim)
        self.assertIn("deleted " + victim, out)
        left = self.ok_json("audit", "list", "--session", sid)
        self.assertEqual([e["event_id"] for e in left], [events[1]["event_id"]])
        self.fails(1, "audit", "delete", victim, says="NOT_FOUND")
        self.assertEqual(self.ok_json("audit", "delete", events[1]["event_id"]), {})
        self.assertEqual(self.ok_json("audit", "list", "--session", sid), [])
        # The session itself stays.
        self.assertEqual(self.ok_json("sessions", "get", sid)["session"]["session_id"], sid)

    def test_audit_bad_input(self):
        self.fails(2, "audit", "list", "--type", "login", says="--type")
        self.fails(2, "audit", "list", "--min-severity", "high", says="--min-severity")
        self.fails(2, "audit", "list", "--since", "yesterday", says="--since")
        self.fails(2, "audit", "list", "--until", "2024-13-01", says="--until")
        self.fails(2, "audit", "list", "--limit", "1e3", says="--limit")
        self.fails(1, "audit", "list", "--since", "2024-02-01", "--until", "2024-01-01",
                   says="INVALID_ARGUMENT")
        self.fails(1, "audit", "list", "--session", "bad id!", says="INVALID_ARGUMENT")
        self.fails(1, "audit", "delete", "not-an-event-id!", says="INVALID_ARGUMENT")

    # -- config ----------------------------------------------------------------------
    def config_json(self):
        return self.ok_json("config", "get")["config"]

    def restore_config(self, before):
        """Puts every setting back as it was (run as a cleanup)."""
        pairs = []
        for field in CFG.Config.DESCRIPTOR.fields:
            v = before[field.name]
            if isinstance(v, bool):
                v = "true" if v else "false"
            pairs.append("%s=%s" % (field.name, v))
        self.ok("config", "set", *pairs)

    def test_config_get(self):
        out = self.ok("config", "get")
        lines = out.splitlines()
        names = [f.name for f in CFG.Config.DESCRIPTOR.fields]
        self.assertEqual([line.split(" = ")[0] for line in lines], names,
                         "every field, in order, as name = value")
        values = dict(line.split(" = ", 1) for line in lines)
        self.assertIn(values["guard_mode"], ("MONITOR", "INTERVENE", "ENFORCE"))
        self.assertIn(values["enable_ai_eval"], ("true", "false"))
        self.assertTrue(values["max_steps"].isdigit())
        got = self.ok_json("config", "get")
        self.assertEqual(set(got["config"]), set(names))
        self.assertEqual(got["config"]["guard_mode"], "GUARD_MODE_" + values["guard_mode"])
        self.assertEqual(str(got["config"]["max_steps"]), values["max_steps"])
        self.assertIn("server_version", got["runtime"])
        self.assertIn("started_at", got["runtime"])

    def test_config_set_round_trips(self):
        before = self.config_json()
        self.addCleanup(self.restore_config, before)
        out = self.ok("config", "set", "guard_mode=enforce", "loop_window=7",
                      "enable_ai_eval=false", "bedrock_region=eu-west-1",
                      "bedrock_endpoint=http://127.0.0.1:9/x=y")
        self.assertEqual(out.splitlines(), [
            "guard_mode = ENFORCE", "loop_window = 7", "enable_ai_eval = false",
            "bedrock_region = eu-west-1", "bedrock_endpoint = http://127.0.0.1:9/x=y"])
        out = self.ok("config", "get")
        for line in ("guard_mode = ENFORCE", "loop_window = 7", "enable_ai_eval = false",
                     "bedrock_region = eu-west-1", "bedrock_endpoint = http://127.0.0.1:9/x=y",
                     "max_steps = %d" % before["max_steps"]):
            self.assertIn(line, out.splitlines())
        cfg = self.config_json()
        self.assertEqual(cfg["guard_mode"], "GUARD_MODE_ENFORCE")
        self.assertEqual(cfg["loop_window"], 7)
        self.assertIs(cfg["enable_ai_eval"], False)
        self.assertEqual(cfg["loop_threshold"], before["loop_threshold"], "unnamed keys stay")

        # Full enum names, any case; JSON output is the whole config.
        r = self.ok_json("config", "set", "guard_mode=GUARD_MODE_INTERVENE",
                         "enable_ai_eval=true", "bedrock_endpoint=")
        self.assertEqual(r["config"]["guard_mode"], "GUARD_MODE_INTERVENE")
        self.assertIs(r["config"]["enable_ai_eval"], True)
        self.assertEqual(r["config"]["bedrock_endpoint"], "")
        self.assertEqual(r["config"]["loop_window"], 7)
        self.assertEqual(self.config_json()["guard_mode"], "GUARD_MODE_INTERVENE")
        # A key given twice: the last value wins.
        self.ok("config", "set", "max_steps=60", "max_steps=61")
        self.assertEqual(self.config_json()["max_steps"], 61)

    def test_config_set_bad_values(self):
        before = self.config_json()
        self.addCleanup(self.restore_config, before)
        # Client-side: not KEY=VALUE, unknown keys, values that do not fit the type.
        self.fails(2, "config", "set", "loop_window", says="KEY=VALUE")
        self.fails(2, "config", "set", "=5", says="KEY=VALUE")
        self.fails(2, "config", "set", "no_such_key=1", says="no_such_key")
        self.fails(2, "config", "set", "Guard_Mode=monitor", says="Guard_Mode")
        self.fails(2, "config", "set", "guard_mode=paranoid", says="guard_mode")
        self.fails(2, "config", "set", "guard_mode=unspecified", says="guard_mode")
        self.fails(2, "config", "set", "enable_ai_eval=yes", says="enable_ai_eval")
        self.fails(2, "config", "set", "loop_window=-1", says="loop_window")
        self.fails(2, "config", "set", "loop_window=4294967296", says="loop_window")
        self.fails(2, "config", "set", "loop_window=7x", says="loop_window")
        self.fails(2, "config", "set", "loop_window=", says="loop_window")
        self.fails(2, "config", "set", "loop_window=7", "bogus=1", says="bogus")
        # Server-side range checks: INVALID_ARGUMENT with the server's message.
        self.fails(1, "config", "set", "loop_window=1", says="loop_window")
        self.fails(1, "config", "set", "security_score_threshold=101",
                   says="INVALID_ARGUMENT")
        self.fails(1, "config", "set", "loop_window=8", "executor_slots=0",
                   says="executor_slots")
        self.assertEqual(self.config_json(), before, "nothing changed")

    # -- stats -----------------------------------------------------------------------
    def test_stats(self):
        st = self.ok_json("stats")["stats"]
        for field in ("total_sessions", "active_sessions", "completed_sessions",
                      "terminated_sessions", "avg_efficiency", "avg_security", "total_steps",
                      "total_issues", "revision"):
            self.assertIn(field, st)
        self.assertGreaterEqual(st["total_sessions"], 5)
        self.assertGreaterEqual(st["total_issues"], 2)
        by_type = {t["issue_type"]: t["count"] for t in st["issues_by_type"]}
        self.assertGreaterEqual(by_type.get("ISSUE_TYPE_INFINITE_LOOP", 0), 1)
        self.assertEqual(sum(by_type.values()), st["total_issues"])
        self.assertEqual(st["total_sessions"], st["active_sessions"] + st["completed_sessions"]
                         + st["terminated_sessions"])
        self.assertGreaterEqual(st["total_steps"], 10)
        by_quality = {q["quality"]: q["count"] for q in st.get("sessions_by_quality", [])}
        self.assertEqual(sum(by_quality.values()), st["total_sessions"])

        out = self.ok("stats")
        values = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 2:
                values.setdefault(parts[0], parts[1])
        self.assertEqual(values["sessions"], str(st["total_sessions"]))
        self.assertEqual(values["active"], str(st["active_sessions"]))
        self.assertEqual(values["completed"], str(st["completed_sessions"]))
        self.assertEqual(values["terminated"], str(st["terminated_sessions"]))
        self.assertEqual(values["steps"], str(st["total_steps"]))
        self.assertEqual(values["issues"], str(st["total_issues"]))
        self.assertEqual(values["revision"], str(st["revision"]))
        self.assertEqual(values["agents"], str(st["total_agents"]))
        self.assertEqual(values["efficiency"], "%.1f" % st["avg_efficiency"])
        self.assertEqual(values["security"], "%.1f" % st["avg_security"])
        self.assertIn("QUALITY", values)
        self.assertIn("STUCK", values, "the looping session")
        self.assertIn("INFINITE_LOOP", values)
        for quality, count in by_quality.items():
            self.assertEqual(values[quality[len("QUALITY_"):]], str(count))
        for it in st.get("issues_by_type", []):
            self.assertEqual(values[it["issue_type"][len("ISSUE_TYPE_"):]], str(it["count"]))

    # -- the older commands, through the shared paging and parsing -------------------
    def test_sessions_and_steps(self):
        out = self.ok("sessions", "list", "--agent", self.agent_name)
        rows = table_rows(out, self.sid)
        self.assertEqual(len(rows), 1, out)
        self.assertEqual(rows[0].split()[1:3], [self.agent_name, "COMPLETED"])
        listed = self.ok_json("sessions", "list", "--swarm", self.swarm_id, "--limit", "0")
        self.assertEqual(sorted(s["session_id"] for s in listed), sorted(self.swarm_sessions))
        self.assertEqual(len(self.ok_json("sessions", "list", "--limit", "2")), 2)
        self.fails(2, "sessions", "list", "--status", "sleeping", says="--status")
        self.fails(2, "sessions", "list", "--page-size", "lots", says="--page-size")

        got = self.ok_json("sessions", "get", self.sid, "--steps")  # options after the id
        self.assertEqual(len(got["session"]["steps"]), 4)
        out = self.ok("sessions", "get", self.sid, "--steps")
        self.assertIn("session    " + self.sid, out)
        self.assertEqual(len([l for l in out.splitlines() if l.startswith("  step ")]), 4)

        out = self.ok("steps", "list", self.sid)
        self.assertEqual([l.split()[1] for l in out.splitlines()[1:]],
                         ["read_file"] * 3 + ["fetch_url"])
        steps = self.ok_json("steps", "list", self.sid)
        self.assertEqual([s["step_number"] for s in steps], [1, 2, 3, 4])

        sid = uid("cli-del")
        self.open_session(sid)
        self.assertIn("deleted " + sid, self.ok("sessions", "delete", sid))
        self.fails(1, "sessions", "delete", sid, says="NOT_FOUND")


class SwarmBadIdTest(CliCase):
    """GetSwarm with a malformed swarm_id, on a server of its own: load_swarm()
    once returned INVALID_ARGUMENT before setting c->items, and get_swarm()
    freed that uninitialised pointer, which could bring nornd down."""

    @classmethod
    def seed(cls):
        pass

    def test_swarms_get_bad_id(self):
        for _ in range(3):
            self.ok("swarms", "list")
            self.fails(1, "swarms", "get", "no-such-swarm", says="NOT_FOUND")
            self.fails(1, "swarms", "get", "bad id!", says="INVALID_ARGUMENT")
        self.ok("stats")

if __name__ == "__main__":
    unittest.main()
