/*
 * test_server.c — the foundation end to end: a real nornd process, the
 * generated C client over real gRPC. Health Check/Watch, UNIMPLEMENTED for
 * unwritten and unknown methods, malformed and oversized requests, server
 * reflection over the bidi stream, graceful drain on SIGTERM (Health
 * watchers hear NOT_SERVING first), a busy port,
 * API keys, TLS and mTLS, and the norn CLI's exit codes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.grpc-c.h"
#include "grpc/reflection/v1/reflection.grpc-c.h"
#include "harness.h"
#include "norn/v1/agent_service.grpc-c.h"
#include "norn/v1/stats_service.grpc-c.h"
#include "util.h"

#define SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
#define NOT_SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING

static RpcChannel *open_plain(const char *target, const char *api_key)
{
    RpcChannelOptions o = {.api_key = api_key};
    char err[256];
    RpcChannel *ch = rpc_channel_open(target, &o, err, sizeof err);
    assert_non_null(ch);
    return ch;
}

static RpcCode health_check(RpcChannel *ch, const char *service, int *status_out)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)service;
    Grpc__Health__V1__HealthCheckResponse *resp = NULL;
    RpcCallOptions co = {.timeout_ms = 5000};
    RpcStatus st;
    RpcCode code = grpc__health__v1__health__check__call(ch, &req, &resp, &co, &st);
    if (resp) {
        *status_out = resp->status;
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    }
    rpc_status_clear(&st);
    return code;
}

static RpcCode get_stats(RpcChannel *ch, const RpcCallOptions *co, RpcStatus *st)
{
    Norn__V1__GetStatsRequest req = NORN__V1__GET_STATS_REQUEST__INIT;
    Norn__V1__GetStatsResponse *resp = NULL;
    RpcCode code = norn__v1__stats_service__get_stats__call(ch, &req, &resp, co, st);
    if (resp)
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    return code;
}

static void test_health_check(void **state)
{
    (void)state;
    NorndProc p;
    assert_int_equal(nornd_spawn(&p, NULL, NULL), 0);
    RpcChannel *ch = open_plain(p.target, NULL);
    int s = -1;
    assert_int_equal(health_check(ch, "", &s), RPC_OK);
    assert_int_equal(s, SERVING);
    s = -1;
    assert_int_equal(health_check(ch, "norn.v1.SessionService", &s), RPC_OK);
    assert_int_equal(s, SERVING);
    assert_int_equal(health_check(ch, "no.such.Service", &s), RPC_NOT_FOUND);
    rpc_channel_close(ch);
    assert_int_equal(nornd_stop(&p, SIGTERM), 0);
}

static void test_unimplemented_rpc(void **state)
{
    (void)state;
    NorndProc p;
    assert_int_equal(nornd_spawn(&p, NULL, NULL), 0);
    RpcChannel *ch = open_plain(p.target, NULL);
    RpcStatus st;
    RpcCallOptions co = {.timeout_ms = 5000};
    /* Every RPC of the API is served now: an unknown run is NOT_FOUND
     * through the generated stub, not UNIMPLEMENTED. */
    Norn__V1__GetRunRequest lreq = NORN__V1__GET_RUN_REQUEST__INIT;
    lreq.run_id = "r1";
    Norn__V1__GetRunResponse *lresp = NULL;
    assert_int_equal(norn__v1__agent_service__get_run__call(ch, &lreq, &lresp, &co, &st),
                     RPC_NOT_FOUND);
    assert_null(lresp);
    rpc_status_clear(&st);

    /* A method no service declares: the generic request answers it. */
    RpcMethod nope = norn__v1__stats_service__rpc.methods[0];
    nope.path = "/norn.v1.NoSuchService/Nothing";
    Norn__V1__GetStatsRequest req = NORN__V1__GET_STATS_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    assert_int_equal(rpc_unary(ch, &nope, &req.base, &resp, &co, &st), RPC_UNIMPLEMENTED);
    assert_null(resp);
    assert_non_null(st.message);
    assert_non_null(strstr(st.message, "/norn.v1.NoSuchService/Nothing"));
    rpc_status_clear(&st);
    rpc_channel_close(ch);
    assert_int_equal(nornd_stop(&p, SIGTERM), 0);
}

static void test_malformed_and_oversized_requests(void **state)
{
    (void)state;
    NorndProc p;
    assert_int_equal(nornd_spawn(&p, NULL, NULL), 0);
    RpcChannel *ch = open_plain(p.target, NULL);
    RpcCallOptions co = {.timeout_ms = 5000};
    RpcStatus st;
    ProtobufCMessage *resp = NULL;

    /* HealthCheckResponse{status: 1} is field 1 as a varint; Check expects
     * field 1 as a string: the server must refuse it, not guess. */
    RpcMethod check = grpc__health__v1__health__rpc.methods[0];
    check.input = &grpc__health__v1__health_check_response__descriptor;
    Grpc__Health__V1__HealthCheckResponse wrong = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    wrong.status = SERVING;
    assert_int_equal(rpc_unary(ch, &check, &wrong.base, &resp, &co, &st), RPC_INVALID_ARGUMENT);
    assert_non_null(strstr(st.message, "HealthCheckRequest"));
    rpc_status_clear(&st);

    /* Larger than the 4 MiB default message limit. */
    size_t big = 5u << 20;
    char *name = malloc(big + 1);
    assert_non_null(name);
    memset(name, 'x', big);
    name[big] = '\0';
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = name;
    Grpc__Health__V1__HealthCheckResponse *hr = NULL;
    assert_int_equal(grpc__health__v1__health__check__call(ch, &req, &hr, &co, &st),
                     RPC_RESOURCE_EXHAUSTED);
    rpc_status_clear(&st);
    free(name);

    /* The server is still fine afterwards. */
    int s = -1;
    assert_int_equal(health_check(ch, "", &s), RPC_OK);
    rpc_channel_close(ch);
    assert_int_equal(nornd_stop(&p, SIGTERM), 0);
}

static void test_reflection_over_bidi_stream(void **state)
{
    (void)state;
    NorndProc p;
    assert_int_equal(nornd_spawn(&p, NULL, NULL), 0);
    RpcChannel *ch = open_plain(p.target, NULL);
    RpcCallOptions co = {.timeout_ms = 5000};
    RpcClientCall *c =
        grpc__reflection__v1__server_reflection__server_reflection_info__start(ch, &co);
    assert_non_null(c);

    Grpc__Reflection__V1__ServerReflectionRequest req =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    req.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
    req.list_services = "";
    assert_int_equal(
        grpc__reflection__v1__server_reflection__server_reflection_info__write(c, &req), 0);
    Grpc__Reflection__V1__ServerReflectionResponse *resp = NULL;
    assert_int_equal(
        grpc__reflection__v1__server_reflection__server_reflection_info__read(c, &resp), 1);
    assert_int_equal(
        resp->message_response_case,
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE);
    int found_session = 0, found_health = 0;
    for (size_t i = 0; i < resp->list_services_response->n_service; i++) {
        const char *n = resp->list_services_response->service[i]->name;
        found_session |= strcmp(n, "norn.v1.SessionService") == 0;
        found_health |= strcmp(n, "grpc.health.v1.Health") == 0;
    }
    assert_true(found_session && found_health);
    protobuf_c_message_free_unpacked(&resp->base, NULL);

    /* A method's symbol resolves to its file plus dependencies. */
    req.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
    req.file_containing_symbol = "norn.v1.SessionService.OpenSession";
    assert_int_equal(
        grpc__reflection__v1__server_reflection__server_reflection_info__write(c, &req), 0);
    assert_int_equal(
        grpc__reflection__v1__server_reflection__server_reflection_info__read(c, &resp), 1);
    assert_int_equal(
        resp->message_response_case,
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE);
    assert_true(resp->file_descriptor_response->n_file_descriptor_proto >= 3);
    protobuf_c_message_free_unpacked(&resp->base, NULL);

    req.file_containing_symbol = "norn.v1.NoSuchThing";
    assert_int_equal(
        grpc__reflection__v1__server_reflection__server_reflection_info__write(c, &req), 0);
    assert_int_equal(
        grpc__reflection__v1__server_reflection__server_reflection_info__read(c, &resp), 1);
    assert_int_equal(
        resp->message_response_case,
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE);
    assert_int_equal(resp->error_response->error_code, RPC_NOT_FOUND);
    protobuf_c_message_free_unpacked(&resp->base, NULL);

    assert_int_equal(rpc_stream_writes_done(c), 0);
    RpcStatus st;
    assert_int_equal(rpc_stream_finish(c, &st), RPC_OK);
    rpc_status_clear(&st);
    rpc_channel_close(ch);
    assert_int_equal(nornd_stop(&p, SIGTERM), 0);
}

static void test_sigterm_ends_health_watch(void **state)
{
    (void)state;
    NorndProc p;
    assert_int_equal(nornd_spawn(&p, NULL, NULL), 0);
    RpcChannel *ch = open_plain(p.target, NULL);
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = "";
    RpcClientCall *c = grpc__health__v1__health__watch__start(ch, &req, NULL);
    assert_non_null(c);
    Grpc__Health__V1__HealthCheckResponse *msg = NULL;
    assert_int_equal(grpc__health__v1__health__watch__read(c, &msg), 1);
    assert_int_equal(msg->status, SERVING);
    protobuf_c_message_free_unpacked(&msg->base, NULL);

    /* Drain: the watcher hears NOT_SERVING, then the stream ends with
     * UNAVAILABLE, and nornd exits 0. */
    kill(p.pid, SIGTERM);
    assert_int_equal(grpc__health__v1__health__watch__read(c, &msg), 1);
    assert_int_equal(msg->status, NOT_SERVING);
    protobuf_c_message_free_unpacked(&msg->base, NULL);
    assert_int_equal(grpc__health__v1__health__watch__read(c, &msg), 0);
    RpcStatus st;
    assert_int_equal(rpc_stream_finish(c, &st), RPC_UNAVAILABLE);
    rpc_status_clear(&st);
    assert_int_equal(nornd_stop(&p, SIGTERM), 0);
    rpc_channel_close(ch);
}

/* A status change reaches every watcher of the service, on any connection,
 * exactly once; a watcher of an unknown service hears only that. */
static void test_drain_reaches_every_health_watcher(void **state)
{
    (void)state;
    enum { N = 8 };
    NorndProc p;
    assert_int_equal(nornd_spawn(&p, NULL, NULL), 0);
    RpcChannelOptions o1 = {.max_recv_bytes = (64u << 20) + 1}; /* a connection of its own */
    char err[256];
    RpcChannel *chs[2] = {open_plain(p.target, NULL),
                          rpc_channel_open(p.target, &o1, err, sizeof err)};
    assert_non_null(chs[1]);
    RpcClientCall *calls[N + 1];
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    Grpc__Health__V1__HealthCheckResponse *msg = NULL;
    for (int i = 0; i < N; i++) {
        req.service = i % 2 ? "norn.v1.SessionService" : "";
        calls[i] = grpc__health__v1__health__watch__start(chs[i / (N / 2)], &req, NULL);
        assert_non_null(calls[i]);
        assert_int_equal(grpc__health__v1__health__watch__read(calls[i], &msg), 1);
        assert_int_equal(msg->status, SERVING);
        protobuf_c_message_free_unpacked(&msg->base, NULL);
    }
    req.service = "no.such.Service";
    calls[N] = grpc__health__v1__health__watch__start(chs[0], &req, NULL);
    assert_int_equal(grpc__health__v1__health__watch__read(calls[N], &msg), 1);
    assert_int_equal(msg->status,
                     GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN);
    protobuf_c_message_free_unpacked(&msg->base, NULL);

    kill(p.pid, SIGTERM);
    for (int i = 0; i <= N; i++) {
        if (i < N) {
            assert_int_equal(grpc__health__v1__health__watch__read(calls[i], &msg), 1);
            assert_int_equal(msg->status, NOT_SERVING);
            protobuf_c_message_free_unpacked(&msg->base, NULL);
        }
        assert_int_equal(grpc__health__v1__health__watch__read(calls[i], &msg), 0);
        RpcStatus st;
        assert_int_equal(rpc_stream_finish(calls[i], &st), RPC_UNAVAILABLE);
        rpc_status_clear(&st);
    }
    assert_int_equal(nornd_stop(&p, SIGTERM), 0);
    rpc_channel_close(chs[0]);
    rpc_channel_close(chs[1]);
}

static void test_busy_port_is_an_error(void **state)
{
    (void)state;
    NorndProc p, q;
    assert_int_equal(nornd_spawn(&p, NULL, NULL), 0);
    const char *args[] = {"--listen", p.target, NULL};
    /* The second nornd must refuse to start: SO_REUSEPORT is off. The
     * harness passes --listen 127.0.0.1:0 first; ours comes later and wins. */
    assert_int_not_equal(nornd_spawn(&q, args, NULL), 0);
    char log[4096] = "";
    const char *cat[] = {"/bin/cat", q.log_path, NULL};
    run_capture(cat, log, sizeof log);
    assert_non_null(strstr(log, "already in use"));
    assert_int_equal(nornd_stop(&p, SIGTERM), 0);
}

static void test_api_key(void **state)
{
    (void)state;
    NorndProc p;
    const char *env[] = {"NORN_API_KEY=s3cret-key", NULL};
    assert_int_equal(nornd_spawn(&p, NULL, env), 0);
    RpcCallOptions co = {.timeout_ms = 5000};
    RpcStatus st;

    RpcChannel *none = open_plain(p.target, NULL);
    assert_int_equal(get_stats(none, &co, &st), RPC_UNAUTHENTICATED);
    rpc_status_clear(&st);
    int s = -1;
    assert_int_equal(health_check(none, "", &s), RPC_OK); /* Health stays open */
    assert_int_equal(s, SERVING);

    RpcChannel *wrong = open_plain(p.target, "s3cret-kez");
    assert_int_equal(get_stats(wrong, &co, &st), RPC_UNAUTHENTICATED);
    rpc_status_clear(&st);

    /* The right key passes the check and reaches the RPC. */
    RpcChannel *right = open_plain(p.target, "s3cret-key");
    assert_int_equal(get_stats(right, &co, &st), RPC_OK);
    rpc_status_clear(&st);

    RpcMetadata md = {"x-api-key", "s3cret-key"};
    RpcCallOptions with_header = {.timeout_ms = 5000, .metadata = &md, .n_metadata = 1};
    assert_int_equal(get_stats(none, &with_header, &st), RPC_OK);
    rpc_status_clear(&st);
    RpcMetadata md_short = {"x-api-key", "s3cret"};
    RpcCallOptions with_prefix = {.timeout_ms = 5000, .metadata = &md_short, .n_metadata = 1};
    assert_int_equal(get_stats(none, &with_prefix, &st), RPC_UNAUTHENTICATED);
    rpc_status_clear(&st);

    rpc_channel_close(none);
    rpc_channel_close(wrong);
    rpc_channel_close(right);
    assert_int_equal(nornd_stop(&p, SIGTERM), 0);
}

static void test_api_key_file(void **state)
{
    (void)state;
    char dir[256], path[300];
    assert_int_equal(make_scratch_dir(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/key", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("file-key-123\n", f);
    fclose(f);
    NorndProc p;
    const char *args[] = {"--api-key-file", path, NULL};
    assert_int_equal(nornd_spawn(&p, args, NULL), 0);
    RpcCallOptions co = {.timeout_ms = 5000};
    RpcStatus st;
    RpcChannel *right = open_plain(p.target, "file-key-123");
    assert_int_equal(get_stats(right, &co, &st), RPC_OK);
    rpc_status_clear(&st);
    RpcChannel *none = open_plain(p.target, NULL);
    assert_int_equal(get_stats(none, &co, &st), RPC_UNAUTHENTICATED);
    rpc_status_clear(&st);
    rpc_channel_close(right);
    rpc_channel_close(none);
    assert_int_equal(nornd_stop(&p, SIGTERM), 0);
}

static int make_certs(char *dir, size_t cap)
{
    if (make_scratch_dir(dir, cap) != 0)
        return -1;
    char script[512];
    snprintf(script, sizeof script, "%s/tests/integration/make-certs.sh", NORN_SOURCE_DIR);
    const char *argv[] = {"/bin/sh", script, dir, NULL};
    return run_capture(argv, NULL, 0);
}

static void test_tls(void **state)
{
    (void)state;
    char dir[256], cert[300], key[300], ca[300];
    assert_int_equal(make_certs(dir, sizeof dir), 0);
    snprintf(cert, sizeof cert, "%s/server.pem", dir);
    snprintf(key, sizeof key, "%s/server.key", dir);
    snprintf(ca, sizeof ca, "%s/ca.pem", dir);
    NorndProc p;
    const char *args[] = {"--tls-cert", cert, "--tls-key", key, NULL};
    assert_int_equal(nornd_spawn(&p, args, NULL), 0);

    RpcChannelOptions o = {.use_tls = 1, .tls_ca_file = ca, .tls_server_name = "localhost"};
    char err[256];
    RpcChannel *tls = rpc_channel_open(p.target, &o, err, sizeof err);
    assert_non_null(tls);
    int s = -1;
    assert_int_equal(health_check(tls, "", &s), RPC_OK);
    assert_int_equal(s, SERVING);
    rpc_channel_close(tls);

    /* Plaintext against a TLS port fails; it never reaches a handler. */
    RpcChannel *plain = open_plain(p.target, NULL);
    assert_int_equal(health_check(plain, "", &s), RPC_UNAVAILABLE);
    rpc_channel_close(plain);
    assert_int_equal(nornd_stop(&p, SIGTERM), 0);
}

static void test_mtls(void **state)
{
    (void)state;
    char dir[256], cert[300], key[300], ca[300], ccert[300], ckey[300];
    assert_int_equal(make_certs(dir, sizeof dir), 0);
    snprintf(cert, sizeof cert, "%s/server.pem", dir);
    snprintf(key, sizeof key, "%s/server.key", dir);
    snprintf(ca, sizeof ca, "%s/ca.pem", dir);
    snprintf(ccert, sizeof ccert, "%s/client.pem", dir);
    snprintf(ckey, sizeof ckey, "%s/client.key", dir);
    NorndProc p;
    const char *args[] = {"--tls-cert", cert, "--tls-key", key, "--tls-client-ca", ca, NULL};
    assert_int_equal(nornd_spawn(&p, args, NULL), 0);
    char err[256];
    int s = -1;

    RpcChannelOptions anon = {.use_tls = 1, .tls_ca_file = ca, .tls_server_name = "localhost"};
    RpcChannel *ch = rpc_channel_open(p.target, &anon, err, sizeof err);
    assert_non_null(ch);
    assert_int_not_equal(health_check(ch, "", &s), RPC_OK);
    rpc_channel_close(ch);

    RpcChannelOptions mutual = anon;
    mutual.tls_cert_file = ccert;
    mutual.tls_key_file = ckey;
    ch = rpc_channel_open(p.target, &mutual, err, sizeof err);
    assert_non_null(ch);
    assert_int_equal(health_check(ch, "", &s), RPC_OK);
    assert_int_equal(s, SERVING);
    rpc_channel_close(ch);
    assert_int_equal(nornd_stop(&p, SIGTERM), 0);
}

static void test_cli_exit_codes(void **state)
{
    (void)state;
    const char *cli = getenv("NORN_CLI");
    assert_non_null(cli);
    NorndProc p;
    assert_int_equal(nornd_spawn(&p, NULL, NULL), 0);
    char out[1024];
    const char *ok[] = {cli, "--server", p.target, "health", NULL};
    assert_int_equal(run_capture(ok, out, sizeof out), 0);
    assert_string_equal(out, "SERVING\n");
    const char *json[] = {cli,    "--server", p.target,    "-o",
                          "json", "health",   "--service", "norn.v1.StatsService",
                          NULL};
    assert_int_equal(run_capture(json, out, sizeof out), 0);
    assert_string_equal(out, "{\"service\":\"norn.v1.StatsService\",\"status\":\"SERVING\"}\n");
    const char *unknown[] = {cli, "--server", p.target, "health", "--service", "x.Y", NULL};
    assert_int_equal(run_capture(unknown, out, sizeof out), 4);
    const char *help[] = {cli, "--help", NULL};
    assert_int_equal(run_capture(help, out, sizeof out), 0);
    assert_non_null(strstr(out, "usage: norn"));
    const char *bad[] = {cli, "frobnicate", NULL};
    assert_int_equal(run_capture(bad, NULL, 0), 2);
    assert_int_equal(nornd_stop(&p, SIGTERM), 0);

    /* Nothing listens there any more. */
    const char *gone[] = {cli, "--server", p.target, "--timeout-ms", "1000", "health", NULL};
    assert_int_equal(run_capture(gone, NULL, 0), 3);
}

static void test_nornd_flags(void **state)
{
    (void)state;
    const char *bin = getenv("NORND");
    char out[4096];
    const char *help[] = {bin, "--help", NULL};
    assert_int_equal(run_capture(help, out, sizeof out), 0);
    assert_non_null(strstr(out, "--listen"));
    assert_non_null(strstr(out, "--data-dir"));
    const char *bad_threads[] = {bin, "--threads", "0", NULL};
    assert_int_equal(run_capture(bad_threads, NULL, 0), 2);
    const char *bad_level[] = {bin, "--log-level", "loud", NULL};
    assert_int_equal(run_capture(bad_level, NULL, 0), 2);
    const char *half_tls[] = {bin, "--tls-cert", "/nonexistent", NULL};
    assert_int_equal(run_capture(half_tls, NULL, 0), 2);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_check),
        cmocka_unit_test(test_unimplemented_rpc),
        cmocka_unit_test(test_malformed_and_oversized_requests),
        cmocka_unit_test(test_reflection_over_bidi_stream),
        cmocka_unit_test(test_sigterm_ends_health_watch),
        cmocka_unit_test(test_drain_reaches_every_health_watcher),
        cmocka_unit_test(test_busy_port_is_an_error),
        cmocka_unit_test(test_api_key),
        cmocka_unit_test(test_api_key_file),
        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_mtls),
        cmocka_unit_test(test_cli_exit_codes),
        cmocka_unit_test(test_nornd_flags),
    };
    return cmocka_run_group_tests_name("server", tests, NULL, NULL);
}
