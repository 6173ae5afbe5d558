"""Foundation behaviour of nornd seen from Python grpcio (a client nobody here wrote).

Covers: grpc.health.v1.Health Check and Watch (including the SIGTERM drain),
UNIMPLEMENTED answers, API-key authentication, and server reflection
(v1alpha and v1) down to a call made purely from reflected descriptors.

Run: cd tests/python && NORND=... NORN_PROTO_DIR=... NORN_PY_GEN=... \
     /usr/bin/python3 -m unittest -v test_foundation
"""

import os
import shutil
import tempfile
import time
import unittest

import nornd_proc
from nornd_proc import NORN_SERVICES, start_nornd

nornd_proc.ensure_stubs()

import grpc  # noqa: E402
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory  # noqa: E402
from grpc.health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from grpc.reflection.v1alpha import reflection_pb2 as refl_v1alpha  # noqa: E402
from grpc.reflection.v1alpha import reflection_pb2_grpc as refl_v1alpha_grpc  # noqa: E402
from grpc.reflection.v1 import reflection_pb2 as refl_v1  # noqa: E402
from norn.v1 import (  # noqa: E402
    agent_service_pb2, agent_service_pb2_grpc,
    audit_service_pb2, audit_service_pb2_grpc,
    config_service_pb2, config_service_pb2_grpc,
    session_service_pb2, session_service_pb2_grpc,
    stats_service_pb2, stats_service_pb2_grpc,
    swarm_service_pb2, swarm_service_pb2_grpc,
)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
RPC_TIMEOUT = 5.0
API_KEY = "norn-test-key-0123456789"


def status_name(v):
    return health_pb2.HealthCheckResponse.ServingStatus.Name(v)


class RpcAssertions:
    def assertRpcCode(self, fn, code, msg=None):
        """Calls fn() and asserts it fails with `code`; returns the RpcError."""
        with self.assertRaises(grpc.RpcError, msg=msg) as cm:
            fn()
        self.assertEqual(cm.exception.code(), code,
                         "%s: got %s (%s)" % (msg or "status", cm.exception.code(),
                                              cm.exception.details()))
        return cm.exception

    def codeOf(self, fn):
        """Calls fn(); returns grpc.StatusCode.OK or the status it failed with."""
        try:
            fn()
            return grpc.StatusCode.OK
        except grpc.RpcError as e:
            return e.code()


# ---------------------------------------------------------------------------
# Health, UNIMPLEMENTED: one shared server for the read-only cases.
# ---------------------------------------------------------------------------
class SharedServerTest(unittest.TestCase, RpcAssertions):
    @classmethod
    def setUpClass(cls):
        cls.nornd = start_nornd(cls)
        cls.channel = cls.nornd.channel()
        grpc.channel_ready_future(cls.channel).result(timeout=10)
        cls.health = health_pb2_grpc.HealthStub(cls.channel)

    def test_health_check_whole_server_serving(self):
        r = self.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=RPC_TIMEOUT)
        self.assertEqual(r.status, SERVING, status_name(r.status))

    def test_health_check_session_service_serving(self):
        r = self.health.Check(health_pb2.HealthCheckRequest(service="norn.v1.SessionService"),
                              timeout=RPC_TIMEOUT)
        self.assertEqual(r.status, SERVING, status_name(r.status))

    def test_health_check_unknown_service_not_found(self):
        e = self.assertRpcCode(
            lambda: self.health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"),
                                      timeout=RPC_TIMEOUT),
            grpc.StatusCode.NOT_FOUND, "Check(no.such.Service)")
        self.assertIn("no.such.Service", e.details() or "")

    def test_health_watch_first_message_serving(self):
        call = self.health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=RPC_TIMEOUT)
        try:
            first = next(call)
            self.assertEqual(first.status, SERVING, status_name(first.status))
        finally:
            call.cancel()
        self.assertEqual(call.code(), grpc.StatusCode.CANCELLED)

    def test_health_watch_unknown_service_reports_service_unknown(self):
        # The health protocol: Watch on an unknown service does not fail, it
        # answers SERVICE_UNKNOWN (and would update if the service appeared).
        call = self.health.Watch(health_pb2.HealthCheckRequest(service="no.such.Service"),
                                 timeout=RPC_TIMEOUT)
        try:
            first = next(call)
            self.assertEqual(first.status, SERVICE_UNKNOWN, status_name(first.status))
        finally:
            call.cancel()

    def test_every_rpc_of_the_api_is_served(self):
        # Every method of every norn.v1 service has a handler now: a call with
        # an empty request is answered by the service (OK or a validation
        # error), never UNIMPLEMENTED.
        from google.protobuf import descriptor_pool
        pool = descriptor_pool.Default()
        for svc_name in ("SessionService", "AgentService", "SwarmService", "AuditService",
                         "ConfigService", "StatsService"):
            svc = pool.FindServiceByName("norn.v1." + svc_name)
            for m in svc.methods:
                # Streams aside, and OpenSession, which would create a
                # session on this shared server.
                if m.client_streaming or m.server_streaming or m.name == "OpenSession":
                    continue
                with self.subTest(method=m.full_name):
                    call = self.channel.unary_unary("/%s/%s" % (svc.full_name, m.name))
                    try:
                        call(b"", timeout=RPC_TIMEOUT)
                    except grpc.RpcError as e:
                        self.assertNotIn(e.code(), (grpc.StatusCode.UNIMPLEMENTED,
                                                    grpc.StatusCode.UNKNOWN,
                                                    grpc.StatusCode.INTERNAL),
                                         "%s: %s" % (m.name, e.details()))
        stub = agent_service_pb2_grpc.AgentServiceStub(self.channel)
        self.assertRpcCode(
            lambda: stub.GetRun(agent_service_pb2.GetRunRequest(run_id="r1"), timeout=RPC_TIMEOUT),
            grpc.StatusCode.NOT_FOUND, "run_id")

    def test_unknown_method_unimplemented(self):
        for path in ("/norn.v1.SessionService/NoSuchMethod",
                     "/norn.v1.NoSuchService/GetStats",
                     "/grpc.health.v1.Health/NoSuchMethod"):
            with self.subTest(path=path):
                call = self.channel.unary_unary(path)
                self.assertRpcCode(lambda: call(b"", timeout=RPC_TIMEOUT),
                                   grpc.StatusCode.UNIMPLEMENTED, path)

    def test_every_norn_service_answers_generated_stub_calls(self):
        # One RPC per service whose empty request is valid: the server must
        # route it and answer a proper status. OK once implemented,
        # UNIMPLEMENTED until then; never UNKNOWN/INTERNAL/a hang.
        calls = {
            "SessionService.ListSessions": lambda: session_service_pb2_grpc.SessionServiceStub(
                self.channel).ListSessions(session_service_pb2.ListSessionsRequest(),
                                           timeout=RPC_TIMEOUT),
            "AgentService.ListAgents": lambda: agent_service_pb2_grpc.AgentServiceStub(
                self.channel).ListAgents(agent_service_pb2.ListAgentsRequest(),
                                         timeout=RPC_TIMEOUT),
            "SwarmService.ListSwarms": lambda: swarm_service_pb2_grpc.SwarmServiceStub(
                self.channel).ListSwarms(swarm_service_pb2.ListSwarmsRequest(),
                                         timeout=RPC_TIMEOUT),
            "AuditService.ListAuditEvents": lambda: audit_service_pb2_grpc.AuditServiceStub(
                self.channel).ListAuditEvents(audit_service_pb2.ListAuditEventsRequest(),
                                              timeout=RPC_TIMEOUT),
            "ConfigService.GetConfig": lambda: config_service_pb2_grpc.ConfigServiceStub(
                self.channel).GetConfig(config_service_pb2.GetConfigRequest(),
                                        timeout=RPC_TIMEOUT),
            "StatsService.GetStats": lambda: stats_service_pb2_grpc.StatsServiceStub(
                self.channel).GetStats(stats_service_pb2.GetStatsRequest(),
                                       timeout=RPC_TIMEOUT),
        }
        self.assertEqual(sorted("norn.v1." + k.split(".")[0] for k in calls),
                         sorted(NORN_SERVICES))
        for name, fn in calls.items():
            with self.subTest(rpc=name):
                self.assertIn(self.codeOf(fn),
                              (grpc.StatusCode.OK, grpc.StatusCode.UNIMPLEMENTED))

    def test_garbage_request_bytes_rejected(self):
        # Bytes that are not a valid protobuf message for the request type.
        call = self.channel.unary_unary("/grpc.health.v1.Health/Check")
        code = self.codeOf(lambda: call(b"\xff\xff\xff\xff", timeout=RPC_TIMEOUT))
        self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT)


# ---------------------------------------------------------------------------
# SIGTERM drain: a server per test.
# ---------------------------------------------------------------------------
class DrainTest(unittest.TestCase, RpcAssertions):
    def test_health_watch_sees_not_serving_then_unavailable_on_sigterm(self):
        n = start_nornd(self)
        health = health_pb2_grpc.HealthStub(n.channel())
        call = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
        first = next(call)
        self.assertEqual(first.status, SERVING, status_name(first.status))

        t0 = time.monotonic()
        n.send_signal()
        second = next(call)
        self.assertEqual(second.status, NOT_SERVING, status_name(second.status))
        with self.assertRaises(grpc.RpcError) as cm:
            extra = next(call)
            self.fail("unexpected message after NOT_SERVING: %s" % extra)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE,
                         cm.exception.details())
        # The watch stream is not a call "in flight" that deserves the grace
        # period: it must end promptly.
        self.assertLess(time.monotonic() - t0, 5.0, "watch took too long to end")

        rc = n.wait(timeout=20)
        self.assertEqual(rc, 0, "nornd exit status; log:\n" + n.log_text())

    def test_service_watch_sees_not_serving_on_sigterm(self):
        n = start_nornd(self)
        health = health_pb2_grpc.HealthStub(n.channel())
        call = health.Watch(health_pb2.HealthCheckRequest(service="norn.v1.SessionService"),
                            timeout=30)
        self.assertEqual(next(call).status, SERVING)
        n.send_signal()
        statuses = []
        with self.assertRaises(grpc.RpcError) as cm:
            for msg in call:
                statuses.append(msg.status)
        self.assertEqual(statuses, [NOT_SERVING], [status_name(s) for s in statuses])
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(n.wait(timeout=20), 0, n.log_text())

    def test_sigterm_idle_server_exits_zero_quickly(self):
        n = start_nornd(self)
        ch = n.channel()
        r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(),
                                                 timeout=RPC_TIMEOUT)
        self.assertEqual(r.status, SERVING)
        # Close first: an idle grpcio channel does not poll its socket, so it
        # would only answer the server's GOAWAY after ~5 s (client quirk).
        ch.close()
        t0 = time.monotonic()
        self.assertEqual(n.terminate(timeout=20), 0, n.log_text())
        self.assertLess(time.monotonic() - t0, 3.0, "idle drain should not wait for the grace")

    def test_drain_bounded_by_grace_when_client_is_silent(self):
        # The idle grpcio channel left open here does not react to GOAWAY for
        # seconds; nornd must not wait longer than --drain-grace-ms for it.
        n = start_nornd(self, args=["--drain-grace-ms", "300"])
        ch = n.channel()
        r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(),
                                                 timeout=RPC_TIMEOUT)
        self.assertEqual(r.status, SERVING)
        t0 = time.monotonic()
        self.assertEqual(n.terminate(timeout=20), 0, n.log_text())
        self.assertLess(time.monotonic() - t0, 3.0, "drain exceeded the grace; log:\n"
                        + n.log_text())


# ---------------------------------------------------------------------------
# API key
# ---------------------------------------------------------------------------
class ApiKeyTest(unittest.TestCase, RpcAssertions):
    @classmethod
    def setUpClass(cls):
        cls.nornd = start_nornd(cls, env={"NORN_API_KEY": API_KEY})
        cls.channel = cls.nornd.channel()
        cls.stats = stats_service_pb2_grpc.StatsServiceStub(cls.channel)

    def get_stats(self, metadata=None):
        return self.stats.GetStats(stats_service_pb2.GetStatsRequest(), metadata=metadata,
                                   timeout=RPC_TIMEOUT)

    def test_without_key_unauthenticated(self):
        self.assertRpcCode(lambda: self.get_stats(), grpc.StatusCode.UNAUTHENTICATED)

    def test_wrong_key_unauthenticated(self):
        cases = [
            ("authorization", "Bearer wrong-key"),
            ("x-api-key", "wrong-key"),
            ("authorization", "Bearer " + API_KEY[:-1]),  # prefix of the key
            ("authorization", "Bearer " + API_KEY + "x"),  # key plus one
            ("x-api-key", API_KEY[:-1]),
            ("authorization", API_KEY),  # no "Bearer " scheme
            ("authorization", "Bearer "),
            ("x-api-key", ""),
        ]
        for key, value in cases:
            with self.subTest(header=key, value=value):
                self.assertRpcCode(lambda: self.get_stats([(key, value)]),
                                   grpc.StatusCode.UNAUTHENTICATED)

    def test_right_key_passes_authentication(self):
        for md in ([("authorization", "Bearer " + API_KEY)], [("x-api-key", API_KEY)]):
            with self.subTest(metadata=md[0][0]):
                code = self.codeOf(lambda: self.get_stats(md))
                # Passed auth: GetStats itself answers (UNIMPLEMENTED for now).
                self.assertIn(code, (grpc.StatusCode.OK, grpc.StatusCode.UNIMPLEMENTED))

    def test_unknown_method_needs_key_too(self):
        call = self.channel.unary_unary("/norn.v1.SessionService/NoSuchMethod")
        self.assertRpcCode(lambda: call(b"", timeout=RPC_TIMEOUT),
                           grpc.StatusCode.UNAUTHENTICATED, "no key")
        self.assertRpcCode(lambda: call(b"", timeout=RPC_TIMEOUT,
                                        metadata=[("x-api-key", API_KEY)]),
                           grpc.StatusCode.UNIMPLEMENTED, "with key")

    def test_health_needs_no_key(self):
        health = health_pb2_grpc.HealthStub(self.channel)
        r = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=RPC_TIMEOUT)
        self.assertEqual(r.status, SERVING)
        call = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=RPC_TIMEOUT)
        try:
            self.assertEqual(next(call).status, SERVING)
        finally:
            call.cancel()

    def test_reflection_requires_key(self):
        stub = refl_v1alpha_grpc.ServerReflectionStub(self.channel)
        req = refl_v1alpha.ServerReflectionRequest(list_services="*")
        self.assertRpcCode(lambda: list(stub.ServerReflectionInfo(iter([req]),
                                                                  timeout=RPC_TIMEOUT)),
                           grpc.StatusCode.UNAUTHENTICATED)
        resps = list(stub.ServerReflectionInfo(iter([req]), timeout=RPC_TIMEOUT,
                                               metadata=[("authorization", "Bearer " + API_KEY)]))
        self.assertEqual(len(resps), 1)
        names = {s.name for s in resps[0].list_services_response.service}
        self.assertIn("norn.v1.SessionService", names)


class ApiKeyFileTest(unittest.TestCase, RpcAssertions):
    def test_api_key_file_with_trailing_newline(self):
        d = tempfile.mkdtemp(prefix="norn-py-key-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "key")
        with open(path, "w") as f:
            f.write(API_KEY + "\n")
        os.chmod(path, 0o600)
        n = start_nornd(self, args=["--api-key-file", path])
        stub = stats_service_pb2_grpc.StatsServiceStub(n.channel())
        req = stats_service_pb2.GetStatsRequest()
        self.assertRpcCode(lambda: stub.GetStats(req, timeout=RPC_TIMEOUT),
                           grpc.StatusCode.UNAUTHENTICATED)
        code = self.codeOf(lambda: stub.GetStats(req, timeout=RPC_TIMEOUT,
                                                 metadata=[("x-api-key", API_KEY)]))
        self.assertIn(code, (grpc.StatusCode.OK, grpc.StatusCode.UNIMPLEMENTED))


# ---------------------------------------------------------------------------
# Server reflection
# ---------------------------------------------------------------------------
def _topo_files(protos):
    """FileDescriptorProtos ordered so that dependencies come first."""
    by_name = {p.name: p for p in protos}
    out, seen = [], set()

    def visit(name):
        if name in seen or name not in by_name:
            return
        seen.add(name)
        for dep in by_name[name].dependency:
            visit(dep)
        out.append(by_name[name])

    for p in protos:
        visit(p.name)
    return out


def _message_class(pool, full_name):
    desc = pool.FindMessageTypeByName(full_name)
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)


class ReflectionTest(unittest.TestCase, RpcAssertions):
    V1ALPHA = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
    V1 = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"

    @classmethod
    def setUpClass(cls):
        cls.nornd = start_nornd(cls)
        cls.channel = cls.nornd.channel()
        cls.stub = refl_v1alpha_grpc.ServerReflectionStub(cls.channel)

    def roundtrip(self, *reqs):
        resps = list(self.stub.ServerReflectionInfo(iter(reqs), timeout=RPC_TIMEOUT))
        self.assertEqual(len(resps), len(reqs), "one response per request")
        for req, resp in zip(reqs, resps):
            self.assertEqual(resp.original_request, req)
        return resps

    def files_of(self, resp):
        self.assertEqual(resp.WhichOneof("message_response"), "file_descriptor_response",
                         str(resp.error_response))
        files = []
        for raw in resp.file_descriptor_response.file_descriptor_proto:
            fd = descriptor_pb2.FileDescriptorProto()
            fd.ParseFromString(raw)
            self.assertTrue(fd.name)
            files.append(fd)
        return files

    def test_list_services_v1alpha(self):
        (resp,) = self.roundtrip(refl_v1alpha.ServerReflectionRequest(list_services="*"))
        names = [s.name for s in resp.list_services_response.service]
        for svc in NORN_SERVICES + ["grpc.health.v1.Health",
                                    "grpc.reflection.v1alpha.ServerReflection",
                                    "grpc.reflection.v1.ServerReflection"]:
            self.assertIn(svc, names)
        self.assertEqual(len(names), len(set(names)), "duplicate service names")

    def test_list_services_v1_same_answer(self):
        # v1 and v1alpha messages are wire-identical: reuse the v1 classes on the v1 path.
        call = self.channel.stream_stream(
            self.V1, request_serializer=refl_v1.ServerReflectionRequest.SerializeToString,
            response_deserializer=refl_v1.ServerReflectionResponse.FromString)
        resps = list(call(iter([refl_v1.ServerReflectionRequest(list_services="*")]),
                          timeout=RPC_TIMEOUT))
        self.assertEqual(len(resps), 1)
        v1_names = sorted(s.name for s in resps[0].list_services_response.service)
        (alpha,) = self.roundtrip(refl_v1alpha.ServerReflectionRequest(list_services="*"))
        self.assertEqual(v1_names, sorted(s.name for s in alpha.list_services_response.service))
        self.assertIn("norn.v1.StatsService", v1_names)

    def test_file_containing_symbol_returns_file_and_dependencies(self):
        (resp,) = self.roundtrip(
            refl_v1alpha.ServerReflectionRequest(file_containing_symbol="norn.v1.SessionService"))
        files = self.files_of(resp)
        names = [f.name for f in files]
        self.assertEqual(names[0], "norn/v1/session_service.proto",
                         "the file that defines the symbol comes first")
        for dep in ("norn/v1/common.proto", "google/protobuf/timestamp.proto",
                    "google/protobuf/struct.proto"):
            self.assertIn(dep, names)
        self.assertEqual(len(names), len(set(names)), "duplicate files")
        # Transitively closed: every dependency of every returned file is returned.
        for f in files:
            for dep in f.dependency:
                self.assertIn(dep, names, "%s imports %s" % (f.name, dep))

        svc = [s for s in files[0].service if s.name == "SessionService"]
        self.assertEqual(len(svc), 1)
        methods = {m.name: m for m in svc[0].method}
        self.assertEqual(methods["OpenSession"].input_type, ".norn.v1.OpenSessionRequest")
        self.assertEqual(methods["OpenSession"].output_type, ".norn.v1.OpenSessionResponse")
        self.assertTrue(methods["Ingest"].client_streaming and methods["Ingest"].server_streaming)
        self.assertTrue(methods["WatchSessions"].server_streaming)
        self.assertFalse(methods["WatchSessions"].client_streaming)

        # The set builds a working pool, and the reflected request type has its fields.
        pool = descriptor_pool.DescriptorPool()
        for f in _topo_files(files):
            pool.Add(f)
        req = pool.FindMessageTypeByName("norn.v1.OpenSessionRequest")
        self.assertIn("session_id", req.fields_by_name)
        self.assertIn("agent_name", req.fields_by_name)
        self.assertEqual(pool.FindServiceByName("norn.v1.SessionService")
                         .FindMethodByName("OpenSession").input_type.full_name,
                         "norn.v1.OpenSessionRequest")

    def test_file_containing_symbol_message_and_method(self):
        for sym, file in (("norn.v1.OpenSessionRequest", "norn/v1/session_service.proto"),
                          ("norn.v1.SessionService.OpenSession",
                           "norn/v1/session_service.proto"),
                          ("norn.v1.GetStatsRequest", "norn/v1/stats_service.proto"),
                          ("grpc.health.v1.HealthCheckRequest", "grpc/health/v1/health.proto")):
            with self.subTest(symbol=sym):
                (resp,) = self.roundtrip(
                    refl_v1alpha.ServerReflectionRequest(file_containing_symbol=sym))
                self.assertEqual(self.files_of(resp)[0].name, file)

    def test_file_by_filename(self):
        (resp,) = self.roundtrip(
            refl_v1alpha.ServerReflectionRequest(file_by_filename="norn/v1/stats_service.proto"))
        files = self.files_of(resp)
        self.assertEqual(files[0].name, "norn/v1/stats_service.proto")
        self.assertEqual(files[0].package, "norn.v1")
        self.assertEqual([s.name for s in files[0].service], ["StatsService"])
        self.assertIn("norn/v1/common.proto", files[0].dependency)

    def test_unknown_symbol_and_file_not_found(self):
        reqs = (refl_v1alpha.ServerReflectionRequest(file_containing_symbol="norn.v1.Nope"),
                refl_v1alpha.ServerReflectionRequest(file_by_filename="norn/v1/nope.proto"))
        for resp in self.roundtrip(*reqs):
            self.assertEqual(resp.WhichOneof("message_response"), "error_response")
            self.assertEqual(resp.error_response.error_code, grpc.StatusCode.NOT_FOUND.value[0])

    def test_several_requests_on_one_stream_answered_in_order(self):
        reqs = (refl_v1alpha.ServerReflectionRequest(list_services="*"),
                refl_v1alpha.ServerReflectionRequest(file_containing_symbol="norn.v1.StatsService"),
                refl_v1alpha.ServerReflectionRequest(file_containing_symbol="norn.v1.Missing"),
                refl_v1alpha.ServerReflectionRequest(file_by_filename="norn/v1/common.proto"))
        resps = self.roundtrip(*reqs)
        kinds = [r.WhichOneof("message_response") for r in resps]
        self.assertEqual(kinds, ["list_services_response", "file_descriptor_response",
                                 "error_response", "file_descriptor_response"])

    def test_call_built_from_reflection_only(self):
        # A client with no .proto files: reflect Health, build the message
        # classes from the descriptors, and call Check.
        (resp,) = self.roundtrip(
            refl_v1alpha.ServerReflectionRequest(file_containing_symbol="grpc.health.v1.Health"))
        pool = descriptor_pool.DescriptorPool()
        for f in _topo_files(self.files_of(resp)):
            pool.Add(f)
        method = pool.FindServiceByName("grpc.health.v1.Health").FindMethodByName("Check")
        req_cls = _message_class(pool, method.input_type.full_name)
        resp_cls = _message_class(pool, method.output_type.full_name)
        call = self.channel.unary_unary("/grpc.health.v1.Health/Check",
                                        request_serializer=req_cls.SerializeToString,
                                        response_deserializer=resp_cls.FromString)
        r = call(req_cls(service=""), timeout=RPC_TIMEOUT)
        status_enum = method.output_type.fields_by_name["status"].enum_type
        self.assertEqual(status_enum.values_by_number[r.status].name, "SERVING")


if __name__ == "__main__":
    unittest.main()
