/*
 * norn.c — the `norn` command-line client, on the generated stubs.
 *
 * Exit codes scripts can rely on:
 *   0  success (health: SERVING)
 *   1  the server answered with an error status
 *   2  usage error
 *   3  the server could not be reached (UNAVAILABLE, DEADLINE_EXCEEDED)
 *   4  health: NOT_SERVING (or the service is unknown)
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "grpc/health/v1/health.grpc-c.h"
#include "norn/v1/session_service.grpc-c.h"
#include "pbjson.h"
#include "rpc.h"

enum { EXIT_OK = 0, EXIT_RPC = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3, EXIT_NOT_SERVING = 4 };

typedef struct Globals {
    const char *server;
    RpcChannelOptions chan;
    int64_t timeout_ms;
    int json;
} Globals;

static void usage(FILE *out)
{
    fputs("usage: norn [global options] COMMAND [command options]\n"
          "\n"
          "Talks to a Norn server (nornd) over gRPC.\n"
          "\n"
          "commands:\n"
          "  health [--service NAME] [--watch]   ask the server's health (grpc.health.v1)\n"
          "  sessions list [filters]             sessions, newest first\n"
          "  sessions get ID [--steps] [--issues]  one session\n"
          "  sessions delete ID                  delete a session and all it owns\n"
          "  steps list SESSION_ID               the steps of a session, in order\n"
          "  watch [--session ID] [--agent NAME] [--from REV] [--steps]  live deltas\n"
          "  (each command has --help)\n"
          "\n"
          "global options:\n"
          "  --server ADDR        nornd address (NORN_SERVER, default 127.0.0.1:50051)\n"
          "  --api-key KEY        API key (NORN_API_KEY)\n"
          "  --tls                connect with TLS (system roots unless --ca-file)\n"
          "  --ca-file FILE       PEM roots that sign the server's certificate\n"
          "  --cert FILE          client certificate for mTLS (with --key)\n"
          "  --key FILE           client key for mTLS\n"
          "  --server-name NAME   name to check in the server's certificate\n"
          "  --timeout-ms N       deadline per call (default 10000; 0 = none)\n"
          "  -o, --output FORMAT  table (default) or json\n"
          "  -h, --help           this text\n"
          "\n"
          "exit codes: 0 ok, 1 error status from the server, 2 usage, 3 server unreachable,\n"
          "4 not serving\n",
          out);
}

static int exit_for(RpcCode code)
{
    if (code == RPC_OK)
        return EXIT_OK;
    if (code == RPC_UNAVAILABLE || code == RPC_DEADLINE_EXCEEDED)
        return EXIT_UNREACHABLE;
    return EXIT_RPC;
}

static int report_error(const char *what, const RpcStatus *st)
{
    fprintf(stderr, "norn: %s: %s: %s\n", what, rpc_code_name(st->code),
            st->message ? st->message : "");
    return exit_for(st->code);
}

static const char *serving_name(Grpc__Health__V1__HealthCheckResponse__ServingStatus s)
{
    switch (s) {
    case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING: return "SERVING";
    case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING: return "NOT_SERVING";
    case GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN:
        return "SERVICE_UNKNOWN";
    default: return "UNKNOWN";
    }
}

static void print_status(const Globals *g, const char *service,
                         Grpc__Health__V1__HealthCheckResponse__ServingStatus s)
{
    if (g->json)
        printf("{\"service\":\"%s\",\"status\":\"%s\"}\n", service, serving_name(s));
    else
        printf("%s\n", serving_name(s));
    fflush(stdout);
}

static int cmd_health(Globals *g, RpcChannel *ch, int argc, char **argv)
{
    static const struct option opts[] = {
        {"service", required_argument, NULL, 's'},
        {"watch", no_argument, NULL, 'w'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *service = "";
    int watch = 0, opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "s:wh", opts, NULL)) != -1) {
        switch (opt) {
        case 's': service = optarg; break;
        case 'w': watch = 1; break;
        case 'h':
            puts("usage: norn health [--service NAME] [--watch]\n"
                 "  Prints SERVING or NOT_SERVING for the server (or one service).\n"
                 "  --watch streams every change until the server goes away.");
            return EXIT_OK;
        default: return EXIT_USAGE;
        }
    }
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = (char *)service;
    RpcCallOptions co = {.timeout_ms = g->timeout_ms};
    RpcStatus st;
    if (!watch) {
        Grpc__Health__V1__HealthCheckResponse *resp = NULL;
        RpcCode code = grpc__health__v1__health__check__call(ch, &req, &resp, &co, &st);
        int rc;
        if (code == RPC_OK) {
            print_status(g, service, resp->status);
            rc = resp->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                     ? EXIT_OK
                     : EXIT_NOT_SERVING;
            protobuf_c_message_free_unpacked(&resp->base, NULL);
        } else if (code == RPC_NOT_FOUND) {
            print_status(g, service,
                         GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN);
            rc = EXIT_NOT_SERVING;
        } else {
            rc = report_error("health", &st);
        }
        rpc_status_clear(&st);
        return rc;
    }
    co.timeout_ms = 0; /* a watch lasts until the server ends it */
    RpcClientCall *c = grpc__health__v1__health__watch__start(ch, &req, &co);
    if (!c) {
        fprintf(stderr, "norn: health: cannot start the call\n");
        return EXIT_RPC;
    }
    Grpc__Health__V1__HealthCheckResponse *msg;
    int last = -1;
    while (grpc__health__v1__health__watch__read(c, &msg) == 1) {
        last = msg->status;
        print_status(g, service, msg->status);
        protobuf_c_message_free_unpacked(&msg->base, NULL);
    }
    RpcCode code = rpc_stream_finish(c, &st);
    int rc = report_error("health watch ended", &st);
    rpc_status_clear(&st);
    (void)code;
    /* A drain ends the stream with UNAVAILABLE after NOT_SERVING. */
    return last == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
               ? EXIT_NOT_SERVING
               : rc;
}

/* ---- sessions and steps ---------------------------------------------------- */

static void print_json(const ProtobufCMessage *m)
{
    json_t *j = pbjson_encode(m);
    char *s = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    if (s)
        puts(s);
    free(s);
    json_decref(j);
}

/* "QUALITY_GOOD" -> "GOOD": the table shows the part after the type prefix. */
static const char *short_enum(const ProtobufCEnumDescriptor *d, int v, const char *prefix)
{
    const char *n = pbjson_enum_name(d, v);
    size_t l = strlen(prefix);
    return strncmp(n, prefix, l) == 0 ? n + l : n;
}

static void format_time(const Google__Protobuf__Timestamp *ts, char *buf, size_t cap)
{
    if (!ts) {
        snprintf(buf, cap, "-");
        return;
    }
    time_t secs = (time_t)ts->seconds;
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(buf, cap, "%Y-%m-%d %H:%M:%S", &tm);
}

static int parse_enum(const ProtobufCEnumDescriptor *d, const char *prefix, const char *text,
                      int *out)
{
    char full[128];
    snprintf(full, sizeof full, "%s%s", prefix, text);
    for (char *p = full; *p; p++)
        *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value_by_name(d, full);
    if (!v || v->value == 0)
        return -1;
    *out = v->value;
    return 0;
}

static int parse_time(const char *text, Google__Protobuf__Timestamp *ts)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end)
        end = strptime(text, "%Y-%m-%d", &tm);
    if (!end || (*end && strcmp(end, "Z") != 0))
        return -1;
    google__protobuf__timestamp__init(ts);
    ts->seconds = (int64_t)timegm(&tm);
    return 0;
}

static void print_session_row(const Norn__V1__Session *s)
{
    char started[32];
    format_time(s->started_at, started, sizeof started);
    printf("%-28s %-20.20s %-10s %-9s %5u %6u  %s\n", s->session_id, s->agent_name,
           short_enum(&norn__v1__session_status__descriptor, s->status, "SESSION_STATUS_"),
           short_enum(&norn__v1__session_quality__descriptor, s->overall_quality, "QUALITY_"),
           s->total_steps, s->total_issues, started);
}

static int cmd_sessions_list(Globals *g, RpcChannel *ch, int argc, char **argv)
{
    static const struct option opts[] = {
        {"agent", required_argument, NULL, 'a'},
        {"swarm", required_argument, NULL, 'w'},
        {"status", required_argument, NULL, 's'},
        {"quality", required_argument, NULL, 'q'},
        {"after", required_argument, NULL, 'A'},
        {"before", required_argument, NULL, 'B'},
        {"page-size", required_argument, NULL, 'p'},
        {"limit", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    Norn__V1__ListSessionsRequest req = NORN__V1__LIST_SESSIONS_REQUEST__INIT;
    Google__Protobuf__Timestamp after, before;
    long limit = 50;
    int opt, v;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'a': req.agent_name = optarg; break;
        case 'w': req.swarm_id = optarg; break;
        case 's':
            if (parse_enum(&norn__v1__session_status__descriptor, "SESSION_STATUS_", optarg, &v)) {
                fprintf(stderr, "norn: --status must be active, completed or terminated\n");
                return EXIT_USAGE;
            }
            req.status = (Norn__V1__SessionStatus)v;
            break;
        case 'q':
            if (parse_enum(&norn__v1__session_quality__descriptor, "QUALITY_", optarg, &v)) {
                fprintf(stderr, "norn: --quality must be excellent, good, poor, failed, stuck or "
                                "pending\n");
                return EXIT_USAGE;
            }
            req.quality = (Norn__V1__SessionQuality)v;
            break;
        case 'A':
        case 'B':
            if (parse_time(optarg, opt == 'A' ? &after : &before)) {
                fprintf(stderr, "norn: times are YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)\n");
                return EXIT_USAGE;
            }
            if (opt == 'A')
                req.started_after = &after;
            else
                req.started_before = &before;
            break;
        case 'p': req.page_size = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'l': limit = strtol(optarg, NULL, 10); break;
        case 'h':
            puts("usage: norn sessions list [--agent NAME] [--swarm ID] [--status STATUS]\n"
                 "                          [--quality QUALITY] [--after TIME] [--before TIME]\n"
                 "                          [--page-size N] [--limit N]\n"
                 "  Sessions newest first; follows pages until --limit rows (default 50,\n"
                 "  0 = all). TIME is YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC).");
            return EXIT_OK;
        default: return EXIT_USAGE;
        }
    }
    if (!g->json)
        printf("%-28s %-20s %-10s %-9s %5s %6s  %s\n", "SESSION", "AGENT", "STATUS", "QUALITY",
               "STEPS", "ISSUES", "STARTED (UTC)");
    long shown = 0;
    char *token = NULL;
    int rc = EXIT_OK;
    json_t *all = g->json ? json_array() : NULL;
    for (;;) {
        req.page_token = token ? token : (char *)"";
        Norn__V1__ListSessionsResponse *resp = NULL;
        RpcCallOptions co = {.timeout_ms = g->timeout_ms};
        RpcStatus st;
        RpcCode code = norn__v1__session_service__list_sessions__call(ch, &req, &resp, &co, &st);
        if (code != RPC_OK) {
            rc = report_error("sessions list", &st);
            rpc_status_clear(&st);
            break;
        }
        rpc_status_clear(&st);
        for (size_t i = 0; i < resp->n_sessions && (limit == 0 || shown < limit); i++, shown++) {
            if (all)
                json_array_append_new(all, pbjson_encode(&resp->sessions[i]->base));
            else
                print_session_row(resp->sessions[i]);
        }
        free(token);
        token = resp->next_page_token[0] ? strdup(resp->next_page_token) : NULL;
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        if (!token || (limit && shown >= limit))
            break;
    }
    free(token);
    if (all) {
        char *s = json_dumps(all, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (s && rc == EXIT_OK)
            puts(s);
        free(s);
        json_decref(all);
    }
    return rc;
}

static int cmd_sessions_get(Globals *g, RpcChannel *ch, int argc, char **argv)
{
    static const struct option opts[] = {
        {"steps", no_argument, NULL, 's'},
        {"issues", no_argument, NULL, 'i'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    Norn__V1__GetSessionRequest req = NORN__V1__GET_SESSION_REQUEST__INIT;
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 's': req.include_steps = 1; break;
        case 'i': req.include_issues = 1; break;
        case 'h':
            puts("usage: norn sessions get ID [--steps] [--issues]\n"
                 "  One session, with its steps and issues when asked.");
            return EXIT_OK;
        default: return EXIT_USAGE;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "norn: sessions get needs one session id\n");
        return EXIT_USAGE;
    }
    req.session_id = argv[optind];
    Norn__V1__GetSessionResponse *resp = NULL;
    RpcCallOptions co = {.timeout_ms = g->timeout_ms};
    RpcStatus st;
    if (norn__v1__session_service__get_session__call(ch, &req, &resp, &co, &st) != RPC_OK) {
        int rc = report_error("sessions get", &st);
        rpc_status_clear(&st);
        return rc;
    }
    rpc_status_clear(&st);
    const Norn__V1__Session *s = resp->session;
    if (g->json || !s) {
        print_json(&resp->base);
    } else {
        char started[32], ended[32];
        format_time(s->started_at, started, sizeof started);
        format_time(s->ended_at, ended, sizeof ended);
        printf("session    %s\nagent      %s\nstatus     %s\nquality    %s\nsteps      %u\n"
               "issues     %u\nstarted    %s\nended      %s\nrevision   %llu\n",
               s->session_id, s->agent_name,
               short_enum(&norn__v1__session_status__descriptor, s->status, "SESSION_STATUS_"),
               short_enum(&norn__v1__session_quality__descriptor, s->overall_quality, "QUALITY_"),
               s->total_steps, s->total_issues, started, ended, (unsigned long long)s->revision);
        if (s->task && s->task->description[0])
            printf("task       %s\n", s->task->description);
        for (size_t i = 0; i < s->n_steps; i++)
            printf("  step %-4u %-24.24s %s\n", s->steps[i]->step_number, s->steps[i]->tool_name,
                   short_enum(&norn__v1__step_status__descriptor, s->steps[i]->status,
                              "STEP_STATUS_"));
        for (size_t i = 0; i < s->n_issues; i++)
            printf("  issue %-20s sev %-2d %s\n",
                   short_enum(&norn__v1__issue_type__descriptor, s->issues[i]->issue_type,
                              "ISSUE_TYPE_"),
                   s->issues[i]->severity, s->issues[i]->description);
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return EXIT_OK;
}

static int cmd_sessions_delete(Globals *g, RpcChannel *ch, int argc, char **argv)
{
    if (argc != 2 || strcmp(argv[1], "--help") == 0) {
        puts("usage: norn sessions delete ID\n"
             "  Deletes the session with its steps, issues, audit events and index rows.");
        return argc == 2 ? EXIT_OK : EXIT_USAGE;
    }
    Norn__V1__DeleteSessionRequest req = NORN__V1__DELETE_SESSION_REQUEST__INIT;
    req.session_id = argv[1];
    Norn__V1__DeleteSessionResponse *resp = NULL;
    RpcCallOptions co = {.timeout_ms = g->timeout_ms};
    RpcStatus st;
    if (norn__v1__session_service__delete_session__call(ch, &req, &resp, &co, &st) != RPC_OK) {
        int rc = report_error("sessions delete", &st);
        rpc_status_clear(&st);
        return rc;
    }
    rpc_status_clear(&st);
    if (g->json)
        print_json(&resp->base);
    else
        printf("deleted %s (revision %llu)\n", argv[1], (unsigned long long)resp->revision);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return EXIT_OK;
}

static int cmd_steps_list(Globals *g, RpcChannel *ch, int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-') {
        puts("usage: norn steps list SESSION_ID\n  Every step of the session, in order.");
        return argc == 2 && strcmp(argv[1], "--help") == 0 ? EXIT_OK : EXIT_USAGE;
    }
    Norn__V1__ListStepsRequest req = NORN__V1__LIST_STEPS_REQUEST__INIT;
    req.session_id = argv[1];
    req.page_size = 500;
    char *token = NULL;
    json_t *all = g->json ? json_array() : NULL;
    int rc = EXIT_OK;
    if (!all)
        printf("%-5s %-24s %-11s %-9s %10s\n", "STEP", "TOOL", "STATUS", "RESULT", "MS");
    for (;;) {
        req.page_token = token ? token : (char *)"";
        Norn__V1__ListStepsResponse *resp = NULL;
        RpcCallOptions co = {.timeout_ms = g->timeout_ms};
        RpcStatus st;
        if (norn__v1__session_service__list_steps__call(ch, &req, &resp, &co, &st) != RPC_OK) {
            rc = report_error("steps list", &st);
            rpc_status_clear(&st);
            break;
        }
        rpc_status_clear(&st);
        for (size_t i = 0; i < resp->n_steps; i++) {
            const Norn__V1__Step *s = resp->steps[i];
            if (all)
                json_array_append_new(all, pbjson_encode(&s->base));
            else
                printf("%-5u %-24.24s %-11s %-9s %10.1f\n", s->step_number, s->tool_name,
                       short_enum(&norn__v1__step_status__descriptor, s->status, "STEP_STATUS_"),
                       short_enum(&norn__v1__result_status__descriptor, s->result_status,
                                  "RESULT_STATUS_"),
                       s->execution_time_ms);
        }
        free(token);
        token = resp->next_page_token[0] ? strdup(resp->next_page_token) : NULL;
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        if (!token)
            break;
    }
    free(token);
    if (all) {
        char *s = json_dumps(all, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (s && rc == EXIT_OK)
            puts(s);
        free(s);
        json_decref(all);
    }
    return rc;
}

/* ---- watch ------------------------------------------------------------------- */

static void print_watch_line(const Globals *g, const Norn__V1__WatchSessionsResponse *m)
{
    if (g->json) {
        json_t *j = pbjson_encode(&m->base);
        char *s = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        if (s)
            puts(s);
        free(s);
        json_decref(j);
    } else if (m->event_case == NORN__V1__WATCH_SESSIONS_RESPONSE__EVENT_DELTA) {
        const Norn__V1__SessionDelta *d = m->delta;
        const Norn__V1__Session *s = d->session;
        printf(
            "%-8llu %-13s %-28s %-16.16s %-10s %-9s steps=%u issues=%u",
            (unsigned long long)d->revision,
            short_enum(&norn__v1__delta_kind__descriptor, d->kind, "DELTA_KIND_"),
            s ? s->session_id : "-", s ? s->agent_name : "-",
            s ? short_enum(&norn__v1__session_status__descriptor, s->status, "SESSION_STATUS_")
              : "-",
            s ? short_enum(&norn__v1__session_quality__descriptor, s->overall_quality, "QUALITY_")
              : "-",
            s ? s->total_steps : 0, s ? s->total_issues : 0);
        for (size_t i = 0; i < d->n_steps; i++)
            printf(" [%u %s %s]", d->steps[i]->step_number, d->steps[i]->tool_name,
                   short_enum(&norn__v1__step_status__descriptor, d->steps[i]->status,
                              "STEP_STATUS_"));
        putchar('\n');
    } else if (m->event_case == NORN__V1__WATCH_SESSIONS_RESPONSE__EVENT_INITIAL) {
        printf("initial  %-28s %-16.16s revision=%llu\n", m->initial->session_id,
               m->initial->agent_name, (unsigned long long)m->initial->revision);
    } else if (m->event_case == NORN__V1__WATCH_SESSIONS_RESPONSE__EVENT_INITIAL_END) {
        printf("-- snapshot complete at revision %llu --\n",
               (unsigned long long)m->initial_end->revision);
    }
    fflush(stdout);
}

/* Streams deltas; after UNAVAILABLE (server restart, drain) or
 * RESOURCE_EXHAUSTED (we fell behind) it resumes from the revision after the
 * last one seen, so nothing is missed or repeated. */
static int cmd_watch(Globals *g, RpcChannel *ch, int argc, char **argv)
{
    static const struct option opts[] = {
        {"session", required_argument, NULL, 's'},
        {"agent", required_argument, NULL, 'a'},
        {"swarm", required_argument, NULL, 'w'},
        {"from", required_argument, NULL, 'f'},
        {"steps", no_argument, NULL, 'S'},
        {"initial", no_argument, NULL, 'i'},
        {"count", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    Norn__V1__WatchSessionsRequest req = NORN__V1__WATCH_SESSIONS_REQUEST__INIT;
    char *ids[100];
    long count = 0;
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 's':
            if (req.n_session_ids == 100) {
                fprintf(stderr, "norn: at most 100 --session\n");
                return EXIT_USAGE;
            }
            ids[req.n_session_ids++] = optarg;
            break;
        case 'a': req.agent_name = optarg; break;
        case 'w': req.swarm_id = optarg; break;
        case 'f': req.start_revision = strtoull(optarg, NULL, 10); break;
        case 'S': req.include_steps = 1; break;
        case 'i': req.send_initial = 1; break;
        case 'c': count = strtol(optarg, NULL, 10); break;
        case 'h':
            puts("usage: norn watch [--session ID]... [--agent NAME] [--swarm ID] [--from REV]\n"
                 "                  [--steps] [--initial] [--count N]\n"
                 "  Prints session deltas as they are committed, one line each (-o json for\n"
                 "  JSON lines). --from replays from a revision; --initial sends the current\n"
                 "  sessions first; --count stops after N deltas. Resumes by itself after\n"
                 "  UNAVAILABLE or RESOURCE_EXHAUSTED from the last revision seen.");
            return EXIT_OK;
        default: return EXIT_USAGE;
        }
    }
    req.session_ids = ids;
    req.progress_interval_ms = 10000;
    uint64_t last = 0;
    long seen = 0;
    int retries = 0;
    for (;;) {
        if (last) {
            req.start_revision = last + 1;
            req.send_initial = 0;
        }
        RpcCallOptions co = {0};
        RpcClientCall *c = norn__v1__session_service__watch_sessions__start(ch, &req, &co);
        if (!c) {
            fprintf(stderr, "norn: watch: cannot start the call\n");
            return EXIT_RPC;
        }
        Norn__V1__WatchSessionsResponse *m;
        while (norn__v1__session_service__watch_sessions__read(c, &m) == 1) {
            retries = 0;
            if (m->event_case == NORN__V1__WATCH_SESSIONS_RESPONSE__EVENT_DELTA)
                last = m->delta->revision;
            else if (m->event_case == NORN__V1__WATCH_SESSIONS_RESPONSE__EVENT_INITIAL_END)
                last = m->initial_end->revision;
            else if (m->event_case == NORN__V1__WATCH_SESSIONS_RESPONSE__EVENT_PROGRESS &&
                     m->progress->revision > last)
                last = m->progress->revision;
            if (m->event_case != NORN__V1__WATCH_SESSIONS_RESPONSE__EVENT_PROGRESS)
                print_watch_line(g, m);
            int is_delta = m->event_case == NORN__V1__WATCH_SESSIONS_RESPONSE__EVENT_DELTA;
            protobuf_c_message_free_unpacked(&m->base, NULL);
            if (is_delta && count && ++seen >= count) {
                rpc_stream_cancel(c);
                RpcStatus st;
                rpc_stream_finish(c, &st);
                rpc_status_clear(&st);
                return EXIT_OK;
            }
        }
        RpcStatus st;
        RpcCode code = rpc_stream_finish(c, &st);
        const char *resume = rpc_status_trailer(&st, "norn-resume-revision");
        if (code == RPC_RESOURCE_EXHAUSTED && resume)
            last = strtoull(resume, NULL, 10) - 1;
        if ((code == RPC_UNAVAILABLE || code == RPC_RESOURCE_EXHAUSTED) && retries < 30) {
            fprintf(stderr, "norn: watch: %s (%s); resuming from revision %llu\n",
                    rpc_code_name(code), st.message ? st.message : "",
                    (unsigned long long)last + 1);
            rpc_status_clear(&st);
            struct timespec ts = {0, 200000000L * (retries < 5 ? retries + 1 : 5)};
            nanosleep(&ts, NULL);
            retries++;
            continue;
        }
        int rc = report_error("watch", &st);
        rpc_status_clear(&st);
        return rc;
    }
}

typedef struct Command {
    const char *group, *verb;
    int (*run)(Globals *g, RpcChannel *ch, int argc, char **argv);
} Command;

static const Command commands[] = {
    {"health", NULL, cmd_health},          {"sessions", "list", cmd_sessions_list},
    {"sessions", "get", cmd_sessions_get}, {"sessions", "delete", cmd_sessions_delete},
    {"steps", "list", cmd_steps_list},     {"watch", NULL, cmd_watch},
};

int main(int argc, char **argv)
{
    Globals g;
    memset(&g, 0, sizeof g);
    g.server = getenv("NORN_SERVER") ? getenv("NORN_SERVER") : "127.0.0.1:50051";
    g.chan.api_key = getenv("NORN_API_KEY");
    g.timeout_ms = 10000;
    static const struct option opts[] = {
        {"server", required_argument, NULL, 'S'},
        {"api-key", required_argument, NULL, 'k'},
        {"tls", no_argument, NULL, 'T'},
        {"ca-file", required_argument, NULL, 'C'},
        {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'K'},
        {"server-name", required_argument, NULL, 'N'},
        {"timeout-ms", required_argument, NULL, 't'},
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    /* '+' stops at the command word so command options stay its own. */
    while ((opt = getopt_long(argc, argv, "+o:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'S': g.server = optarg; break;
        case 'k': g.chan.api_key = optarg; break;
        case 'T': g.chan.use_tls = 1; break;
        case 'C':
            g.chan.tls_ca_file = optarg;
            g.chan.use_tls = 1;
            break;
        case 'c': g.chan.tls_cert_file = optarg; break;
        case 'K': g.chan.tls_key_file = optarg; break;
        case 'N': g.chan.tls_server_name = optarg; break;
        case 't': {
            char *end;
            errno = 0;
            long long v = strtoll(optarg, &end, 10);
            if (errno || *end || v < 0) {
                fprintf(stderr, "norn: --timeout-ms must be a whole number >= 0\n");
                return EXIT_USAGE;
            }
            g.timeout_ms = v;
            break;
        }
        case 'o':
            if (strcmp(optarg, "json") == 0)
                g.json = 1;
            else if (strcmp(optarg, "table") != 0) {
                fprintf(stderr, "norn: --output must be table or json\n");
                return EXIT_USAGE;
            }
            break;
        case 'h': usage(stdout); return EXIT_OK;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[optind];
    if (strcmp(cmd, "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    const Command *found = NULL;
    int shift = 1;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0] && !found; i++) {
        if (strcmp(commands[i].group, cmd) != 0)
            continue;
        if (!commands[i].verb)
            found = &commands[i];
        else if (optind + 1 < argc && strcmp(commands[i].verb, argv[optind + 1]) == 0) {
            found = &commands[i];
            shift = 2;
        }
    }
    if (!found) {
        fprintf(stderr, "norn: unknown command '%s%s%s' (see norn --help)\n", cmd,
                optind + 1 < argc ? " " : "", optind + 1 < argc ? argv[optind + 1] : "");
        return EXIT_USAGE;
    }
    char err[256];
    RpcChannel *ch = rpc_channel_open(g.server, &g.chan, err, sizeof err);
    if (!ch) {
        fprintf(stderr, "norn: %s\n", err);
        return EXIT_USAGE;
    }
    /* The command sees its own words: argv[0] is its verb. */
    int rc = found->run(&g, ch, argc - optind - shift + 1, argv + optind + shift - 1);
    rpc_channel_close(ch);
    return rc;
}
