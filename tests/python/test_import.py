"""AgentService.ImportAgent end to end: real nornd processes, Python grpcio
clients and git repositories made by the test with the `git` CLI.

What is checked (issue 8 item 1; the proto's ImportAgent comments):

- an import over file:// of a branch whose name contains '/', from a
  sub-folder whose pyproject.toml names the entry file through
  [project.scripts]; the returned Agent (id git-<YYYYmmddHHMMSS>-<stem>, name,
  source, url, ref, commit, subdir, main_file, status) and its discovery
  (tools, a credential finding, a dangerous default), the files in
  data_dir/agents/<id>/src without .git, and GetAgent returning the same;
- progress messages: stages in order, growing object counters and percent,
  the Agent as the last message;
- a repository over --import-max-bytes: RESOURCE_EXHAUSTED, nothing left in
  data_dir/agents, nothing registered;
- a re-import of the same URL after one more commit goes through the mirror
  cache: fewer objects received the second time, the new commit;
- an unknown ref: NOT_FOUND; bad URL schemes and fields: INVALID_ARGUMENT
  naming the field;
- without credentials the task is §8.7's deterministic one; with AI on
  (FakeBedrock, bearer) the agent's task is the model's;
- a client that cancels mid-import (the model call hung) leaves no workspace
  and no agent; a full import queue answers RESOURCE_EXHAUSTED;
- DeleteAgent removes the workspace;
- the CLI: `norn agents import` prints the agent (table and -o json) and
  progress on stderr.

Run: cd tests/python && NORND=... NORN_CLI=... NORN_PROTO_DIR=... NORN_PY_GEN=... \
     /usr/bin/python3 -m unittest -v test_import
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

import nornd_proc
from fake_bedrock import FakeBedrock
from nornd_proc import start_nornd

nornd_proc.ensure_stubs()

import grpc  # noqa: E402
from norn.v1 import agent_service_pb2 as A  # noqa: E402
from norn.v1 import agent_service_pb2_grpc as A_grpc  # noqa: E402

RPC_TIMEOUT = 60.0
MAX_BYTES = 1 << 20  # the servers' --import-max-bytes

STAGES = A.ImportStage

CLI_PY = '''"""Weather bot: answers questions about the weather."""
import requests
from strands import Agent, tool

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"


@tool
def read_file(path: str) -> str:
    """Read a file."""
    return open(path).read()


@tool
def write_file(path: str, text: str, verify=False) -> str:
    """Write a file."""
    open(path, "w").write(text)
    return "ok"


def main():
    agent = Agent(tools=[read_file, write_file])
    agent(input())


if __name__ == "__main__":
    main()
'''

PYPROJECT = '''[project]
name = "weather-bot"
description = "Answers weather questions"

[project.scripts]
weather = "weather_bot.cli:main"
'''


class Repo:
    """A bare repository (the remote) and a work tree that pushes to it, in
    a temporary directory, with git isolated from the user's configuration."""

    def __init__(self, testcase, name="agent"):
        self.dir = tempfile.mkdtemp(prefix="norn-import-")
        testcase.addCleanup(shutil.rmtree, self.dir, True)
        self.home = os.path.join(self.dir, "home")
        os.makedirs(self.home)
        self.env = {"HOME": self.home, "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "Norn Test",
                    "GIT_AUTHOR_EMAIL": "test@example.com", "GIT_COMMITTER_NAME": "Norn Test",
                    "GIT_COMMITTER_EMAIL": "test@example.com", "LC_ALL": "C"}
        self.bare = os.path.join(self.dir, name + ".git")
        self.work = os.path.join(self.dir, "work")
        self.git("init", "-q", "--bare", "-b", "main", self.bare, cwd=self.dir)
        self.git("init", "-q", "-b", "main", self.work, cwd=self.dir)
        self.git("remote", "add", "origin", self.bare)
        self.url = "file://" + self.bare

    def git(self, *args, cwd=None):
        r = subprocess.run(["git"] + list(args), cwd=cwd or self.work, env=self.env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("git %s: %s" % (" ".join(args), r.stderr.decode(errors="replace")))
        return r.stdout.decode().strip()

    def write(self, files):
        for path, content in files.items():
            full = os.path.join(self.work, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            mode = "wb" if isinstance(content, bytes) else "w"
            with open(full, mode) as f:
                f.write(content)

    def commit(self, files, branch="main", message="commit"):
        """Writes files, commits them on `branch` and pushes; returns the commit id."""
        if self.git("branch", "--show-current") != branch:
            self.git("checkout", "-q", "-B", branch)
        self.write(files)
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        self.git("push", "-q", "origin", branch)
        return self.git("rev-parse", "HEAD")


def weather_repo(testcase):
    """The weather bot in agents/weather on branch feature/new-agent."""
    repo = Repo(testcase, "weather")
    repo.commit({"README.md": "# tools\n"})
    commit = repo.commit({
        "agents/weather/pyproject.toml": PYPROJECT,
        "agents/weather/weather_bot/__init__.py": "",
        "agents/weather/weather_bot/cli.py": CLI_PY,
        "agents/other/main.py": "print('not this one')\n",
    }, branch="feature/new-agent")
    return repo, commit


def simple_repo(testcase, name="simple"):
    repo = Repo(testcase, name)
    repo.commit({"main.py": '"""Echo agent."""\n\ndef main():\n    print(input())\n\n\n'
                            'if __name__ == "__main__":\n    main()\n'})
    return repo


def run_import(stub, timeout=RPC_TIMEOUT, **fields):
    """(progress messages, agent) of a successful import."""
    progress, agent = [], None
    for m in stub.ImportAgent(A.ImportAgentRequest(**fields), timeout=timeout):
        if m.WhichOneof("event") == "progress":
            if agent is not None:
                raise AssertionError("progress after the agent")
            progress.append(m.progress)
        else:
            agent = m.agent
    if agent is None:
        raise AssertionError("the stream ended without the agent")
    return progress, agent


def import_error(stub, **fields):
    try:
        run_import(stub, **fields)
    except grpc.RpcError as e:
        return e
    raise AssertionError("the import succeeded")


def workspaces(nornd):
    d = os.path.join(nornd.data_dir, "agents")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def fetched_objects(progress):
    fetching = [p for p in progress if p.stage == STAGES.IMPORT_STAGE_FETCHING]
    return max((p.received_objects for p in fetching), default=0)


class ImportWithoutAI(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.nornd = start_nornd(cls, args=["--import-max-bytes", str(MAX_BYTES)])
        ch = cls.nornd.channel()
        grpc.channel_ready_future(ch).result(timeout=10)
        cls.agents = A_grpc.AgentServiceStub(ch)

    def test_branch_with_slash_subfolder_and_pyproject_entry(self):
        repo, commit = weather_repo(self)
        progress, a = run_import(self.agents, url=repo.url, ref="feature/new-agent",
                                 subdir="agents/weather")
        self.assertRegex(a.agent_id, r"^git-\d{14}-cli(-\d+)?$")
        self.assertEqual(a.name, "Weather Bot")  # the pyproject name, Title Case
        self.assertEqual(a.source, A.AGENT_SOURCE_GIT)
        self.assertEqual(a.status, A.AGENT_STATUS_ANALYZED)
        self.assertEqual(a.url, repo.url)
        self.assertEqual(a.ref, "refs/heads/feature/new-agent")
        self.assertEqual(a.commit, commit)
        self.assertEqual(a.subdir, "agents/weather")
        self.assertEqual(a.main_file, "weather_bot/cli.py")
        self.assertTrue(a.HasField("added_at"))
        d = a.discovery
        self.assertEqual(d.main_file, "weather_bot/cli.py")
        self.assertEqual(d.agent_type, "Strands Agent")
        decorated = sorted(t.name for t in d.tools if t.origin == "decorated")
        self.assertEqual(decorated, ["read_file", "write_file"])
        kinds = {f.kind for f in d.findings}
        self.assertIn("POTENTIAL_CREDENTIALS", kinds)
        self.assertIn("DANGEROUS_DEFAULT", kinds)
        self.assertIn("main", d.entry_points)
        # The task: §8.7's deterministic file strategy (no credentials here).
        self.assertTrue(a.task_description.startswith("Write the text 'Norn test run'"),
                        a.task_description)
        self.assertEqual(d.generated_task.description, a.task_description)
        self.assertEqual(d.generated_task.max_steps, 15)
        self.assertEqual(sorted(d.generated_task.expected_tools), ["read_file", "write_file"])
        # The files, without git metadata, under the agent's workspace.
        src = os.path.join(self.nornd.data_dir, "agents", a.agent_id, "src")
        with open(os.path.join(src, "agents/weather/weather_bot/cli.py")) as f:
            self.assertEqual(f.read(), CLI_PY)
        self.assertFalse(os.path.exists(os.path.join(src, ".git")))
        self.assertNotIn(a.agent_id, [w for w in workspaces(self.nornd) if w.startswith(".")])
        got = self.agents.GetAgent(A.GetAgentRequest(agent_id=a.agent_id), timeout=10).agent
        self.assertEqual(got, a)

    def test_progress_in_order_with_growing_counters(self):
        repo = simple_repo(self, "progress")
        # Enough objects that the transfer reports more than once.
        for i in range(3):
            repo.commit({"data/file%d_%d.txt" % (i, k): "line %d %d\n" % (i, k) * 50
                         for k in range(40)})
        progress, a = run_import(self.agents, url=repo.url)
        self.assertEqual(a.main_file, "main.py")
        stages = [p.stage for p in progress]
        self.assertEqual(stages, sorted(stages), stages)
        self.assertEqual(stages[0], STAGES.IMPORT_STAGE_RESOLVING)
        for s in (STAGES.IMPORT_STAGE_FETCHING, STAGES.IMPORT_STAGE_CHECKOUT,
                  STAGES.IMPORT_STAGE_DISCOVERY, STAGES.IMPORT_STAGE_REGISTERING):
            self.assertIn(s, stages)
        self.assertNotIn(STAGES.IMPORT_STAGE_TASK_GENERATION, stages)  # AI is off
        percents = [p.percent for p in progress]
        self.assertEqual(percents, sorted(percents))
        fetching = [p for p in progress if p.stage == STAGES.IMPORT_STAGE_FETCHING]
        received = [p.received_objects for p in fetching]
        self.assertEqual(received, sorted(received))
        last = fetching[-1]
        self.assertGreater(last.total_objects, 120)
        self.assertEqual(last.received_objects, last.total_objects)
        self.assertGreater(last.received_bytes, 0)
        for p in progress:
            self.assertTrue(p.message)
            if p.stage != STAGES.IMPORT_STAGE_FETCHING:
                self.assertEqual(p.received_objects, 0)

    def test_over_the_size_limit_leaves_nothing(self):
        repo = Repo(self, "big")
        repo.commit({"main.py": "def main():\n    pass\n",
                     "blob.bin": os.urandom(MAX_BYTES + (512 << 10))})
        before = workspaces(self.nornd)
        listed = len(self.agents.ListAgents(A.ListAgentsRequest(page_size=1000)).agents)
        e = import_error(self.agents, url=repo.url)
        self.assertEqual(e.code(), grpc.StatusCode.RESOURCE_EXHAUSTED, e.details())
        self.assertEqual(workspaces(self.nornd), before)
        self.assertFalse([w for w in workspaces(self.nornd) if w.startswith(".import-")])
        self.assertEqual(len(self.agents.ListAgents(A.ListAgentsRequest(page_size=1000)).agents),
                         listed)

    def test_reimport_goes_through_the_mirror_cache(self):
        repo = simple_repo(self, "mirror")
        for i in range(3):
            repo.commit({"lib/m%d_%d.py" % (i, k): "X = %d\n" % (i * 100 + k)
                         for k in range(30)})
        p1, a1 = run_import(self.agents, url=repo.url)
        second = repo.commit({"lib/new.py": "Y = 1\n"}, message="one more")
        p2, a2 = run_import(self.agents, url=repo.url)
        self.assertEqual(a2.commit, second)
        self.assertNotEqual(a1.agent_id, a2.agent_id)
        first_objects, second_objects = fetched_objects(p1), fetched_objects(p2)
        self.assertGreater(first_objects, 90)
        self.assertLess(second_objects, 10, (first_objects, second_objects))
        mirrors = os.listdir(os.path.join(self.nornd.data_dir, "mirrors"))
        self.assertTrue(any(m.endswith(".git") for m in mirrors), mirrors)
        src = os.path.join(self.nornd.data_dir, "agents", a2.agent_id, "src", "lib", "new.py")
        self.assertTrue(os.path.isfile(src))

    def test_unknown_ref_is_not_found(self):
        repo = simple_repo(self, "noref")
        before = workspaces(self.nornd)
        e = import_error(self.agents, url=repo.url, ref="no/such-branch")
        self.assertEqual(e.code(), grpc.StatusCode.NOT_FOUND, e.details())
        self.assertEqual(workspaces(self.nornd), before)

    def test_missing_subdir_and_entry_file_are_invalid(self):
        repo = simple_repo(self, "nosub")
        e = import_error(self.agents, url=repo.url, subdir="not/there")
        self.assertEqual(e.code(), grpc.StatusCode.INVALID_ARGUMENT, e.details())
        e = import_error(self.agents, url=repo.url, main_file="absent.py")
        self.assertEqual(e.code(), grpc.StatusCode.INVALID_ARGUMENT, e.details())
        self.assertFalse([w for w in workspaces(self.nornd) if w.startswith(".import-")])

    def test_bad_requests_name_the_field(self):
        cases = [
            ({"url": ""}, "url"),
            ({"url": "ssh://example.com/repo.git"}, "url"),
            ({"url": "git@github.com:o/r.git"}, "url"),
            ({"url": "ftp://example.com/r.git"}, "url"),
            ({"url": "file:///x", "subdir": "../etc"}, "subdir"),
            ({"url": "file:///x", "main_file": "/etc/passwd"}, "main_file"),
            ({"url": "file:///x", "ref": "r" * 300}, "ref"),
            ({"url": "file:///x", "name": "n" * 300}, "name"),
        ]
        for fields, field in cases:
            with self.subTest(fields=fields):
                e = import_error(self.agents, **fields)
                self.assertEqual(e.code(), grpc.StatusCode.INVALID_ARGUMENT)
                self.assertTrue(e.details().startswith(field + ":"), e.details())

    def test_request_name_wins_and_delete_removes_the_workspace(self):
        repo = simple_repo(self, "deleteme")
        _, a = run_import(self.agents, url=repo.url, name="  My Agent  ")
        self.assertEqual(a.name, "My Agent")
        self.assertEqual(a.task_description, "Execute My Agent")  # no tools: the fallback
        ws = os.path.join(self.nornd.data_dir, "agents", a.agent_id)
        self.assertTrue(os.path.isdir(ws))
        # A symlink out of the workspace must be removed, not followed.
        outside = tempfile.mkdtemp(prefix="norn-outside-")
        self.addCleanup(shutil.rmtree, outside, True)
        with open(os.path.join(outside, "keep.txt"), "w") as f:
            f.write("keep")
        os.symlink(outside, os.path.join(ws, "link"))
        self.agents.DeleteAgent(A.DeleteAgentRequest(agent_id=a.agent_id), timeout=10)
        self.assertFalse(os.path.exists(ws))
        self.assertTrue(os.path.isfile(os.path.join(outside, "keep.txt")))
        with self.assertRaises(grpc.RpcError) as cm:
            self.agents.GetAgent(A.GetAgentRequest(agent_id=a.agent_id), timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_cli_import(self):
        cli = os.environ.get("NORN_CLI")
        if not cli:
            raise RuntimeError("NORN_CLI is not set (path of the norn binary)")
        repo, commit = weather_repo(self)
        argv = [cli, "--server", self.nornd.target, "agents", "import", repo.url,
                "--ref", "feature/new-agent", "--subdir", "agents/weather", "--name", "CLI Bot"]
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout.decode()
        self.assertRegex(out, r"(?m)^agent\s+git-\d{14}-cli")
        self.assertRegex(out, r"(?m)^name\s+CLI Bot$")
        self.assertRegex(out, r"(?m)^entry file\s+agents/weather/weather_bot/cli.py$")
        self.assertRegex(out, r"(?m)^tools\s+2$")
        self.assertRegex(out, r"(?m)^findings\s+[1-9]")
        self.assertRegex(out, r"(?m)^task\s+Write the text")
        err = r.stderr.decode()
        self.assertRegex(err, r"Fetching|objects")  # plain progress lines: not a terminal
        self.assertNotIn("\r", err)
        # On a terminal the progress line is rewritten in place.
        master, slave = os.openpty()
        try:
            r = subprocess.run(argv[:-2], stdout=subprocess.PIPE, stderr=slave, timeout=120)
            os.close(slave)
            slave = None
            tty = b""
            while True:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the writer is gone
                    break
                if not chunk:
                    break
                tty += chunk
        finally:
            if slave is not None:
                os.close(slave)
            os.close(master)
        self.assertEqual(r.returncode, 0, tty)
        # (the terminal turns the final "\n" into "\r\n": count the others)
        self.assertGreater(tty.count(b"\r") - tty.count(b"\r\n"), 2, tty)
        self.assertEqual(tty.count(b"\n"), 1, tty)  # one line, ended once at the end
        # -o json: the Agent
        r = subprocess.run([cli, "--server", self.nornd.target, "-o", "json", "agents", "import",
                            repo.url, "--ref", "feature/new-agent", "--subdir", "agents/weather"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        doc = json.loads(r.stdout)
        self.assertEqual(doc["commit"], commit)
        self.assertEqual(doc["mainFile"] if "mainFile" in doc else doc["main_file"],
                         "weather_bot/cli.py")
        # Errors: exit 1 with the status; usage: exit 2; --help: 0.
        r = subprocess.run([cli, "--server", self.nornd.target, "agents", "import",
                            "ssh://example.com/r.git"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(r.returncode, 1)
        self.assertIn("INVALID_ARGUMENT", r.stderr.decode())
        r = subprocess.run([cli, "agents", "import"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(r.returncode, 2)
        r = subprocess.run([cli, "agents", "import", "--help"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
        self.assertEqual(r.returncode, 0)
        self.assertIn("usage: norn agents import URL", r.stdout.decode())


class ImportWithAI(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fb = FakeBedrock(bearer="token").start()
        cls.addClassCleanup(cls.fb.stop)
        cls.nornd = start_nornd(cls, args=["--import-max-bytes", str(MAX_BYTES)],
                                env={"NORN_BEDROCK_ENDPOINT": cls.fb.url,
                                     "AWS_BEARER_TOKEN_BEDROCK": "token",
                                     "AWS_REGION": "us-east-1"})
        ch = cls.nornd.channel()
        grpc.channel_ready_future(ch).result(timeout=10)
        cls.agents = A_grpc.AgentServiceStub(ch)

    def setUp(self):
        self.fb.reset()

    def test_task_is_the_models(self):
        task = {"description": "Read weather_bot/cli.py and write a summary of it to notes.txt.",
                "expected_tools": ["read_file", "write_file"], "max_steps": 7,
                "success_criteria": "notes.txt summarises cli.py"}
        self.fb.set_task(task)
        repo, _ = weather_repo(self)
        progress, a = run_import(self.agents, url=repo.url, ref="feature/new-agent",
                                 subdir="agents/weather")
        self.assertEqual(a.task_description, task["description"])
        g = a.discovery.generated_task
        self.assertEqual(g.description, task["description"])
        self.assertEqual(g.max_steps, 7)
        self.assertEqual(list(g.expected_tools), ["read_file", "write_file"])
        self.assertIn(STAGES.IMPORT_STAGE_TASK_GENERATION, [p.stage for p in progress])
        reqs = self.fb.requests("task")
        self.assertEqual(len(reqs), 1)
        self.assertTrue(reqs[0]["auth_ok"])
        prompt = json.dumps(reqs[0]["body"])
        self.assertIn("read_file", prompt)
        self.assertIn("Answers weather questions", prompt)  # the pyproject description

    def test_unusable_answer_falls_back(self):
        self.fb.set_raw_reply("task", "no JSON here")
        repo, _ = weather_repo(self)
        _, a = run_import(self.agents, url=repo.url, ref="feature/new-agent",
                          subdir="agents/weather")
        self.assertTrue(a.task_description.startswith("Write the text 'Norn test run'"))

    def test_cancel_mid_import_leaves_nothing(self):
        self.fb.hang_next()
        self.addCleanup(self.fb.release)
        repo = simple_repo(self, "cancel")
        before = len(self.agents.ListAgents(A.ListAgentsRequest(page_size=1000)).agents)
        call = self.agents.ImportAgent(A.ImportAgentRequest(url=repo.url), timeout=RPC_TIMEOUT)
        for m in call:
            if m.progress.stage == STAGES.IMPORT_STAGE_TASK_GENERATION:
                # The clone is in the workspace now; the model call hangs.
                self.assertTrue([w for w in workspaces(self.nornd) if w.startswith(".import-")])
                call.cancel()
                break
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and workspaces(self.nornd):
            time.sleep(0.05)
        self.assertEqual(workspaces(self.nornd),
                         [a.agent_id for a in self.agents.ListAgents(
                             A.ListAgentsRequest(page_size=1000)).agents])
        self.assertEqual(len(self.agents.ListAgents(A.ListAgentsRequest(page_size=1000)).agents),
                         before)

    def test_full_queue_is_resource_exhausted(self):
        # 2 workers wait on the hung model, 16 imports wait in the queue.
        self.fb.hang_next()
        repo = simple_repo(self, "queue")
        calls, errors = [], []
        started = threading.Event()

        def consume(call):
            try:
                for _ in call:
                    pass
            except grpc.RpcError as e:
                errors.append(e.code())

        for _ in range(18):
            c = self.agents.ImportAgent(A.ImportAgentRequest(url=repo.url), timeout=RPC_TIMEOUT)
            calls.append(c)
            t = threading.Thread(target=consume, args=(c,), daemon=True)
            t.start()
        self.fb.wait_for(lambda: self.fb.counts().get("task", 0) >= 2, timeout=30)
        started.set()
        time.sleep(0.3)
        e = import_error(self.agents, url=repo.url)
        self.assertEqual(e.code(), grpc.StatusCode.RESOURCE_EXHAUSTED, e.details())
        for c in calls:
            c.cancel()
        self.fb.release()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and [w for w in workspaces(self.nornd)
                                               if w.startswith(".import-")]:
            time.sleep(0.05)
        self.assertFalse([w for w in workspaces(self.nornd) if w.startswith(".import-")])


if __name__ == "__main__":
    unittest.main()
