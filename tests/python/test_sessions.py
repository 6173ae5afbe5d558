"""SessionService through Python grpcio: every RPC, each validation rule, pagination,
filters and deletion (the crash test is test_crash.py).

Status codes are those of design/api.md: malformed or out-of-range input
INVALID_ARGUMENT, unknown session NOT_FOUND, a step for a completed session or
EndStep without BeginStep FAILED_PRECONDITION; every rejection's message names
the offending field.

Run: cd tests/python && NORND=... NORN_PROTO_DIR=... NORN_PY_GEN=... \
     /usr/bin/python3 -m unittest -v test_sessions
"""

import math
import queue
import random
import re
import threading
import time
import unittest

import nornd_proc
from nornd_proc import start_nornd

nornd_proc.ensure_stubs()

import grpc  # noqa: E402
from google.protobuf import field_mask_pb2, struct_pb2, timestamp_pb2  # noqa: E402
from norn.v1 import common_pb2 as C  # noqa: E402
from norn.v1 import config_service_pb2, config_service_pb2_grpc  # noqa: E402
from norn.v1 import session_service_pb2 as S  # noqa: E402
from norn.v1 import session_service_pb2_grpc as S_grpc  # noqa: E402

import norn_store_seed  # noqa: E402

RPC_TIMEOUT = 10.0
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
OK = grpc.StatusCode.OK

MiB = 1024 * 1024
GEN_ID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")  # Crockford base32, ULID-like
_ids = iter(range(1, 1 << 62))
_ids_lock = threading.Lock()


def uid(prefix="s"):
    """A session/tool-use id unique within this test process."""
    with _ids_lock:
        return "%s-%d-%d" % (prefix, int(time.time() * 1000) % 100000000, next(_ids))


def ts(seconds, nanos=0):
    return timestamp_pb2.Timestamp(seconds=int(seconds), nanos=nanos)


def micros(t):
    return t.seconds * 1000000 + t.nanos // 1000


def struct(**kw):
    s = struct_pb2.Struct()
    s.update(kw)
    return s


def fresh_input():
    """A benign tool input never sent before: the server's analyzer judges
    repeated calls (duplicates, loops), which these tests do not want."""
    with _ids_lock:
        return struct(query="notes about topic %d" % next(_ids))


def step(tool_use_id, tool_name="read_file", result="ok", status=C.RESULT_STATUS_SUCCESS, **kw):
    return C.Step(tool_use_id=tool_use_id, tool_name=tool_name,
                  tool_input=kw.pop("tool_input", None) or fresh_input(),
                  result_text=result, result_status=status, **kw)


class SessionTestCase(unittest.TestCase):
    """Helpers shared by the classes; `cls.stub` is a SessionServiceStub."""

    nornd = None
    stub = None

    @classmethod
    def start_server(cls, **kw):
        cls.nornd = start_nornd(cls, **kw)
        ch = cls.nornd.channel()
        grpc.channel_ready_future(ch).result(timeout=10)
        cls.stub = S_grpc.SessionServiceStub(ch)

    # -- assertions ------------------------------------------------------------
    def assertRpcError(self, fn, code, field=None, msg=None):
        """fn() must fail with `code`, its message naming `field`; returns the error."""
        try:
            r = fn()
        except grpc.RpcError as e:
            self.assertEqual(e.code(), code, "%s: got %s (%s)" % (msg or "status", e.code(),
                                                                 e.details()))
            if field is not None:
                self.assertIn(field, e.details() or "",
                              "%s: the message must name %r" % (msg or "status", field))
            return e
        self.fail("%s: expected %s, the call succeeded: %s" % (msg or "call", code, r))

    def assertTimestampSet(self, t, what):
        self.assertTrue(t.seconds > 0 or t.nanos > 0, "%s is not set" % what)

    # -- calls -------------------------------------------------------------------
    def open(self, session_id="", **kw):
        return self.stub.OpenSession(S.OpenSessionRequest(session_id=session_id, **kw),
                                     timeout=RPC_TIMEOUT)

    def begin(self, sid, tool_use_id, tool_name="read_file", **kw):
        if "tool_input" not in kw:
            kw["tool_input"] = fresh_input()
        return self.stub.BeginStep(S.BeginStepRequest(session_id=sid, tool_use_id=tool_use_id,
                                                      tool_name=tool_name, **kw),
                                   timeout=RPC_TIMEOUT).verdict

    def end(self, sid, tool_use_id, result="done", status=C.RESULT_STATUS_SUCCESS, **kw):
        return self.stub.EndStep(S.EndStepRequest(session_id=sid, tool_use_id=tool_use_id,
                                                  result_text=result, result_status=status, **kw),
                                 timeout=RPC_TIMEOUT).verdict

    def record(self, sid, steps):
        return self.stub.RecordSteps(S.RecordStepsRequest(session_id=sid, steps=steps),
                                     timeout=RPC_TIMEOUT).verdicts

    def record_n(self, sid, n, prefix=None):
        prefix = prefix or uid("tu")
        return self.record(sid, [step("%s-%d" % (prefix, i)) for i in range(n)])

    def complete(self, sid, **kw):
        return self.stub.CompleteSession(S.CompleteSessionRequest(session_id=sid, **kw),
                                         timeout=RPC_TIMEOUT).session

    def get(self, sid, steps=False, issues=False):
        return self.stub.GetSession(S.GetSessionRequest(session_id=sid, include_steps=steps,
                                                        include_issues=issues),
                                    timeout=RPC_TIMEOUT).session

    def list_steps(self, sid, page_size=0, page_token=""):
        return self.stub.ListSteps(S.ListStepsRequest(session_id=sid, page_size=page_size,
                                                      page_token=page_token),
                                   timeout=RPC_TIMEOUT)

    def all_steps(self, sid):
        out, tok = [], ""
        while True:
            r = self.list_steps(sid, 1000, tok)
            out.extend(r.steps)
            tok = r.next_page_token
            if not tok:
                return out

    def list_sessions(self, **kw):
        return self.stub.ListSessions(S.ListSessionsRequest(**kw), timeout=RPC_TIMEOUT)

    def list_all(self, page_size=7, max_pages=1000, **filters):
        """Pages through ListSessions; returns (sessions, pages, revisions)."""
        out, pages, revs, tok = [], [], [], ""
        for _ in range(max_pages):
            r = self.list_sessions(page_size=page_size, page_token=tok, **filters)
            self.assertLessEqual(len(r.sessions), page_size or 50)
            out.extend(r.sessions)
            pages.append(len(r.sessions))
            revs.append(r.revision)
            tok = r.next_page_token
            if not tok:
                return out, pages, revs
        self.fail("ListSessions did not end within %d pages (%s)" % (max_pages, filters))


# ===========================================================================
# OpenSession
# ===========================================================================
class OpenSessionTest(SessionTestCase):
    @classmethod
    def setUpClass(cls):
        cls.start_server()

    def test_new_session_gets_generated_time_ordered_id(self):
        before = time.time()
        r = self.open(agent_name="gen-agent")
        self.assertFalse(r.resumed)
        s = r.session
        self.assertRegex(s.session_id, GEN_ID)
        self.assertEqual(s.status, C.SESSION_STATUS_ACTIVE)
        self.assertEqual(s.agent_name, "gen-agent")
        self.assertEqual(s.total_steps, 0)
        self.assertEqual(len(s.steps), 0)
        self.assertGreater(s.revision, 0)
        self.assertEqual(s.guard_mode, C.GUARD_MODE_MONITOR, "configured default guard mode")
        self.assertEqual(s.overall_quality, C.QUALITY_PENDING)
        self.assertFalse(s.HasField("ended_at"))
        self.assertLess(abs(micros(s.started_at) / 1e6 - before), 60, "server time start")
        self.assertEqual(r.verdict.action, C.ACTION_CONTINUE)
        self.assertEqual(r.verdict.step_number, 0)
        # The session really exists.
        self.assertEqual(self.get(s.session_id).session_id, s.session_id)
        # Generated ids are unique and time-ordered.
        ids = [s.session_id]
        for _ in range(5):
            time.sleep(0.003)
            ids.append(self.open().session.session_id)
        self.assertEqual(len(set(ids)), len(ids))
        for i in ids:
            self.assertRegex(i, GEN_ID)
        self.assertEqual(ids, sorted(ids), "ids generated ms apart must sort by time")

    def test_explicit_id_and_every_field_round_trip(self):
        sid = uid("explicit")
        task = C.TaskDefinition(task_id="t-1", description="summarise the file",
                                expected_tools=["read_file", "write_file"], max_steps=7,
                                success_criteria="a summary exists")
        r = self.open(sid, agent_name="agent A", agent_id="agent-a.1", model="nova-lite",
                      task=task, system_prompt="You are a careful assistant.",
                      guard_mode=C.GUARD_MODE_INTERVENE, swarm_id="swarm.1", swarm_order=2,
                      handoff_input="from the planner", started_at=ts(1700000000, 123456000))
        self.assertFalse(r.resumed)
        for s in (r.session, self.get(sid)):
            self.assertEqual(s.session_id, sid)
            self.assertEqual(s.agent_name, "agent A")
            self.assertEqual(s.agent_id, "agent-a.1")
            self.assertEqual(s.model, "nova-lite")
            self.assertEqual(s.task.description, "summarise the file")
            self.assertEqual(list(s.task.expected_tools), ["read_file", "write_file"])
            self.assertEqual(s.task.max_steps, 7)
            self.assertEqual(s.task.success_criteria, "a summary exists")
            self.assertEqual(s.system_prompt, "You are a careful assistant.")
            self.assertEqual(s.guard_mode, C.GUARD_MODE_INTERVENE)
            self.assertEqual(s.swarm_id, "swarm.1")
            self.assertEqual(s.swarm_order, 2)
            self.assertEqual(s.handoff_input, "from the planner")
            self.assertEqual(micros(s.started_at), 1700000000123456)
            self.assertEqual(s.status, C.SESSION_STATUS_ACTIVE)

    def test_longest_id_and_every_allowed_character(self):
        for sid in ("x" * 128, "aZ09._:-" + uid("chars"), "A"):
            with self.subTest(sid=sid[:20]):
                r = self.open(sid)
                self.assertEqual(r.session.session_id, sid)
                self.assertEqual(self.get(sid).session_id, sid)

    def test_resume_reactivates_and_fills_only_empty_fields(self):
        sid = uid("resume")
        first = self.open(sid, agent_name="resumer",
                          task=C.TaskDefinition(description="original task"),
                          started_at=ts(1700000100)).session
        self.record_n(sid, 2)
        done = self.complete(sid)
        self.assertEqual(done.status, C.SESSION_STATUS_COMPLETED)
        self.assertTimestampSet(done.ended_at, "ended_at")

        r = self.open(sid, task=C.TaskDefinition(description="another task"),
                      started_at=ts(1800000000), model="m2")
        self.assertTrue(r.resumed)
        s = r.session
        self.assertEqual(s.status, C.SESSION_STATUS_ACTIVE)
        self.assertFalse(s.HasField("ended_at"), "ended_at cleared on resume")
        self.assertEqual(s.task.description, "original task", "task only filled when empty")
        self.assertEqual(s.total_steps, 2)
        self.assertEqual(s.model, "m2")
        self.assertEqual(micros(s.started_at), micros(first.started_at), "started_at kept")
        self.assertGreater(s.revision, done.revision)
        stored = self.get(sid)
        self.assertEqual(stored.status, C.SESSION_STATUS_ACTIVE)
        self.assertEqual(stored.task.description, "original task")
        # Step numbering continues across invocations.
        v = self.record_n(sid, 1)
        self.assertEqual(v[0].step_number, 3)
        # Resuming an active session is idempotent.
        again = self.open(sid)
        self.assertTrue(again.resumed)
        self.assertEqual(again.session.status, C.SESSION_STATUS_ACTIVE)
        self.assertEqual(again.session.total_steps, 3)

    def test_resume_fills_a_missing_task(self):
        sid = uid("notask")
        s = self.open(sid).session
        self.assertFalse(s.task.description)
        r = self.open(sid, task=C.TaskDefinition(description="learnt later", max_steps=3))
        self.assertTrue(r.resumed)
        self.assertEqual(r.session.task.description, "learnt later")
        self.assertEqual(self.get(sid).task.max_steps, 3)

    def test_bad_session_ids(self):
        for bad in ("has space", "a/b", "../etc", "semi;colon", "caf\u00e9", "x" * 129,
                    "tab\there", "nul\u0001"):
            with self.subTest(id=bad[:20]):
                self.assertRpcError(lambda: self.open(bad), INVALID, "session_id")
                self.assertRpcError(lambda: self.get(bad), INVALID, "session_id")

    def test_other_bad_fields(self):
        cases = [
            ("agent_id", dict(agent_id="bad id")),
            ("swarm_id", dict(swarm_id="swarm/1")),
            ("swarm_id", dict(swarm_id="s" * 129)),
            ("agent_name", dict(agent_name="n" * 257)),
            ("model", dict(model="m" * 257)),
            ("system_prompt", dict(system_prompt="p" * (256 * 1024 + 1))),
            ("handoff_input", dict(handoff_input="h" * (256 * 1024 + 1))),
            ("task.description", dict(task=C.TaskDefinition(description="d" * (64 * 1024 + 1)))),
            ("task.expected_tools", dict(task=C.TaskDefinition(expected_tools=["t"] * 101))),
            ("started_at", dict(started_at=ts(-5))),
            ("started_at", dict(started_at=ts(1700000000, 1000000000))),
        ]
        for field, kw in cases:
            with self.subTest(field=field):
                sid = uid("badfield")
                self.assertRpcError(lambda: self.open(sid, **kw), INVALID, field)
                self.assertRpcError(lambda: self.get(sid), NOT_FOUND, "session_id",
                                    "nothing stored after a rejected OpenSession")

    def test_unknown_guard_mode_rejected(self):
        for value in (99, 4, -1):
            with self.subTest(guard_mode=value):
                sid = uid("guard")
                self.assertRpcError(lambda: self.open(sid, guard_mode=value), INVALID,
                                    "guard_mode")
                self.assertRpcError(lambda: self.get(sid), NOT_FOUND)
        for value in (C.GUARD_MODE_MONITOR, C.GUARD_MODE_INTERVENE, C.GUARD_MODE_ENFORCE):
            with self.subTest(guard_mode=value):
                self.assertEqual(self.open(uid("guard"), guard_mode=value).session.guard_mode,
                                 value)


# ===========================================================================
# BeginStep / EndStep
# ===========================================================================
class BeginEndStepTest(SessionTestCase):
    @classmethod
    def setUpClass(cls):
        cls.start_server()

    def setUp(self):
        self.sid = uid("steps")
        self.open(self.sid, agent_name="stepper")

    def test_numbering_and_statuses(self):
        vs = [self.begin(self.sid, "tu-%d" % i, tool_name="tool_%d" % i,
                         tool_input=struct(query="input %d" % i)) for i in (1, 2, 3)]
        self.assertEqual([v.step_number for v in vs], [1, 2, 3])
        self.assertEqual(len({v.step_id for v in vs}), 3, "distinct step ids")
        for i, v in enumerate(vs, 1):
            self.assertEqual(v.action, C.ACTION_CONTINUE)
            self.assertEqual(v.status, C.STEP_STATUS_RUNNING)
            self.assertEqual(v.tool_use_id, "tu-%d" % i)
            self.assertTrue(v.step_id)
        running = self.get(self.sid, steps=True)
        self.assertEqual(running.total_steps, 3)
        self.assertEqual([s.status for s in running.steps], [C.STEP_STATUS_RUNNING] * 3)

        e1 = self.end(self.sid, "tu-1", "fine", C.RESULT_STATUS_SUCCESS, execution_time_ms=12.5)
        e2 = self.end(self.sid, "tu-2", "boom", C.RESULT_STATUS_ERROR)
        e3 = self.end(self.sid, "tu-3", "raised", C.RESULT_STATUS_EXCEPTION)
        self.assertEqual((e1.status, e2.status, e3.status),
                         (C.STEP_STATUS_SUCCESS, C.STEP_STATUS_FAILED, C.STEP_STATUS_FAILED))
        self.assertEqual((e1.step_number, e2.step_number, e3.step_number), (1, 2, 3))
        self.assertEqual(e2.tool_use_id, "tu-2")
        self.assertEqual(e1.step_id, vs[0].step_id)
        for v in (e1, e2, e3):
            self.assertEqual(v.action, C.ACTION_CONTINUE)

        s = self.get(self.sid, steps=True)
        self.assertEqual(s.total_steps, 3)
        self.assertEqual(s.successful_steps, 1)
        self.assertEqual(s.failed_steps, 2)
        st = {x.step_number: x for x in s.steps}
        self.assertEqual(st[1].tool_name, "tool_1")
        self.assertEqual(st[1].result_text, "fine")
        self.assertEqual(st[1].result_status, C.RESULT_STATUS_SUCCESS)
        self.assertEqual(st[1].execution_time_ms, 12.5)
        self.assertEqual(dict(st[1].tool_input), {"query": "input 1"})
        self.assertTimestampSet(st[1].started_at, "step started_at")
        self.assertTimestampSet(st[1].ended_at, "step ended_at")
        self.assertGreaterEqual(st[2].execution_time_ms, 0)
        self.assertEqual(st[3].result_status, C.RESULT_STATUS_EXCEPTION)
        self.assertEqual(st[2].status, C.STEP_STATUS_FAILED)

    def test_unspecified_result_status_is_success(self):
        self.begin(self.sid, "u1")
        v = self.end(self.sid, "u1", "ok", C.RESULT_STATUS_UNSPECIFIED)
        self.assertEqual(v.status, C.STEP_STATUS_SUCCESS)
        self.assertEqual(self.all_steps(self.sid)[0].result_status, C.RESULT_STATUS_SUCCESS)

    def test_client_times_and_explicit_step_number(self):
        v = self.begin(self.sid, "t1", step_number=1, started_at=ts(1700000000))
        self.assertEqual(v.step_number, 1)
        self.end(self.sid, "t1", ended_at=ts(1700000002, 500000000))
        s = self.all_steps(self.sid)[0]
        self.assertEqual(micros(s.started_at), 1700000000000000)
        self.assertEqual(micros(s.ended_at), 1700000002500000)
        self.assertAlmostEqual(s.execution_time_ms, 2500.0, delta=0.01,
                               msg="derived from the client times when not given")

    def test_wrong_explicit_step_number(self):
        self.begin(self.sid, "a")
        for n in (1, 3, 100):
            with self.subTest(step_number=n):
                self.assertRpcError(lambda: self.begin(self.sid, "b%d" % n, step_number=n),
                                    INVALID, "step_number")
        self.assertEqual(self.begin(self.sid, "b", step_number=2).step_number, 2)

    def test_end_without_begin(self):
        self.assertRpcError(lambda: self.end(self.sid, "never-begun"), PRECONDITION,
                            "tool_use_id")
        self.assertEqual(self.get(self.sid).total_steps, 0)

    def test_end_twice(self):
        self.begin(self.sid, "once")
        self.end(self.sid, "once", "first")
        self.assertRpcError(lambda: self.end(self.sid, "once", "second"), PRECONDITION,
                            "tool_use_id")
        steps = self.all_steps(self.sid)
        self.assertEqual(len(steps), 1)
        self.assertEqual(steps[0].result_text, "first", "the second EndStep changed nothing")
        s = self.get(self.sid)
        self.assertEqual((s.successful_steps, s.failed_steps), (1, 0))

    def test_begin_with_reused_tool_use_id(self):
        self.begin(self.sid, "dup")
        self.assertRpcError(lambda: self.begin(self.sid, "dup"), PRECONDITION, "tool_use_id",
                            "while running")
        self.end(self.sid, "dup")
        self.assertRpcError(lambda: self.begin(self.sid, "dup"), PRECONDITION, "tool_use_id",
                            "after it ended")
        self.assertEqual(self.get(self.sid).total_steps, 1)
        # The same tool_use_id in another session is fine.
        other = uid("other")
        self.open(other)
        self.assertEqual(self.begin(other, "dup").step_number, 1)

    def test_unknown_session(self):
        missing = uid("missing")
        self.assertRpcError(lambda: self.begin(missing, "x"), NOT_FOUND, "session_id")
        self.assertRpcError(lambda: self.end(missing, "x"), NOT_FOUND, "session_id")

    def test_required_and_malformed_fields(self):
        cases = [
            ("tool_name", lambda: self.begin(self.sid, "t", tool_name="")),
            ("tool_name", lambda: self.begin(self.sid, "t", tool_name="n" * 257)),
            ("tool_use_id", lambda: self.begin(self.sid, "", tool_name="x")),
            ("tool_use_id", lambda: self.begin(self.sid, "bad id", tool_name="x")),
            ("session_id", lambda: self.begin("", "t")),
            ("session_id", lambda: self.begin("bad/id", "t")),
            ("started_at", lambda: self.begin(self.sid, "t", started_at=ts(-1))),
            ("tool_use_id", lambda: self.end(self.sid, "")),
            ("session_id", lambda: self.end("", "t")),
        ]
        for field, fn in cases:
            with self.subTest(field=field):
                self.assertRpcError(fn, INVALID, field)
        self.assertEqual(self.get(self.sid).total_steps, 0, "nothing stored")

    def test_oversized_tool_input(self):
        big = struct(blob="x" * (256 * 1024 + 10))
        self.assertRpcError(lambda: self.begin(self.sid, "big", tool_input=big), INVALID,
                            "tool_input")
        self.assertEqual(self.get(self.sid).total_steps, 0)
        # Just under the limit is accepted.
        ok = struct(blob="x" * (250 * 1024))
        self.assertEqual(self.begin(self.sid, "big", tool_input=ok).step_number, 1)

    def test_oversized_result_text(self):
        self.begin(self.sid, "r")
        # Over max_result_bytes (1 MiB default) but under the 4 MiB message limit.
        self.assertRpcError(lambda: self.end(self.sid, "r", "y" * (MiB + MiB // 2)), INVALID,
                            "result_text")
        self.assertRpcError(lambda: self.end(self.sid, "r", "y" * (MiB + 1)), INVALID,
                            "result_text")
        st = self.all_steps(self.sid)[0]
        self.assertEqual(st.status, C.STEP_STATUS_RUNNING, "still running after the rejection")
        # Exactly the limit is accepted, in full.
        v = self.end(self.sid, "r", "z" * MiB)
        self.assertEqual(v.status, C.STEP_STATUS_SUCCESS)
        self.assertEqual(len(self.all_steps(self.sid)[0].result_text), MiB)

    def test_bad_execution_time_and_result_status(self):
        self.begin(self.sid, "e")
        for bad in (-1.0, -0.001, float("nan"), float("inf")):
            with self.subTest(execution_time_ms=bad):
                self.assertRpcError(lambda: self.end(self.sid, "e", execution_time_ms=bad),
                                    INVALID, "execution_time_ms")
        for bad in (4, 99, -1):
            with self.subTest(result_status=bad):
                self.assertRpcError(lambda: self.end(self.sid, "e", status=bad), INVALID,
                                    "result_status")
        self.assertRpcError(lambda: self.end(self.sid, "e", ended_at=ts(1, -5)), INVALID,
                            "ended_at")
        self.assertEqual(self.all_steps(self.sid)[0].status, C.STEP_STATUS_RUNNING)
        self.assertEqual(self.end(self.sid, "e", execution_time_ms=0).status,
                         C.STEP_STATUS_SUCCESS)

    def test_no_steps_after_completion(self):
        self.begin(self.sid, "open-step")
        self.complete(self.sid)
        self.assertRpcError(lambda: self.begin(self.sid, "late"), PRECONDITION)
        self.assertRpcError(lambda: self.end(self.sid, "open-step"), PRECONDITION)
        self.assertEqual(self.get(self.sid).total_steps, 1)
        # Reopening allows them again; the step left running can still end.
        self.open(self.sid)
        self.assertEqual(self.end(self.sid, "open-step").step_number, 1)
        self.assertEqual(self.begin(self.sid, "late").step_number, 2)


# ===========================================================================
# RecordSteps
# ===========================================================================
class RecordStepsTest(SessionTestCase):
    @classmethod
    def setUpClass(cls):
        cls.start_server()

    def setUp(self):
        self.sid = uid("rec")
        self.open(self.sid, agent_name="recorder")

    def test_batches_of_1_10_100(self):
        expected = 0
        for n in (1, 10, 100):
            with self.subTest(batch=n):
                steps = [step("b%d-%d" % (n, i), tool_name="tool%d" % (i % 3),
                              status=C.RESULT_STATUS_ERROR if i % 4 == 3 else
                              C.RESULT_STATUS_SUCCESS, result="r%d" % i,
                              execution_time_ms=float(i))
                         for i in range(n)]
                vs = self.record(self.sid, steps)
                self.assertEqual(len(vs), n)
                first, expected = expected + 1, expected + n
                self.assertEqual([v.step_number for v in vs], list(range(first, expected + 1)))
                self.assertEqual([v.tool_use_id for v in vs], [s.tool_use_id for s in steps])
                self.assertEqual(len({v.step_id for v in vs}), n)
                for i, v in enumerate(vs):
                    self.assertEqual(v.action, C.ACTION_CONTINUE)
                    self.assertEqual(v.status, C.STEP_STATUS_FAILED if i % 4 == 3
                                     else C.STEP_STATUS_SUCCESS)
        s = self.get(self.sid, steps=True)
        self.assertEqual(s.total_steps, 111)
        self.assertEqual(len(s.steps), 111)
        self.assertEqual([x.step_number for x in s.steps], list(range(1, 112)))
        self.assertEqual(s.successful_steps + s.failed_steps, 111)
        self.assertEqual(s.failed_steps, sum(1 for n in (1, 10, 100) for i in range(n)
                                             if i % 4 == 3))
        last = s.steps[-1]
        self.assertEqual((last.tool_use_id, last.result_text, last.execution_time_ms),
                         ("b100-99", "r99", 99.0))

    def test_batch_size_limits(self):
        self.assertRpcError(lambda: self.record(self.sid, []), INVALID, "steps")
        self.assertRpcError(lambda: self.record_n(self.sid, 1001), INVALID, "steps")
        self.assertEqual(self.get(self.sid).total_steps, 0)
        vs = self.record_n(self.sid, 1000)
        self.assertEqual(vs[-1].step_number, 1000)

    def test_empty_tool_use_ids_are_allowed(self):
        vs = self.record(self.sid, [step(""), step(""), step("")])
        self.assertEqual([v.step_number for v in vs], [1, 2, 3])

    def test_duplicate_tool_use_id_in_batch(self):
        steps = [step("a"), step("b"), step("a")]
        self.assertRpcError(lambda: self.record(self.sid, steps), INVALID, "tool_use_id")
        self.assertEqual(self.get(self.sid).total_steps, 0, "nothing appended")

    def test_tool_use_id_used_before(self):
        self.begin(self.sid, "taken")
        self.record(self.sid, [step("rec-taken")])
        for dup in ("taken", "rec-taken"):
            with self.subTest(tool_use_id=dup):
                self.assertRpcError(lambda: self.record(self.sid, [step("fresh"), step(dup)]),
                                    PRECONDITION, "tool_use_id")
        self.assertEqual(self.get(self.sid).total_steps, 2, "nothing appended")
        # And BeginStep refuses an id RecordSteps used.
        self.assertRpcError(lambda: self.begin(self.sid, "rec-taken"), PRECONDITION,
                            "tool_use_id")

    def test_interleaves_with_begin_end(self):
        self.assertEqual(self.begin(self.sid, "running").step_number, 1)
        vs = self.record(self.sid, [step("r1"), step("r2")])
        self.assertEqual([v.step_number for v in vs], [2, 3])
        self.assertEqual(self.end(self.sid, "running").step_number, 1)
        s = self.get(self.sid, steps=True)
        self.assertEqual([x.tool_use_id for x in s.steps], ["running", "r1", "r2"])
        self.assertEqual(s.successful_steps, 3)

    def test_explicit_step_numbers(self):
        vs = self.record(self.sid, [step("n1", step_number=1), step("n2", step_number=2)])
        self.assertEqual([v.step_number for v in vs], [1, 2])
        # A number that is not the next one is rejected (as BeginStep does),
        # not silently renumbered.
        for bad in ([step("x", step_number=7)], [step("y", step_number=3), step("z", step_number=3)],
                    [step("w", step_number=1)]):
            with self.subTest(numbers=[s.step_number for s in bad]):
                self.assertRpcError(lambda: self.record(self.sid, bad), INVALID, "step_number")
        self.assertEqual(self.get(self.sid).total_steps, 2)

    def test_per_step_validation_is_atomic(self):
        good = [step("g%d" % i) for i in range(5)]
        cases = [
            ("tool_name", step("bad", tool_name="")),
            ("tool_name", step("bad", tool_name="t" * 257)),
            ("tool_use_id", step("bad id")),
            ("result_text", step("bad", result="q" * (MiB + MiB // 2))),
            ("tool_input", step("bad", tool_input=struct(blob="i" * (256 * 1024 + 10)))),
            ("execution_time_ms", step("bad", execution_time_ms=-3.0)),
            ("result_status", step("bad", status=42)),
            ("started_at", step("bad", started_at=ts(-7))),
            ("ended_at", step("bad", ended_at=ts(1, 2000000000))),
        ]
        for field, bad in cases:
            with self.subTest(field=field):
                e = self.assertRpcError(lambda: self.record(self.sid, good + [bad]), INVALID,
                                        field)
                self.assertIn("steps[5]", e.details(), "the message names the step's index")
        self.assertEqual(self.get(self.sid).total_steps, 0, "nothing appended")

    def test_unknown_and_completed_sessions(self):
        self.assertRpcError(lambda: self.record_n(uid("nosuch"), 1), NOT_FOUND, "session_id")
        self.assertRpcError(lambda: self.record_n("bad id", 1), INVALID, "session_id")
        self.record_n(self.sid, 3)
        done = self.complete(self.sid)
        self.assertRpcError(lambda: self.record_n(self.sid, 1), PRECONDITION, msg="completed")
        s = self.get(self.sid)
        self.assertEqual(s.total_steps, 3, "nothing appended to a completed session")
        self.assertEqual(s.status, C.SESSION_STATUS_COMPLETED)
        self.assertEqual(s.revision, done.revision, "a rejected call changes nothing")


# ===========================================================================
# Ingest (bidi)
# ===========================================================================
class IngestTest(SessionTestCase):
    @classmethod
    def setUpClass(cls):
        cls.start_server()

    def test_full_invocation_in_one_stream(self):
        sid = uid("ingest")
        reqs = [
            S.IngestRequest(request_id=101, open=S.OpenSessionRequest(
                session_id=sid, agent_name="streamer")),
            S.IngestRequest(request_id=102, begin_step=S.BeginStepRequest(
                session_id=sid, tool_use_id="i1", tool_name="search",
                tool_input=struct(q="norn"))),
            S.IngestRequest(request_id=103, end_step=S.EndStepRequest(
                session_id=sid, tool_use_id="i1", result_text="3 hits",
                result_status=C.RESULT_STATUS_SUCCESS)),
            S.IngestRequest(request_id=104, record_steps=S.RecordStepsRequest(
                session_id=sid, steps=[step("i2"), step("i3", status=C.RESULT_STATUS_ERROR)])),
            S.IngestRequest(request_id=105, complete=S.CompleteSessionRequest(
                session_id=sid, final_text="all done")),
        ]
        resps = list(self.stub.Ingest(iter(reqs), timeout=RPC_TIMEOUT))
        self.assertEqual([r.request_id for r in resps], [101, 102, 103, 104, 105])
        self.assertEqual([r.WhichOneof("payload") for r in resps],
                         ["open", "begin_step", "end_step", "record_steps", "complete"])
        self.assertFalse(resps[0].open.resumed)
        self.assertEqual(resps[0].open.session.session_id, sid)
        self.assertEqual(resps[1].begin_step.verdict.step_number, 1)
        self.assertEqual(resps[1].begin_step.verdict.status, C.STEP_STATUS_RUNNING)
        self.assertEqual(resps[2].end_step.verdict.status, C.STEP_STATUS_SUCCESS)
        self.assertEqual([v.step_number for v in resps[3].record_steps.verdicts], [2, 3])
        self.assertEqual([v.status for v in resps[3].record_steps.verdicts],
                         [C.STEP_STATUS_SUCCESS, C.STEP_STATUS_FAILED])
        done = resps[4].complete.session
        self.assertEqual(done.status, C.SESSION_STATUS_COMPLETED)
        self.assertEqual(done.final_text, "all done")
        s = self.get(sid, steps=True)
        self.assertEqual(s.status, C.SESSION_STATUS_COMPLETED)
        self.assertEqual([x.tool_use_id for x in s.steps], ["i1", "i2", "i3"])
        self.assertEqual(s.steps[0].result_text, "3 hits")

    def test_answers_each_request_before_the_next_is_sent(self):
        # A real agent waits for BeginStep's verdict before running the tool.
        q = queue.Queue()

        def requests():
            while True:
                item = q.get()
                if item is None:
                    return
                yield item

        call = self.stub.Ingest(requests(), timeout=RPC_TIMEOUT)
        sid = uid("lockstep")
        try:
            q.put(S.IngestRequest(request_id=1, open=S.OpenSessionRequest(session_id=sid)))
            r = next(call)
            self.assertEqual((r.request_id, r.WhichOneof("payload")), (1, "open"))
            for i in range(2, 12, 2):
                q.put(S.IngestRequest(request_id=i, begin_step=S.BeginStepRequest(
                    session_id=sid, tool_use_id="t%d" % i, tool_name="calc",
                    tool_input=fresh_input())))
                r = next(call)
                self.assertEqual(r.request_id, i)
                self.assertEqual(r.begin_step.verdict.action, C.ACTION_CONTINUE)
                q.put(S.IngestRequest(request_id=i + 1, end_step=S.EndStepRequest(
                    session_id=sid, tool_use_id="t%d" % i, result_text="42")))
                r = next(call)
                self.assertEqual(r.request_id, i + 1)
                self.assertEqual(r.end_step.verdict.status, C.STEP_STATUS_SUCCESS)
        finally:
            q.put(None)
        self.assertEqual(list(call), [], "nothing after the half-close")
        self.assertEqual(call.code(), OK)
        self.assertEqual(self.get(sid).total_steps, 5)

    def test_bad_items_answered_with_error_and_stream_goes_on(self):
        sid = uid("ingest-err")
        missing = uid("missing")
        reqs = [
            S.IngestRequest(request_id=1, open=S.OpenSessionRequest(session_id=sid)),
            # INVALID_ARGUMENT: empty tool name.
            S.IngestRequest(request_id=2, begin_step=S.BeginStepRequest(
                session_id=sid, tool_use_id="x", tool_name="")),
            # NOT_FOUND: unknown session.
            S.IngestRequest(request_id=3, record_steps=S.RecordStepsRequest(
                session_id=missing, steps=[step("m")])),
            # FAILED_PRECONDITION: EndStep without BeginStep.
            S.IngestRequest(request_id=4, end_step=S.EndStepRequest(
                session_id=sid, tool_use_id="never")),
            # INVALID_ARGUMENT: no payload at all.
            S.IngestRequest(request_id=5),
            # INVALID_ARGUMENT: bad session id in open.
            S.IngestRequest(request_id=6, open=S.OpenSessionRequest(session_id="no spaces")),
            # Still served after all that.
            S.IngestRequest(request_id=7, begin_step=S.BeginStepRequest(
                session_id=sid, tool_use_id="x", tool_name="ok_tool")),
            S.IngestRequest(request_id=8, complete=S.CompleteSessionRequest(
                session_id=sid, status=C.SESSION_STATUS_ACTIVE)),
            S.IngestRequest(request_id=9, complete=S.CompleteSessionRequest(session_id=sid)),
            # FAILED_PRECONDITION: completed.
            S.IngestRequest(request_id=10, record_steps=S.RecordStepsRequest(
                session_id=sid, steps=[step("late")])),
        ]
        call = self.stub.Ingest(iter(reqs), timeout=RPC_TIMEOUT)
        resps = list(call)
        self.assertEqual(call.code(), OK, "per-item failures do not end the stream")
        self.assertEqual([r.request_id for r in resps], list(range(1, 11)))
        kinds = [r.WhichOneof("payload") for r in resps]
        self.assertEqual(kinds, ["open", "error", "error", "error", "error", "error",
                                 "begin_step", "error", "complete", "error"])
        want = {2: (3, "tool_name"), 3: (5, "session_id"), 4: (9, "tool_use_id"),
                5: (3, "payload"), 6: (3, "session_id"), 8: (3, "status"), 10: (9, None)}
        for rid, (code, field) in want.items():
            with self.subTest(request_id=rid):
                err = resps[rid - 1].error
                self.assertEqual(err.code, code, err.message)
                self.assertTrue(err.message)
                if field:
                    self.assertIn(field, err.message)
        self.assertEqual(resps[6].begin_step.verdict.step_number, 1)
        s = self.get(sid)
        self.assertEqual(s.total_steps, 1)
        self.assertEqual(s.status, C.SESSION_STATUS_COMPLETED)
        self.assertRpcError(lambda: self.get(missing), NOT_FOUND)

    def test_empty_stream(self):
        call = self.stub.Ingest(iter([]), timeout=RPC_TIMEOUT)
        self.assertEqual(list(call), [])
        self.assertEqual(call.code(), OK)


# ===========================================================================
# CompleteSession
# ===========================================================================
class CompleteSessionTest(SessionTestCase):
    @classmethod
    def setUpClass(cls):
        cls.start_server()

    def test_default_status_completed(self):
        sid = uid("done")
        opened = self.open(sid).session
        self.record_n(sid, 2)
        usage = C.TokenUsage(input_tokens=10, output_tokens=5, total_tokens=15)
        s = self.complete(sid, final_text="bye", token_usage=usage)
        self.assertEqual(s.status, C.SESSION_STATUS_COMPLETED)
        self.assertTimestampSet(s.ended_at, "ended_at")
        self.assertGreaterEqual(micros(s.ended_at), micros(opened.started_at))
        self.assertGreaterEqual(s.total_execution_time_ms, 0)
        self.assertEqual(s.final_text, "bye")
        self.assertEqual(s.token_usage.total_tokens, 15)
        self.assertEqual(s.total_steps, 2)
        self.assertEqual(len(s.steps), 0, "CompleteSession answers without steps")
        self.assertEqual(len(s.issues), s.total_issues, "...and with the issues")
        self.assertGreater(s.revision, opened.revision)
        stored = self.get(sid)
        self.assertEqual(stored.status, C.SESSION_STATUS_COMPLETED)
        self.assertEqual(stored.ended_at, s.ended_at)
        self.assertEqual(stored.final_text, "bye")

    def test_execution_time_from_client_times(self):
        sid = uid("timed")
        self.open(sid, started_at=ts(1700000000))
        s = self.complete(sid, ended_at=ts(1700000002, 500000000))
        self.assertEqual(micros(s.ended_at), 1700000002500000)
        self.assertAlmostEqual(s.total_execution_time_ms, 2500.0, delta=0.01)

    def test_terminated_when_requested(self):
        sid = uid("term")
        self.open(sid)
        s = self.complete(sid, status=C.SESSION_STATUS_TERMINATED,
                          termination_reason="user abort")
        self.assertEqual(s.status, C.SESSION_STATUS_TERMINATED)
        self.assertEqual(s.termination_reason, "user abort")
        self.assertEqual(self.get(sid).status, C.SESSION_STATUS_TERMINATED)
        self.assertTimestampSet(s.ended_at, "ended_at")

    def test_explicit_completed(self):
        sid = uid("explicit-done")
        self.open(sid)
        self.assertEqual(self.complete(sid, status=C.SESSION_STATUS_COMPLETED).status,
                         C.SESSION_STATUS_COMPLETED)

    def test_bad_status_rejected(self):
        sid = uid("badstatus")
        self.open(sid)
        for bad in (C.SESSION_STATUS_ACTIVE, 4, 99, -1):
            with self.subTest(status=bad):
                self.assertRpcError(lambda: self.complete(sid, status=bad), INVALID, "status")
        s = self.get(sid)
        self.assertEqual(s.status, C.SESSION_STATUS_ACTIVE)
        self.assertFalse(s.HasField("ended_at"))

    def test_other_bad_fields(self):
        sid = uid("badcomplete")
        self.open(sid)
        cases = [
            ("final_text", dict(final_text="f" * (MiB + 1))),
            ("termination_reason", dict(termination_reason="r" * (64 * 1024 + 1))),
            ("ended_at", dict(ended_at=ts(-1))),
            ("task.description", dict(task=C.TaskDefinition(description="d" * (64 * 1024 + 1)))),
            ("session_id", dict(session_id="")),
        ]
        for field, kw in cases:
            with self.subTest(field=field):
                target = kw.pop("session_id", sid)
                self.assertRpcError(lambda: self.complete(target, **kw), INVALID, field)
        self.assertEqual(self.get(sid).status, C.SESSION_STATUS_ACTIVE)

    def test_completing_twice(self):
        sid = uid("twice")
        self.open(sid)
        first = self.complete(sid, final_text="first")
        self.assertRpcError(lambda: self.complete(sid, final_text="second"), PRECONDITION,
                            msg="second CompleteSession")
        s = self.get(sid)
        self.assertEqual(s.final_text, "first")
        self.assertEqual(s.ended_at, first.ended_at)
        self.assertEqual(s.revision, first.revision)

    def test_unknown_session(self):
        self.assertRpcError(lambda: self.complete(uid("nosuch")), NOT_FOUND, "session_id")

    def test_task_supplied_at_completion(self):
        sid = uid("latetask")
        self.open(sid)
        s = self.complete(sid, task=C.TaskDefinition(description="found later"))
        self.assertEqual(s.task.description, "found later")
        sid2 = uid("keeptask")
        self.open(sid2, task=C.TaskDefinition(description="given first"))
        s2 = self.complete(sid2, task=C.TaskDefinition(description="ignored"))
        self.assertEqual(s2.task.description, "given first")


# ===========================================================================
# GetSession
# ===========================================================================
class GetSessionTest(SessionTestCase):
    @classmethod
    def setUpClass(cls):
        cls.start_server()

    def test_include_flags(self):
        sid = uid("get")
        self.open(sid, agent_name="getter")
        self.begin(sid, "g1")
        self.end(sid, "g1", "one")
        self.record(sid, [step("g2", result="two"), step("g3", result="three")])
        plain = self.get(sid)
        self.assertEqual(plain.total_steps, 3)
        self.assertEqual(len(plain.steps), 0)
        self.assertEqual(len(plain.issues), 0)
        with_steps = self.get(sid, steps=True)
        self.assertEqual([s.step_number for s in with_steps.steps], [1, 2, 3])
        self.assertEqual([s.result_text for s in with_steps.steps], ["one", "two", "three"])
        self.assertEqual(len(with_steps.issues), 0, "issues only with include_issues")
        self.assertEqual(plain.total_issues, 0)
        # A repeated call (same tool, same input) raises an issue.
        same = struct(query="the very same input")
        self.record(sid, [step("g4", tool_input=same), step("g5", tool_input=same)])
        plain = self.get(sid)
        self.assertGreaterEqual(plain.total_issues, 1, "the duplicate call raised no issue")
        self.assertEqual(len(plain.issues), 0, "issues only with include_issues")
        with_issues = self.get(sid, issues=True)
        self.assertEqual(len(with_issues.steps), 0)
        self.assertEqual(len(with_issues.issues), with_issues.total_issues)
        self.assertEqual(len({i.issue_id for i in with_issues.issues}), plain.total_issues)
        for i in with_issues.issues:
            self.assertTrue(i.issue_id)
            self.assertNotEqual(i.issue_type, C.ISSUE_TYPE_UNSPECIFIED)
            self.assertTrue(1 <= i.severity <= 10, i)
            self.assertTrue(i.description)
        self.assertIn(5, [i.step_number for i in with_issues.issues])
        both = self.get(sid, steps=True, issues=True)
        self.assertEqual([x.step_number for x in both.steps], [1, 2, 3, 4, 5])
        self.assertEqual(list(both.issues), list(with_issues.issues))
        self.assertEqual(both.agent_name, "getter")

    def test_not_found_and_invalid(self):
        self.assertRpcError(lambda: self.get(uid("nosuch")), NOT_FOUND, "session_id")
        self.assertRpcError(lambda: self.get(uid("nosuch"), steps=True, issues=True), NOT_FOUND)
        self.assertRpcError(lambda: self.get(""), INVALID, "session_id")
        self.assertRpcError(lambda: self.get("x" * 129), INVALID, "session_id")

    def test_ids_are_not_prefixes_of_each_other(self):
        # Keys of one session must not leak into another whose id extends it.
        a = uid("pre")
        b = a + "0"
        self.open(a)
        self.open(b)
        self.record_n(a, 2)
        self.record_n(b, 5)
        self.assertEqual(len(self.get(a, steps=True).steps), 2)
        self.assertEqual(len(self.get(b, steps=True).steps), 5)
        self.assertEqual(len(self.all_steps(a)), 2)


# ===========================================================================
# Text fields keep every byte; writers are serialised
# ===========================================================================
class TextAndConcurrencyTest(SessionTestCase):
    @classmethod
    def setUpClass(cls):
        cls.start_server()

    def rejected_or_kept(self, field, call, read, want):
        """call() either fails with INVALID_ARGUMENT naming `field`, or
        succeeds and read() then gives back exactly `want`: never a value
        silently cut at the NUL."""
        with self.subTest(field=field):
            try:
                call()
            except grpc.RpcError as e:
                self.assertEqual(e.code(), INVALID, e.details())
                self.assertIn(field.split(".")[-1], e.details())
                return
            self.assertEqual(read(), want)

    def test_text_with_nul_characters_is_never_truncated(self):
        # U+0000 is valid UTF-8 and real tool output contains it. The server
        # may refuse it (INVALID_ARGUMENT) or keep it; cutting the text at the
        # NUL loses data silently ("full, untruncated result text").
        N = "\x00"
        cases = []
        for field in ("system_prompt", "handoff_input", "agent_name", "model"):
            sid = uid("nul-" + field)
            cases.append((field, lambda sid=sid, f=field: self.open(sid, **{f: "a" + N + "b"}),
                          lambda sid=sid, f=field: getattr(self.get(sid), f), "a" + N + "b"))
        sid = uid("nul-task")
        cases.append(("task.description",
                      lambda: self.open(sid, task=C.TaskDefinition(description="d" + N + "e")),
                      lambda: self.get(sid).task.description, "d" + N + "e"))
        sid_steps = uid("nul-steps")
        self.open(sid_steps)
        cases += [
            ("tool_name", lambda: self.begin(sid_steps, "t1", tool_name="to" + N + "ol"),
             lambda: self.all_steps(sid_steps)[-1].tool_name, "to" + N + "ol"),
            ("tool_input", lambda: self.begin(sid_steps, "t2", tool_input=struct(a="i" + N + "n")),
             lambda: dict(self.all_steps(sid_steps)[-1].tool_input), {"a": "i" + N + "n"}),
        ]
        sid_end = uid("nul-end")
        self.open(sid_end)
        self.begin(sid_end, "e")
        cases.append(("result_text", lambda: self.end(sid_end, "e", "before" + N + "after"),
                      lambda: self.all_steps(sid_end)[0].result_text, "before" + N + "after"))
        sid_rec = uid("nul-rec")
        self.open(sid_rec)
        cases += [
            ("steps.result_text",
             lambda: self.record(sid_rec, [step("r1", result="x" + N + "y")]),
             lambda: self.all_steps(sid_rec)[-1].result_text, "x" + N + "y"),
            ("steps.tool_input",
             lambda: self.record(sid_rec, [step("r2", tool_input=struct(k="v" + N + "w"))]),
             lambda: dict(self.all_steps(sid_rec)[-1].tool_input), {"k": "v" + N + "w"}),
        ]
        sid_done = uid("nul-done")
        self.open(sid_done)
        cases.append(("final_text", lambda: self.complete(sid_done, final_text="f" + N + "g"),
                      lambda: self.get(sid_done).final_text, "f" + N + "g"))
        for field, call, read, want in cases:
            self.rejected_or_kept(field, call, read, want)

    def test_agent_names_differing_after_a_nul_stay_apart(self):
        a, b = uid("nul-a"), uid("nul-b")
        try:
            self.open(a, agent_name="twin" + "\x00" + "one")
            self.open(b, agent_name="twin" + "\x00" + "two")
        except grpc.RpcError as e:
            self.assertEqual(e.code(), INVALID, e.details())
            self.assertIn("agent_name", e.details())
            return
        got = [x.session_id for x in
               self.list_all(page_size=1000, agent_name="twin\x00one")[0]]
        self.assertEqual(got, [a])

    def test_concurrent_record_steps_on_one_session(self):
        sid = uid("conc")
        self.open(sid)
        threads, per_thread, batch = 8, 10, 5
        got, errors = [], []
        lock = threading.Lock()

        def worker(t):
            try:
                for k in range(per_thread):
                    vs = self.record(sid, [step("t%d-%d-%d" % (t, k, i)) for i in range(batch)])
                    nums = [v.step_number for v in vs]
                    with lock:
                        got.append(nums)
            except Exception as e:  # reported below
                errors.append(e)

        ts_ = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
        for t in ts_:
            t.start()
        for t in ts_:
            t.join(30)
        self.assertEqual(errors, [])
        total = threads * per_thread * batch
        for nums in got:
            self.assertEqual(nums, list(range(nums[0], nums[0] + batch)),
                             "a batch gets consecutive numbers")
        self.assertEqual(sorted(n for nums in got for n in nums), list(range(1, total + 1)))
        s = self.get(sid, steps=True)
        self.assertEqual(s.total_steps, total)
        self.assertEqual([x.step_number for x in s.steps], list(range(1, total + 1)))

    def test_concurrent_open_of_one_new_id(self):
        sid = uid("conc-open")
        results, errors = [], []

        def worker():
            try:
                results.append(self.open(sid, agent_name="racer").resumed)
            except Exception as e:
                errors.append(e)

        ts_ = [threading.Thread(target=worker) for _ in range(8)]
        for t in ts_:
            t.start()
        for t in ts_:
            t.join(30)
        self.assertEqual(errors, [])
        self.assertEqual(sorted(results), [False] + [True] * 7, "created exactly once")
        self.assertEqual([x.session_id for x in
                          self.list_all(page_size=1000, agent_name="racer")[0]], [sid])


# ===========================================================================
# ListSessions
# ===========================================================================
AGENTS = ["alpha", "beta", "gamma"]
SWARMS = ["swarm-one", "swarm-two"]
BASE = 1700000000


class ListSessionsTest(SessionTestCase):
    N = 120

    @classmethod
    def setUpClass(cls):
        cls.start_server()
        cls.model = {}
        order = list(range(cls.N))
        random.Random(7).shuffle(order)  # insertion order != time order
        ch = cls.nornd.channel()
        stub = S_grpc.SessionServiceStub(ch)
        for i in order:
            sid = "list-%03d" % i
            agent = AGENTS[i % 3]
            swarm = SWARMS[i % 4] if i % 4 < 2 else ""
            # Distinct start times, some with a sub-second part.
            secs, ms = BASE + i * 60, i % 7
            stub.OpenSession(S.OpenSessionRequest(
                session_id=sid, agent_name=agent, swarm_id=swarm,
                started_at=ts(secs, ms * 1000000)), timeout=RPC_TIMEOUT)
            status = C.SESSION_STATUS_ACTIVE
            if i % 5 == 0:
                status = C.SESSION_STATUS_COMPLETED
            elif i % 7 == 0:
                status = C.SESSION_STATUS_TERMINATED
            if status != C.SESSION_STATUS_ACTIVE:
                stub.CompleteSession(S.CompleteSessionRequest(session_id=sid, status=status),
                                     timeout=RPC_TIMEOUT)
            cls.model[sid] = dict(agent=agent, swarm=swarm, status=status,
                                  started=secs * 1000000 + ms * 1000)

    def expected(self, agent=None, swarm=None, status=None, after=None, before=None):
        rows = [(m["started"], sid) for sid, m in self.model.items()
                if (agent is None or m["agent"] == agent)
                and (swarm is None or m["swarm"] == swarm)
                and (status is None or m["status"] == status)
                and (after is None or m["started"] >= after)
                and (before is None or m["started"] < before)]
        return [sid for _, sid in sorted(rows, reverse=True)]

    def check_listing(self, expect, page_size=7, **filters):
        got, pages, revs = self.list_all(page_size=page_size, **filters)
        ids = [s.session_id for s in got]
        self.assertEqual(len(ids), len(set(ids)), "duplicates in %s" % filters)
        self.assertEqual(ids, expect, "listing with %s" % filters)
        for r in revs:
            self.assertGreater(r, 0)
        self.assertEqual(revs, sorted(revs), "revision must not decrease across pages")
        return got, pages

    def test_paging_through_everything_newest_first(self):
        got, pages = self.check_listing(self.expected(), page_size=7)
        self.assertEqual(len(got), self.N)
        self.assertEqual(len(pages), math.ceil(self.N / 7))
        self.assertTrue(all(p == 7 for p in pages[:-1]), pages)
        started = [micros(s.started_at) for s in got]
        self.assertEqual(started, sorted(started, reverse=True))
        self.assertTrue(all(m["started"] == micros(s.started_at)
                            for s in got for m in [self.model[s.session_id]]))
        for s in got:
            self.assertEqual(len(s.steps), 0, "summaries carry no steps")
            self.assertEqual(s.agent_name, self.model[s.session_id]["agent"])
            self.assertEqual(s.status, self.model[s.session_id]["status"])

    def test_other_page_sizes(self):
        for size in (1, 50, 119, 120, 121, 1000):
            with self.subTest(page_size=size):
                _, pages = self.check_listing(self.expected(), page_size=size)
                self.assertEqual(len(pages), math.ceil(self.N / size))
        r = self.list_sessions()
        self.assertEqual(len(r.sessions), 50, "default page size")
        self.assertTrue(r.next_page_token)
        self.assertEqual([s.session_id for s in r.sessions], self.expected()[:50])

    def test_filters(self):
        t_lo = BASE + 30 * 60
        t_hi = BASE + 90 * 60 + 1
        cases = []
        for a in AGENTS:
            cases.append((dict(agent_name=a), dict(agent=a)))
        for sw in SWARMS:
            cases.append((dict(swarm_id=sw), dict(swarm=sw)))
        for st in (C.SESSION_STATUS_ACTIVE, C.SESSION_STATUS_COMPLETED,
                   C.SESSION_STATUS_TERMINATED):
            cases.append((dict(status=st), dict(status=st)))
        cases += [
            (dict(started_after=ts(t_lo)), dict(after=t_lo * 10**6)),
            (dict(started_before=ts(t_hi)), dict(before=t_hi * 10**6)),
            (dict(started_after=ts(t_lo), started_before=ts(t_hi)),
             dict(after=t_lo * 10**6, before=t_hi * 10**6)),
            # Exact bounds: after is inclusive, before exclusive.
            (dict(started_after=ts(BASE + 60 * 60), started_before=ts(BASE + 61 * 60)),
             dict(after=(BASE + 3600) * 10**6, before=(BASE + 3660) * 10**6)),
            (dict(agent_name="beta", status=C.SESSION_STATUS_COMPLETED),
             dict(agent="beta", status=C.SESSION_STATUS_COMPLETED)),
            (dict(agent_name="alpha", swarm_id="swarm-one"),
             dict(agent="alpha", swarm="swarm-one")),
            (dict(agent_name="gamma", started_after=ts(t_lo), started_before=ts(t_hi)),
             dict(agent="gamma", after=t_lo * 10**6, before=t_hi * 10**6)),
            (dict(swarm_id="swarm-two", status=C.SESSION_STATUS_ACTIVE,
                  started_before=ts(t_hi)),
             dict(swarm="swarm-two", status=C.SESSION_STATUS_ACTIVE, before=t_hi * 10**6)),
            (dict(swarm_id="swarm-one", agent_name="beta", status=C.SESSION_STATUS_COMPLETED,
                  started_after=ts(t_lo)),
             dict(swarm="swarm-one", agent="beta", status=C.SESSION_STATUS_COMPLETED,
                  after=t_lo * 10**6)),
        ]
        for req, model in cases:
            with self.subTest(filters=req):
                expect = self.expected(**model)
                self.assertTrue(expect, "a filter case that selects nothing tests little")
                self.check_listing(expect, page_size=7, **req)
                self.check_listing(expect, page_size=1000, **req)

    def test_filters_selecting_nothing(self):
        for req in (dict(agent_name="nobody"), dict(swarm_id="no-swarm"),
                    dict(started_after=ts(BASE + 10**6)), dict(started_before=ts(BASE)),
                    dict(agent_name="alph"), dict(agent_name="alpha\u00e9"),
                    dict(swarm_id="swarm"),
                    dict(started_after=ts(BASE + 3600), started_before=ts(BASE + 3600)),
                    dict(started_after=ts(BASE + 5400), started_before=ts(BASE + 1800))):
            with self.subTest(filters=req):
                self.check_listing([], page_size=7, **req)

    def test_quality_filter(self):
        everything, _, _ = self.list_all(page_size=1000)
        by_quality = {}
        for s in everything:
            by_quality.setdefault(s.overall_quality, []).append(s.session_id)
        for q in C.SessionQuality.values():
            if q == C.QUALITY_UNSPECIFIED:
                continue
            with self.subTest(quality=C.SessionQuality.Name(q)):
                self.check_listing(by_quality.get(q, []), page_size=7, quality=q)

    def test_bad_requests(self):
        self.assertRpcError(lambda: self.list_sessions(page_size=1001), INVALID, "page_size")
        for garbage in ("!!!not-a-token!!!", "AAAA", "%%%", "A" * 400, "QUJD"):
            with self.subTest(page_token=garbage):
                self.assertRpcError(lambda: self.list_sessions(page_token=garbage), INVALID,
                                    "page_token")
        self.assertRpcError(lambda: self.list_sessions(status=99), INVALID, "status")
        self.assertRpcError(lambda: self.list_sessions(quality=42), INVALID, "quality")
        self.assertRpcError(lambda: self.list_sessions(swarm_id="bad swarm"), INVALID,
                            "swarm_id")
        self.assertRpcError(lambda: self.list_sessions(agent_id="bad/agent"), INVALID,
                            "agent_id")
        self.assertRpcError(lambda: self.list_sessions(agent_name="a" * 257), INVALID,
                            "agent_name")
        self.assertRpcError(lambda: self.list_sessions(started_after=ts(-10)), INVALID,
                            "started_after")

    def test_token_of_another_listing_rejected(self):
        by_agent = self.list_sessions(page_size=3, agent_name="alpha")
        self.assertTrue(by_agent.next_page_token)
        self.assertRpcError(lambda: self.list_sessions(page_size=3, swarm_id="swarm-one",
                                                       page_token=by_agent.next_page_token),
                            INVALID, "page_token")
        self.assertRpcError(lambda: self.list_sessions(page_size=3,
                                                       page_token=by_agent.next_page_token),
                            INVALID, "page_token", "agent token, unfiltered listing")
        by_time = self.list_sessions(page_size=3)
        self.assertRpcError(lambda: self.list_sessions(page_size=3, agent_name="alpha",
                                                       page_token=by_time.next_page_token),
                            INVALID, "page_token", "time token, agent listing")

    def test_token_with_changed_filters_never_breaks_the_filter(self):
        # The proto says filters must not change between pages. A client that
        # changes them anyway must get INVALID_ARGUMENT or a page that still
        # honours the new filters - never sessions outside them.
        first = self.list_sessions(page_size=5)  # newest 5, no filter
        tok = first.next_page_token
        cut = BASE + 60 * 60
        cases = [
            (dict(started_before=ts(cut)), lambda m: m["started"] < cut * 10**6),
            (dict(started_after=ts(cut)), lambda m: m["started"] >= cut * 10**6),
            (dict(status=C.SESSION_STATUS_COMPLETED),
             lambda m: m["status"] == C.SESSION_STATUS_COMPLETED),
        ]
        alpha_tok = self.list_sessions(page_size=5, agent_name="alpha").next_page_token
        cases_agent = [
            (dict(agent_name="beta"), lambda m: m["agent"] == "beta"),
            (dict(agent_name="gamma", started_before=ts(cut)),
             lambda m: m["agent"] == "gamma" and m["started"] < cut * 10**6),
        ]
        for token, group in ((tok, cases), (alpha_tok, cases_agent)):
            for req, keep in group:
                with self.subTest(filters=req):
                    try:
                        r = self.list_sessions(page_size=10, page_token=token, **req)
                    except grpc.RpcError as e:
                        self.assertEqual(e.code(), INVALID, e.details())
                        self.assertIn("page_token", e.details())
                        continue
                    bad = [s.session_id for s in r.sessions if not keep(self.model[s.session_id])]
                    self.assertEqual(bad, [], "sessions outside the filters %s" % req)

    def test_new_sessions_during_paging(self):
        # A session started after the listing began (newer than the cursor)
        # must not appear later nor disturb the rest; an older one that is
        # inserted behind the cursor shows up exactly once.
        first = self.list_sessions(page_size=10, agent_name="alpha")
        seen = [s.session_id for s in first.sessions]
        tok = first.next_page_token
        newer, older = uid("newer"), uid("older")
        self.open(newer, agent_name="alpha", started_at=ts(BASE + 10**6))
        self.open(older, agent_name="alpha", started_at=ts(BASE - 100))
        self.addCleanup(lambda: [self.stub.DeleteSession(
            S.DeleteSessionRequest(session_id=x), timeout=RPC_TIMEOUT) for x in (newer, older)])
        while tok:
            r = self.list_sessions(page_size=10, agent_name="alpha", page_token=tok)
            seen += [s.session_id for s in r.sessions]
            tok = r.next_page_token
        self.assertEqual(seen, self.expected(agent="alpha") + [older])


# ===========================================================================
# ListSteps
# ===========================================================================
class ListStepsTest(SessionTestCase):
    @classmethod
    def setUpClass(cls):
        cls.start_server()

    def pages(self, sid, size):
        out, tok = [], ""
        for _ in range(100):
            r = self.list_steps(sid, size, tok)
            out.append([s.step_number for s in r.steps])
            tok = r.next_page_token
            if not tok:
                return out
        self.fail("ListSteps never ended")

    def test_paging(self):
        sid = uid("ls")
        self.open(sid)
        self.record_n(sid, 10)
        self.assertEqual(self.pages(sid, 3), [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10]])
        self.assertEqual(self.pages(sid, 0), [list(range(1, 11))], "default page size 100")
        self.assertEqual(self.pages(sid, 10), [list(range(1, 11))], "no empty trailing page")
        self.assertEqual(self.pages(sid, 5), [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]])
        self.assertEqual(self.pages(sid, 1000), [list(range(1, 11))])
        steps = self.all_steps(sid)
        self.assertEqual(len({s.step_id for s in steps}), 10)

    def test_default_page_is_100(self):
        sid = uid("ls100")
        self.open(sid)
        self.record_n(sid, 150)
        self.assertEqual([len(p) for p in self.pages(sid, 0)], [100, 50])

    def test_empty_session(self):
        sid = uid("ls-empty")
        self.open(sid)
        r = self.list_steps(sid, 3)
        self.assertEqual(len(r.steps), 0)
        self.assertEqual(r.next_page_token, "")

    def test_running_steps_are_listed(self):
        sid = uid("ls-running")
        self.open(sid)
        self.begin(sid, "r1")
        self.record_n(sid, 2)
        steps = self.all_steps(sid)
        self.assertEqual([s.status for s in steps],
                         [C.STEP_STATUS_RUNNING, C.STEP_STATUS_SUCCESS, C.STEP_STATUS_SUCCESS])

    def test_errors(self):
        self.assertRpcError(lambda: self.list_steps(uid("nosuch")), NOT_FOUND, "session_id")
        self.assertRpcError(lambda: self.list_steps(""), INVALID, "session_id")
        self.assertRpcError(lambda: self.list_steps("bad id"), INVALID, "session_id")
        sid = uid("ls-err")
        self.open(sid)
        self.assertRpcError(lambda: self.list_steps(sid, page_size=1001), INVALID, "page_size")
        for garbage in ("!!", "AAAAAAAA", "AQ"):
            with self.subTest(page_token=garbage):
                self.assertRpcError(lambda: self.list_steps(sid, 3, garbage), INVALID,
                                    "page_token")


# ===========================================================================
# DeleteSession
# ===========================================================================
class DeleteSessionTest(SessionTestCase):
    @classmethod
    def setUpClass(cls):
        cls.start_server()

    def delete(self, sid):
        return self.stub.DeleteSession(S.DeleteSessionRequest(session_id=sid),
                                       timeout=RPC_TIMEOUT)

    def ids(self, **filters):
        got, _, _ = self.list_all(page_size=1000, **filters)
        return [s.session_id for s in got]

    def test_delete_removes_everything(self):
        victim, keep = uid("victim"), uid("keep")
        for sid in (victim, keep):
            self.open(sid, agent_name="deleter", swarm_id="del-swarm",
                      started_at=ts(BASE + 500), task=C.TaskDefinition(description="x"))
            self.begin(sid, "b1")
            self.end(sid, "b1", "r")
            same = struct(query="repeated")
            self.record(sid, [step("r1", tool_input=same), step("r2", tool_input=same)])
            self.begin(sid, "still-running")
            self.assertGreaterEqual(self.get(sid).total_issues, 1, "the repeat raised an issue")
        self.complete(keep)
        filters = [dict(), dict(agent_name="deleter"), dict(swarm_id="del-swarm"),
                   dict(status=C.SESSION_STATUS_ACTIVE),
                   dict(started_after=ts(BASE + 500), started_before=ts(BASE + 501)),
                   dict(agent_name="deleter", swarm_id="del-swarm",
                        status=C.SESSION_STATUS_ACTIVE)]
        for f in filters:
            with self.subTest(before_delete=f):
                self.assertIn(victim, self.ids(**f))
        rev_before = self.list_sessions(page_size=1).revision

        r = self.delete(victim)
        self.assertGreater(r.revision, rev_before)
        self.assertGreaterEqual(self.list_sessions(page_size=1).revision, r.revision)

        self.assertRpcError(lambda: self.get(victim), NOT_FOUND, "session_id")
        self.assertRpcError(lambda: self.get(victim, steps=True, issues=True), NOT_FOUND)
        self.assertRpcError(lambda: self.list_steps(victim), NOT_FOUND, "session_id")
        self.assertRpcError(lambda: self.begin(victim, "new"), NOT_FOUND)
        self.assertRpcError(lambda: self.end(victim, "still-running"), NOT_FOUND)
        self.assertRpcError(lambda: self.record_n(victim, 1), NOT_FOUND)
        self.assertRpcError(lambda: self.complete(victim), NOT_FOUND)
        for f in filters + [dict(status=C.SESSION_STATUS_COMPLETED),
                            dict(status=C.SESSION_STATUS_TERMINATED)]:
            with self.subTest(after_delete=f):
                self.assertNotIn(victim, self.ids(**f))
        # The other session of the same agent, swarm and time is untouched.
        self.assertIn(keep, self.ids(agent_name="deleter", swarm_id="del-swarm"))
        k = self.get(keep, steps=True)
        self.assertEqual(k.total_steps, 4)
        self.assertEqual(len(k.steps), 4)

        self.assertRpcError(lambda: self.delete(victim), NOT_FOUND, "session_id",
                            "second delete")

        # The id is free again: a new session with nothing of the old one,
        # and the old tool_use_ids are unused.
        again = self.open(victim, agent_name="reborn")
        self.assertFalse(again.resumed)
        self.assertEqual(again.session.total_steps, 0)
        self.assertEqual(again.session.agent_name, "reborn")
        self.assertFalse(again.session.task.description)
        self.assertEqual(len(self.all_steps(victim)), 0)
        self.assertEqual(self.begin(victim, "b1").step_number, 1)
        vs = self.record(victim, [step("r1"), step("still-running")])
        self.assertEqual([v.step_number for v in vs], [2, 3])
        reborn = self.get(victim, issues=True)
        self.assertEqual(reborn.total_issues, 0, "no issue of the deleted session is left")
        self.assertEqual(len(reborn.issues), 0)
        # Nothing of the old invocation's judgement is left either: the old
        # session's repeated input is new to the new session.
        v = self.record(victim, [step("r2", tool_input=struct(query="repeated"))])[0]
        self.assertEqual(list(v.issues), [])
        self.assertNotIn(victim, self.ids(agent_name="deleter"))
        self.assertEqual(self.ids(agent_name="reborn"), [victim])

    def test_delete_completed_and_empty_sessions(self):
        a, b = uid("del-a"), uid("del-b")
        self.open(a, agent_name="del2")
        self.open(b, agent_name="del2")
        self.record_n(a, 3)
        self.complete(a, status=C.SESSION_STATUS_TERMINATED)
        ra = self.delete(a)
        rb = self.delete(b)
        self.assertGreater(rb.revision, ra.revision)
        self.assertEqual(self.ids(agent_name="del2"), [])
        self.assertNotIn(a, self.ids(status=C.SESSION_STATUS_TERMINATED))

    def test_invalid_and_unknown(self):
        self.assertRpcError(lambda: self.delete(uid("nosuch")), NOT_FOUND, "session_id")
        self.assertRpcError(lambda: self.delete(""), INVALID, "session_id")
        self.assertRpcError(lambda: self.delete("../x"), INVALID, "session_id")


# ===========================================================================
# Pages a default client can read
# ===========================================================================
class LargePagesTest(SessionTestCase):
    """Every input here is within the documented limits, so every page must be
    readable by a client with gRPC's default 4 MiB receive limit (the Python
    channel below has it): a page stops early, with a next_page_token, rather
    than growing past it."""

    @classmethod
    def setUpClass(cls):
        cls.start_server()

    def test_list_sessions_pages_fit_a_default_client(self):
        agent = uid("bigprompt")
        ids = set()
        for i in range(16):
            sid = "%s-%02d" % (agent, i)
            ids.add(sid)
            # Each session is about 512 KiB: 16 of them make 8 MiB.
            self.open(sid, agent_name=agent, system_prompt="p" * (256 * 1024 - 16),
                      handoff_input="h" * (256 * 1024 - 16))
        got, tok = [], ""
        for _ in range(40):
            try:
                r = self.list_sessions(agent_name=agent, page_token=tok)  # default page size
            except grpc.RpcError as e:
                self.fail("ListSessions page unreadable: %s %s" % (e.code(), e.details()))
            self.assertLess(r.ByteSize(), 4 * MiB)
            got += [x.session_id for x in r.sessions]
            tok = r.next_page_token
            if not tok:
                break
        self.assertEqual(sorted(got), sorted(ids))

    def test_list_steps_pages_fit_a_default_client(self):
        sid = uid("bigsteps")
        self.open(sid)
        for i in range(6):  # six results of the maximum size: 6 MiB of steps
            self.record(sid, [step("big%d" % i, result="r" * MiB)])
        got, tok = [], ""
        for _ in range(40):
            try:
                r = self.list_steps(sid, 0, tok)  # default page size
            except grpc.RpcError as e:
                self.fail("ListSteps page unreadable: %s %s" % (e.code(), e.details()))
            self.assertLess(r.ByteSize(), 4 * MiB)
            got += [x.step_number for x in r.steps]
            tok = r.next_page_token
            if not tok:
                break
        self.assertEqual(got, [1, 2, 3, 4, 5, 6])


# ===========================================================================
# Limits from the configuration
# ===========================================================================
def set_config(testcase_cls, **fields):
    """Runs the class's nornd with `fields` changed in its configuration.

    UpdateConfig when ConfigService implements it; until then the config is
    seeded into the store before nornd starts (norn_store_seed)."""
    n = start_nornd(testcase_cls)
    ch = n.channel()
    stub = config_service_pb2_grpc.ConfigServiceStub(ch)
    try:
        stub.UpdateConfig(config_service_pb2.UpdateConfigRequest(
            config=config_service_pb2.Config(**fields),
            update_mask=field_mask_pb2.FieldMask(paths=sorted(fields))), timeout=RPC_TIMEOUT)
        return n
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.UNIMPLEMENTED:
            raise
    n.terminate()
    n.close_channels()
    cfg = norn_store_seed.default_config(config_service_pb2, C)
    for k, v in fields.items():
        setattr(cfg, k, v)
    norn_store_seed.seed_config(n.data_dir, cfg)
    n.start()
    return n


class ConfiguredLimitsTest(SessionTestCase):
    @classmethod
    def setUpClass(cls):
        cls.nornd = set_config(cls, max_steps_per_session=5, max_input_bytes=512,
                               max_result_bytes=1000)
        ch = cls.nornd.channel()
        grpc.channel_ready_future(ch).result(timeout=10)
        cls.stub = S_grpc.SessionServiceStub(ch)

    def test_max_steps_per_session(self):
        sid = uid("limit")
        self.open(sid)
        for i in range(3):
            self.begin(sid, "b%d" % i)
        self.record(sid, [step("r0"), step("r1")])
        self.assertRpcError(lambda: self.begin(sid, "b-over"), EXHAUSTED,
                            "max_steps_per_session")
        self.assertRpcError(lambda: self.record(sid, [step("r-over")]), EXHAUSTED,
                            "max_steps_per_session")
        s = self.get(sid, steps=True)
        self.assertEqual(s.total_steps, 5)
        self.assertEqual(len(s.steps), 5)
        # Ending the running ones is not adding steps.
        self.assertEqual(self.end(sid, "b0").step_number, 1)

    def test_max_steps_per_session_batch_is_all_or_nothing(self):
        sid = uid("limit-batch")
        self.open(sid)
        self.record(sid, [step("a")])
        self.assertRpcError(lambda: self.record_n(sid, 5), EXHAUSTED, "max_steps_per_session")
        self.assertEqual(self.get(sid).total_steps, 1)
        self.assertEqual(len(self.record_n(sid, 4)), 4)
        self.assertEqual(self.get(sid).total_steps, 5)

    def test_max_input_and_result_bytes_from_config(self):
        sid = uid("limit-bytes")
        self.open(sid)
        self.assertRpcError(lambda: self.begin(sid, "i", tool_input=struct(x="i" * 600)),
                            INVALID, "tool_input")
        self.begin(sid, "i", tool_input=struct(x="i" * 100))
        self.assertRpcError(lambda: self.end(sid, "i", "r" * 1001), INVALID, "result_text")
        self.assertEqual(self.end(sid, "i", "r" * 1000).status, C.STEP_STATUS_SUCCESS)
        self.assertRpcError(lambda: self.record(sid, [step("x", result="r" * 1001)]), INVALID,
                            "result_text")
        self.assertRpcError(lambda: self.record(sid, [step("y", tool_input=struct(
            x="i" * 600))]), INVALID, "tool_input")
        self.assertRpcError(lambda: self.complete(sid, final_text="f" * 1001), INVALID,
                            "final_text")
        self.assertEqual(self.get(sid).total_steps, 1)


if __name__ == "__main__":
    unittest.main()
