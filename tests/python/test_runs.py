"""End-to-end tests of AgentService runs (RunAgent, GetRun, ListRuns, CancelRun)
against a real nornd, with real agent processes on its executor.

The agent is tests/fixtures/run-agents/multi_agent.py, imported with
ImportAgent from a bare git repository made here over file://; the first
word of a run's task picks what it does. Its repository also carries the
generated Python stubs (norn_stubs/) for the agent that reports over gRPC.

nornd runs with one run slot and a queue of two (set with UpdateConfig), and
with NORN_TEST_SECRET and AWS_SECRET_ACCESS_KEY in its environment, which no
agent may see.

Run with Debian's /usr/bin/python3 (python3-grpcio); NORND is the binary.
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import nornd_proc
from nornd_proc import start_nornd

STUBS = nornd_proc.ensure_stubs()

import grpc  # noqa: E402
from norn.v1 import agent_service_pb2 as A  # noqa: E402
from norn.v1 import agent_service_pb2_grpc as A_grpc  # noqa: E402
from norn.v1 import common_pb2 as C  # noqa: E402
from google.protobuf import field_mask_pb2  # noqa: E402
from norn.v1 import config_service_pb2 as CF  # noqa: E402
from norn.v1 import config_service_pb2_grpc as CF_grpc  # noqa: E402
from norn.v1 import session_service_pb2 as S  # noqa: E402
from norn.v1 import session_service_pb2_grpc as S_grpc  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
AGENT = os.path.join(HERE, "..", "fixtures", "run-agents", "multi_agent.py")
RPC_TIMEOUT = 15.0
SECRET = "norn-test-secret-7f3a"
AWS_SECRET = "aws-secret-do-not-leak-91c2"
FINAL = (C.RUN_STATE_SUCCEEDED, C.RUN_STATE_FAILED, C.RUN_STATE_TIMED_OUT,
         C.RUN_STATE_CANCELLED)


def make_repo(root):
    """A bare repository with the agent and the stubs; returns its file:// URL."""
    work = os.path.join(root, "work")
    os.makedirs(work)
    shutil.copy(AGENT, os.path.join(work, "agent.py"))
    shutil.copytree(os.path.join(STUBS, "norn"), os.path.join(work, "norn_stubs", "norn"))
    env = dict(os.environ, HOME=root, GIT_CONFIG_NOSYSTEM="1",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.org",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.org")

    def git(*args, cwd=work):
        subprocess.run(["git"] + list(args), cwd=cwd, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-q", "-m", "agent")
    bare = os.path.join(root, "agent.git")
    git("clone", "-q", "--bare", work, bare, cwd=root)
    return "file://" + bare


def small_executor(n):
    """One run slot and a queue of two, so queueing is easy to see; the
    executor reads them at start, hence the restart."""
    cfg = CF_grpc.ConfigServiceStub(n.channel())
    cfg.UpdateConfig(CF.UpdateConfigRequest(
        config=CF.Config(executor_slots=1, executor_queue=2),
        update_mask=field_mask_pb2.FieldMask(paths=["executor_slots", "executor_queue"])),
        timeout=RPC_TIMEOUT)
    n.restart(sig=signal.SIGTERM)


class RunTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="norn-runs-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        cls.url = make_repo(cls.tmp)
        cls.n = start_nornd(cls, env={"NORN_TEST_SECRET": SECRET,
                                      "AWS_SECRET_ACCESS_KEY": AWS_SECRET})
        small_executor(cls.n)
        cls.connect()
        cls.agent = cls.import_agent()
        # The first run builds the agent's virtualenv; later runs start at once.
        run = cls.run_agent("events first").run
        cls.wait_run(run.run_id, timeout=180)

    @classmethod
    def connect(cls):
        ch = cls.n.channel()
        cls.agents = A_grpc.AgentServiceStub(ch)
        cls.sessions = S_grpc.SessionServiceStub(ch)

    @classmethod
    def import_agent(cls):
        last = None
        for msg in cls.agents.ImportAgent(A.ImportAgentRequest(url=cls.url, main_file="agent.py",
                                                               name="multi"),
                                          timeout=120):
            last = msg
        assert last is not None and last.HasField("agent"), last
        return last.agent

    @classmethod
    def run_agent(cls, task, **kw):
        return cls.agents.RunAgent(A.RunAgentRequest(agent_id=cls.agent.agent_id,
                                                      task=C.TaskDefinition(description=task),
                                                      **kw), timeout=RPC_TIMEOUT)

    @classmethod
    def get_run(cls, run_id):
        return cls.agents.GetRun(A.GetRunRequest(run_id=run_id), timeout=RPC_TIMEOUT).run

    @classmethod
    def wait_run(cls, run_id, timeout=60.0, states=FINAL):
        deadline = time.monotonic() + timeout
        while True:
            run = cls.get_run(run_id)
            if run.state in states:
                return run
            if time.monotonic() > deadline:
                raise AssertionError("run %s still %s after %.0f s; log:\n%s"
                                     % (run_id, C.RunState.Name(run.state), timeout,
                                        run.log_tail))
            time.sleep(0.05)

    def session(self, session_id):
        return self.sessions.GetSession(S.GetSessionRequest(session_id=session_id,
                                                            include_steps=True),
                                        timeout=RPC_TIMEOUT).session

    # ---- reporting steps ---------------------------------------------------------

    def test_events_pipe_steps_land_in_the_runs_session(self):
        resp = self.run_agent("events please")
        self.assertEqual(resp.run.state, C.RUN_STATE_QUEUED)
        self.assertTrue(resp.run.session_id)
        run = self.wait_run(resp.run.run_id)
        self.assertEqual(run.state, C.RUN_STATE_SUCCEEDED, run.error + run.log_tail)
        self.assertEqual(run.exit_code, 0)
        self.assertTrue(run.HasField("started_at") and run.HasField("ended_at"))
        self.assertIn("events agent done", run.log_tail)
        s = self.session(run.session_id)
        self.assertEqual(s.agent_id, self.agent.agent_id)
        self.assertEqual(s.agent_name, "multi")
        self.assertEqual(s.model, "test-model")
        self.assertEqual(s.task.description, "events please")
        self.assertEqual(s.run_id, run.run_id)
        self.assertEqual(s.status, C.SESSION_STATUS_COMPLETED)
        self.assertEqual([st.tool_name for st in s.steps], ["lookup", "lookup"])
        self.assertEqual(s.steps[0].tool_input["query"], "events please")
        self.assertEqual(s.steps[1].tool_input["opts"]["deep"][1], True)
        self.assertEqual(s.steps[1].result_text, "result 2")

    def test_grpc_agent_steps_and_the_server_completes_its_session(self):
        run = self.wait_run(self.run_agent("grpc").run.run_id)
        self.assertEqual(run.state, C.RUN_STATE_SUCCEEDED, run.error + run.log_tail)
        s = self.session(run.session_id)
        self.assertEqual([st.tool_name for st in s.steps], ["fetch", "fetch"])
        self.assertEqual(s.steps[0].result_text, "fetched 1")
        # The agent never called CompleteSession: the server did, from the outcome.
        self.assertEqual(s.status, C.SESSION_STATUS_COMPLETED)

    def test_a_refused_complete_still_ends_the_session(self):
        # The agent's `complete` is refused by ingest (too long a reason): the
        # server completes the session from the run's outcome all the same.
        run = self.wait_run(self.run_agent("badcomplete").run.run_id)
        self.assertEqual(run.state, C.RUN_STATE_SUCCEEDED, run.error + run.log_tail)
        s = self.session(run.session_id)
        self.assertEqual([st.tool_name for st in s.steps], ["lookup"])
        self.assertEqual(s.status, C.SESSION_STATUS_COMPLETED)

    def test_agent_record_tracks_its_runs(self):
        run = self.run_agent("sleep 2").run
        a = self.agents.GetAgent(A.GetAgentRequest(agent_id=self.agent.agent_id),
                                 timeout=RPC_TIMEOUT).agent
        self.assertEqual(a.status, A.AGENT_STATUS_RUNNING)
        self.assertEqual(a.last_run_id, run.run_id)
        self.assertEqual(a.last_run.seconds, run.queued_at.seconds)
        self.wait_run(run.run_id)
        a = self.agents.GetAgent(A.GetAgentRequest(agent_id=self.agent.agent_id),
                                 timeout=RPC_TIMEOUT).agent
        self.assertEqual(a.status, A.AGENT_STATUS_ANALYZED)

    # ---- queue, timeout, cancel --------------------------------------------------

    def test_runs_queue_beyond_the_slot_and_a_full_queue_is_refused(self):
        first = self.run_agent("sleep 30").run
        self.wait_run(first.run_id, states=(C.RUN_STATE_RUNNING,))
        queued = [self.run_agent("sleep 30").run for _ in range(2)]
        for r in queued:
            self.assertEqual(self.get_run(r.run_id).state, C.RUN_STATE_QUEUED)
        before = self.agents.ListRuns(A.ListRunsRequest(page_size=1000),
                                      timeout=RPC_TIMEOUT).runs
        with self.assertRaises(grpc.RpcError) as cm:
            self.run_agent("sleep 30")
        self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        after = self.agents.ListRuns(A.ListRunsRequest(page_size=1000),
                                     timeout=RPC_TIMEOUT).runs
        self.assertEqual(len(after), len(before), "a refused run must not be stored")
        # Cancelling the queued ones ends them without a process.
        for r in queued:
            resp = self.agents.CancelRun(A.CancelRunRequest(run_id=r.run_id),
                                         timeout=RPC_TIMEOUT)
            self.assertEqual(self.wait_run(r.run_id).state, C.RUN_STATE_CANCELLED)
            self.assertIn(resp.run.state, (C.RUN_STATE_CANCELLED, C.RUN_STATE_QUEUED))
        resp = self.agents.CancelRun(A.CancelRunRequest(run_id=first.run_id),
                                     timeout=RPC_TIMEOUT)
        end = self.wait_run(first.run_id)
        self.assertEqual(end.state, C.RUN_STATE_CANCELLED)
        self.assertNotEqual(end.term_signal, 0)
        s = self.session(end.session_id)
        self.assertEqual(s.status, C.SESSION_STATUS_TERMINATED)
        with self.assertRaises(grpc.RpcError) as cm:
            self.agents.CancelRun(A.CancelRunRequest(run_id=first.run_id), timeout=RPC_TIMEOUT)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)

    def test_hanging_agent_is_timed_out(self):
        t0 = time.monotonic()
        run = self.wait_run(self.run_agent("sleep 600", timeout_seconds=2).run.run_id)
        self.assertEqual(run.state, C.RUN_STATE_TIMED_OUT)
        self.assertEqual(run.timeout_seconds, 2)
        self.assertLess(time.monotonic() - t0, 30)
        self.assertEqual(self.session(run.session_id).status, C.SESSION_STATUS_TERMINATED)

    # ---- containment -------------------------------------------------------------

    def test_fork_bomb_and_memory_hog_are_contained(self):
        run = self.wait_run(self.run_agent("fork", timeout_seconds=60).run.run_id)
        self.assertEqual(run.state, C.RUN_STATE_FAILED, run.log_tail)
        self.assertIn("failed=True", run.log_tail)
        run = self.wait_run(self.run_agent("memory", timeout_seconds=60).run.run_id)
        self.assertEqual(run.state, C.RUN_STATE_FAILED)
        self.assertIn("MemoryError", run.log_tail)
        # The server is fine.
        ok = self.wait_run(self.run_agent("events after").run.run_id)
        self.assertEqual(ok.state, C.RUN_STATE_SUCCEEDED)

    def test_server_environment_does_not_leak(self):
        run = self.wait_run(self.run_agent("env").run.run_id)
        self.assertEqual(run.state, C.RUN_STATE_SUCCEEDED)
        self.assertNotIn(SECRET, run.log_tail)
        self.assertNotIn(AWS_SECRET, run.log_tail)
        self.assertNotIn("AWS_", run.log_tail)
        self.assertIn("NORN_SESSION_ID=" + run.session_id, run.log_tail)
        self.assertIn("NORN_RUN_ID=" + run.run_id, run.log_tail)
        self.assertIn("NORN_TASK=env", run.log_tail)
        self.assertIn("NORN_ENDPOINT=127.0.0.1:%d" % self.n.port, run.log_tail)
        workspace = os.path.join(self.n.data_dir, "runs", run.run_id)
        self.assertIn("cwd=" + workspace, run.log_tail)
        # The workspace is scratch: removed once the run has ended.
        self.assertFalse(os.path.exists(workspace))

    def test_run_works_on_a_copy_of_the_agents_files(self):
        src = os.path.join(self.n.data_dir, "agents", self.agent.agent_id, "src", "agent.py")
        with open(src) as f:
            before = f.read()
        run = self.wait_run(self.run_agent("write").run.run_id)
        self.assertEqual(run.state, C.RUN_STATE_SUCCEEDED, run.log_tail)
        self.assertIn("wrote to my copy", run.log_tail)
        with open(src) as f:
            self.assertEqual(f.read(), before)

    # ---- the guard ---------------------------------------------------------------

    def test_looping_agent_in_intervene_mode_is_stopped_by_the_guard(self):
        t0 = time.monotonic()
        run = self.wait_run(self.run_agent("loop", guard_mode=C.GUARD_MODE_INTERVENE,
                                           timeout_seconds=120).run.run_id)
        self.assertEqual(run.state, C.RUN_STATE_FAILED)
        self.assertIn("guard", run.error)
        self.assertNotIn("loop finished", run.log_tail)
        self.assertLess(time.monotonic() - t0, 20)
        s = self.session(run.session_id)
        self.assertEqual(s.status, C.SESSION_STATUS_TERMINATED)
        self.assertTrue(s.terminated_by_guard)
        self.assertLess(s.total_steps, 100)

    # ---- queries -----------------------------------------------------------------

    def test_list_filters_and_pages(self):
        mine = [self.run_agent("events list %d" % i).run.run_id for i in range(2)]
        for r in mine:
            self.wait_run(r)
        runs = self.agents.ListRuns(A.ListRunsRequest(agent_id=self.agent.agent_id,
                                                      state=C.RUN_STATE_SUCCEEDED,
                                                      page_size=1000), timeout=RPC_TIMEOUT).runs
        ids = [r.run_id for r in runs]
        self.assertEqual(ids[:2], list(reversed(mine)), "newest first")
        self.assertTrue(all(r.state == C.RUN_STATE_SUCCEEDED for r in runs))
        seen, token = [], ""
        while True:
            page = self.agents.ListRuns(A.ListRunsRequest(page_size=1, page_token=token),
                                        timeout=RPC_TIMEOUT)
            seen += [r.run_id for r in page.runs]
            token = page.next_page_token
            if not token:
                break
        self.assertEqual(len(seen), len(set(seen)))
        self.assertTrue(set(mine) <= set(seen))
        none = self.agents.ListRuns(A.ListRunsRequest(agent_id="git-nobody"),
                                    timeout=RPC_TIMEOUT).runs
        self.assertEqual(len(none), 0)

    # ---- the CLI ------------------------------------------------------------------

    def norn(self, *args):
        cli = os.environ.get("NORN_CLI")
        if not cli:
            self.skipTest("NORN_CLI is not set (path of the norn binary)")
        return subprocess.run([cli, "--server", self.n.target] + list(args),
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=120, text=True)

    def test_cli_run_follow_list_get_cancel(self):
        r = self.norn("run", self.agent.agent_id, "--task", "events from cli", "--follow")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        lines = r.stdout.splitlines()
        self.assertTrue(lines[0].startswith("run run-"), r.stdout)
        run_id = lines[0].split()[1]
        deltas = [ln for ln in lines if "steps=" in ln]
        self.assertGreaterEqual(len(deltas), 2, r.stdout)
        self.assertIn("COMPLETED", deltas[-1])
        self.assertIn("[2 lookup", r.stdout)
        self.assertRegex(r.stdout, r"state\s+SUCCEEDED")
        self.assertIn("events agent done", r.stdout)

        r = self.norn("-o", "json", "runs", "list", "--agent", self.agent.agent_id,
                      "--state", "succeeded")
        self.assertEqual(r.returncode, 0, r.stderr)
        listed = json.loads(r.stdout)
        self.assertEqual(listed[0]["run_id"], run_id)
        self.assertTrue(all(x["state"] == "RUN_STATE_SUCCEEDED" for x in listed))

        r = self.norn("runs", "get", run_id)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"exit code\s+0")
        r = self.norn("runs", "cancel", run_id)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("FAILED_PRECONDITION", r.stderr)

        r = self.norn("-o", "json", "run", self.agent.agent_id, "--task", "sleep 60")
        self.assertEqual(r.returncode, 0, r.stderr)
        queued = json.loads(r.stdout)
        self.assertEqual(queued["state"], "RUN_STATE_QUEUED")
        r = self.norn("runs", "cancel", queued["run_id"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.wait_run(queued["run_id"]).state, C.RUN_STATE_CANCELLED)
        for args in (["run", "--help"], ["runs", "list", "--help"], ["runs", "get", "--help"],
                     ["runs", "cancel", "--help"]):
            r = self.norn(*args)
            self.assertEqual(r.returncode, 0)
            self.assertIn("usage: norn run", r.stdout)

    def test_errors(self):
        for req, code in [
            (A.RunAgentRequest(agent_id="no-such-agent"), grpc.StatusCode.NOT_FOUND),
            (A.RunAgentRequest(agent_id="bad id"), grpc.StatusCode.INVALID_ARGUMENT),
        ]:
            with self.assertRaises(grpc.RpcError) as cm:
                self.agents.RunAgent(req, timeout=RPC_TIMEOUT)
            self.assertEqual(cm.exception.code(), code)
        hook = self.agents.RegisterAgent(A.RegisterAgentRequest(name="hooked"),
                                         timeout=RPC_TIMEOUT).agent
        with self.assertRaises(grpc.RpcError) as cm:
            self.agents.RunAgent(A.RunAgentRequest(agent_id=hook.agent_id), timeout=RPC_TIMEOUT)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
        with self.assertRaises(grpc.RpcError) as cm:
            self.agents.GetRun(A.GetRunRequest(run_id="run-nope"), timeout=RPC_TIMEOUT)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)
        with self.assertRaises(grpc.RpcError) as cm:
            self.agents.ListRuns(A.ListRunsRequest(page_token="!!"), timeout=RPC_TIMEOUT)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)


class RestartTests(unittest.TestCase):
    def test_a_run_lost_to_a_crash_is_marked_failed(self):
        tmp = tempfile.mkdtemp(prefix="norn-runs-restart-")
        self.addCleanup(shutil.rmtree, tmp, True)
        url = make_repo(tmp)
        n = start_nornd(self)
        agents = A_grpc.AgentServiceStub(n.channel())
        last = None
        for msg in agents.ImportAgent(A.ImportAgentRequest(url=url, main_file="agent.py"),
                                      timeout=120):
            last = msg
        agent_id = last.agent.agent_id
        run = agents.RunAgent(A.RunAgentRequest(agent_id=agent_id,
                                                task=C.TaskDefinition(description="sleep 600")),
                              timeout=RPC_TIMEOUT).run
        deadline = time.monotonic() + 180
        while agents.GetRun(A.GetRunRequest(run_id=run.run_id),
                            timeout=RPC_TIMEOUT).run.state != C.RUN_STATE_RUNNING:
            self.assertLess(time.monotonic(), deadline, "the run never started")
            time.sleep(0.1)
        workspace = os.path.join(n.data_dir, "runs", run.run_id)
        self.assertTrue(os.path.isdir(workspace))
        n.restart(sig=9)
        self.assertFalse(os.path.exists(workspace), "the lost run's workspace is left")
        ch = n.channel()
        agents = A_grpc.AgentServiceStub(ch)
        lost = agents.GetRun(A.GetRunRequest(run_id=run.run_id), timeout=RPC_TIMEOUT).run
        self.assertEqual(lost.state, C.RUN_STATE_FAILED)
        self.assertIn("server stopped", lost.error)
        self.assertTrue(lost.HasField("ended_at"))
        s = S_grpc.SessionServiceStub(ch).GetSession(
            S.GetSessionRequest(session_id=run.session_id), timeout=RPC_TIMEOUT).session
        self.assertEqual(s.status, C.SESSION_STATUS_TERMINATED)
        a = agents.GetAgent(A.GetAgentRequest(agent_id=agent_id), timeout=RPC_TIMEOUT).agent
        self.assertNotEqual(a.status, A.AGENT_STATUS_RUNNING)
        # The executor works after the restart.
        again = agents.RunAgent(A.RunAgentRequest(agent_id=agent_id,
                                                  task=C.TaskDefinition(description="events")),
                                timeout=RPC_TIMEOUT).run
        deadline = time.monotonic() + 60
        while True:
            r = agents.GetRun(A.GetRunRequest(run_id=again.run_id), timeout=RPC_TIMEOUT).run
            if r.state in FINAL:
                break
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)
        self.assertEqual(r.state, C.RUN_STATE_SUCCEEDED, r.error + r.log_tail)


@unittest.skipUnless(os.geteuid() == 0, "--run-as-user needs a root server")
class RunAsUserTests(unittest.TestCase):
    def test_agents_run_as_nobody(self):
        tmp = tempfile.mkdtemp(prefix="norn-runs-nobody-")
        self.addCleanup(shutil.rmtree, tmp, True)
        url = make_repo(tmp)
        # The scratch directory is private (mkdtemp); nobody must pass through it.
        n = start_nornd(self, args=["--run-as-user", "nobody"],
                        before_start=lambda p: os.chmod(p.dir, 0o711))
        agents = A_grpc.AgentServiceStub(n.channel())
        last = None
        for msg in agents.ImportAgent(A.ImportAgentRequest(url=url, main_file="agent.py"),
                                      timeout=120):
            last = msg
        agent_id = last.agent.agent_id
        ends = {}
        for task in ("events", "env"):
            run = agents.RunAgent(A.RunAgentRequest(agent_id=agent_id,
                                                    task=C.TaskDefinition(description=task)),
                                  timeout=RPC_TIMEOUT).run
            deadline = time.monotonic() + 180
            while True:
                r = agents.GetRun(A.GetRunRequest(run_id=run.run_id), timeout=RPC_TIMEOUT).run
                if r.state in FINAL:
                    break
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.05)
            ends[task] = r
        for task, r in ends.items():
            self.assertEqual(r.state, C.RUN_STATE_SUCCEEDED, task + ": " + r.error + r.log_tail)
        venv = os.path.join(n.data_dir, "agents", agent_id, "venv")
        self.assertNotEqual(os.stat(venv).st_uid, 0, "the venv is built by the run user")
        self.assertRegex(ends["env"].log_tail, r"(?m)^owner=[1-9]\d*$",
                         "the workspace belongs to the run user")
        self.assertFalse(os.path.exists(os.path.join(n.data_dir, "runs", ends["env"].run_id)))


if __name__ == "__main__":
    unittest.main()
