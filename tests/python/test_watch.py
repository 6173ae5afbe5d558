"""SessionService.WatchSessions seen from Python grpcio (a client nobody here wrote).

Covers the watch rules of docs (api.md, "Watch rules"): ordered, gap-free
delivery under concurrent ingest from several clients; resume from a revision
across a server restart; snapshot-then-deltas with no gap at the seam; a
compacted start -> OUT_OF_RANGE with `norn-oldest-revision`; progress
messages; a slow watcher cut off with RESOURCE_EXHAUSTED and
`norn-resume-revision` while a fast watcher and ingest go on, and the resume
from that revision; 200 concurrent watchers; filters and DELETED deltas;
the SIGTERM drain.

Every test starts its own nornd (fresh data directory) so revisions are
predictable: revision r is the r-th committed change.

Run: cd tests/python && NORND=... NORN_PROTO_DIR=... NORN_PY_GEN=... \
     /usr/bin/python3 -m unittest -v test_watch
"""

import queue
import statistics
import threading
import time
import unittest

import nornd_proc
from nornd_proc import start_nornd

nornd_proc.ensure_stubs()

import grpc  # noqa: E402
from grpc.health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from norn.v1 import common_pb2  # noqa: E402
from norn.v1 import session_service_pb2 as ss  # noqa: E402
from norn.v1 import session_service_pb2_grpc as ss_grpc  # noqa: E402

RPC_TIMEOUT = 10.0
WATCH_DEADLINE = 60.0  # every watch call carries one, so a hang fails instead of blocking

CREATED = common_pb2.DELTA_KIND_CREATED
UPDATED = common_pb2.DELTA_KIND_UPDATED
STEP_ADDED = common_pb2.DELTA_KIND_STEP_ADDED
STEP_UPDATED = common_pb2.DELTA_KIND_STEP_UPDATED
COMPLETED = common_pb2.DELTA_KIND_COMPLETED
DELETED = common_pb2.DELTA_KIND_DELETED

# Server limits this file relies on (server/watch.c).
MAX_LAG = 4096  # RING_SIZE: revisions a watcher may fall behind


def kind_name(k):
    return common_pb2.DeltaKind.Name(k)


def make_step(tag, i, size=0):
    """One whole step for RecordSteps; distinct inputs keep loop detection quiet."""
    text = "result %s/%d " % (tag, i)
    if size > len(text):
        text += "x" * (size - len(text))
    st = common_pb2.Step(tool_use_id="%s-%d" % (tag, i), tool_name="tool_%d" % (i % 7),
                         result_text=text, result_status=common_pb2.RESULT_STATUS_SUCCESS)
    st.tool_input.update({"path": "/data/%s/%d" % (tag, i)})
    return st


def current_revision(stub):
    return stub.ListSessions(ss.ListSessionsRequest(page_size=1), timeout=RPC_TIMEOUT).revision


def trailers(err_or_call):
    return {m.key: m.value for m in (err_or_call.trailing_metadata() or ())}


def ingest_stream(stub, requests):
    """Sends the requests over one Ingest stream (pipelined); returns the responses."""
    out = []
    for r in stub.Ingest(iter(requests), timeout=120):
        if r.WhichOneof("payload") == "error":
            raise AssertionError("Ingest item %d failed: %s" % (r.request_id, r.error))
        out.append(r)
    if len(out) != len(requests):
        raise AssertionError("Ingest answered %d of %d requests" % (len(out), len(requests)))
    return out


def steps_requests(sid, tag, count, size=0, first_id=0):
    """`count` RecordSteps requests (one step each: one revision each) for one session."""
    return [ss.IngestRequest(request_id=first_id + i,
                             record_steps=ss.RecordStepsRequest(
                                 session_id=sid, steps=[make_step(tag, i, size)]))
            for i in range(count)]


class WatchReader:
    """Consumes one WatchSessions call on its own thread into a queue."""

    def __init__(self, call):
        self.call = call
        self.q = queue.Queue()
        self.code = None
        self.details = None
        self.trailers = {}
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for m in self.call:
                self.q.put((time.monotonic(), m))
            self.code = grpc.StatusCode.OK
        except grpc.RpcError as e:
            self.code, self.details = e.code(), e.details()
            self.trailers = trailers(e)
        self.q.put((time.monotonic(), None))

    def get(self, timeout=5.0, with_time=False):
        """The next message, or None once the stream has ended."""
        try:
            t, m = self.q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no WatchSessions message within %.1f s" % timeout)
        if m is None:
            self.q.put((t, None))  # stay ended
        return (t, m) if with_time else m

    def deltas_until(self, revision, timeout=15.0):
        """Deltas up to the first delta (or progress) with revision >= `revision`."""
        deadline = time.monotonic() + timeout
        out = []
        while True:
            m = self.get(max(0.05, deadline - time.monotonic()))
            if m is None:
                raise AssertionError(
                    "stream ended (%s: %s) before revision %d; last delta seen: %s"
                    % (self.code, self.details, revision, out[-1].revision if out else None))
            ev = m.WhichOneof("event")
            if ev == "delta":
                out.append(m.delta)
                if m.delta.revision >= revision:
                    return out
            elif ev == "progress":
                if m.progress.revision >= revision:
                    return out
            else:
                raise AssertionError("unexpected %s after the snapshot: %s" % (ev, m))

    def end(self, timeout=10.0):
        """Waits for the end of the stream (skipping messages); returns the code."""
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError("WatchSessions stream still open after %.1f s" % timeout)
        return self.code

    def cancel(self):
        self.call.cancel()
        self.thread.join(5)


class WatchTestCase(unittest.TestCase):
    def start(self, **kw):
        n = start_nornd(self, **kw)
        ch = n.channel()
        grpc.channel_ready_future(ch).result(timeout=10)
        return n, ss_grpc.SessionServiceStub(ch)

    def watch(self, stub, **req):
        r = WatchReader(stub.WatchSessions(ss.WatchSessionsRequest(**req),
                                           timeout=WATCH_DEADLINE))
        self.addCleanup(r.cancel)
        return r

    def watch_error(self, stub, **req):
        """Opens a watch that must fail before its first message; returns the RpcError."""
        call = stub.WatchSessions(ss.WatchSessionsRequest(**req), timeout=RPC_TIMEOUT)
        try:
            m = next(call)
        except grpc.RpcError as e:
            return e
        finally:
            call.cancel()
        self.fail("WatchSessions(%s) answered %s instead of failing" % (req, m))

    def assertConsecutive(self, revs, first, last, what="delta revisions"):
        expected = list(range(first, last + 1))
        if revs == expected:
            return
        for i, (a, b) in enumerate(zip(revs, expected)):
            if a != b:
                self.fail("%s: at index %d got %d, expected %d (gap or duplicate); "
                          "around it: %s; %d received, %d expected (%d..%d)"
                          % (what, i, a, b, revs[max(0, i - 3):i + 4], len(revs),
                             len(expected), first, last))
        self.fail("%s: %d received, %d expected (%d..%d); tail: %s"
                  % (what, len(revs), len(expected), first, last, revs[-5:]))


# ---------------------------------------------------------------------------
# 1. Ordered, gap-free delivery under concurrent ingest from several clients.
# ---------------------------------------------------------------------------
class GapFreeTest(WatchTestCase):
    THREADS = 4
    BATCHES = 15       # RecordSteps calls, 3 steps each
    PAIRS = 8          # BeginStep + EndStep
    PER_SESSION = 1 + BATCHES + 2 * PAIRS + 1

    def ingest(self, n, k, errors):
        try:
            stub = ss_grpc.SessionServiceStub(n.channel())  # one client (channel) per thread
            sid = "gap-%d" % k
            stub.OpenSession(ss.OpenSessionRequest(session_id=sid, agent_name="gap-agent-%d" % k),
                             timeout=RPC_TIMEOUT)
            i = 0
            for _ in range(self.BATCHES):
                stub.RecordSteps(ss.RecordStepsRequest(
                    session_id=sid, steps=[make_step(sid, i + j) for j in range(3)]),
                    timeout=RPC_TIMEOUT)
                i += 3
            for j in range(self.PAIRS):
                tu = "%s-live-%d" % (sid, j)
                inp = common_pb2.Step().tool_input
                inp.update({"q": tu})
                stub.BeginStep(ss.BeginStepRequest(session_id=sid, tool_use_id=tu,
                                                   tool_name="search", tool_input=inp),
                               timeout=RPC_TIMEOUT)
                stub.EndStep(ss.EndStepRequest(session_id=sid, tool_use_id=tu,
                                               result_text="found " + tu,
                                               result_status=common_pb2.RESULT_STATUS_SUCCESS,
                                               execution_time_ms=1.5), timeout=RPC_TIMEOUT)
            stub.CompleteSession(ss.CompleteSessionRequest(session_id=sid, final_text="done"),
                                 timeout=RPC_TIMEOUT)
        except Exception as e:  # reported by the main thread
            errors.append("ingest thread %d: %r" % (k, e))

    def test_gap_free_order_under_concurrent_ingest(self):
        n, stub = self.start()
        # Some history first, so "from now" is not revision 1.
        stub.OpenSession(ss.OpenSessionRequest(session_id="before", agent_name="x"),
                         timeout=RPC_TIMEOUT)
        w = self.watch(stub, include_steps=True, progress_interval_ms=100)
        # The first progress proves the watcher is registered and says where "now" is.
        first = w.get(5)
        self.assertEqual(first.WhichOneof("event"), "progress", first)
        p = first.progress.revision
        self.assertEqual(p, current_revision(stub))

        errors = []
        threads = [threading.Thread(target=self.ingest, args=(n, k, errors))
                   for k in range(self.THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        final = current_revision(stub)
        self.assertEqual(final, p + self.THREADS * self.PER_SESSION)

        deltas = w.deltas_until(final)
        self.assertConsecutive([d.revision for d in deltas], p + 1, final)

        expected_kinds = ([CREATED] + [STEP_ADDED] * self.BATCHES +
                          [STEP_ADDED, STEP_UPDATED] * self.PAIRS + [COMPLETED])
        by_session = {}
        for d in deltas:
            self.assertEqual(d.session.revision, d.revision,
                             "delta %d carries session revision %d" % (d.revision,
                                                                        d.session.revision))
            by_session.setdefault(d.session.session_id, []).append(d)
        self.assertEqual(sorted(by_session), ["gap-%d" % k for k in range(self.THREADS)])
        for sid, ds in by_session.items():
            self.assertEqual([kind_name(d.kind) for d in ds],
                             [kind_name(k) for k in expected_kinds], sid)
            # Each delta's steps are exactly the steps the call wrote.
            self.assertEqual([len(d.steps) for d in ds],
                             [0] + [3] * self.BATCHES + [1, 1] * self.PAIRS + [0], sid)

            # The (session, step) pairs the watcher saw, in their last state,
            # are exactly what GetSession returns.
            seen = {}
            for d in ds:
                for st in d.steps:
                    seen[st.step_number] = st
            got = stub.GetSession(ss.GetSessionRequest(session_id=sid, include_steps=True),
                                  timeout=RPC_TIMEOUT).session
            stored = {st.step_number: st for st in got.steps}
            self.assertEqual(sorted(seen), sorted(stored), sid)
            self.assertEqual(len(stored), self.BATCHES * 3 + self.PAIRS, sid)
            for num, st in stored.items():
                mine = seen[num]
                self.assertEqual(
                    (mine.step_id, mine.tool_use_id, mine.tool_name, mine.result_text,
                     common_pb2.StepStatus.Name(mine.status)),
                    (st.step_id, st.tool_use_id, st.tool_name, st.result_text,
                     common_pb2.StepStatus.Name(st.status)), "%s step %d" % (sid, num))
            self.assertEqual(ds[-1].session.total_steps, got.total_steps, sid)
            self.assertEqual(ds[-1].session.revision, got.revision, sid)


# ---------------------------------------------------------------------------
# 2. Resume from a revision across a server restart.
# ---------------------------------------------------------------------------
class ResumeAcrossRestartTest(WatchTestCase):
    def test_resume_from_revision_across_restart(self):
        n, stub = self.start()
        # Revisions 1..6.
        stub.OpenSession(ss.OpenSessionRequest(session_id="r-1", agent_name="resumer"),
                         timeout=RPC_TIMEOUT)
        for i in range(3):
            stub.RecordSteps(ss.RecordStepsRequest(session_id="r-1", steps=[make_step("r1", i)]),
                             timeout=RPC_TIMEOUT)
        stub.CompleteSession(ss.CompleteSessionRequest(session_id="r-1"), timeout=RPC_TIMEOUT)
        stub.OpenSession(ss.OpenSessionRequest(session_id="r-2", agent_name="resumer"),
                         timeout=RPC_TIMEOUT)
        self.assertEqual(current_revision(stub), 6)

        w = self.watch(stub, start_revision=1, include_steps=True)
        before = w.deltas_until(6)
        self.assertConsecutive([d.revision for d in before], 1, 6)
        last = before[-1].revision

        # A graceful stop: the open watch ends with UNAVAILABLE, exit status 0.
        self.assertEqual(n.terminate(), 0, n.log_text())
        self.assertEqual(w.end(), grpc.StatusCode.UNAVAILABLE, w.details)

        n.restart()  # already exited: starts a new process on the same data directory
        ch = n.channel()
        grpc.channel_ready_future(ch).result(timeout=10)
        stub = ss_grpc.SessionServiceStub(ch)
        self.assertEqual(current_revision(stub), last, "revision lost across the restart")

        # Revisions 7..11, written while nobody watched.
        for i in range(2):
            stub.RecordSteps(ss.RecordStepsRequest(session_id="r-2", steps=[make_step("r2", i)]),
                             timeout=RPC_TIMEOUT)
        stub.CompleteSession(ss.CompleteSessionRequest(session_id="r-2"), timeout=RPC_TIMEOUT)
        resumed = stub.OpenSession(ss.OpenSessionRequest(session_id="r-1", agent_name="resumer"),
                                   timeout=RPC_TIMEOUT)
        self.assertTrue(resumed.resumed)
        stub.OpenSession(ss.OpenSessionRequest(session_id="r-3", agent_name="resumer"),
                         timeout=RPC_TIMEOUT)
        final = current_revision(stub)
        self.assertEqual(final, 11)

        w2 = self.watch(stub, start_revision=last + 1, include_steps=True)
        missing = w2.deltas_until(final)
        self.assertConsecutive([d.revision for d in missing], last + 1, final)
        self.assertEqual([(d.session.session_id, kind_name(d.kind)) for d in missing],
                         [("r-2", "DELTA_KIND_STEP_ADDED"), ("r-2", "DELTA_KIND_STEP_ADDED"),
                          ("r-2", "DELTA_KIND_COMPLETED"), ("r-1", "DELTA_KIND_UPDATED"),
                          ("r-3", "DELTA_KIND_CREATED")])
        # ...and it goes on live after the catch-up.
        stub.CompleteSession(ss.CompleteSessionRequest(session_id="r-3"), timeout=RPC_TIMEOUT)
        live = w2.deltas_until(final + 1)
        self.assertEqual([(d.revision, d.session.session_id, kind_name(d.kind)) for d in live],
                         [(final + 1, "r-3", "DELTA_KIND_COMPLETED")])

        # start_revision=1 replays from the beginning; the deltas from before
        # the restart are byte-for-byte the ones delivered then.
        w3 = self.watch(stub, start_revision=1, include_steps=True)
        replay = w3.deltas_until(final + 1)
        self.assertConsecutive([d.revision for d in replay], 1, final + 1)
        for old, new in zip(before, replay):
            self.assertEqual(old.SerializeToString(deterministic=True),
                             new.SerializeToString(deterministic=True),
                             "revision %d differs after the restart" % old.revision)
        for a, b in zip(missing, replay[last:]):
            self.assertEqual(a, b)


# ---------------------------------------------------------------------------
# 3. Snapshot, then deltas, with no gap at the seam.
# ---------------------------------------------------------------------------
class SnapshotSeamTest(WatchTestCase):
    def test_snapshot_then_deltas_no_gap_at_seam(self):
        n, stub = self.start()
        created = {}  # session id -> revision of its CREATED delta
        for i in range(20):
            r = stub.OpenSession(ss.OpenSessionRequest(session_id="pre-%d" % i, agent_name="seam"),
                                 timeout=RPC_TIMEOUT)
            created[r.session.session_id] = r.session.revision
            stub.RecordSteps(ss.RecordStepsRequest(session_id="pre-%d" % i,
                                                   steps=[make_step("pre", i)]),
                             timeout=RPC_TIMEOUT)

        stop = threading.Event()
        ops = [0]
        errors = []
        warm = threading.Event()

        def ingest():
            try:
                st = ss_grpc.SessionServiceStub(n.channel())
                i = 0
                while not stop.is_set() and i < 2000:
                    sid = "live-%d" % i
                    r = st.OpenSession(ss.OpenSessionRequest(session_id=sid, agent_name="seam"),
                                       timeout=RPC_TIMEOUT)
                    created[sid] = r.session.revision
                    st.RecordSteps(ss.RecordStepsRequest(session_id="pre-%d" % (i % 20),
                                                         steps=[make_step("live", i)]),
                                   timeout=RPC_TIMEOUT)
                    i += 1
                    ops[0] = i
                    if i == 10:
                        warm.set()
            except Exception as e:
                errors.append(repr(e))
            warm.set()

        t = threading.Thread(target=ingest)
        t.start()
        try:
            self.assertTrue(warm.wait(10))
            w = self.watch(stub, send_initial=True, include_steps=True)
            initial = []
            while True:
                m = w.get(10)
                self.assertIsNotNone(m, "stream ended in the snapshot: %s %s" % (w.code, w.details))
                ev = m.WhichOneof("event")
                if ev == "initial":
                    initial.append(m.initial)
                    continue
                self.assertEqual(ev, "initial_end", m)
                break
            seam = m.initial_end.revision
            ops_at_seam = ops[0]
            # Let ingest go on past the seam for a while.
            deadline = time.monotonic() + 10
            while ops[0] < ops_at_seam + 20 and time.monotonic() < deadline and t.is_alive():
                time.sleep(0.01)
        finally:
            stop.set()
            t.join(30)
        self.assertEqual(errors, [])
        final = current_revision(stub)
        self.assertGreater(seam, 40, "the snapshot was taken before concurrent ingest started")
        self.assertGreater(final, seam + 10, "no ingest after the snapshot")

        deltas = w.deltas_until(final)
        revs = [d.revision for d in deltas]
        self.assertEqual(revs[0], seam + 1, "first delta after initial_end{%d}" % seam)
        self.assertConsecutive(revs, seam + 1, final)

        # The snapshot: exactly the sessions created at or before the seam,
        # each at its last change at or before the seam.
        for s in initial:
            self.assertLessEqual(s.revision, seam, s.session_id)
            self.assertEqual(len(s.steps), 0, "snapshot entries are summaries")
        ids = [s.session_id for s in initial]
        self.assertEqual(len(ids), len(set(ids)), "a session appears twice in the snapshot")
        self.assertEqual(sorted(ids), sorted(sid for sid, r in created.items() if r <= seam))

        # Cross-check with the full history (start_revision=1).
        h = self.watch(stub, start_revision=1)
        history = h.deltas_until(final)
        self.assertConsecutive([d.revision for d in history], 1, final, "history")
        at_seam = {}
        for d in history:
            if d.revision <= seam:
                at_seam[d.session.session_id] = d.session
        for s in initial:
            ref = at_seam[s.session_id]
            self.assertEqual((s.revision, s.total_steps, s.updated_at),
                             (ref.revision, ref.total_steps, ref.updated_at), s.session_id)
        # And the deltas after the seam are the history's, identical.
        self.assertEqual([d.SerializeToString(deterministic=True) for d in history[seam:]],
                         [ss.SessionDelta(revision=d.revision, kind=d.kind, session=d.session,
                                          issues=d.issues).SerializeToString(deterministic=True)
                          for d in deltas])


# ---------------------------------------------------------------------------
# 4. A compacted start revision: OUT_OF_RANGE with norn-oldest-revision.
# ---------------------------------------------------------------------------
class CompactedStartTest(WatchTestCase):
    KEEP = 100   # revlog_max_entries (the smallest the config accepts)
    TOTAL = 250

    def test_compacted_start_is_out_of_range_with_oldest_revision(self):
        # Nothing in the API lowers revlog_max_entries yet (ConfigService is
        # issue 6): seed the persisted config into the store before nornd starts.
        try:
            import norn_store_seed
            from norn.v1 import config_service_pb2
            cfg = norn_store_seed.default_config(config_service_pb2, common_pb2)
        except Exception as e:  # pragma: no cover - depends on the helper module
            self.skipTest("needs ConfigService to lower revlog_max_entries (issue 6): %r" % e)
        cfg.revlog_max_entries = self.KEEP
        t0 = time.monotonic()
        n, stub = self.start(
            before_start=lambda n: norn_store_seed.seed_config(n.data_dir, cfg))
        stub.OpenSession(ss.OpenSessionRequest(session_id="compact", agent_name="c"),
                         timeout=RPC_TIMEOUT)
        ingest_stream(stub, steps_requests("compact", "c", self.TOTAL - 1))
        self.assertEqual(current_revision(stub), self.TOTAL)

        # Until the hub's first trim (5 s after start) everything is retained.
        w = self.watch(stub, start_revision=1)
        first = w.get(5)
        if time.monotonic() - t0 < 4.5:
            self.assertEqual(first.delta.revision, 1, first)
        w.cancel()

        # The trim keeps the newest KEEP revisions: 151..250.
        oldest = self.TOTAL - self.KEEP + 1
        deadline = time.monotonic() + 15
        while True:
            call = stub.WatchSessions(ss.WatchSessionsRequest(start_revision=1),
                                      timeout=RPC_TIMEOUT)
            try:
                m = next(call)
                err = None
            except grpc.RpcError as e:
                err = e
            finally:
                call.cancel()
            if err is not None or time.monotonic() > deadline:
                break
            self.assertEqual(m.delta.revision, 1)
            time.sleep(0.2)
        self.assertIsNotNone(err, "start_revision=1 still served 15 s after start: no trim")
        self.assertEqual(err.code(), grpc.StatusCode.OUT_OF_RANGE, err.details())
        self.assertEqual(trailers(err).get("norn-oldest-revision"), str(oldest), trailers(err))

        for start in (1, oldest - 1):
            e = self.watch_error(stub, start_revision=start)
            self.assertEqual(e.code(), grpc.StatusCode.OUT_OF_RANGE, e.details())
            self.assertEqual(trailers(e).get("norn-oldest-revision"), str(oldest))

        # The oldest retained revision is served, gap-free to the end.
        w = self.watch(stub, start_revision=oldest)
        ds = w.deltas_until(self.TOTAL)
        self.assertConsecutive([d.revision for d in ds], oldest, self.TOTAL)
        # "From now" and the snapshot do not depend on the log's start.
        w = self.watch(stub, send_initial=True)
        self.assertEqual(w.get(5).initial.session_id, "compact")
        self.assertEqual(w.get(5).initial_end.revision, self.TOTAL)


# ---------------------------------------------------------------------------
# 5. Progress messages.
# ---------------------------------------------------------------------------
class ProgressTest(WatchTestCase):
    def test_idle_watcher_gets_progress_at_current_revision(self):
        n, stub = self.start()
        stub.OpenSession(ss.OpenSessionRequest(session_id="p-1", agent_name="p"),
                         timeout=RPC_TIMEOUT)
        stub.CompleteSession(ss.CompleteSessionRequest(session_id="p-1"), timeout=RPC_TIMEOUT)
        cur = current_revision(stub)
        self.assertEqual(cur, 2)

        t0 = time.monotonic()
        w = self.watch(stub, progress_interval_ms=200)
        got = []
        while time.monotonic() - t0 < 1.1:
            try:
                t, m = w.get(max(0.01, 1.1 - (time.monotonic() - t0)), with_time=True)
            except AssertionError:
                break
            self.assertIsNotNone(m, "stream ended: %s %s" % (w.code, w.details))
            got.append((t - t0, m))
        kinds = [m.WhichOneof("event") for _, m in got]
        self.assertEqual(set(kinds), {"progress"}, kinds)
        self.assertGreaterEqual(len(got), 3, [round(t, 3) for t, _ in got])
        self.assertLessEqual(len(got), 7, "progress far more often than every 200 ms: %s"
                             % [round(t, 3) for t, _ in got])
        for t, m in got:
            self.assertEqual(m.progress.revision, cur, "progress at %.3f s" % t)

        # A change: its delta, then progress at the new revision.
        stub.OpenSession(ss.OpenSessionRequest(session_id="p-2", agent_name="p"),
                         timeout=RPC_TIMEOUT)
        m = w.get(5)
        while m.WhichOneof("event") == "progress":  # one may have been in flight
            self.assertEqual(m.progress.revision, cur)
            m = w.get(5)
        self.assertEqual((m.delta.revision, m.delta.session.session_id), (cur + 1, "p-2"))
        m = w.get(5)
        self.assertEqual(m.WhichOneof("event"), "progress", m)
        self.assertEqual(m.progress.revision, cur + 1)

        # A filtered watcher is told about revisions it does not match too.
        f = self.watch(stub, session_ids=["nobody"], progress_interval_ms=100)
        m = f.get(5)
        self.assertEqual(m.WhichOneof("event"), "progress", m)
        self.assertEqual(m.progress.revision, cur + 1)

    def test_invalid_progress_interval(self):
        n, stub = self.start()
        for ms in (50, 99, 3600001):
            e = self.watch_error(stub, progress_interval_ms=ms)
            self.assertEqual(e.code(), grpc.StatusCode.INVALID_ARGUMENT, (ms, e.details()))
            self.assertIn("progress_interval_ms", e.details())
        for ms in (100, 3600000):
            w = self.watch(stub, progress_interval_ms=ms)
            if ms == 100:
                self.assertEqual(w.get(5).WhichOneof("event"), "progress")
            w.cancel()
            self.assertEqual(w.end(), grpc.StatusCode.CANCELLED)


# ---------------------------------------------------------------------------
# 6. A slow watcher is cut off; a fast one and ingest are not held up.
# ---------------------------------------------------------------------------
class SlowWatcherTest(WatchTestCase):
    """One scenario, two tests: the cut-off itself, then the resume from it."""

    STEP_BYTES = 1000
    BASELINE = 1500   # revisions ingested with only the fast watcher attached
    LOADED = 5500     # ...and with the slow one attached too (> MAX_LAG + what it buffers)

    CHUNK = 500       # revisions per Ingest stream; the rate is measured per chunk

    @classmethod
    def timed_ingest(cls, sid, tag, count):
        """Ingests `count` one-step revisions into `sid`; returns the rate of each chunk."""
        rates = []
        for first in range(0, count, cls.CHUNK):
            reqs = steps_requests(sid, tag, min(cls.CHUNK, count - first), cls.STEP_BYTES)
            for i, r in enumerate(reqs):  # distinct tool_use_ids across chunks
                st = r.record_steps.steps[0]
                st.tool_use_id = "%s-%d" % (tag, first + i)
                st.tool_input.update({"path": "/data/%s/%d" % (tag, first + i)})
            t = time.monotonic()
            ingest_stream(cls.stub, reqs)
            rates.append(len(reqs) / (time.monotonic() - t))
        return rates

    @classmethod
    def setUpClass(cls):
        cls.nornd = start_nornd(cls)
        ch = cls.nornd.channel()
        grpc.channel_ready_future(ch).result(timeout=10)
        stub = cls.stub = ss_grpc.SessionServiceStub(ch)
        stub.OpenSession(ss.OpenSessionRequest(session_id="base", agent_name="load"),
                         timeout=RPC_TIMEOUT)
        stub.OpenSession(ss.OpenSessionRequest(session_id="load", agent_name="load"),
                         timeout=RPC_TIMEOUT)
        cls.start_rev = current_revision(stub) + 1

        cls.fast = WatchReader(stub.WatchSessions(
            ss.WatchSessionsRequest(start_revision=cls.start_rev, include_steps=True),
            timeout=120))
        cls.addClassCleanup(cls.fast.cancel)

        cls.base_rates = cls.timed_ingest("base", "b", cls.BASELINE)
        cls.baseline_end = current_revision(stub)
        cls.fast_baseline = cls.fast.deltas_until(cls.baseline_end, timeout=30)

        # The slow watcher: its own connection with a fixed 64 KiB HTTP/2
        # window (no BDP growth), so what the transport soaks up is small and
        # the server-side queue (256 KiB) is what fills.
        slow_ch = grpc.insecure_channel(cls.nornd.target, options=[("grpc.http2.bdp_probe", 0)])
        cls.addClassCleanup(slow_ch.close)
        cls.slow = ss_grpc.SessionServiceStub(slow_ch).WatchSessions(
            ss.WatchSessionsRequest(start_revision=cls.baseline_end, include_steps=True),
            timeout=120)
        cls.addClassCleanup(cls.slow.cancel)
        cls.slow_first = next(cls.slow)  # registered; from here on it reads nothing

        cls.loaded_rates = cls.timed_ingest("load", "l", cls.LOADED)
        cls.loaded_end = current_revision(stub)
        cls.fast_loaded = cls.fast.deltas_until(cls.loaded_end, timeout=60)

        # Now read the slow one: what it had queued, then the cut-off.
        cls.slow_deltas = []
        cls.slow_error = None
        t = time.monotonic()
        try:
            for m in cls.slow:
                cls.slow_deltas.append(m)
                if len(cls.slow_deltas) > cls.LOADED + 10:
                    break
        except grpc.RpcError as e:
            cls.slow_error = e
        cls.slow_read_s = time.monotonic() - t

        # A second baseline, the slow watcher gone: rates on a small shared
        # box drift, the comparison takes the lower of the two.
        stub.OpenSession(ss.OpenSessionRequest(session_id="after", agent_name="load"),
                         timeout=RPC_TIMEOUT)
        cls.base_rates += cls.timed_ingest("after", "a", cls.BASELINE)
        cls.final = current_revision(stub)
        cls.fast_after = cls.fast.deltas_until(cls.final, timeout=30)

    def test_slow_watcher_cut_off_fast_watcher_and_ingest_unaffected(self):
        # The fast watcher got every revision, in order, while the slow one stalled.
        revs = [d.revision for d in self.fast_baseline + self.fast_loaded + self.fast_after]
        self.assertConsecutive(revs, self.start_rev, self.final, "fast watcher")
        self.assertEqual(self.loaded_end, self.baseline_end + self.LOADED)
        for d in self.fast_loaded[:5]:
            self.assertEqual(len(d.steps), 1)
            self.assertGreaterEqual(len(d.steps[0].result_text), self.STEP_BYTES)

        # Ingest kept its pace with the stalled watcher attached.
        # Medians of per-chunk rates: a storage flush or a busy neighbour on a
        # small box shifts one chunk, not the median.
        base_rate = statistics.median(self.base_rates)
        loaded_rate = statistics.median(self.loaded_rates)
        print("\ningest (rev/s per %d-revision chunk): fast watcher only %s; slow one "
              "attached too %s; medians %.0f vs %.0f (%.0f%%)"
              % (self.CHUNK, [round(r) for r in self.base_rates],
                 [round(r) for r in self.loaded_rates], base_rate, loaded_rate,
                 100 * loaded_rate / base_rate))
        self.assertGreaterEqual(loaded_rate, 0.5 * base_rate,
                                "ingest slowed down by a watcher that does not read")

        # The slow watcher: its queued deltas, gap-free, then RESOURCE_EXHAUSTED
        # with the revision to resume from (the one after its last delta).
        self.assertIsNotNone(self.slow_error,
                             "slow watcher not cut off: read %d messages" % len(self.slow_deltas))
        e = self.slow_error
        self.assertEqual(e.code(), grpc.StatusCode.RESOURCE_EXHAUSTED, e.details())
        resume = trailers(e).get("norn-resume-revision")
        self.assertIsNotNone(resume, trailers(e))
        self.assertRegex(resume, r"^[0-9]+$")
        resume = int(resume)
        self.assertIn(str(resume), e.details())
        first = self.slow_first.delta.revision
        self.assertEqual(first, self.baseline_end)
        revs = [m.delta.revision for m in self.slow_deltas]
        self.assertEqual(set(m.WhichOneof("event") for m in self.slow_deltas), {"delta"})
        self.assertConsecutive(revs, first + 1, resume - 1, "slow watcher (after its first)")
        self.assertLess(resume, self.loaded_end - MAX_LAG + 1,
                        "cut off later than max_lag allows")
        self.assertLess(self.slow_read_s, 10)
        print("slow watcher: %d deltas queued, cut off with resume revision %d (ingest reached %d)"
              % (len(revs) + 1, resume, self.loaded_end))

    def test_resume_after_cut_off_continues_gap_free(self):
        e = self.slow_error
        if e is None or e.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
            self.fail("no cut-off to resume from (see the cut-off test)")
        resume = int(trailers(e)["norn-resume-revision"])
        w = self.watch(self.stub, start_revision=resume, include_steps=True)
        try:
            ds = w.deltas_until(self.final, timeout=30)
        except AssertionError:
            self.fail("a watch from norn-resume-revision=%d (current revision %d, %d behind) "
                      "ended with %s: %s -- the revision is retained (revlog keeps 100000), "
                      "yet the resumed watcher cannot catch up"
                      % (resume, self.final, self.final - resume + 1, w.code, w.details))
        self.assertConsecutive([d.revision for d in ds], resume, self.final, "resumed watcher")


class ResumeBeyondRingTest(WatchTestCase):
    """A retained revision further back than the hub's ring (4096 revisions)."""

    def test_resume_from_retained_revision_older_than_ring(self):
        n, stub = self.start()
        total = MAX_LAG + 500
        ingest_stream(stub, [ss.IngestRequest(request_id=i, open=ss.OpenSessionRequest(
            session_id="old-%d" % i, agent_name="old")) for i in range(total)])
        self.assertEqual(current_revision(stub), total)
        for start in (total - MAX_LAG + 1, 1):
            with self.subTest(start_revision=start):
                w = self.watch(stub, start_revision=start)
                try:
                    ds = w.deltas_until(total, timeout=20)
                except AssertionError:
                    self.fail("start_revision=%d (current %d, retained from 1): %s: %s; trailers %s"
                              % (start, total, w.code, w.details, w.trailers))
                self.assertConsecutive([d.revision for d in ds], start, total)
                w.cancel()


# ---------------------------------------------------------------------------
# 7. 200 concurrent watchers on one server.
# ---------------------------------------------------------------------------
class ManyWatchersTest(WatchTestCase):
    WATCHERS = 200
    CHANNELS = 4

    def test_200_concurrent_watchers(self):
        n, stub = self.start()
        stubs = [ss_grpc.SessionServiceStub(n.channel()) for _ in range(self.CHANNELS)]
        start = current_revision(stub) + 1
        calls = []
        for i in range(self.WATCHERS):
            c = stubs[i % self.CHANNELS].WatchSessions(
                ss.WatchSessionsRequest(start_revision=start, include_steps=(i % 2 == 0)),
                timeout=WATCH_DEADLINE)
            self.addCleanup(c.cancel)
            calls.append(c)

        # 3 sessions x (open, 2 x RecordSteps, complete) = 12 revisions.
        for k in range(3):
            sid = "many-%d" % k
            stub.OpenSession(ss.OpenSessionRequest(session_id=sid, agent_name="many"),
                             timeout=RPC_TIMEOUT)
            for j in range(2):
                stub.RecordSteps(ss.RecordStepsRequest(session_id=sid,
                                                       steps=[make_step(sid, j)]),
                                 timeout=RPC_TIMEOUT)
            stub.CompleteSession(ss.CompleteSessionRequest(session_id=sid), timeout=RPC_TIMEOUT)
        final = current_revision(stub)
        count = final - start + 1
        self.assertEqual(count, 12)

        t0 = time.monotonic()
        received = []
        for i, c in enumerate(calls):
            msgs = []
            for _ in range(count):
                try:
                    msgs.append(next(c))
                except grpc.RpcError as e:
                    self.fail("watcher %d ended after %d messages: %s %s"
                              % (i, len(msgs), e.code(), e.details()))
            received.append(msgs)
        elapsed = time.monotonic() - t0
        ref = {0: [m.SerializeToString(deterministic=True) for m in received[0]],
               1: [m.SerializeToString(deterministic=True) for m in received[1]]}
        self.assertConsecutive([m.delta.revision for m in received[0]], start, final)
        self.assertTrue(any(len(m.delta.steps) for m in received[0]))
        self.assertFalse(any(len(m.delta.steps) for m in received[1]))
        for i, msgs in enumerate(received):
            self.assertEqual([m.SerializeToString(deterministic=True) for m in msgs], ref[i % 2],
                             "watcher %d saw different deltas" % i)
        print("\n%d watchers x %d deltas read in %.2f s" % (self.WATCHERS, count, elapsed))

        for c in calls:
            c.cancel()
        for c in calls:
            self.assertEqual(c.code(), grpc.StatusCode.CANCELLED)

        # Still healthy: health, a new watcher, ingest, no errors logged.
        health = health_pb2_grpc.HealthStub(n.channel())
        self.assertEqual(health.Check(health_pb2.HealthCheckRequest(service=""),
                                      timeout=RPC_TIMEOUT).status,
                         health_pb2.HealthCheckResponse.SERVING)
        w = self.watch(stub, start_revision=final + 1)
        stub.OpenSession(ss.OpenSessionRequest(session_id="after", agent_name="many"),
                         timeout=RPC_TIMEOUT)
        self.assertEqual(w.get(5).delta.revision, final + 1)
        self.assertIsNone(n.proc.poll())
        self.assertNotIn("level=error", n.log_text())


# ---------------------------------------------------------------------------
# 8. Filters, DELETED deltas, invalid filters.
# ---------------------------------------------------------------------------
class FilterTest(WatchTestCase):
    SESSIONS = [  # id, agent, swarm
        ("f-a", "alpha", "sw-1"),
        ("f-b", "beta", "sw-1"),
        ("f-c", "alpha", ""),
        ("f-d", "gamma", "sw-2"),
    ]

    def test_filters_deliver_only_matching_deltas(self):
        n, stub = self.start()
        start = current_revision(stub) + 1
        filters = {
            "session_ids": dict(session_ids=["f-a", "f-d"]),
            "agent_name": dict(agent_name="alpha"),
            "swarm_id": dict(swarm_id="sw-1"),
            "agent_and_swarm": dict(agent_name="alpha", swarm_id="sw-1"),
            "nothing": dict(session_ids=["f-none"]),
        }
        everything = self.watch(stub, start_revision=start, include_steps=True,
                                progress_interval_ms=100)
        watchers = {k: self.watch(stub, start_revision=start, include_steps=True,
                                  progress_interval_ms=100, **f)
                    for k, f in filters.items()}

        for sid, agent, swarm in self.SESSIONS:
            stub.OpenSession(ss.OpenSessionRequest(session_id=sid, agent_name=agent,
                                                   swarm_id=swarm), timeout=RPC_TIMEOUT)
        for sid, _, _ in self.SESSIONS:
            stub.RecordSteps(ss.RecordStepsRequest(session_id=sid, steps=[make_step(sid, 0)]),
                             timeout=RPC_TIMEOUT)
            stub.CompleteSession(ss.CompleteSessionRequest(session_id=sid), timeout=RPC_TIMEOUT)
        deleted = {}
        for sid in ("f-b", "f-c", "f-a"):
            deleted[sid] = stub.DeleteSession(ss.DeleteSessionRequest(session_id=sid),
                                              timeout=RPC_TIMEOUT).revision
        final = current_revision(stub)
        self.assertEqual(final, start + 4 * 3 + 3 - 1)

        all_deltas = everything.deltas_until(final)
        self.assertConsecutive([d.revision for d in all_deltas], start, final)

        # DELETED deltas: the identity of what went away, at DeleteSession's revision.
        dels = [d for d in all_deltas if d.kind == DELETED]
        self.assertEqual([(d.session.session_id, d.revision) for d in dels],
                         [(sid, rev) for sid, rev in deleted.items()])
        ident = {sid: (agent, swarm) for sid, agent, swarm in self.SESSIONS}
        for d in dels:
            self.assertEqual((d.session.agent_name, d.session.swarm_id),
                             ident[d.session.session_id])
            self.assertEqual(len(d.steps), 0)

        def match(f, d):
            s = d.session
            if f.get("session_ids") and s.session_id not in f["session_ids"]:
                return False
            if f.get("agent_name") and s.agent_name != f["agent_name"]:
                return False
            if f.get("swarm_id") and s.swarm_id != f["swarm_id"]:
                return False
            return True

        for k, f in filters.items():
            with self.subTest(filter=k):
                got = watchers[k].deltas_until(final)  # progress at `final` ends the wait
                expected = [d for d in all_deltas if match(f, d)]
                self.assertEqual([(d.revision, d.session.session_id, kind_name(d.kind))
                                  for d in got],
                                 [(d.revision, d.session.session_id, kind_name(d.kind))
                                  for d in expected])
                self.assertEqual(got, expected)
        # Sanity of the expectations themselves.
        self.assertEqual({d.session.session_id for d in all_deltas
                          if match(filters["swarm_id"], d)}, {"f-a", "f-b"})
        self.assertIn(("f-a", DELETED), [(d.session.session_id, d.kind) for d in all_deltas
                                         if match(filters["agent_and_swarm"], d)])

        # The snapshot honours the filters too.
        snap = self.watch(stub, send_initial=True, agent_name="gamma")
        m = snap.get(5)
        self.assertEqual(m.initial.session_id, "f-d")
        self.assertEqual(snap.get(5).initial_end.revision, final)

    def test_without_include_steps_no_steps_are_sent(self):
        n, stub = self.start()
        w = self.watch(stub, start_revision=1)
        stub.OpenSession(ss.OpenSessionRequest(session_id="ns", agent_name="ns"),
                         timeout=RPC_TIMEOUT)
        stub.RecordSteps(ss.RecordStepsRequest(session_id="ns", steps=[make_step("ns", 0)]),
                         timeout=RPC_TIMEOUT)
        stub.CompleteSession(ss.CompleteSessionRequest(session_id="ns"), timeout=RPC_TIMEOUT)
        final = current_revision(stub)
        for d in w.deltas_until(final):
            self.assertEqual(len(d.steps), 0, d)
            self.assertEqual(d.session.session_id, "ns")

    def test_invalid_filters(self):
        n, stub = self.start()
        cases = {
            "session_ids entry with a space": dict(session_ids=["ok-id", "bad id"]),
            "empty session_ids entry": dict(session_ids=[""]),
            "101 session_ids": dict(session_ids=["s-%d" % i for i in range(101)]),
            "swarm_id with a slash": dict(swarm_id="a/b"),
            "agent_name over 256 bytes": dict(agent_name="a" * 257),
        }
        for what, req in cases.items():
            with self.subTest(what):
                e = self.watch_error(stub, **req)
                self.assertEqual(e.code(), grpc.StatusCode.INVALID_ARGUMENT,
                                 "%s: %s" % (what, e.details()))
        e = self.watch_error(stub, session_ids=["ok-id", "bad id"])
        self.assertIn("session_ids[1]", e.details())
        # 100 ids is the limit, not an error.
        w = self.watch(stub, session_ids=["s-%d" % i for i in range(100)],
                       progress_interval_ms=100)
        self.assertEqual(w.get(5).WhichOneof("event"), "progress")


# ---------------------------------------------------------------------------
# 9. Drain: SIGTERM while a watch is open.
# ---------------------------------------------------------------------------
class DrainTest(WatchTestCase):
    def test_sigterm_ends_open_watch_with_unavailable(self):
        n, stub = self.start()
        stub.OpenSession(ss.OpenSessionRequest(session_id="d-1", agent_name="d"),
                         timeout=RPC_TIMEOUT)
        w = self.watch(stub, send_initial=True, progress_interval_ms=100)
        self.assertEqual(w.get(5).initial.session_id, "d-1")
        self.assertEqual(w.get(5).initial_end.revision, 1)
        self.assertEqual(w.get(5).WhichOneof("event"), "progress")  # live, idle
        t0 = time.monotonic()
        self.assertEqual(n.terminate(), 0, n.log_text())
        elapsed = time.monotonic() - t0
        self.assertEqual(w.end(), grpc.StatusCode.UNAVAILABLE, w.details)
        # Streams end at once; the drain grace (10 s) is for unary calls only.
        self.assertLess(elapsed, 5.0, "exit took %.2f s with a watch open" % elapsed)


if __name__ == "__main__":
    unittest.main()
