"""A local stand-in for Amazon Bedrock Runtime's Converse API, for tests.

Tests cannot reach AWS, so they run Norn's real evaluator (C, libcurl) against
this server on 127.0.0.1 and point nornd at it with
NORN_BEDROCK_ENDPOINT=http://127.0.0.1:PORT.

Wire protocol (non-streaming Converse):
  POST /model/<url-encoded model id>/converse
  {"messages":[{"role":"user","content":[{"text":...}]}],
   "system":[{"text":...}], "inferenceConfig":{...}}
  -> 200 {"output":{"message":{"role":"assistant","content":[{"text":...}]}},
          "stopReason":"end_turn",
          "usage":{"inputTokens":N,"outputTokens":M,"totalTokens":N+M},
          "metrics":{"latencyMs":K}}
  Errors: JSON {"message": ...} with header x-amzn-ErrorType:
    400 ValidationException, 403 AccessDeniedException (no/foreign
    credentials), UnrecognizedClientException (unknown key id, bad bearer
    token, bad session token), InvalidSignatureException (signature
    mismatch, expired X-Amz-Date), 404 UnknownOperationException (not a
    Converse path), 429 ThrottlingException, 500 InternalServerException,
    503 ServiceUnavailableException.
  Token counts are deterministic: inputTokens = len(request body) // 4,
  outputTokens = len(answer text) // 4; latencyMs = the configured delay.

Authentication (exactly one mode per server):
  bearer  Authorization: Bearer <token>, compared exactly.
  SigV4   Authorization: AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/bedrock/
          aws4_request, SignedHeaders=..., Signature=...; the signature is
          recomputed with botocore's SigV4Auth (canonical_request,
          string_to_sign, signature) over exactly the headers named in
          SignedHeaders, with the request's own X-Amz-Date as timestamp.
          Also checked: key id, region, service == bedrock, the scope date ==
          X-Amz-Date's date, X-Amz-Date within max_skew_s of now, host and
          x-amz-date signed, X-Amz-Security-Token present, equal and signed
          when a session token is configured (and absent otherwise),
          x-amz-content-sha256 (when sent) == SHA-256 of the body.
          botocore's canonical URI re-encodes the already-encoded path
          (%3A -> %253A) as AWS does for non-S3 services; this server keeps
          that behaviour. When a signature fails but would match the path
          *without* that re-encoding, auth_error says so.

Answers are chosen by the first line of the system prompt (the "kind"):
  step     "You are a per-step quality checker for AI agent tool calls."
           The user prompt holds, per step, a line "=== Step <n> ===" followed
           immediately by "Tool: <name>". The answer is a JSON array
           [{"step":n,"relevance_score":R,"security_score":S,"reasoning":...}]
           for every step found, in prompt order, (R, S, reasoning) from the
           per-tool table (default 90, 100, "Directly serves the task.").
  session  "You are a quality evaluator for AI agent sessions."
  swarm    "You are a multi-agent pipeline analyst."
           Default: one agent_assessments entry per "[Agent <order>: <name>]"
           line of the prompt.
  task     "You generate realistic test tasks for AI agents."
  unknown  anything else (or no system prompt) -> 400 ValidationException.

Python API:
  fb = FakeBedrock(bearer="tok")
  fb = FakeBedrock(access_key="AKID", secret_key="S", session_token=None,
                   region="us-east-1")
  (optional: max_records=N keeps only the newest N records; counts() stays
  exact; max_skew_s=900 is the allowed X-Amz-Date distance from now)
  fb.start(); fb.url  -> "http://127.0.0.1:PORT"; fb.port; fb.stop()
  (also a context manager: with FakeBedrock(...) as fb: ...)
  Scripted answers:
    fb.set_tool_scores({"web_search": (10, 100, "Unrelated to the task.")})
                               merged into the table; scores may be out of
                               range or non-numbers on purpose
    fb.set_default_step_score(90, 100, "Directly serves the task.")
    fb.set_step_format(wrap="plain"|"fence"|"prose", drop_steps=(3,))
                               fence: ```json ... ```; prose: text around it
    fb.set_raw_reply(kind, text)   answer exactly `text` for that kind (e.g.
                               bad JSON); None restores the scripted answer
    fb.set_session_result(obj); fb.set_swarm_analysis(obj); fb.set_task(obj)
                               (None restores the defaults)
    fb.set_known_models(["us.amazon.nova-2-lite-v1:0"])  others -> 400
  Faults (they apply to authenticated Converse requests, in this order:
  close, hang, fail; the delay applies to every answer):
    fb.fail_next(2, status=429, retry_after=1, message=None)
                               status 400/403/429/500/503/...; queued
    fb.set_delay(3.0)          every answer waits this long
    fb.hang_next(count=None)   the next count requests (None: all) are read and
                               recorded but not answered until fb.release()
                               (then answered as configured at that moment)
    fb.release()               answers every hung request and stops hanging
    fb.close_next(count=1)     read the request, close the connection silently
    fb.reset()                 scripted answers, faults and records to defaults
  Inspection:
    fb.requests(kind=None)     list of dicts (copies), oldest first:
      id, method, path, model_id, headers (lower-case name -> value, repeats
      joined by ","), header_list ([name, value] as received), body (parsed
      JSON or None), body_text, kind, auth_mode ("bearer"/"sigv4"), auth_ok,
      auth_error (why authentication failed), canonical_request and
      string_to_sign (SigV4, as botocore computed them; on a mismatch too),
      error (the message of the error answer sent, if any), received_at
      (time.time()), connection_id (same value = same TCP connection, i.e.
      keep-alive reuse), status (HTTP status sent; None while pending, 0
      when closed without an answer),
      answer_text, hung (bool)
    fb.counts()                {kind: number of Converse requests received}
    fb.connections()           number of TCP connections accepted so far
    fb.wait_for(pred, timeout=10)  waits until pred() is true (re-checked on
                               every state change); TimeoutError otherwise

Script mode (for C tests and benchmarks):
  /usr/bin/python3 fake_bedrock.py --port 0 --port-file F --region R
      [--bearer TOKEN | --access-key K --secret-key S [--session-token T]]
      [--max-records N]
  prints the port on stdout, writes it to F atomically (rename), runs until
  SIGTERM/SIGINT. Control API (no auth; script mode only):
    POST /__control  {"action": <name>, ...arguments} or a list of those;
        actions: set_tool_scores {"scores": {tool: [r, s, reasoning]}},
        set_default_step_score {"relevance","security","reasoning"},
        set_step_format {"wrap","drop_steps"}, set_raw_reply {"kind","text"},
        set_session_result / set_swarm_analysis / set_task {"value"},
        set_known_models {"models"}, fail_next {"count","status",
        "retry_after","message"}, set_delay {"seconds"}, hang_next {"count"},
        release, close_next {"count"}, reset
        -> {"ok": true, "counts": {...}} or 400 {"ok": false, "error": ...}
    GET /__requests[?kind=step]  -> JSON list of records
    GET /__counts                -> {"counts": {...}, "connections": n}
"""

import argparse
import copy
import datetime
import hashlib
import hmac
import http.server
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import urllib.parse
import uuid

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_CHUNK_LINE = 1024
SIGV4_SERVICE = "bedrock"
SIGV4_TIME_FORMAT = "%Y%m%dT%H%M%SZ"

STEP_SYSTEM = "You are a per-step quality checker for AI agent tool calls."
SESSION_SYSTEM = "You are a quality evaluator for AI agent sessions."
SWARM_SYSTEM = "You are a multi-agent pipeline analyst."
TASK_SYSTEM = "You generate realistic test tasks for AI agents."
KIND_BY_SYSTEM_LINE = {
    STEP_SYSTEM: "step",
    SESSION_SYSTEM: "session",
    SWARM_SYSTEM: "swarm",
    TASK_SYSTEM: "task",
}

DEFAULT_STEP_SCORE = (90, 100, "Directly serves the task.")

DEFAULT_SESSION_RESULT = {
    "task_completed": True,
    "completion_confidence": 95,
    "efficiency_score": 95,
    "security_score": 98,
    "overall_quality": "EXCELLENT",
    "reasoning": "The agent completed the task with the expected tools and no security concern.",
    "tool_analysis": [],
    "decision_observations": [],
    "efficiency_explanation": "The step count stayed within the expected maximum.",
    "recommendations": [],
}

DEFAULT_TASK = {
    "description": "Fetch https://example.com and write a three-sentence summary of the page "
                   "to a new file named summary.txt.",
    "expected_tools": ["http_request", "file_write"],
    "max_steps": 15,
    "success_criteria": "summary.txt exists and summarises the page in three sentences.",
}

# Errors as Bedrock names them: status -> (x-amzn-ErrorType, message).
ERROR_BY_STATUS = {
    400: ("ValidationException", "The request is invalid."),
    403: ("AccessDeniedException", "You don't have access to the model with the specified "
                                    "model ID."),
    404: ("ResourceNotFoundException", "The specified resource was not found."),
    408: ("ModelTimeoutException", "The model took too long to respond."),
    424: ("ModelErrorException", "The model returned an error."),
    429: ("ThrottlingException", "Too many requests, please wait before trying again."),
    500: ("InternalServerException", "The server encountered an internal error while "
                                      "processing the request."),
    503: ("ServiceUnavailableException", "Bedrock is unable to process your request."),
}

SIGNATURE_MISMATCH = ("The request signature we calculated does not match the signature you "
                      "provided. Check your AWS Secret Access Key and signing method. Consult "
                      "the service documentation for details.")

STEP_HEADER = re.compile(r"^=== Step (\d+) ===$")
TOOL_LINE = re.compile(r"^Tool: (.*)$")
SWARM_AGENT_LINE = re.compile(r"^\[Agent [^:\]]*: (.*)\]$")
CONVERSE_PATH = re.compile(r"^/model/([^/]+)/converse$")
SIGV4_AUTH = re.compile(r"^AWS4-HMAC-SHA256\s+Credential=([^,\s]+),\s*"
                        r"SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]+)$")


class RequestError(Exception):
    """A request this server refuses; carries the HTTP status and Bedrock error type."""

    def __init__(self, status, error_type, message):
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


class _ExactHeadersSigV4(SigV4Auth):
    """botocore's SigV4 with the header set given by the request's SignedHeaders.

    botocore's headers_to_sign() takes every header but a blacklist
    (user-agent, expect, ...). A verifier must use exactly the headers the
    client says it signed, so the AWSRequest built for verification holds only
    those, and this override keeps them all (blacklisted names included).
    """

    def headers_to_sign(self, request):
        return request.headers


def step_numbers_and_tools(prompt):
    """[(step number, tool name)] for each '=== Step n ===' line followed by 'Tool: x'."""
    lines = prompt.split("\n")
    found = []
    for i, line in enumerate(lines[:-1]):
        header = STEP_HEADER.match(line)
        tool = TOOL_LINE.match(lines[i + 1]) if header else None
        if header and tool:
            found.append((int(header.group(1)), tool.group(1)))
    return found


def swarm_agent_names(prompt):
    """The name of each '[Agent <order>: <name>]' line of the dialogue, in order."""
    return [m.group(1) for m in
            (SWARM_AGENT_LINE.match(line.strip()) for line in prompt.split("\n")) if m]


class FakeBedrock:
    """The server; see the module docstring for the API."""

    def __init__(self, bearer=None, access_key=None, secret_key=None, session_token=None,
                 region="us-east-1", host="127.0.0.1", port=0, control=False,
                 max_skew_s=900.0, max_records=None):
        if (bearer is None) == (access_key is None):
            raise ValueError("give either bearer= or access_key=/secret_key= (exactly one)")
        if access_key is not None and not secret_key:
            raise ValueError("SigV4 mode needs secret_key=")
        self.auth_mode = "bearer" if bearer is not None else "sigv4"
        self.bearer = bearer
        self.access_key = access_key
        self.secret_key = secret_key
        self.session_token = session_token
        self.region = region
        self.max_skew_s = max_skew_s
        self.max_records = max_records
        self.control = control
        self._bind = (host, port)
        self._server = None
        self._thread = None
        self._cond = threading.Condition()
        self._open_sockets = set()
        self._connection_count = 0
        self._stopping = False
        self._hang_generation = 0  # bumped by release(); never reset, hung waits compare it
        self._reset_locked()

    # ---- lifecycle -------------------------------------------------------

    def start(self):
        with self._cond:
            self._stopping = False
        handler = type("BoundHandler", (_Handler,), {"fake": self})
        self._server = _Server(self._bind, handler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="fake-bedrock", daemon=True)
        self._thread.start()
        return self

    @property
    def port(self):
        return self._server.server_address[1]

    @property
    def url(self):
        return "http://%s:%d" % (self._server.server_address[0], self.port)

    def stop(self):
        """Stops accepting, answers hung requests' waits, closes open connections."""
        if self._server is None:
            return
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            sockets = list(self._open_sockets)
        self._server.shutdown()
        self._server.server_close()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its handler
        self._thread.join()
        self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- scripted answers ------------------------------------------------

    def _reset_locked(self):
        self._tool_scores = {}
        self._default_step_score = DEFAULT_STEP_SCORE
        self._step_wrap = "plain"
        self._drop_steps = set()
        self._raw_reply = {}
        self._session_result = None
        self._swarm_analysis = None
        self._task = None
        self._known_models = None
        self._failures = []
        self._delay_s = 0.0
        self._hang_remaining = 0
        self._hang_all = False
        self._close_remaining = 0
        self._records = []
        self._record_count = 0
        self._kind_counts = {}

    def reset(self):
        with self._cond:
            self._release_locked()
            self._reset_locked()

    def set_tool_scores(self, scores):
        with self._cond:
            for tool, (relevance, security, reasoning) in scores.items():
                self._tool_scores[tool] = (relevance, security, reasoning)

    def set_default_step_score(self, relevance, security, reasoning):
        with self._cond:
            self._default_step_score = (relevance, security, reasoning)

    def set_step_format(self, wrap="plain", drop_steps=()):
        if wrap not in ("plain", "fence", "prose"):
            raise ValueError("wrap must be plain, fence or prose, not %r" % (wrap,))
        with self._cond:
            self._step_wrap = wrap
            self._drop_steps = set(int(n) for n in drop_steps)

    def set_raw_reply(self, kind, text):
        if kind not in KIND_BY_SYSTEM_LINE.values():
            raise ValueError("unknown kind %r" % (kind,))
        with self._cond:
            if text is None:
                self._raw_reply.pop(kind, None)
            else:
                self._raw_reply[kind] = str(text)

    def set_session_result(self, value):
        with self._cond:
            self._session_result = copy.deepcopy(value)

    def set_swarm_analysis(self, value):
        with self._cond:
            self._swarm_analysis = copy.deepcopy(value)

    def set_task(self, value):
        with self._cond:
            self._task = copy.deepcopy(value)

    def set_known_models(self, models):
        with self._cond:
            self._known_models = None if models is None else set(models)

    # ---- faults ----------------------------------------------------------

    def fail_next(self, count=1, status=429, retry_after=None, message=None):
        status = int(status)
        if status < 400 or status > 599:
            raise ValueError("fail_next needs an error status, not %d" % status)
        error_type, default_message = ERROR_BY_STATUS.get(
            status, ("InternalServerException", "Injected failure."))
        with self._cond:
            for _ in range(int(count)):
                self._failures.append((status, error_type, message or default_message,
                                       retry_after))

    def set_delay(self, seconds):
        with self._cond:
            self._delay_s = float(seconds)

    def hang_next(self, count=None):
        with self._cond:
            if count is None:
                self._hang_all = True
            else:
                self._hang_remaining += int(count)

    def release(self):
        with self._cond:
            self._release_locked()

    def _release_locked(self):
        self._hang_all = False
        self._hang_remaining = 0
        self._hang_generation += 1
        self._cond.notify_all()

    def close_next(self, count=1):
        with self._cond:
            self._close_remaining += int(count)

    # ---- inspection ------------------------------------------------------

    def requests(self, kind=None):
        with self._cond:
            return [copy.deepcopy(r) for r in self._records if kind is None or r["kind"] == kind]

    def counts(self):
        with self._cond:
            return dict(self._kind_counts)

    def connections(self):
        with self._cond:
            return self._connection_count

    def wait_for(self, predicate, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                # The predicate usually calls requests()/counts(), which take
                # this (re-entrant) lock again.
                if predicate():
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("fake Bedrock: condition not met within %.1f s; "
                                       "requests so far: %s" % (timeout, self._summary_locked()))
                self._cond.wait(min(left, 0.2))

    def _summary_locked(self):
        return [(r["kind"], r["status"], r["auth_error"]) for r in self._records]

    # ---- request handling (called from handler threads) ------------------

    def _connection_opened(self, sock):
        with self._cond:
            self._connection_count += 1
            self._open_sockets.add(sock)
            return self._connection_count

    def _connection_closed(self, sock):
        with self._cond:
            self._open_sockets.discard(sock)

    def _record(self, record):
        with self._cond:
            self._record_count += 1
            record["id"] = self._record_count
            self._kind_counts[record["kind"]] = self._kind_counts.get(record["kind"], 0) + 1
            self._records.append(record)
            if self.max_records is not None and len(self._records) > self.max_records:
                del self._records[0]
            self._cond.notify_all()

    def _update(self, record, **fields):
        with self._cond:
            record.update(fields)
            self._cond.notify_all()

    def _take_fault(self):
        """('close'|'hang'|'fail'|None, failure tuple, hang generation) for the next request."""
        with self._cond:
            if self._close_remaining > 0:
                self._close_remaining -= 1
                return "close", None, None
            if self._hang_all or self._hang_remaining > 0:
                if not self._hang_all:
                    self._hang_remaining -= 1
                return "hang", None, self._hang_generation
            if self._failures:
                return "fail", self._failures.pop(0), None
            return None, None, None

    def _wait_released(self, generation):
        with self._cond:
            while self._hang_generation == generation and not self._stopping:
                self._cond.wait()
            return not self._stopping

    def _delay(self):
        with self._cond:
            return self._delay_s

    def _check_model(self, model_id):
        with self._cond:
            if self._known_models is not None and model_id not in self._known_models:
                raise RequestError(400, "ValidationException",
                                   "The provided model identifier is invalid.")

    # ---- authentication --------------------------------------------------

    def check_auth(self, method, raw_path, header_list, body):
        """Raises RequestError on failure; returns {canonical_request, string_to_sign} (SigV4)."""
        auth_values = [v for n, v in header_list if n.lower() == "authorization"]
        if len(auth_values) != 1:
            raise RequestError(403, "AccessDeniedException" if not auth_values
                               else "InvalidSignatureException",
                               "Missing Authentication Token" if not auth_values
                               else "More than one Authorization header.")
        auth = auth_values[0]
        if self.auth_mode == "bearer":
            if not auth.startswith("Bearer "):
                raise RequestError(403, "AccessDeniedException",
                                   "Authorization header is not a Bearer token.")
            if not hmac.compare_digest(auth[len("Bearer "):].encode(), self.bearer.encode()):
                raise RequestError(403, "UnrecognizedClientException",
                                   "The security token included in the request is invalid.")
            return {}
        return self._check_sigv4(method, raw_path, header_list, body, auth)

    def _check_sigv4(self, method, raw_path, header_list, body, auth):
        parsed = SIGV4_AUTH.match(auth)
        if not parsed:
            raise RequestError(403, "IncompleteSignatureException",
                               "Authorization header is not AWS4-HMAC-SHA256 "
                               "Credential=..., SignedHeaders=..., Signature=...: %r" % auth)
        credential, signed_header_list, client_signature = parsed.groups()
        scope = credential.split("/")
        if len(scope) != 5 or scope[4] != "aws4_request":
            raise RequestError(403, "IncompleteSignatureException",
                               "Credential must be AKID/DATE/REGION/SERVICE/aws4_request: %r"
                               % credential)
        key_id, scope_date, scope_region, scope_service, _ = scope
        if key_id != self.access_key:
            raise RequestError(403, "UnrecognizedClientException",
                               "The security token included in the request is invalid "
                               "(unknown access key id %r)." % key_id)
        if scope_region != self.region:
            raise RequestError(403, "InvalidSignatureException",
                               "Credential should be scoped to a valid region, not %r (expected "
                               "%r)." % (scope_region, self.region))
        if scope_service != SIGV4_SERVICE:
            raise RequestError(403, "InvalidSignatureException",
                               "Credential should be scoped to correct service: 'bedrock', not "
                               "%r." % scope_service)

        headers = {}
        for name, value in header_list:
            headers.setdefault(name.lower(), []).append(value)
        signed_names = signed_header_list.split(";")
        for required in ("host", "x-amz-date"):
            if required not in signed_names:
                raise RequestError(403, "InvalidSignatureException",
                                   "'%s' must be a signed header; SignedHeaders=%s"
                                   % (required, signed_header_list))
        for name in signed_names:
            if name not in headers:
                raise RequestError(403, "InvalidSignatureException",
                                   "signed header %r is not in the request" % name)

        amz_date = headers["x-amz-date"][0]
        try:
            signed_at = datetime.datetime.strptime(amz_date, SIGV4_TIME_FORMAT).replace(
                tzinfo=datetime.timezone.utc)
        except ValueError:
            raise RequestError(403, "IncompleteSignatureException",
                               "X-Amz-Date %r is not YYYYMMDDTHHMMSSZ" % amz_date)
        if scope_date != amz_date[:8]:
            raise RequestError(403, "InvalidSignatureException",
                               "Date in Credential scope %r does not match X-Amz-Date %r"
                               % (scope_date, amz_date))
        skew = abs((datetime.datetime.now(datetime.timezone.utc) - signed_at).total_seconds())
        if skew > self.max_skew_s:
            raise RequestError(403, "InvalidSignatureException",
                               "Signature expired: X-Amz-Date %s is %.0f s from now" %
                               (amz_date, skew))

        tokens = headers.get("x-amz-security-token", [])
        if self.session_token is None and tokens:
            raise RequestError(403, "UnrecognizedClientException",
                               "X-Amz-Security-Token sent but these credentials have none.")
        if self.session_token is not None:
            if tokens != [self.session_token]:
                raise RequestError(403, "UnrecognizedClientException",
                                   "The security token included in the request is invalid "
                                   "(X-Amz-Security-Token missing or wrong).")
            if "x-amz-security-token" not in signed_names:
                raise RequestError(403, "InvalidSignatureException",
                                   "x-amz-security-token must be a signed header")

        body_sha256 = hashlib.sha256(body).hexdigest()
        content_sha = headers.get("x-amz-content-sha256")
        if content_sha is not None and content_sha != [body_sha256]:
            raise RequestError(403, "InvalidSignatureException",
                               "x-amz-content-sha256 %r does not match the body's SHA-256 %s"
                               % (content_sha, body_sha256))

        signer = _ExactHeadersSigV4(
            Credentials(self.access_key, self.secret_key, self.session_token),
            SIGV4_SERVICE, self.region)
        host = headers["host"][0]
        verified = self._sigv4_compute(signer, method, "http://" + host + raw_path, header_list,
                                       signed_names, body, amz_date)
        if signed_header_list != verified["signed_headers"]:
            raise self._mismatch(verified, "SignedHeaders=%s is not the sorted lower-case list %s"
                                 % (signed_header_list, verified["signed_headers"]))
        if not hmac.compare_digest(verified["signature"], client_signature):
            reason = "signature mismatch"
            # The usual cause with hand-rolled signers (libcurl among them):
            # the canonical URI is the path as sent, not botocore's re-encoded one.
            single = self._sigv4_compute(signer, method, "http://" + host + raw_path,
                                         header_list, signed_names, body, amz_date,
                                         encode_path=False)
            if single["canonical_uri"] != verified["canonical_uri"] and \
                    hmac.compare_digest(single["signature"], client_signature):
                reason = ("signature matches canonical URI %s (path as sent) but AWS/botocore "
                          "use %s (each path segment URI-encoded again)"
                          % (single["canonical_uri"], verified["canonical_uri"]))
            raise self._mismatch(verified, reason)
        return verified

    @staticmethod
    def _mismatch(verified, reason):
        error = RequestError(403, "InvalidSignatureException", SIGNATURE_MISMATCH)
        error.reason = reason
        error.verified = verified
        return error

    @staticmethod
    def _sigv4_compute(signer, method, url, header_list, signed_names, body, amz_date,
                       encode_path=True):
        request = AWSRequest(method=method, url=url, data=body)
        for name, value in header_list:
            if name.lower() in signed_names:
                request.headers[name.lower()] = value  # HTTPHeaders keeps repeats
        request.context["timestamp"] = amz_date
        if encode_path:
            canonical = signer.canonical_request(request)
        else:
            # Same canonical form except that the URI is the path as sent.
            lines = signer.canonical_request(request).split("\n")
            lines[1] = urllib.parse.urlsplit(url).path
            canonical = "\n".join(lines)
        string_to_sign = signer.string_to_sign(request, canonical)
        return {
            "canonical_request": canonical,
            "canonical_uri": canonical.split("\n")[1],
            "signed_headers": signer.signed_headers(signer.headers_to_sign(request)),
            "string_to_sign": string_to_sign,
            "signature": signer.signature(string_to_sign, request),
        }

    # ---- answers ---------------------------------------------------------

    def answer_text(self, kind, user_prompt):
        with self._cond:
            raw = self._raw_reply.get(kind)
            if raw is not None:
                return raw
            if kind == "step":
                return self._step_answer_locked(user_prompt)
            if kind == "session":
                return json.dumps(self._session_result if self._session_result is not None
                                  else DEFAULT_SESSION_RESULT)
            if kind == "swarm":
                return json.dumps(self._swarm_analysis if self._swarm_analysis is not None
                                  else self._default_swarm(user_prompt))
            return json.dumps(self._task if self._task is not None else DEFAULT_TASK)

    def _step_answer_locked(self, user_prompt):
        items = []
        for number, tool in step_numbers_and_tools(user_prompt):
            if number in self._drop_steps:
                continue
            relevance, security, reasoning = self._tool_scores.get(tool,
                                                                   self._default_step_score)
            items.append({"step": number, "relevance_score": relevance,
                          "security_score": security, "reasoning": reasoning})
        text = json.dumps(items, indent=1)
        if self._step_wrap == "fence":
            return "```json\n" + text + "\n```"
        if self._step_wrap == "prose":
            return "Here is my evaluation of each step:\n" + text + "\nLet me know if you " \
                                                                     "need more detail."
        return text

    @staticmethod
    def _default_swarm(user_prompt):
        names = swarm_agent_names(user_prompt)
        return {
            "summary": "The pipeline's %d agents each completed their part and passed usable "
                       "results on." % len(names),
            "agent_assessments": [
                {"agent_name": name, "order": index,
                 "note": "Did its assigned part and built on the previous agent's output."}
                for index, name in enumerate(names, start=1)],
            "handoff_quality": "Each handoff carried the information the next agent needed.",
            "pipeline_coherence": "GOOD",
            "recommendations": ["Pass structured data between agents instead of prose."],
        }

    # ---- control API (script mode) ---------------------------------------

    def control_action(self, action):
        """Applies one /__control action dict; raises ValueError/KeyError/TypeError if bad."""
        name = action.get("action")
        if name == "set_tool_scores":
            self.set_tool_scores({k: tuple(v) for k, v in action["scores"].items()})
        elif name == "set_default_step_score":
            self.set_default_step_score(action["relevance"], action["security"],
                                        action["reasoning"])
        elif name == "set_step_format":
            self.set_step_format(action.get("wrap", "plain"), action.get("drop_steps", ()))
        elif name == "set_raw_reply":
            self.set_raw_reply(action["kind"], action.get("text"))
        elif name == "set_session_result":
            self.set_session_result(action.get("value"))
        elif name == "set_swarm_analysis":
            self.set_swarm_analysis(action.get("value"))
        elif name == "set_task":
            self.set_task(action.get("value"))
        elif name == "set_known_models":
            self.set_known_models(action.get("models"))
        elif name == "fail_next":
            self.fail_next(action.get("count", 1), action.get("status", 429),
                           action.get("retry_after"), action.get("message"))
        elif name == "set_delay":
            self.set_delay(action["seconds"])
        elif name == "hang_next":
            self.hang_next(action.get("count"))
        elif name == "release":
            self.release()
        elif name == "close_next":
            self.close_next(action.get("count", 1))
        elif name == "reset":
            self.reset()
        else:
            raise ValueError("unknown action %r" % (name,))


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # A client that gave up (its timeout) closes the connection before a
        # hung or slow answer is written: expected in the timeout tests.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeBedrock/1"
    fake = None  # set on the per-server subclass
    timeout = 120  # an idle keep-alive connection is dropped after this
    # Headers and body go out in two writes; with Nagle plus the client's
    # delayed ACK every answer would wait ~40 ms.
    disable_nagle_algorithm = True

    def setup(self):
        super().setup()
        self.connection_id = self.fake._connection_opened(self.connection)

    def finish(self):
        self.fake._connection_closed(self.connection)
        super().finish()

    def log_message(self, fmt, *args):
        if os.environ.get("FAKE_BEDROCK_LOG"):
            sys.stderr.write("fake_bedrock: " + (fmt % args) + "\n")

    # ---- I/O helpers -----------------------------------------------------

    def _read_body(self):
        """The request body (Content-Length or chunked), at most MAX_BODY_BYTES."""
        encoding = (self.headers.get("Transfer-Encoding") or "").lower()
        if encoding:
            if encoding != "chunked":
                raise RequestError(400, "ValidationException",
                                   "unsupported Transfer-Encoding %r" % encoding)
            return self._read_chunked()
        length_text = self.headers.get("Content-Length", "0")
        if not length_text.isdigit():
            raise RequestError(400, "ValidationException",
                               "bad Content-Length %r" % length_text)
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            raise RequestError(413, "ValidationException",
                               "body of %d bytes exceeds the %d-byte limit"
                               % (length, MAX_BODY_BYTES))
        body = self.rfile.read(length)
        if len(body) != length:
            raise RequestError(400, "ValidationException", "body ended early")
        return body

    def _read_chunked(self):
        parts = []
        total = 0
        while True:
            line = self.rfile.readline(MAX_CHUNK_LINE)
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise RequestError(400, "ValidationException",
                                   "bad chunk size line %r" % line[:40])
            if size == 0:
                break
            total += size
            if total > MAX_BODY_BYTES:
                raise RequestError(413, "ValidationException",
                                   "chunked body exceeds the %d-byte limit" % MAX_BODY_BYTES)
            chunk = self.rfile.read(size)
            if len(chunk) != size or self.rfile.read(2) != b"\r\n":
                raise RequestError(400, "ValidationException", "malformed chunk")
            parts.append(chunk)
        while True:  # trailer section ends with an empty line
            line = self.rfile.readline(MAX_CHUNK_LINE)
            if line in (b"\r\n", b"\n", b""):
                break
        return b"".join(parts)

    def _send_json(self, status, payload, extra_headers=()):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for name, value in extra_headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_error(self, error, retry_after=None):
        headers = [("x-amzn-ErrorType", error.error_type)]
        if retry_after is not None:
            headers.append(("Retry-After", str(retry_after)))
        self._send_json(error.status, {"message": error.message}, headers)

    # ---- dispatch --------------------------------------------------------

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _dispatch(self, method):
        path_only = urllib.parse.urlsplit(self.path).path
        if self.fake.control and path_only.startswith("/__"):
            self._control(method, path_only)
            return
        self._converse(method)

    def _control(self, method, path_only):
        try:
            body = self._read_body()
            if method == "POST" and path_only == "/__control":
                payload = json.loads(body or b"null")
                actions = payload if isinstance(payload, list) else [payload]
                for action in actions:
                    self.fake.control_action(action)
                self._send_json(200, {"ok": True, "counts": self.fake.counts()})
            elif method == "GET" and path_only == "/__requests":
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                self._send_json(200, self.fake.requests(kind=query.get("kind", [None])[0]))
            elif method == "GET" and path_only == "/__counts":
                self._send_json(200, {"counts": self.fake.counts(),
                                      "connections": self.fake.connections()})
            else:
                self._send_json(404, {"ok": False, "error": "no control endpoint %s %s"
                                      % (method, path_only)})
        except (RequestError, ValueError, KeyError, TypeError, AttributeError) as e:
            self.close_connection = True
            self._send_json(400, {"ok": False, "error": "%s: %s" % (type(e).__name__, e)})

    def _converse(self, method):
        received_at = time.time()
        header_list = [[n, v] for n, v in self.headers.items()]
        headers = {}
        for name, value in header_list:
            key = name.lower()
            headers[key] = headers[key] + "," + value if key in headers else value
        record = {
            "method": method, "path": self.path, "model_id": None, "headers": headers,
            "header_list": header_list, "body": None, "body_text": "", "kind": "unknown",
            "auth_mode": self.fake.auth_mode, "auth_ok": False, "auth_error": None,
            "canonical_request": None, "string_to_sign": None, "received_at": received_at,
            "connection_id": self.connection_id, "status": None, "error": None,
            "answer_text": None, "hung": False,
        }
        try:
            body = self._read_body()
        except RequestError as e:
            self.fake._record(record)
            self.close_connection = True  # the rest of the stream cannot be trusted
            self._finish(record, e)
            return
        record["body_text"] = body.decode("utf-8", errors="replace")
        system_text, user_text = "", ""
        try:
            parsed = json.loads(body)
            record["body"] = parsed
            system_text = "".join(b.get("text", "") for b in parsed.get("system") or [])
            user_text = "".join(b.get("text", "") for m in parsed.get("messages") or []
                                if m.get("role") == "user" for b in m.get("content") or [])
        except (ValueError, AttributeError, TypeError):
            pass  # kind stays "unknown"; answered 400 after authentication
        record["kind"] = KIND_BY_SYSTEM_LINE.get(system_text.split("\n", 1)[0].strip(),
                                                 "unknown")
        match = CONVERSE_PATH.match(urllib.parse.urlsplit(self.path).path)
        if match:
            record["model_id"] = urllib.parse.unquote(match.group(1))
        self.fake._record(record)

        try:
            verified = self.fake.check_auth(method, self.path, header_list, body)
            self.fake._update(record, auth_ok=True,
                              canonical_request=verified.get("canonical_request"),
                              string_to_sign=verified.get("string_to_sign"))
        except RequestError as e:
            verified = getattr(e, "verified", {})
            self.fake._update(record, auth_error=getattr(e, "reason", e.message),
                              canonical_request=verified.get("canonical_request"),
                              string_to_sign=verified.get("string_to_sign"))
            self._finish(record, e)
            return

        if method != "POST" or not match:
            self._finish(record, RequestError(404, "UnknownOperationException",
                                              "No Converse operation at %s %s"
                                              % (method, self.path)))
            return

        fault, failure, generation = self.fake._take_fault()
        if fault == "close":
            self.fake._update(record, status=0)
            self.close_connection = True
            return
        if fault == "hang":
            self.fake._update(record, hung=True)
            if not self.fake._wait_released(generation):
                self.fake._update(record, status=0)
                self.close_connection = True
                return
        if fault == "fail":
            status, error_type, message, retry_after = failure
            self._finish(record, RequestError(status, error_type, message), retry_after)
            return

        try:
            self.fake._check_model(record["model_id"])
            if record["body"] is None:
                raise RequestError(400, "ValidationException", "The request body is not JSON.")
            if record["kind"] == "unknown":
                raise RequestError(400, "ValidationException",
                                   "fake Bedrock: unrecognised system prompt first line %r"
                                   % system_text.split("\n", 1)[0][:200])
        except RequestError as e:
            self._finish(record, e)
            return
        text = self.fake.answer_text(record["kind"], user_text)
        self._finish(record, None, answer=text, input_len=len(body))

    def _finish(self, record, error, retry_after=None, answer=None, input_len=0):
        """Waits the configured delay, then sends the error or the Converse answer."""
        delay = self.fake._delay()
        if delay > 0:
            time.sleep(delay)
        # The record is completed before the answer goes out, so a client
        # that has its answer finds the record final.
        if error is not None:
            self.fake._update(record, status=error.status, error=error.message)
            self._send_error(error, retry_after)
            return
        self.fake._update(record, status=200, answer_text=answer)
        input_tokens, output_tokens = input_len // 4, len(answer) // 4
        self._send_json(200, {
            "output": {"message": {"role": "assistant", "content": [{"text": answer}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": input_tokens, "outputTokens": output_tokens,
                      "totalTokens": input_tokens + output_tokens},
            "metrics": {"latencyMs": int(delay * 1000)},
        })


def main(argv=None):
    parser = argparse.ArgumentParser(description="Fake Amazon Bedrock Runtime (Converse).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", help="write the bound port here (atomically)")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--bearer")
    parser.add_argument("--access-key")
    parser.add_argument("--secret-key")
    parser.add_argument("--session-token")
    parser.add_argument("--max-records", type=int,
                        help="keep only the newest N request records (benchmarks)")
    args = parser.parse_args(argv)
    if (args.bearer is None) == (args.access_key is None):
        parser.error("give either --bearer or --access-key/--secret-key")
    if args.access_key is not None and not args.secret_key:
        parser.error("--access-key needs --secret-key")

    fake = FakeBedrock(bearer=args.bearer, access_key=args.access_key,
                       secret_key=args.secret_key, session_token=args.session_token,
                       region=args.region, host=args.host, port=args.port, control=True,
                       max_records=args.max_records)
    fake.start()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % fake.port)
        os.rename(tmp, args.port_file)
    print(fake.port, flush=True)
    while not stop.wait(0.5):
        pass
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
