#!/usr/bin/python3
"""AI-judge figures: model calls, tokens and estimated cost per 1,000 steps,
and RecordSteps latency with the judge off, on, and on with a slow model.

It starts nornd (NORND, or build/nornd) and the local Converse server of the
tests (tests/python/fake_bedrock.py, as a process of its own so it does not
share this client's interpreter); token counts are that server's (request
bytes / 4, answer bytes / 4), close to but not Bedrock's tokenizer.

  /usr/bin/python3 tools/bench/eval_bench.py [--steps 1000] [--batch 10]
      [--result-bytes 1200] [--slow-s 2.0]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
os.environ.setdefault("NORND", os.path.join(ROOT, "build", "nornd"))
os.environ.setdefault("NORN_PROTO_DIR", os.path.join(ROOT, "proto"))
os.environ.setdefault("NORN_PY_GEN", os.path.join(ROOT, "build", "pygen"))

import nornd_proc  # noqa: E402

nornd_proc.ensure_stubs()

from google.protobuf import field_mask_pb2, struct_pb2  # noqa: E402
from norn.v1 import common_pb2 as C  # noqa: E402
from norn.v1 import config_service_pb2 as CF  # noqa: E402
from norn.v1 import config_service_pb2_grpc as CF_grpc  # noqa: E402
from norn.v1 import session_service_pb2 as S  # noqa: E402
from norn.v1 import session_service_pb2_grpc as S_grpc  # noqa: E402
from norn.v1 import stats_service_pb2 as ST  # noqa: E402
from norn.v1 import stats_service_pb2_grpc as ST_grpc  # noqa: E402


class FakeProcess:
    """tests/python/fake_bedrock.py in script mode (bearer auth)."""

    TOKEN = "bench-token"

    def __init__(self, delay_s=0.0):
        self.dir = tempfile.mkdtemp(prefix="norn-eval-bench-")
        port_file = os.path.join(self.dir, "port")
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", os.path.join(ROOT, "tests", "python", "fake_bedrock.py"),
             "--port", "0", "--port-file", port_file, "--bearer", self.TOKEN],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not os.path.exists(port_file):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("fake_bedrock.py did not start")
            time.sleep(0.05)
        with open(port_file) as f:
            self.url = "http://127.0.0.1:%d" % int(f.read().strip())
        if delay_s:
            req = urllib.request.Request(
                self.url + "/__control", method="POST",
                data=json.dumps({"action": "set_delay", "seconds": delay_s}).encode())
            urllib.request.urlopen(req, timeout=10).read()

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def run(args, fake, label, wait_judged=False):
    env = {}
    if fake is not None:
        env = {"NORN_BEDROCK_ENDPOINT": fake.url, "AWS_BEARER_TOKEN_BEDROCK": fake.TOKEN}
    n = nornd_proc.Nornd(args=["--log-level", "warn"], env=env).start()
    try:
        ch = n.channel()
        s = S_grpc.SessionServiceStub(ch)
        CF_grpc.ConfigServiceStub(ch).UpdateConfig(CF.UpdateConfigRequest(
            config=CF.Config(bedrock_batch_size=args.batch, bedrock_batch_wait_ms=200),
            update_mask=field_mask_pb2.FieldMask(paths=["bedrock_batch_size",
                                                        "bedrock_batch_wait_ms"])))
        stats = ST_grpc.StatsServiceStub(ch)
        filler = ("lorem ipsum dolor sit amet " * 100)[:args.result_bytes]
        lat = []
        per_call = 10
        sid = None
        for i in range(args.steps // per_call):
            if i % 10 == 0:  # sessions of 100 steps
                sid = "bench-%s-%d" % (label.split(",")[0].replace(" ", "-"), i)
                s.OpenSession(S.OpenSessionRequest(
                    session_id=sid, agent_name="bench",
                    task=C.TaskDefinition(description="Collect facts about city %d" % i)))
            steps = []
            for k in range(per_call):
                inp = struct_pb2.Struct()
                inp.update({"query": "fact %d %d" % (i, k)})
                steps.append(C.Step(tool_name="web_search", tool_input=inp,
                                    result_text="%d %d %s" % (i, k, filler)))
            t0 = time.perf_counter()
            s.RecordSteps(S.RecordStepsRequest(session_id=sid, steps=steps))
            lat.append((time.perf_counter() - t0) * 1000)
        if wait_judged:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                st = stats.GetStats(ST.GetStatsRequest()).stats
                if st.eval_steps_judged >= args.steps:
                    break
                time.sleep(0.2)
        st = stats.GetStats(ST.GetStatsRequest()).stats
        lat.sort()
        print("%-22s RecordSteps(10) p50 %.2f ms p99 %.2f ms | calls %d batches %d avg batch %.1f "
              "judged %d input tok %d output tok %d cost $%.4f"
              % (label, statistics.median(lat), lat[int(len(lat) * 0.99) - 1], st.eval_calls,
                 st.eval_batches, st.eval_avg_batch_size, st.eval_steps_judged,
                 st.eval_input_tokens, st.eval_output_tokens, st.eval_estimated_cost_usd))
        return st
    finally:
        n.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--result-bytes", type=int, default=1200)
    ap.add_argument("--slow-s", type=float, default=2.0)
    args = ap.parse_args()
    run(args, None, "judge off")
    fb = FakeProcess()
    try:
        st = run(args, fb, "judge on", wait_judged=True)
    finally:
        fb.close()
    fb = FakeProcess(delay_s=args.slow_s)
    try:
        run(args, fb, "judge on, model %.1fs" % args.slow_s)
    finally:
        fb.close()
    if st.eval_steps_judged:
        k = 1000.0 / st.eval_steps_judged
        print("per 1,000 steps: %.1f calls, %d input + %d output tokens, $%.4f at the default "
              "prices" % (st.eval_calls * k, st.eval_input_tokens * k, st.eval_output_tokens * k,
                          st.eval_estimated_cost_usd * k))


if __name__ == "__main__":
    main()
