"""Crash safety of SessionService: SIGKILL nornd while acknowledged RecordSteps
calls (unary and over the Ingest stream) are streaming in, restart it on the
same data directory, and find every acknowledged step and session, whole
batches only, consistent indexes, and numbering that goes on.

Counters (StatsService) and audit rows (AuditService) are not checked here:
those RPCs do not exist yet.

Run: cd tests/python && NORND=... NORN_PROTO_DIR=... NORN_PY_GEN=... \
     /usr/bin/python3 -m unittest -v test_crash
"""

import collections
import queue
import sys
import threading
import time
import unittest

import nornd_proc
from nornd_proc import start_nornd

nornd_proc.ensure_stubs()

import grpc  # noqa: E402
from google.protobuf import struct_pb2, timestamp_pb2  # noqa: E402
from norn.v1 import common_pb2 as C  # noqa: E402
from norn.v1 import session_service_pb2 as S  # noqa: E402
from norn.v1 import session_service_pb2_grpc as S_grpc  # noqa: E402

RPC_TIMEOUT = 10.0
BATCH = 10  # steps per RecordSteps call
SESSION_BATCHES = 40  # a worker moves on to a new session after this many batches
MAX_BATCHES = 3000  # per worker: a bound on the data, should the machine be very fast
UNARY_WORKERS = 6
AGENTS = ["crash-agent-a", "crash-agent-b", "crash-agent-c"]
BASE = 1700000000
BIG = [("grpc.max_receive_message_length", 64 << 20)]


def ts(seconds):
    return timestamp_pb2.Timestamp(seconds=int(seconds))


def tool_input(b, j):
    # Distinct inputs: the server's analyzer would judge repeats as loops.
    inp = struct_pb2.Struct()
    inp.update({"batch": b, "query": "notes about topic %d/%d" % (b, j)})
    return inp


def batch(sid, b):
    return [C.Step(tool_use_id="%s-b%d-%d" % (sid, b, j), tool_name="tool%d" % (j % 3),
                   tool_input=tool_input(b, j), result_text="result %d/%d" % (b, j),
                   result_status=C.RESULT_STATUS_SUCCESS if j % 4 else C.RESULT_STATUS_ERROR)
            for j in range(BATCH)]


class Ledger:
    """What the clients know: acknowledged opens and batches, and calls in doubt."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sessions = {}  # sid -> dict(agent, swarm, acked: [batch], doubt: batch|None)
        self.open_doubt = set()  # sids whose OpenSession was sent but not answered
        self.in_flight = 0
        self.acked_calls = 0
        self.failed_codes = collections.Counter()
        self.errors = []  # anything that is not the crash

    def opened(self, sid, agent, swarm):
        with self.lock:
            self.sessions[sid] = dict(agent=agent, swarm=swarm, acked=[], doubt=None)

    def acked(self, sid, b):
        with self.lock:
            self.sessions[sid]["acked"].append(b)
            self.acked_calls += 1


class Worker(threading.Thread):
    """Opens a session, sends RecordSteps batches into it, moves on to a new
    session every SESSION_BATCHES, until a call fails (the crash)."""

    seq = 0
    seq_lock = threading.Lock()

    def __init__(self, name, stub, ledger, round_no):
        super().__init__(name=name, daemon=True)
        self.stub, self.ledger, self.round_no = stub, ledger, round_no
        self.batches = 0

    def next_session(self):
        with Worker.seq_lock:
            Worker.seq += 1
            k = Worker.seq
        sid = "crash-r%d-%s-%d" % (self.round_no, self.name, k)
        agent = AGENTS[k % len(AGENTS)]
        swarm = "crash-swarm" if k % 2 else ""
        return sid, agent, swarm, ts(BASE + k * 10 + self.round_no)

    # The two transports implement open() and send(); both raise on failure.
    def run(self):
        led = self.ledger
        try:
            while self.batches < MAX_BATCHES:
                sid, agent, swarm, started = self.next_session()
                with led.lock:
                    led.open_doubt.add(sid)
                    led.in_flight += 1
                try:
                    r = self.open(sid, agent, swarm, started)
                finally:
                    with led.lock:
                        led.in_flight -= 1
                if r.session.total_steps != 0 or r.resumed:
                    led.errors.append("OpenSession(%s) resumed a session: %s" % (sid, r))
                with led.lock:
                    led.open_doubt.discard(sid)
                led.opened(sid, agent, swarm)
                for b in range(SESSION_BATCHES):
                    with led.lock:
                        led.sessions[sid]["doubt"] = b
                        led.in_flight += 1
                    try:
                        verdicts = self.send(sid, b)
                    finally:
                        with led.lock:
                            led.in_flight -= 1
                    nums = [v.step_number for v in verdicts]
                    want = list(range(b * BATCH + 1, (b + 1) * BATCH + 1))
                    if nums != want:
                        led.errors.append("%s batch %d numbered %s, want %s" % (sid, b, nums,
                                                                                want))
                    with led.lock:
                        led.sessions[sid]["doubt"] = None
                    led.acked(sid, b)
                    self.batches += 1
        except grpc.RpcError as e:
            with led.lock:
                led.failed_codes[e.code()] += 1
        except Exception as e:  # noqa: BLE001 - reported by the test
            led.errors.append("%s: %r" % (self.name, e))
        finally:
            self.close()

    def close(self):
        pass


class UnaryWorker(Worker):
    def open(self, sid, agent, swarm, started):
        return self.stub.OpenSession(S.OpenSessionRequest(
            session_id=sid, agent_name=agent, swarm_id=swarm, started_at=started),
            timeout=RPC_TIMEOUT)

    def send(self, sid, b):
        return self.stub.RecordSteps(S.RecordStepsRequest(session_id=sid, steps=batch(sid, b)),
                                     timeout=RPC_TIMEOUT).verdicts


class _StreamFailed(grpc.RpcError):
    def __init__(self, code, details):
        self._code, self._details = code, details

    def code(self):
        return self._code

    def details(self):
        return self._details


class IngestWorker(Worker):
    """The same over one Ingest stream: a batch is acknowledged when its
    response has arrived."""

    def __init__(self, *a):
        super().__init__(*a)
        self.q = queue.Queue()
        self.rid = 0

        def reqs():
            while True:
                item = self.q.get()
                if item is None:
                    return
                yield item
        self.call = self.stub.Ingest(reqs(), timeout=60)

    def roundtrip(self, **payload):
        self.rid += 1
        self.q.put(S.IngestRequest(request_id=self.rid, **payload))
        try:
            r = next(self.call)
        except StopIteration:
            raise _StreamFailed(self.call.code(), "stream ended")
        if r.request_id != self.rid:
            raise AssertionError("response %d for request %d" % (r.request_id, self.rid))
        if r.WhichOneof("payload") == "error":
            raise AssertionError("Ingest error: %s" % r.error)
        return r

    def open(self, sid, agent, swarm, started):
        return self.roundtrip(open=S.OpenSessionRequest(
            session_id=sid, agent_name=agent, swarm_id=swarm, started_at=started)).open

    def send(self, sid, b):
        return self.roundtrip(record_steps=S.RecordStepsRequest(
            session_id=sid, steps=batch(sid, b))).record_steps.verdicts

    def close(self):
        self.q.put(None)
        self.call.cancel()


class CrashTest(unittest.TestCase):
    def storm_and_kill(self, n, round_no, run_for=1.0):
        """Runs the workers against n, SIGKILLs n while calls are in flight;
        returns the ledger."""
        ch = n.channel()
        grpc.channel_ready_future(ch).result(timeout=10)
        stub = S_grpc.SessionServiceStub(ch)
        led = Ledger()
        workers = [UnaryWorker("u%d" % i, stub, led, round_no) for i in range(UNARY_WORKERS)]
        workers.append(IngestWorker("ingest", stub, led, round_no))
        for w in workers:
            w.start()
        killed_in_flight = []

        def killer():
            time.sleep(run_for)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                with led.lock:
                    busy = led.in_flight
                    if busy:
                        # SIGKILL while holding the ledger lock: no call can
                        # be marked acknowledged in between.
                        n.send_signal(9)
                        killed_in_flight.append(busy)
                        return
                time.sleep(0.0005)
            n.send_signal(9)
            killed_in_flight.append(0)

        k = threading.Thread(target=killer, daemon=True)
        k.start()
        k.join(15)
        self.assertEqual(n.wait(10), -9, "nornd must die of the SIGKILL")
        for w in workers:
            w.join(20)
            self.assertFalse(w.is_alive(), "worker %s still running" % w.name)
        sys.stderr.write("round %d: %d calls acknowledged in %d sessions, %d in flight at the "
                         "SIGKILL, failures %s\n" % (round_no, led.acked_calls,
                                                      len(led.sessions), killed_in_flight[0],
                                                      dict(led.failed_codes)))
        self.assertEqual(led.errors, [])
        self.assertGreater(killed_in_flight[0], 0, "no call was in flight at the kill")
        self.assertGreater(led.acked_calls, 0, "nothing was acknowledged before the kill")
        self.assertTrue(all(c in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                                  grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)
                            for c in led.failed_codes), led.failed_codes)
        return led

    def verify(self, stub, sessions, maybe):
        """Checks the restarted server against what the clients know about
        `sessions` (sid -> ledger entry); returns {sid: stored Session}."""
        stored = {}
        for sid, m in sessions.items():
            with self.subTest(session=sid):
                s = stub.GetSession(S.GetSessionRequest(session_id=sid, include_steps=True),
                                    timeout=RPC_TIMEOUT).session
                nums = [x.step_number for x in s.steps]
                self.assertEqual(nums, list(range(1, len(nums) + 1)), "contiguous from 1")
                self.assertEqual(s.total_steps, len(nums), "total_steps == stored steps")
                self.assertEqual(len(nums) % BATCH, 0, "only whole batches survive")
                acked = sorted(m["acked"])
                self.assertEqual(acked, list(range(len(acked))))
                allowed = len(acked) + (1 if m["doubt"] is not None else 0)
                self.assertIn(len(nums) // BATCH, range(len(acked), allowed + 1),
                              "acknowledged %d batches (+%s in doubt), stored %d steps"
                              % (len(acked), m["doubt"], len(nums)))
                for x in s.steps:
                    b, j = divmod(x.step_number - 1, BATCH)
                    self.assertEqual(x.tool_use_id, "%s-b%d-%d" % (sid, b, j))
                    self.assertEqual(x.result_text, "result %d/%d" % (b, j))
                    self.assertEqual(x.status, C.STEP_STATUS_SUCCESS if j % 4 else
                                     C.STEP_STATUS_FAILED)
                self.assertEqual(s.successful_steps + s.failed_steps, len(nums))
                self.assertEqual(s.agent_name, m["agent"])
                self.assertEqual(s.status, C.SESSION_STATUS_ACTIVE)
                # ListSteps sees the same steps.
                got, tok = [], ""
                while True:
                    r = stub.ListSteps(S.ListStepsRequest(session_id=sid, page_size=97,
                                                          page_token=tok), timeout=RPC_TIMEOUT)
                    got += [x.step_number for x in r.steps]
                    tok = r.next_page_token
                    if not tok:
                        break
                self.assertEqual(got, nums)
                stored[sid] = s
        self.check_indexes(stub, sessions, maybe)
        return stored

    def list_ids(self, stub, **filters):
        ids, tok, revs = [], "", []
        while True:
            r = stub.ListSessions(S.ListSessionsRequest(page_size=7, page_token=tok, **filters),
                                  timeout=RPC_TIMEOUT)
            ids += [s.session_id for s in r.sessions]
            revs.append(r.revision)
            tok = r.next_page_token
            if not tok:
                return ids, revs

    def check_indexes(self, stub, known, maybe):
        """Every acknowledged session exactly once under each index; sessions
        whose OpenSession was in doubt at most once; nothing else."""
        for label, filters, keep in (
                [("time", {}, lambda m: True)] +
                [("agent " + a, dict(agent_name=a), lambda m, a=a: m["agent"] == a)
                 for a in AGENTS] +
                [("swarm", dict(swarm_id="crash-swarm"), lambda m: m["swarm"] == "crash-swarm")]):
            with self.subTest(index=label):
                ids, revs = self.list_ids(stub, **filters)
                self.assertEqual(len(ids), len(set(ids)), "a session listed twice")
                want = {sid for sid, m in known.items() if keep(m)}
                self.assertEqual(want - set(ids), set(), "acknowledged sessions missing")
                self.assertEqual(set(ids) - want - maybe, set(), "sessions nobody opened")
                self.assertGreater(min(revs), 0)
        # The revision survives: it is at least that of every session.
        top = stub.ListSessions(S.ListSessionsRequest(page_size=1), timeout=RPC_TIMEOUT).revision
        for sid in known:
            s = stub.GetSession(S.GetSessionRequest(session_id=sid), timeout=RPC_TIMEOUT).session
            self.assertLessEqual(s.revision, top, "session %s has a revision from the future"
                                 % sid)

    def test_sigkill_during_acknowledged_record_steps(self):
        n = start_nornd(self)
        all_known, maybe = {}, set()
        for round_no in (1, 2):
            led = self.storm_and_kill(n, round_no)
            all_known.update(led.sessions)
            maybe |= led.open_doubt
            n.restart()
            ch = n.channel(options=BIG)
            grpc.channel_ready_future(ch).result(timeout=10)
            stub = S_grpc.SessionServiceStub(ch)
            # Round 2 checks round 1's sessions again after a second crash.
            stored = self.verify(stub, all_known, maybe)
            self.assertGreaterEqual(sum(stored[sid].total_steps for sid in led.sessions),
                                    led.acked_calls * BATCH)
            # From now on what is stored is known exactly.
            for sid, s in stored.items():
                all_known[sid]["acked"] = list(range(s.total_steps // BATCH))
                all_known[sid]["doubt"] = None

            # Writing goes on where it stopped.
            top = stub.ListSessions(S.ListSessionsRequest(page_size=1),
                                    timeout=RPC_TIMEOUT).revision
            probe = [sid for sid, s in stored.items() if s.total_steps >= BATCH]
            self.assertTrue(probe, "no session with a stored batch")
            for k, (sid, s) in enumerate([(probe[0], stored[probe[0]])] +
                                         [x for x in stored.items() if x[0] != probe[0]][:4]):
                with self.subTest(after_restart=sid):
                    steps = batch(sid, s.total_steps // BATCH)
                    if k == 0:
                        # The same call as step 1: the judge's state, rebuilt
                        # from the stored steps, must know it.
                        steps[0].tool_input.CopyFrom(tool_input(0, 0))
                    vs = stub.RecordSteps(S.RecordStepsRequest(session_id=sid, steps=steps),
                                          timeout=RPC_TIMEOUT).verdicts
                    self.assertEqual([v.step_number for v in vs],
                                     list(range(s.total_steps + 1, s.total_steps + BATCH + 1)))
                    self.assertEqual([v.status for v in vs],
                                     [C.STEP_STATUS_SUCCESS if j % 4 else C.STEP_STATUS_FAILED
                                      for j in range(BATCH)])
                    dup = [i.issue_type for i in vs[0].issues]
                    if k == 0:
                        self.assertIn(C.ISSUE_TYPE_INEFFICIENCY, dup,
                                      "a repeat of step 1 after the restart went unnoticed")
                    else:
                        self.assertEqual(dup, [])
                    self.assertEqual([list(v.issues) for v in vs[1:]], [[]] * (BATCH - 1))
                    # The tool_use_id index survived too.
                    if s.total_steps:
                        with self.assertRaises(grpc.RpcError) as cm:
                            stub.BeginStep(S.BeginStepRequest(
                                session_id=sid, tool_use_id=s.steps[0].tool_use_id,
                                tool_name="again"), timeout=RPC_TIMEOUT)
                        self.assertEqual(cm.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
                    after = stub.GetSession(S.GetSessionRequest(session_id=sid),
                                            timeout=RPC_TIMEOUT).session
                    self.assertEqual(after.total_steps, s.total_steps + BATCH)
                    self.assertGreater(after.revision, top, "new revisions after the restart")
                    all_known[sid]["acked"].append(s.total_steps // BATCH)
            # Sessions opened after the restart are listed with the old ones.
            fresh = "crash-fresh-%d" % round_no
            r = stub.OpenSession(S.OpenSessionRequest(session_id=fresh, agent_name=AGENTS[0],
                                                      started_at=ts(BASE - round_no)),
                                 timeout=RPC_TIMEOUT)
            self.assertFalse(r.resumed)
            all_known[fresh] = dict(agent=AGENTS[0], swarm="", acked=[], doubt=None)
            self.check_indexes(stub, all_known, maybe)
            n.close_channels()


if __name__ == "__main__":
    unittest.main()
