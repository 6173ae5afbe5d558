"""Self-tests of fake_bedrock.py, the local Bedrock Converse stand-in.

The fake is only useful if it is strict: its SigV4 check is exercised with
requests signed by botocore's add_auth (a different code path from the
verifier's manual canonical_request/string_to_sign/signature calls), by a
small hand-written signer below (a third implementation), by curl's
--aws-sigv4 (the libcurl code nornd uses), and with tampered requests that
must all be refused.

Run: cd tests/python && /usr/bin/python3 -m unittest -v test_fake_bedrock
"""

import datetime
import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from fake_bedrock import (DEFAULT_SESSION_RESULT, DEFAULT_TASK, SESSION_SYSTEM, STEP_SYSTEM,
                          SWARM_SYSTEM, TASK_SYSTEM, FakeBedrock)

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = "us.amazon.nova-2-lite-v1:0"
MODEL_PATH = "/model/us.amazon.nova-2-lite-v1%3A0/converse"
AKID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "FQoGZXIvYXdzEXAMPLETOKEN"
REGION = "us-east-1"


def converse_body(system, user, temperature=0.1):
    payload = {"messages": [{"role": "user", "content": [{"text": user}]}],
               "inferenceConfig": {"temperature": temperature}}
    if system is not None:
        payload["system"] = [{"text": system}]
    return json.dumps(payload).encode()


def step_prompt(steps):
    """A step-batch user prompt with the markers the fake reads, plus distractors."""
    lines = ["Task: find the weather", "", "Previous steps:",
             "1. web_search(query='x')", "", "Steps to judge:"]
    for number, tool in steps:
        lines += ["=== Step %d ===" % number, "Tool: %s" % tool,
                  'Input: {\n  "q": "Tool: not_a_step"\n}', "Result: ok", ""]
    lines += ["=== Step 99 ===", "(not followed by a Tool line, so not a step)"]
    return "\n".join(lines)


def post(fb, path, body, headers=None, conn=None):
    """POSTs and returns (status, {lower-case header: value}, parsed JSON or None)."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", fb.port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        resp_headers = {k.lower(): v for k, v in resp.getheaders()}
        return resp.status, resp_headers, (json.loads(data) if data else None)
    finally:
        if own:
            conn.close()


def sign_botocore(fb, path, body, credentials, region=REGION, service="bedrock", extra=None):
    """Headers of a request signed by botocore's SigV4Auth.add_auth (current time)."""
    headers = {"Content-Type": "application/json"}
    headers.update(extra or {})
    request = AWSRequest(method="POST", url="http://127.0.0.1:%d%s" % (fb.port, path),
                         data=body, headers=headers)
    SigV4Auth(credentials, service, region).add_auth(request)
    return dict(request.headers.items())


def sign_by_hand(fb, path, body, amz_date, double_encode=True, token=None, extra_signed=None):
    """SigV4 written from AWS's specification, independent of botocore.

    Canonical URI: each path segment of the path *as sent* URI-encoded again
    (AWS's rule for every service but S3) when double_encode, else the path
    as sent (what a signer that skips that step produces).
    """
    host = "127.0.0.1:%d" % fb.port
    if double_encode:
        canonical_uri = "/".join(urllib.parse.quote(seg, safe="-_.~") for seg in path.split("/"))
    else:
        canonical_uri = path
    headers = {"content-type": "application/json", "host": host, "x-amz-date": amz_date}
    if token is not None:
        headers["x-amz-security-token"] = token
    headers.update(extra_signed or {})
    names = sorted(headers)
    canonical = "\n".join([
        "POST", canonical_uri, "",
        "".join("%s:%s\n" % (n, headers[n]) for n in names),
        ";".join(names), hashlib.sha256(body).hexdigest()])
    scope = "%s/%s/bedrock/aws4_request" % (amz_date[:8], REGION)
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                                hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + SECRET).encode()
    for part in (amz_date[:8], REGION, "bedrock", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = ("AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, "
                                "Signature=%s" % (AKID, scope, ";".join(names), signature))
    del headers["host"]  # http.client sends the same value itself
    return headers


def now_amz_date(offset_s=0):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset_s)
    return t.strftime("%Y%m%dT%H%M%SZ")


class FakeTestCase(unittest.TestCase):
    server_args = {"bearer": "tok"}

    def setUp(self):
        self.fb = FakeBedrock(**self.server_args).start()
        self.addCleanup(self.fb.stop)

    def last(self):
        return self.fb.requests()[-1]


class SigV4Tests(FakeTestCase):
    server_args = {"access_key": AKID, "secret_key": SECRET, "region": REGION}
    body = converse_body(TASK_SYSTEM, "Generate a task.")

    def assert_refused(self, status, headers, reason_part=None, error_type=None):
        self.assertEqual(status, 403)
        rec = self.last()
        self.assertFalse(rec["auth_ok"])
        self.assertEqual(rec["status"], 403)
        if reason_part is not None:
            self.assertIn(reason_part, rec["auth_error"])
        if error_type is not None:
            self.assertEqual(headers["x-amzn-errortype"], error_type)
        return rec

    def test_botocore_signed_request_with_colon_model_id_is_accepted(self):
        headers = sign_botocore(self.fb, MODEL_PATH, self.body, Credentials(AKID, SECRET))
        status, _, answer = post(self.fb, MODEL_PATH, self.body, headers)
        self.assertEqual(status, 200, self.last()["auth_error"])
        self.assertEqual(json.loads(answer["output"]["message"]["content"][0]["text"]),
                         DEFAULT_TASK)
        rec = self.last()
        self.assertTrue(rec["auth_ok"])
        self.assertEqual(rec["auth_mode"], "sigv4")
        self.assertEqual(rec["model_id"], MODEL)
        self.assertEqual(rec["kind"], "task")
        # botocore's canonical URI encodes the sent path again (%3A -> %253A).
        self.assertEqual(rec["canonical_request"].split("\n")[1],
                         "/model/us.amazon.nova-2-lite-v1%253A0/converse")

    def test_signed_content_sha256_header_is_accepted(self):
        sha = hashlib.sha256(self.body).hexdigest()
        headers = sign_botocore(self.fb, MODEL_PATH, self.body, Credentials(AKID, SECRET),
                                extra={"X-Amz-Content-SHA256": sha})
        self.assertIn("x-amz-content-sha256", headers["Authorization"])
        status, _, _ = post(self.fb, MODEL_PATH, self.body, headers)
        self.assertEqual(status, 200, self.last()["auth_error"])

    def test_content_sha256_not_matching_the_body_is_refused(self):
        other = self.body.replace(b"Generate", b"Delete")
        headers = sign_botocore(self.fb, MODEL_PATH, other, Credentials(AKID, SECRET),
                                extra={"X-Amz-Content-SHA256": hashlib.sha256(other).hexdigest()})
        status, h, _ = post(self.fb, MODEL_PATH, self.body, headers)
        self.assert_refused(status, h, "does not match the body")

    def test_tampered_body_is_refused_and_canonical_request_recorded(self):
        headers = sign_botocore(self.fb, MODEL_PATH, self.body, Credentials(AKID, SECRET))
        tampered = self.body.replace(b"Generate", b"Delete__")  # same length
        status, h, answer = post(self.fb, MODEL_PATH, tampered, headers)
        rec = self.assert_refused(status, h, "signature mismatch", "InvalidSignatureException")
        self.assertIn("signature we calculated does not match", answer["message"])
        self.assertEqual(rec["canonical_request"].split("\n")[-1],
                         hashlib.sha256(tampered).hexdigest())
        self.assertTrue(rec["string_to_sign"].startswith("AWS4-HMAC-SHA256\n"))

    def test_tampered_signature_is_refused(self):
        headers = sign_botocore(self.fb, MODEL_PATH, self.body, Credentials(AKID, SECRET))
        auth = headers["Authorization"]
        flipped = "0" if auth[-1] != "0" else "1"
        headers["Authorization"] = auth[:-1] + flipped
        status, h, _ = post(self.fb, MODEL_PATH, self.body, headers)
        self.assert_refused(status, h, "signature mismatch")

    def test_tampered_path_is_refused(self):
        headers = sign_botocore(self.fb, MODEL_PATH, self.body, Credentials(AKID, SECRET))
        status, h, _ = post(self.fb, MODEL_PATH.replace("%3A0", "%3A1"), self.body, headers)
        self.assert_refused(status, h, "signature mismatch")

    def test_tampered_signed_header_is_refused_unsigned_header_is_not(self):
        headers = sign_botocore(self.fb, MODEL_PATH, self.body, Credentials(AKID, SECRET))
        changed = dict(headers, **{"Content-Type": "text/plain"})
        status, h, _ = post(self.fb, MODEL_PATH, self.body, changed)
        self.assert_refused(status, h, "signature mismatch")
        # User-Agent is not signed by botocore, so adding it must not matter.
        added = dict(headers, **{"User-Agent": "something/1.0"})
        status, _, _ = post(self.fb, MODEL_PATH, self.body, added)
        self.assertEqual(status, 200, self.last()["auth_error"])

    def test_wrong_secret_is_refused(self):
        headers = sign_botocore(self.fb, MODEL_PATH, self.body, Credentials(AKID, "other"))
        status, h, _ = post(self.fb, MODEL_PATH, self.body, headers)
        self.assert_refused(status, h, "signature mismatch")

    def test_unknown_key_id_is_refused(self):
        headers = sign_botocore(self.fb, MODEL_PATH, self.body, Credentials("AKIDOTHER", SECRET))
        status, h, _ = post(self.fb, MODEL_PATH, self.body, headers)
        self.assert_refused(status, h, "AKIDOTHER", "UnrecognizedClientException")

    def test_wrong_region_is_refused(self):
        headers = sign_botocore(self.fb, MODEL_PATH, self.body, Credentials(AKID, SECRET),
                                region="us-west-2")
        status, h, _ = post(self.fb, MODEL_PATH, self.body, headers)
        self.assert_refused(status, h, "us-west-2")

    def test_wrong_service_is_refused(self):
        headers = sign_botocore(self.fb, MODEL_PATH, self.body, Credentials(AKID, SECRET),
                                service="bedrock-runtime")
        status, h, _ = post(self.fb, MODEL_PATH, self.body, headers)
        self.assert_refused(status, h, "bedrock-runtime")

    def test_token_sent_to_credentials_without_token_is_refused(self):
        headers = sign_botocore(self.fb, MODEL_PATH, self.body, Credentials(AKID, SECRET, TOKEN))
        status, h, _ = post(self.fb, MODEL_PATH, self.body, headers)
        self.assert_refused(status, h, "X-Amz-Security-Token sent")

    def test_missing_or_foreign_authorization_is_refused(self):
        status, h, _ = post(self.fb, MODEL_PATH, self.body, {})
        self.assert_refused(status, h, "Missing Authentication Token", "AccessDeniedException")
        status, h, _ = post(self.fb, MODEL_PATH, self.body, {"Authorization": "Bearer tok"})
        self.assert_refused(status, h, "not AWS4-HMAC-SHA256")

    def test_hand_written_signer_agrees_with_the_verifier(self):
        headers = sign_by_hand(self.fb, MODEL_PATH, self.body, now_amz_date())
        status, _, _ = post(self.fb, MODEL_PATH, self.body, headers)
        self.assertEqual(status, 200, self.last()["auth_error"])

    def test_headers_botocore_would_not_sign_are_honoured_when_signed(self):
        # botocore's own signer never signs user-agent or expect; a client may.
        headers = sign_by_hand(self.fb, MODEL_PATH, self.body, now_amz_date(),
                               extra_signed={"user-agent": "norn/1"})
        status, _, _ = post(self.fb, MODEL_PATH, self.body, headers)
        self.assertEqual(status, 200, self.last()["auth_error"])
        self.assertIn("user-agent:norn/1", self.last()["canonical_request"].split("\n"))
        headers["user-agent"] = "norn/2"
        status, h, _ = post(self.fb, MODEL_PATH, self.body, headers)
        self.assert_refused(status, h, "signature mismatch")

    def test_single_encoded_canonical_uri_is_refused_with_a_precise_reason(self):
        headers = sign_by_hand(self.fb, MODEL_PATH, self.body, now_amz_date(),
                               double_encode=False)
        status, h, _ = post(self.fb, MODEL_PATH, self.body, headers)
        rec = self.assert_refused(status, h, "matches canonical URI " + MODEL_PATH)
        self.assertIn("%253A", rec["auth_error"])

    def test_stale_or_inconsistent_date_is_refused(self):
        stale = sign_by_hand(self.fb, MODEL_PATH, self.body, now_amz_date(-3600))
        status, h, _ = post(self.fb, MODEL_PATH, self.body, stale)
        self.assert_refused(status, h, "Signature expired")
        other_day = sign_by_hand(self.fb, MODEL_PATH, self.body, now_amz_date())
        other_day["authorization"] = other_day["authorization"].replace(
            "Credential=%s/%s" % (AKID, now_amz_date()[:8]), "Credential=%s/20000101" % AKID)
        status, h, _ = post(self.fb, MODEL_PATH, self.body, other_day)
        self.assert_refused(status, h, "does not match X-Amz-Date")

    def test_host_and_date_must_be_signed(self):
        headers = sign_by_hand(self.fb, MODEL_PATH, self.body, now_amz_date())
        headers["authorization"] = headers["authorization"].replace(
            "SignedHeaders=content-type;host;x-amz-date", "SignedHeaders=content-type;host")
        status, h, _ = post(self.fb, MODEL_PATH, self.body, headers)
        self.assert_refused(status, h, "'x-amz-date' must be a signed header")


class SigV4SessionTokenTests(FakeTestCase):
    server_args = {"access_key": AKID, "secret_key": SECRET, "session_token": TOKEN,
                   "region": REGION}
    body = converse_body(TASK_SYSTEM, "Generate a task.")

    def test_signed_token_is_accepted(self):
        headers = sign_botocore(self.fb, MODEL_PATH, self.body, Credentials(AKID, SECRET, TOKEN))
        status, _, _ = post(self.fb, MODEL_PATH, self.body, headers)
        self.assertEqual(status, 200, self.last()["auth_error"])
        self.assertIn("x-amz-security-token",
                      self.last()["canonical_request"].split("\n")[-2].split(";"))
        headers = sign_by_hand(self.fb, MODEL_PATH, self.body, now_amz_date(), token=TOKEN)
        status, _, _ = post(self.fb, MODEL_PATH, self.body, headers)
        self.assertEqual(status, 200, self.last()["auth_error"])

    def test_missing_wrong_or_unsigned_token_is_refused(self):
        headers = sign_botocore(self.fb, MODEL_PATH, self.body, Credentials(AKID, SECRET))
        status, _, _ = post(self.fb, MODEL_PATH, self.body, headers)
        self.assertEqual(status, 403)
        self.assertIn("X-Amz-Security-Token missing", self.last()["auth_error"])
        headers = sign_botocore(self.fb, MODEL_PATH, self.body,
                                Credentials(AKID, SECRET, TOKEN + "x"))
        status, _, _ = post(self.fb, MODEL_PATH, self.body, headers)
        self.assertEqual(status, 403)
        self.assertIn("missing or wrong", self.last()["auth_error"])
        unsigned = sign_botocore(self.fb, MODEL_PATH, self.body, Credentials(AKID, SECRET))
        unsigned["X-Amz-Security-Token"] = TOKEN
        status, _, _ = post(self.fb, MODEL_PATH, self.body, unsigned)
        self.assertEqual(status, 403)
        self.assertIn("must be a signed header", self.last()["auth_error"])


@unittest.skipUnless(shutil.which("curl"), "curl not installed")
class CurlSigV4Tests(FakeTestCase):
    """What libcurl's CURLOPT_AWS_SIGV4 (curl --aws-sigv4) produces, as nornd will send it."""

    server_args = {"access_key": AKID, "secret_key": SECRET, "session_token": TOKEN,
                   "region": REGION}

    def curl(self, url_path, request_target=None, token=True):
        body_file = os.path.join(self.tmp, "body.json")
        with open(body_file, "wb") as f:
            f.write(converse_body(STEP_SYSTEM, step_prompt([(1, "web_search")])))
        cmd = ["curl", "-sS", "-o", os.devnull, "-w", "%{http_code}",
               "--aws-sigv4", "aws:amz:%s:bedrock" % REGION, "--user", AKID + ":" + SECRET,
               "-H", "content-type: application/json", "--data-binary", "@" + body_file]
        if token:
            cmd += ["-H", "x-amz-security-token: " + TOKEN]
        if request_target:
            cmd += ["--request-target", request_target]
        cmd.append("http://127.0.0.1:%d%s" % (self.fb.port, url_path))
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        return int(out.stdout)

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="fakebedrock-curl-")
        self.addCleanup(shutil.rmtree, self.tmp)

    def test_model_id_without_reserved_characters_is_accepted(self):
        self.assertEqual(self.curl("/model/amazon.nova-lite-v1/converse"), 200,
                         self.last()["auth_error"])
        self.assertIn("x-amz-security-token", self.last()["headers"]["authorization"])

    def test_colon_model_id_is_signed_over_the_path_as_sent(self):
        # curl 7.88 signs the URL path verbatim; AWS and botocore URI-encode
        # it once more (%3A -> %253A). If a newer libcurl changes this, the
        # request-target workaround below must be revisited too.
        self.assertEqual(self.curl(MODEL_PATH), 403)
        self.assertIn("signature matches canonical URI " + MODEL_PATH,
                      self.last()["auth_error"])
        self.assertEqual(self.curl("/model/%s/converse" % MODEL), 403)
        self.assertIn("signature matches canonical URI /model/%s/converse" % MODEL,
                      self.last()["auth_error"])

    def test_request_target_workaround_is_accepted(self):
        # URL path = the canonical URI AWS expects (what curl signs),
        # request target = the path actually sent.
        status = self.curl(MODEL_PATH.replace("%3A", "%253A"), request_target=MODEL_PATH)
        self.assertEqual(status, 200, self.last()["auth_error"])
        self.assertEqual(self.last()["path"], MODEL_PATH)
        self.assertEqual(self.last()["model_id"], MODEL)

    def test_missing_token_header_is_refused(self):
        self.assertEqual(self.curl("/model/amazon.nova-lite-v1/converse", token=False), 403)


class BearerTests(FakeTestCase):
    body = converse_body(SESSION_SYSTEM, "Task: x")

    def test_exact_token_is_accepted(self):
        status, _, answer = post(self.fb, MODEL_PATH, self.body, {"Authorization": "Bearer tok"})
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(answer["output"]["message"]["content"][0]["text"]),
                         DEFAULT_SESSION_RESULT)
        self.assertTrue(self.last()["auth_ok"])
        self.assertEqual(self.last()["auth_mode"], "bearer")

    def test_wrong_missing_or_malformed_token_is_refused(self):
        cases = [({"Authorization": "Bearer tok2"}, "UnrecognizedClientException"),
                 ({"Authorization": "Bearer  tok"}, "UnrecognizedClientException"),
                 ({"Authorization": "bearer tok"}, "AccessDeniedException"),
                 ({}, "AccessDeniedException")]
        for headers, error_type in cases:
            status, h, _ = post(self.fb, MODEL_PATH, self.body, headers)
            self.assertEqual((status, h["x-amzn-errortype"]), (403, error_type), headers)
            self.assertFalse(self.last()["auth_ok"])
        self.assertEqual(self.fb.counts(), {"session": 4})

    def test_sigv4_request_to_bearer_server_is_refused(self):
        headers = sign_botocore(self.fb, MODEL_PATH, self.body, Credentials(AKID, SECRET))
        status, _, _ = post(self.fb, MODEL_PATH, self.body, headers)
        self.assertEqual(status, 403)


class AnswerTests(FakeTestCase):
    auth = {"Authorization": "Bearer tok"}

    def converse(self, system, user, conn=None):
        body = converse_body(system, user)
        status, headers, answer = post(self.fb, MODEL_PATH, body, self.auth, conn)
        text = answer["output"]["message"]["content"][0]["text"] if status == 200 else None
        return status, headers, answer, text

    def test_step_batch_covers_exactly_the_prompt_steps(self):
        self.fb.set_tool_scores({"web_search": (10, 100, "Unrelated to the task.")})
        steps = [(4, "web_search"), (5, "file_read"), (7, "web_search")]
        status, _, answer, text = self.converse(STEP_SYSTEM + "\nRules...", step_prompt(steps))
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(text), [
            {"step": 4, "relevance_score": 10, "security_score": 100,
             "reasoning": "Unrelated to the task."},
            {"step": 5, "relevance_score": 90, "security_score": 100,
             "reasoning": "Directly serves the task."},
            {"step": 7, "relevance_score": 10, "security_score": 100,
             "reasoning": "Unrelated to the task."}])
        self.assertEqual(answer["stopReason"], "end_turn")
        self.assertEqual(self.last()["kind"], "step")

    def test_step_format_overrides(self):
        self.fb.set_default_step_score(150, -5, "Out of range on purpose.")
        self.fb.set_step_format(wrap="fence", drop_steps=[2])
        _, _, _, text = self.converse(STEP_SYSTEM, step_prompt([(1, "a"), (2, "b"), (3, "c")]))
        self.assertTrue(text.startswith("```json\n") and text.endswith("\n```"), text)
        items = json.loads(text[len("```json\n"):-len("\n```")])
        self.assertEqual([i["step"] for i in items], [1, 3])
        self.assertEqual((items[0]["relevance_score"], items[0]["security_score"]), (150, -5))
        self.fb.set_step_format(wrap="prose")
        _, _, _, text = self.converse(STEP_SYSTEM, step_prompt([(1, "a")]))
        self.assertFalse(text.startswith("["))
        self.assertEqual(len(json.loads(text[text.index("["):text.rindex("]") + 1])), 1)
        self.fb.set_raw_reply("step", "not json at all {")
        _, _, _, text = self.converse(STEP_SYSTEM, step_prompt([(1, "a")]))
        self.assertEqual(text, "not json at all {")
        self.fb.set_raw_reply("step", None)
        _, _, _, text = self.converse(STEP_SYSTEM, step_prompt([(1, "a")]))
        self.assertFalse(text.startswith("not json"))

    def test_kinds_by_system_prompt_and_replacements(self):
        _, _, _, text = self.converse(SESSION_SYSTEM, "Task: x")
        self.assertEqual(json.loads(text), DEFAULT_SESSION_RESULT)
        self.fb.set_session_result({"overall_quality": "POOR"})
        _, _, _, text = self.converse(SESSION_SYSTEM, "Task: x")
        self.assertEqual(json.loads(text), {"overall_quality": "POOR"})

        dialogue = ("Analyze this multi-agent pipeline:\n[Agent 1: researcher]\n  Task: a\n\n"
                    "[Agent 2: writer]\n  Received from previous agent: notes\n  Task: b")
        _, _, _, text = self.converse(SWARM_SYSTEM, dialogue)
        swarm = json.loads(text)
        self.assertEqual([(a["agent_name"], a["order"]) for a in swarm["agent_assessments"]],
                         [("researcher", 1), ("writer", 2)])
        self.assertEqual(swarm["pipeline_coherence"], "GOOD")
        for key in ("summary", "handoff_quality", "recommendations"):
            self.assertTrue(swarm[key], key)
        self.fb.set_swarm_analysis({"summary": "s"})
        self.assertEqual(json.loads(self.converse(SWARM_SYSTEM, dialogue)[3]), {"summary": "s"})

        _, _, _, text = self.converse(TASK_SYSTEM, "AGENT IDENTITY ...")
        self.assertTrue(10 < len(json.loads(text)["description"]) < 600)
        self.fb.set_task({"description": "Do something specific."})
        self.assertEqual(json.loads(self.converse(TASK_SYSTEM, "x")[3]),
                         {"description": "Do something specific."})
        self.assertEqual(self.fb.counts(), {"session": 2, "swarm": 2, "task": 2})

    def test_unrecognised_requests_are_validation_errors(self):
        for system in ("You are a helpful assistant.", None):
            status, headers, answer, _ = self.converse(system, "hi")
            self.assertEqual((status, headers["x-amzn-errortype"]), (400, "ValidationException"))
            self.assertIn("message", answer)
        status, _, _ = post(self.fb, MODEL_PATH, b"{not json", self.auth)
        self.assertEqual(status, 400)
        self.assertEqual(self.fb.counts(), {"unknown": 3})
        status, headers, _ = post(self.fb, "/model/x/converse-stream",
                                  converse_body(TASK_SYSTEM, "x"), self.auth)
        self.assertEqual((status, headers["x-amzn-errortype"]), (404, "UnknownOperationException"))
        self.fb.set_known_models([MODEL])
        status, _, _ = post(self.fb, "/model/other/converse", converse_body(TASK_SYSTEM, "x"),
                            self.auth)
        self.assertEqual(status, 400)
        status, _, _, _ = self.converse(TASK_SYSTEM, "x")
        self.assertEqual(status, 200)

    def test_usage_is_deterministic(self):
        body = converse_body(SESSION_SYSTEM, "Task: x")
        _, _, answer = post(self.fb, MODEL_PATH, body, self.auth)
        text = answer["output"]["message"]["content"][0]["text"]
        self.assertEqual(answer["usage"], {"inputTokens": len(body) // 4,
                                           "outputTokens": len(text) // 4,
                                           "totalTokens": len(body) // 4 + len(text) // 4})
        self.assertEqual(answer["metrics"], {"latencyMs": 0})

    def test_request_record(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.fb.port, timeout=30)
        self.addCleanup(conn.close)
        self.converse(TASK_SYSTEM, "one", conn)
        self.converse(TASK_SYSTEM, "two", conn)
        self.converse(TASK_SYSTEM, "three")
        first, second, third = self.fb.requests(kind="task")
        self.assertEqual(first["connection_id"], second["connection_id"])  # keep-alive
        self.assertNotEqual(second["connection_id"], third["connection_id"])
        self.assertEqual(self.fb.connections(), 2)
        self.assertEqual(first["method"], "POST")
        self.assertEqual(first["path"], MODEL_PATH)
        self.assertEqual(first["model_id"], MODEL)
        self.assertEqual(first["headers"]["authorization"], "Bearer tok")
        self.assertEqual(first["body"]["messages"][0]["content"][0]["text"], "one")
        self.assertEqual(first["body"]["inferenceConfig"], {"temperature": 0.1})
        self.assertLessEqual(first["received_at"], second["received_at"])
        self.assertEqual(first["status"], 200)
        self.assertEqual(json.loads(first["answer_text"]), DEFAULT_TASK)

    def test_chunked_body_and_size_limit(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.fb.port, timeout=30)
        self.addCleanup(conn.close)
        body = converse_body(TASK_SYSTEM, "chunked")
        conn.request("POST", MODEL_PATH, body=iter([body[:10], body[10:]]),
                     headers=self.auth, encode_chunked=True)
        resp = conn.getresponse()
        resp.read()
        self.assertEqual(resp.status, 200)
        self.assertEqual(self.last()["headers"]["transfer-encoding"], "chunked")
        self.assertEqual(self.last()["body"]["messages"][0]["content"][0]["text"], "chunked")
        # Over the limit: refused from the headers alone, before any body byte.
        with socket.create_connection(("127.0.0.1", self.fb.port), timeout=30) as sock:
            sock.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\n"
                          "Content-Length: %d\r\n\r\n" % (MODEL_PATH, 8 * 1024 * 1024 + 1))
                         .encode())
            self.assertTrue(sock.makefile("rb").readline().startswith(b"HTTP/1.1 413 "))
        self.assertIn("exceeds the 8388608-byte limit", self.last()["error"])

    @unittest.skipUnless(shutil.which("curl"), "curl not installed")
    def test_curl_chunked_and_expect_continue(self):
        tmp = tempfile.mkdtemp(prefix="fakebedrock-")
        self.addCleanup(shutil.rmtree, tmp)
        body_file = os.path.join(tmp, "body.json")
        big = "x" * (2 * 1024 * 1024)  # large enough for curl to send Expect: 100-continue
        with open(body_file, "wb") as f:
            f.write(converse_body(TASK_SYSTEM, big))
        for extra in (["-H", "Transfer-Encoding: chunked"], []):
            out = subprocess.run(
                ["curl", "-sS", "-o", os.devnull, "-w", "%{http_code}", "-H",
                 "Authorization: Bearer tok", "--data-binary", "@" + body_file] + extra +
                ["http://127.0.0.1:%d%s" % (self.fb.port, MODEL_PATH)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
            self.assertEqual(out.stdout, b"200", out.stderr)
            self.assertEqual(len(self.last()["body"]["messages"][0]["content"][0]["text"]),
                             len(big))
        self.assertEqual(self.fb.requests()[0]["headers"].get("transfer-encoding"), "chunked")
        self.assertEqual(self.fb.requests()[1]["headers"].get("expect"), "100-continue")


class FaultTests(FakeTestCase):
    auth = {"Authorization": "Bearer tok"}
    body = converse_body(TASK_SYSTEM, "x")

    def call(self):
        return post(self.fb, MODEL_PATH, self.body, self.auth)

    def test_fail_next_with_retry_after_then_recover(self):
        self.fb.fail_next(2, status=429, retry_after=1)
        self.fb.fail_next(1, status=500)
        self.fb.fail_next(1, status=503)
        results = [self.call() for _ in range(5)]
        self.assertEqual([r[0] for r in results], [429, 429, 500, 503, 200])
        self.assertEqual(results[0][1]["x-amzn-errortype"], "ThrottlingException")
        self.assertEqual(results[0][1]["retry-after"], "1")
        self.assertIn("Too many requests", results[0][2]["message"])
        self.assertEqual(results[2][1]["x-amzn-errortype"], "InternalServerException")
        self.assertNotIn("retry-after", results[2][1])
        self.assertEqual(results[3][1]["x-amzn-errortype"], "ServiceUnavailableException")
        self.assertEqual([r["status"] for r in self.fb.requests()], [429, 429, 500, 503, 200])

    def test_failures_are_not_consumed_by_unauthenticated_requests(self):
        self.fb.fail_next(1, status=500)
        status, _, _ = post(self.fb, MODEL_PATH, self.body, {"Authorization": "Bearer no"})
        self.assertEqual(status, 403)
        self.assertEqual(self.call()[0], 500)

    def test_delay(self):
        self.fb.set_delay(0.5)
        started = time.monotonic()
        status, _, answer = self.call()
        self.assertEqual(status, 200)
        self.assertGreaterEqual(time.monotonic() - started, 0.5)
        self.assertEqual(answer["metrics"]["latencyMs"], 500)

    def test_hang_until_released(self):
        self.fb.hang_next(1)
        results = []
        worker = threading.Thread(target=lambda: results.append(self.call()))
        worker.start()
        self.fb.wait_for(lambda: any(r["hung"] for r in self.fb.requests()), timeout=10)
        worker.join(0.3)
        self.assertTrue(worker.is_alive(), "a hung request was answered")
        self.assertEqual(self.call()[0], 200)  # only one request was to hang
        self.fb.release()
        worker.join(10)
        self.assertEqual(results[0][0], 200)

    def test_hang_ends_when_the_server_stops(self):
        self.fb.hang_next()
        errors = []

        def call():
            try:
                self.call()
            except (http.client.HTTPException, OSError) as e:
                errors.append(e)
        worker = threading.Thread(target=call)
        worker.start()
        self.fb.wait_for(lambda: any(r["hung"] for r in self.fb.requests()), timeout=10)
        self.fb.stop()
        worker.join(10)
        self.assertFalse(worker.is_alive())
        self.assertEqual(len(errors), 1)

    def test_close_without_answer(self):
        self.fb.close_next(1)
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionResetError)):
            self.call()
        self.assertEqual(self.last()["status"], 0)
        self.assertEqual(self.call()[0], 200)

    def test_max_records_keeps_the_newest_and_exact_counts(self):
        fb = FakeBedrock(bearer="tok", max_records=2).start()
        self.addCleanup(fb.stop)
        for _ in range(3):
            self.assertEqual(post(fb, MODEL_PATH, self.body, self.auth)[0], 200)
        self.assertEqual([r["id"] for r in fb.requests()], [2, 3])
        self.assertEqual(fb.counts(), {"task": 3})

    def test_wait_for_times_out(self):
        with self.assertRaises(TimeoutError):
            self.fb.wait_for(lambda: len(self.fb.requests()) > 0, timeout=0.2)

    def test_reset(self):
        self.fb.fail_next(3)
        self.fb.set_task({"description": "custom task text"})
        self.call()
        self.fb.hang_next()
        results = []
        worker = threading.Thread(target=lambda: results.append(self.call()))
        worker.start()
        self.fb.wait_for(lambda: any(r["hung"] for r in self.fb.requests()), timeout=10)
        self.fb.reset()  # also releases hung requests
        worker.join(10)
        # A released request is answered with the configuration of that moment.
        self.assertEqual(results[0][0], 200)
        self.assertEqual(json.loads(results[0][2]["output"]["message"]["content"][0]["text"]),
                         DEFAULT_TASK)
        status, _, answer = self.call()
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(answer["output"]["message"]["content"][0]["text"]),
                         DEFAULT_TASK)
        self.assertEqual(len(self.fb.requests()), 1)


class ScriptModeTests(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="fakebedrock-script-")
        self.addCleanup(shutil.rmtree, self.tmp)
        port_file = os.path.join(self.tmp, "port")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "fake_bedrock.py"), "--port", "0",
             "--port-file", port_file, "--bearer", "tok", "--region", REGION],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(self.stop)
        printed = self.proc.stdout.readline().decode().strip()
        with open(port_file) as f:
            self.port = int(f.read())
        self.assertEqual(int(printed), self.port)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.proc.stdout.close()
        self.proc.stderr.close()

    def request(self, method, path, payload=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            body = payload if isinstance(payload, bytes) or payload is None \
                else json.dumps(payload).encode()
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), json.loads(resp.read())
        finally:
            conn.close()

    def test_control_api(self):
        status, _, reply = self.request("POST", "/__control", [
            {"action": "fail_next", "count": 1, "status": 429, "retry_after": 2},
            {"action": "set_tool_scores", "scores": {"shell": [5, 20, "Exfiltration risk."]}}])
        self.assertEqual((status, reply["ok"]), (200, True))
        auth = {"Authorization": "Bearer tok"}
        body = converse_body(STEP_SYSTEM, step_prompt([(1, "shell")]))
        status, headers, _ = self.request("POST", MODEL_PATH, body, auth)
        self.assertEqual((status, headers["Retry-After"]), (429, "2"))
        status, _, answer = self.request("POST", MODEL_PATH, body, auth)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(answer["output"]["message"]["content"][0]["text"]),
                         [{"step": 1, "relevance_score": 5, "security_score": 20,
                           "reasoning": "Exfiltration risk."}])
        status, _, records = self.request("GET", "/__requests?kind=step")
        self.assertEqual([r["status"] for r in records], [429, 200])
        self.assertEqual(records[0]["model_id"], MODEL)
        status, _, counts = self.request("GET", "/__counts")
        self.assertEqual(counts["counts"], {"step": 2})
        status, _, reply = self.request("POST", "/__control", {"action": "explode"})
        self.assertEqual((status, reply["ok"]), (400, False))
        self.assertIn("explode", reply["error"])
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(10), 0)

    def test_control_is_not_available_in_library_mode(self):
        with FakeBedrock(bearer="tok") as fb:
            status, headers, _ = post(fb, "/__control", b'{"action":"reset"}',
                                      {"Authorization": "Bearer tok"})
            self.assertEqual((status, headers["x-amzn-errortype"]),
                             (404, "UnknownOperationException"))


if __name__ == "__main__":
    unittest.main()
