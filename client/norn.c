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
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "grpc/health/v1/health.grpc-c.h"
#include "norn/v1/agent_service.grpc-c.h"
#include "norn/v1/audit_service.grpc-c.h"
#include "norn/v1/config_service.grpc-c.h"
#include "norn/v1/session_service.grpc-c.h"
#include "norn/v1/stats_service.grpc-c.h"
#include "norn/v1/swarm_service.grpc-c.h"
#include "pbjson.h"
#include "rpc.h"

enum { EXIT_OK = 0, EXIT_RPC = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3, EXIT_NOT_SERVING = 4 };

/* Rows a list command shows unless --limit says otherwise (0 = all). */
#define DEFAULT_LIMIT 50
/* The largest page_size the servers accept. */
#define MAX_PAGE 1000

typedef struct Globals {
    const char *server;
    RpcChannelOptions chan;
    int64_t timeout_ms;
    int timeout_given; /* --timeout-ms was on the command line */
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
          "  agents list [--source SOURCE]       registered agents\n"
          "  agents get ID                       one agent with its discovery report\n"
          "  agents register NAME [--task TEXT] [--source-file F]  register a hook agent\n"
          "  agents import URL [--ref R] [--subdir D] [--name N] [--main-file F]\n"
          "                                      clone a git repository and register its agent\n"
          "  agents delete ID [--with-sessions]  delete an agent (and its sessions)\n"
          "  run AGENT_ID [--task T] [--timeout S] [--guard MODE] [--follow]\n"
          "                                      run an imported agent (--follow: its deltas)\n"
          "  runs list [--agent ID] [--state S]  runs, newest first\n"
          "  runs get RUN_ID | runs cancel RUN_ID  one run; cancel a queued or running run\n"
          "  swarms list                         swarms, newest first\n"
          "  swarms get ID [--sessions]          members, hand-offs and alignment\n"
          "  swarms analyze ID [--refresh]       the AI pipeline analysis (cached)\n"
          "  swarms delete ID                    delete every member session\n"
          "  audit list [filters]                the audit trail, newest first\n"
          "  audit delete EVENT_ID               delete one audit event\n"
          "  config get                          the server's settings, name = value\n"
          "  config set KEY=VALUE...             change settings\n"
          "  stats                               dashboard figures\n"
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

/* The outcome of a unary call as an exit code: EXIT_OK, or the error
 * reported. Clears st either way. */
static int call_result(const char *what, RpcCode code, RpcStatus *st)
{
    int rc = code == RPC_OK ? EXIT_OK : report_error(what, st);
    rpc_status_clear(st);
    return rc;
}

static RpcCallOptions call_options(const Globals *g)
{
    RpcCallOptions co = {.timeout_ms = g->timeout_ms};
    return co;
}

/* ---- option and operand parsing ----------------------------------------- */

/* Starts getopt_long over a command's own words. optind = 0 makes glibc
 * start afresh: main's "+" (stop at the first operand) must not stick, so
 * options may follow operands ("agents delete ID --with-sessions"). */
static void options_begin(void)
{
    optind = 0;
}

/* After the options: exactly n operands, else a usage error naming them. */
static int need_operands(int argc, int n, const char *cmd, const char *what)
{
    if (argc - optind == n)
        return 0;
    fprintf(stderr, "norn: %s needs %s (see norn %s --help)\n", cmd, what, cmd);
    return -1;
}

/* Parses the options of a command whose only option is --help. Returns
 * -1 to go on (operands from optind), else the exit code. */
static int help_only(int argc, char **argv, const char *help)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    options_begin();
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (opt != 'h')
            return EXIT_USAGE;
        puts(help);
        return EXIT_OK;
    }
    return -1;
}

/* A whole number 0..max in decimal digits only (strtoull alone would take
 * "-1", " 7" or "7x"). */
static int parse_uint(const char *text, uint64_t max, uint64_t *out)
{
    if (!*text)
        return -1;
    for (const char *p = text; *p; p++)
        if (*p < '0' || *p > '9')
            return -1;
    errno = 0;
    unsigned long long v = strtoull(text, NULL, 10);
    if (errno == ERANGE || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_int(const char *text, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (!(*text == '-' || (*text >= '0' && *text <= '9')) || *end || errno == ERANGE || v < min ||
        v > max)
        return -1;
    *out = v;
    return 0;
}

static int bad_value(const char *what, const char *text, const char *expected)
{
    fprintf(stderr, "norn: %s must be %s (got '%s')\n", what, expected, text);
    return -1;
}

/* --limit and friends: 0..max, or a usage message. */
static int count_option(const char *what, const char *text, uint64_t max, long *out)
{
    uint64_t v;
    if (parse_uint(text, max, &v)) {
        char expected[64];
        snprintf(expected, sizeof expected, "a whole number from 0 to %llu",
                 (unsigned long long)max);
        return bad_value(what, text, expected);
    }
    *out = (long)v;
    return 0;
}

/* ---- enums ------------------------------------------------------------------ */

/* Every norn.v1 enum names its zero value <PREFIX>UNSPECIFIED; the part
 * before UNSPECIFIED ("QUALITY_") is the prefix the short names drop. */
static size_t enum_prefix(const ProtobufCEnumDescriptor *d, const char **prefix)
{
    static const char tail[] = "UNSPECIFIED";
    const ProtobufCEnumValue *zero = protobuf_c_enum_descriptor_get_value(d, 0);
    size_t n = zero ? strlen(zero->name) : 0, t = sizeof tail - 1;
    if (n < t || strcmp(zero->name + n - t, tail) != 0)
        return 0;
    *prefix = zero->name;
    return n - t;
}

/* QUALITY_GOOD -> "GOOD": tables show the part after the type prefix. */
static const char *short_enum(const ProtobufCEnumDescriptor *d, int v)
{
    const char *name = pbjson_enum_name(d, v), *prefix = "";
    size_t l = enum_prefix(d, &prefix);
    return strncmp(name, prefix, l) == 0 ? name + l : name;
}

/* Short ("enforce") or full ("GUARD_MODE_ENFORCE") name, any case; the
 * zero value is not a choice. */
static int parse_enum(const ProtobufCEnumDescriptor *d, const char *text, int *out)
{
    char full[128];
    const char *prefix = "";
    size_t l = enum_prefix(d, &prefix);
    for (int pass = 0; pass < 2; pass++) {
        int n = snprintf(full, sizeof full, "%.*s%s", pass ? (int)l : 0, prefix, text);
        if (n < 0 || (size_t)n >= sizeof full)
            return -1;
        for (char *p = full; *p; p++)
            *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
        const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value_by_name(d, full);
        if (v && v->value != 0) {
            *out = v->value;
            return 0;
        }
    }
    return -1;
}

/* parse_enum, or a message listing the choices ("monitor, intervene or
 * enforce"). */
static int enum_option(const ProtobufCEnumDescriptor *d, const char *what, const char *text,
                       int *out)
{
    if (parse_enum(d, text, out) == 0)
        return 0;
    char choices[512] = "";
    size_t len = 0;
    unsigned shown = 0, total = d->n_values - (protobuf_c_enum_descriptor_get_value(d, 0) != NULL);
    for (unsigned i = 0; i < d->n_values && len < sizeof choices; i++) {
        if (d->values[i].value == 0)
            continue;
        shown++;
        const char *sep = shown == 1 ? "" : shown == total ? " or " : ", ";
        len += (size_t)snprintf(choices + len, sizeof choices - len, "%s", sep);
        for (const char *p = short_enum(d, d->values[i].value); *p && len + 1 < sizeof choices; p++)
            choices[len++] = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
        choices[len] = '\0';
    }
    return bad_value(what, text, choices);
}

/* ---- times ------------------------------------------------------------------ */

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

static int time_option(const char *what, const char *text, Google__Protobuf__Timestamp *ts)
{
    if (parse_time(text, ts) == 0)
        return 0;
    return bad_value(what, text, "YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)");
}

/* ---- output ------------------------------------------------------------------ */

#define JSON_PRETTY (JSON_INDENT(2) | JSON_PRESERVE_ORDER)

/* Prints and releases j (NULL prints nothing). */
static void emit_json(json_t *j, size_t flags)
{
    char *s = j ? json_dumps(j, flags) : NULL;
    if (s)
        puts(s);
    free(s);
    json_decref(j);
}

static void print_json(const ProtobufCMessage *m)
{
    emit_json(pbjson_encode(m), JSON_PRETTY);
}

/* One "label      value" line of a detail view. */
static void kv(const char *label, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void kv(const char *label, const char *fmt, ...)
{
    va_list ap;
    printf("%-10s ", label);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

static void kv_time(const char *label, const Google__Protobuf__Timestamp *ts)
{
    char buf[32];
    format_time(ts, buf, sizeof buf);
    kv(label, "%s", buf);
}

/* ---- paging ------------------------------------------------------------------ */

/* A List RPC followed page by page. Requests have page_token (and most
 * page_size); responses have a repeated field of items and
 * next_page_token — the descriptors find them, so one loop serves every
 * list. */
typedef struct Pager {
    const char *what; /* "agents list", for messages */
    const RpcMethod *method;
    ProtobufCMessage *req; /* its page_token is set here */
    const char *items;     /* the response's repeated field */
    /* Prints one table row; row(NULL) prints the header. */
    void (*row)(const ProtobufCMessage *item);
    long limit; /* rows at most; 0 = all */
} Pager;

static const ProtobufCFieldDescriptor *field_named(const ProtobufCMessageDescriptor *d,
                                                   const char *name)
{
    return protobuf_c_message_descriptor_get_field_by_name(d, name);
}

static void *field_at(const void *m, const ProtobufCFieldDescriptor *f)
{
    return (char *)m + f->offset;
}

/* Prints the rows (a table, or one JSON array at the end) until the pages
 * or the limit run out. */
static int list_pages(const Globals *g, RpcChannel *ch, const Pager *p)
{
    const ProtobufCMessageDescriptor *in = p->req->descriptor, *out = p->method->output;
    const ProtobufCFieldDescriptor *items = field_named(out, p->items);
    const ProtobufCFieldDescriptor *next_f = field_named(out, "next_page_token");
    const ProtobufCFieldDescriptor *size_f = field_named(in, "page_size");
    char **req_token = field_at(p->req, field_named(in, "page_token"));
    uint32_t *page_size = size_f ? field_at(p->req, size_f) : NULL;
    if (page_size && !*page_size && p->limit > 0 && p->limit <= MAX_PAGE)
        *page_size = (uint32_t)p->limit; /* no more than will be shown */
    json_t *all = g->json ? json_array() : NULL;
    char *token = NULL;
    long shown = 0;
    int rc;
    for (;;) {
        *req_token = token ? token : (char *)"";
        ProtobufCMessage *resp = NULL;
        RpcCallOptions co = call_options(g);
        RpcStatus st;
        rc = call_result(p->what, rpc_unary(ch, p->method, p->req, &resp, &co, &st), &st);
        if (rc != EXIT_OK)
            break;
        if (!all && !token)
            p->row(NULL);
        size_t n = *(const size_t *)((const char *)resp + items->quantifier_offset);
        ProtobufCMessage *const *item = *(ProtobufCMessage *const *const *)field_at(resp, items);
        for (size_t i = 0; i < n && (!p->limit || shown < p->limit); i++, shown++) {
            if (all)
                json_array_append_new(all, pbjson_encode(item[i]));
            else
                p->row(item[i]);
        }
        const char *next = *(char *const *)field_at(resp, next_f);
        /* A token that does not move would loop forever. */
        int more = next[0] && (!p->limit || shown < p->limit) && !(token && !strcmp(token, next));
        free(token);
        token = more ? strdup(next) : NULL;
        protobuf_c_message_free_unpacked(resp, NULL);
        if (more && !token) {
            fprintf(stderr, "norn: %s: out of memory\n", p->what);
            rc = EXIT_RPC;
        }
        if (!token)
            break;
    }
    free(token);
    *req_token = (char *)"";
    if (all && rc == EXIT_OK)
        emit_json(all, JSON_PRETTY);
    else
        json_decref(all);
    return rc;
}

/* ---- health ------------------------------------------------------------------ */

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
    options_begin();
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
    RpcCallOptions co = call_options(g);
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

static void session_row(const ProtobufCMessage *m)
{
    if (!m) {
        printf("%-28s %-20s %-10s %-9s %5s %6s  %s\n", "SESSION", "AGENT", "STATUS", "QUALITY",
               "STEPS", "ISSUES", "STARTED (UTC)");
        return;
    }
    const Norn__V1__Session *s = (const Norn__V1__Session *)m;
    char started[32];
    format_time(s->started_at, started, sizeof started);
    printf("%-28s %-20.20s %-10s %-9s %5u %6u  %s\n", s->session_id, s->agent_name,
           short_enum(&norn__v1__session_status__descriptor, s->status),
           short_enum(&norn__v1__session_quality__descriptor, s->overall_quality), s->total_steps,
           s->total_issues, started);
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
    long limit = DEFAULT_LIMIT, page_size = 0;
    int opt, v;
    options_begin();
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'a': req.agent_name = optarg; break;
        case 'w': req.swarm_id = optarg; break;
        case 's':
            if (enum_option(&norn__v1__session_status__descriptor, "--status", optarg, &v))
                return EXIT_USAGE;
            req.status = (Norn__V1__SessionStatus)v;
            break;
        case 'q':
            if (enum_option(&norn__v1__session_quality__descriptor, "--quality", optarg, &v))
                return EXIT_USAGE;
            req.quality = (Norn__V1__SessionQuality)v;
            break;
        case 'A':
            if (time_option("--after", optarg, &after))
                return EXIT_USAGE;
            req.started_after = &after;
            break;
        case 'B':
            if (time_option("--before", optarg, &before))
                return EXIT_USAGE;
            req.started_before = &before;
            break;
        case 'p':
            if (count_option("--page-size", optarg, MAX_PAGE, &page_size))
                return EXIT_USAGE;
            req.page_size = (uint32_t)page_size;
            break;
        case 'l':
            if (count_option("--limit", optarg, INT32_MAX, &limit))
                return EXIT_USAGE;
            break;
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
    if (need_operands(argc, 0, "sessions list", "no operands"))
        return EXIT_USAGE;
    Pager p = {"sessions list",
               &norn__v1__session_service__rpc.methods[NORN__V1__SESSION_SERVICE__LIST_SESSIONS],
               &req.base,
               "sessions",
               session_row,
               limit};
    return list_pages(g, ch, &p);
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
    options_begin();
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
    if (need_operands(argc, 1, "sessions get", "one session id"))
        return EXIT_USAGE;
    req.session_id = argv[optind];
    Norn__V1__GetSessionResponse *resp = NULL;
    RpcCallOptions co = call_options(g);
    RpcStatus st;
    int rc =
        call_result("sessions get",
                    norn__v1__session_service__get_session__call(ch, &req, &resp, &co, &st), &st);
    if (rc != EXIT_OK)
        return rc;
    const Norn__V1__Session *s = resp->session;
    if (g->json || !s) {
        print_json(&resp->base);
    } else {
        kv("session", "%s", s->session_id);
        kv("agent", "%s", s->agent_name);
        kv("status", "%s", short_enum(&norn__v1__session_status__descriptor, s->status));
        kv("quality", "%s", short_enum(&norn__v1__session_quality__descriptor, s->overall_quality));
        kv("steps", "%u", s->total_steps);
        kv("issues", "%u", s->total_issues);
        kv_time("started", s->started_at);
        kv_time("ended", s->ended_at);
        kv("revision", "%llu", (unsigned long long)s->revision);
        if (s->task && s->task->description[0])
            kv("task", "%s", s->task->description);
        for (size_t i = 0; i < s->n_steps; i++)
            printf("  step %-4u %-24.24s %s\n", s->steps[i]->step_number, s->steps[i]->tool_name,
                   short_enum(&norn__v1__step_status__descriptor, s->steps[i]->status));
        for (size_t i = 0; i < s->n_issues; i++)
            printf("  issue %-20s sev %-2d %s\n",
                   short_enum(&norn__v1__issue_type__descriptor, s->issues[i]->issue_type),
                   s->issues[i]->severity, s->issues[i]->description);
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return EXIT_OK;
}

static int cmd_sessions_delete(Globals *g, RpcChannel *ch, int argc, char **argv)
{
    int rc =
        help_only(argc, argv,
                  "usage: norn sessions delete ID\n"
                  "  Deletes the session with its steps, issues, audit events and index rows.");
    if (rc >= 0)
        return rc;
    if (need_operands(argc, 1, "sessions delete", "one session id"))
        return EXIT_USAGE;
    Norn__V1__DeleteSessionRequest req = NORN__V1__DELETE_SESSION_REQUEST__INIT;
    req.session_id = argv[optind];
    Norn__V1__DeleteSessionResponse *resp = NULL;
    RpcCallOptions co = call_options(g);
    RpcStatus st;
    rc = call_result("sessions delete",
                     norn__v1__session_service__delete_session__call(ch, &req, &resp, &co, &st),
                     &st);
    if (rc != EXIT_OK)
        return rc;
    if (g->json)
        print_json(&resp->base);
    else
        printf("deleted %s (revision %llu)\n", req.session_id, (unsigned long long)resp->revision);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return EXIT_OK;
}

static void step_row(const ProtobufCMessage *m)
{
    if (!m) {
        printf("%-5s %-24s %-11s %-9s %10s\n", "STEP", "TOOL", "STATUS", "RESULT", "MS");
        return;
    }
    const Norn__V1__Step *s = (const Norn__V1__Step *)m;
    printf("%-5u %-24.24s %-11s %-9s %10.1f\n", s->step_number, s->tool_name,
           short_enum(&norn__v1__step_status__descriptor, s->status),
           short_enum(&norn__v1__result_status__descriptor, s->result_status),
           s->execution_time_ms);
}

static int cmd_steps_list(Globals *g, RpcChannel *ch, int argc, char **argv)
{
    int rc = help_only(argc, argv,
                       "usage: norn steps list SESSION_ID\n"
                       "  Every step of the session, in order.");
    if (rc >= 0)
        return rc;
    if (need_operands(argc, 1, "steps list", "one session id"))
        return EXIT_USAGE;
    Norn__V1__ListStepsRequest req = NORN__V1__LIST_STEPS_REQUEST__INIT;
    req.session_id = argv[optind];
    req.page_size = 500;
    Pager p = {"steps list",
               &norn__v1__session_service__rpc.methods[NORN__V1__SESSION_SERVICE__LIST_STEPS],
               &req.base,
               "steps",
               step_row,
               0};
    return list_pages(g, ch, &p);
}

/* ---- watch ------------------------------------------------------------------- */

static void print_watch_line(const Globals *g, const Norn__V1__WatchSessionsResponse *m)
{
    if (g->json) {
        emit_json(pbjson_encode(&m->base), JSON_COMPACT | JSON_PRESERVE_ORDER);
    } else if (m->event_case == NORN__V1__WATCH_SESSIONS_RESPONSE__EVENT_DELTA) {
        const Norn__V1__SessionDelta *d = m->delta;
        const Norn__V1__Session *s = d->session;
        printf("%-8llu %-13s %-28s %-16.16s %-10s %-9s steps=%u issues=%u",
               (unsigned long long)d->revision,
               short_enum(&norn__v1__delta_kind__descriptor, d->kind), s ? s->session_id : "-",
               s ? s->agent_name : "-",
               s ? short_enum(&norn__v1__session_status__descriptor, s->status) : "-",
               s ? short_enum(&norn__v1__session_quality__descriptor, s->overall_quality) : "-",
               s ? s->total_steps : 0, s ? s->total_issues : 0);
        for (size_t i = 0; i < d->n_steps; i++)
            printf(" [%u %s %s]", d->steps[i]->step_number, d->steps[i]->tool_name,
                   short_enum(&norn__v1__step_status__descriptor, d->steps[i]->status));
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
    options_begin();
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

/* ---- agents ------------------------------------------------------------------ */

static void agent_row(const ProtobufCMessage *m)
{
    if (!m) {
        printf("%-31s %-24s %-6s %-10s %s\n", "AGENT", "NAME", "SOURCE", "STATUS", "ADDED (UTC)");
        return;
    }
    const Norn__V1__Agent *a = (const Norn__V1__Agent *)m;
    char added[32];
    format_time(a->added_at, added, sizeof added);
    printf("%-31s %-24.24s %-6s %-10s %s\n", a->agent_id, a->name,
           short_enum(&norn__v1__agent_source__descriptor, a->source),
           short_enum(&norn__v1__agent_status__descriptor, a->status), added);
}

static int cmd_agents_list(Globals *g, RpcChannel *ch, int argc, char **argv)
{
    static const struct option opts[] = {
        {"source", required_argument, NULL, 's'},
        {"limit", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    Norn__V1__ListAgentsRequest req = NORN__V1__LIST_AGENTS_REQUEST__INIT;
    long limit = DEFAULT_LIMIT;
    int opt, v;
    options_begin();
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 's':
            if (enum_option(&norn__v1__agent_source__descriptor, "--source", optarg, &v))
                return EXIT_USAGE;
            req.source = (Norn__V1__AgentSource)v;
            break;
        case 'l':
            if (count_option("--limit", optarg, INT32_MAX, &limit))
                return EXIT_USAGE;
            break;
        case 'h':
            puts("usage: norn agents list [--source hook|git|zip] [--limit N]\n"
                 "  Registered agents; follows pages until --limit rows (default 50,\n"
                 "  0 = all).");
            return EXIT_OK;
        default: return EXIT_USAGE;
        }
    }
    if (need_operands(argc, 0, "agents list", "no operands"))
        return EXIT_USAGE;
    Pager p = {
        "agents list", &norn__v1__agent_service__rpc.methods[NORN__V1__AGENT_SERVICE__LIST_AGENTS],
        &req.base,     "agents",
        agent_row,     limit};
    return list_pages(g, ch, &p);
}

static void print_agent(const Norn__V1__Agent *a)
{
    kv("agent", "%s", a->agent_id);
    kv("name", "%s", a->name);
    kv("source", "%s", short_enum(&norn__v1__agent_source__descriptor, a->source));
    kv("status", "%s", short_enum(&norn__v1__agent_status__descriptor, a->status));
    kv_time("added", a->added_at);
    const struct {
        const char *label, *value;
    } optional[] = {
        {"task", a->task_description},
        {"file", a->source_file},
        {"url", a->url},
        {"ref", a->ref},
        {"commit", a->commit},
        {"subdir", a->subdir},
        {"main file", a->main_file},
        {"last run", a->last_run_id},
    };
    for (size_t i = 0; i < sizeof optional / sizeof optional[0]; i++)
        if (optional[i].value[0])
            kv(optional[i].label, "%s", optional[i].value);
    const Norn__V1__DiscoveryReport *d = a->discovery;
    if (!d)
        return;
    kv("type", "%s", d->agent_type);
    for (size_t i = 0; i < d->n_tools; i++)
        printf("  tool %-24s %s\n", d->tools[i]->name, d->tools[i]->description);
    for (size_t i = 0; i < d->n_findings; i++)
        printf("  finding %-22s %-6s %s\n", d->findings[i]->kind,
               short_enum(&norn__v1__finding_severity__descriptor, d->findings[i]->severity),
               d->findings[i]->detail);
    if (d->error[0])
        kv("error", "%s", d->error);
}

static int cmd_agents_get(Globals *g, RpcChannel *ch, int argc, char **argv)
{
    int rc = help_only(argc, argv,
                       "usage: norn agents get ID\n"
                       "  One agent: where it came from, its status and what discovery "
                       "found.");
    if (rc >= 0)
        return rc;
    if (need_operands(argc, 1, "agents get", "one agent id"))
        return EXIT_USAGE;
    Norn__V1__GetAgentRequest req = NORN__V1__GET_AGENT_REQUEST__INIT;
    req.agent_id = argv[optind];
    Norn__V1__GetAgentResponse *resp = NULL;
    RpcCallOptions co = call_options(g);
    RpcStatus st;
    rc = call_result("agents get",
                     norn__v1__agent_service__get_agent__call(ch, &req, &resp, &co, &st), &st);
    if (rc != EXIT_OK)
        return rc;
    if (g->json || !resp->agent)
        print_json(&resp->base);
    else
        print_agent(resp->agent);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return EXIT_OK;
}

static int cmd_agents_register(Globals *g, RpcChannel *ch, int argc, char **argv)
{
    static const struct option opts[] = {
        {"task", required_argument, NULL, 't'},
        {"source-file", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    Norn__V1__RegisterAgentRequest req = NORN__V1__REGISTER_AGENT_REQUEST__INIT;
    int opt;
    options_begin();
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 't': req.task_description = optarg; break;
        case 'f': req.source_file = optarg; break;
        case 'h':
            puts("usage: norn agents register NAME [--task TEXT] [--source-file F]\n"
                 "  Registers an instrumented (hook) agent, as its hook does. A name that\n"
                 "  is already registered answers the existing agent.");
            return EXIT_OK;
        default: return EXIT_USAGE;
        }
    }
    if (need_operands(argc, 1, "agents register", "one agent name"))
        return EXIT_USAGE;
    req.name = argv[optind];
    Norn__V1__RegisterAgentResponse *resp = NULL;
    RpcCallOptions co = call_options(g);
    RpcStatus st;
    int rc =
        call_result("agents register",
                    norn__v1__agent_service__register_agent__call(ch, &req, &resp, &co, &st), &st);
    if (rc != EXIT_OK)
        return rc;
    if (g->json || !resp->agent)
        print_json(&resp->base);
    else
        printf(resp->created ? "registered %s as %s\n" : "%s was already registered as %s\n",
               resp->agent->name, resp->agent->agent_id);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return EXIT_OK;
}

/* One progress message on stderr: rewritten in place on a terminal; else a
 * plain line per stage and per 10% of the transfer, so logs stay short. */
typedef struct ImportView {
    int tty;
    int last_stage;
    uint32_t last_decile;
    size_t width; /* of the line on screen, to blank what a shorter one leaves */
} ImportView;

static void show_import_progress(ImportView *v, const Norn__V1__ImportProgress *p)
{
    char line[200];
    int n = snprintf(line, sizeof line, "%3u%% %s", p->percent, p->message);
    if (n >= 0 && (size_t)n < sizeof line &&
        p->stage == NORN__V1__IMPORT_STAGE__IMPORT_STAGE_FETCHING && p->total_objects)
        n += snprintf(line + n, sizeof line - (size_t)n, " %u/%u objects, %.1f KiB",
                      p->received_objects, p->total_objects, (double)p->received_bytes / 1024.0);
    size_t len = strlen(line);
    if (v->tty) {
        fprintf(stderr, "\r%s%*s", line, v->width > len ? (int)(v->width - len) : 0, "");
        v->width = len;
    } else if ((int)p->stage != v->last_stage || p->percent / 10 != v->last_decile) {
        fprintf(stderr, "%s\n", line);
    }
    v->last_stage = (int)p->stage;
    v->last_decile = p->percent / 10;
    fflush(stderr);
}

static int cmd_agents_import(Globals *g, RpcChannel *ch, int argc, char **argv)
{
    static const struct option opts[] = {
        {"ref", required_argument, NULL, 'r'},  {"subdir", required_argument, NULL, 'd'},
        {"name", required_argument, NULL, 'n'}, {"main-file", required_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},       {NULL, 0, NULL, 0},
    };
    Norn__V1__ImportAgentRequest req = NORN__V1__IMPORT_AGENT_REQUEST__INIT;
    int opt;
    options_begin();
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'r': req.ref = optarg; break;
        case 'd': req.subdir = optarg; break;
        case 'n': req.name = optarg; break;
        case 'm': req.main_file = optarg; break;
        case 'h':
            puts("usage: norn agents import URL [--ref R] [--subdir D] [--name N] [--main-file F]\n"
                 "  Clones an https://, http:// or file:// git repository on the server,\n"
                 "  discovers the agent in it and registers it. --ref: branch, tag or commit\n"
                 "  (default: the remote's default branch); --subdir: the agent's folder;\n"
                 "  --name: the agent's name (default: derived from the code); --main-file:\n"
                 "  the entry file relative to the folder (default: detected). A GitHub\n"
                 "  .../tree/<branch>/<dir> URL gives the ref and folder. Progress goes to\n"
                 "  stderr; the agent to stdout. No deadline unless --timeout-ms is given:\n"
                 "  the server bounds imports in size and time.");
            return EXIT_OK;
        default: return EXIT_USAGE;
        }
    }
    if (need_operands(argc, 1, "agents import", "one repository URL"))
        return EXIT_USAGE;
    req.url = argv[optind];
    RpcCallOptions co = call_options(g);
    if (!g->timeout_given)
        co.timeout_ms = 0;
    RpcClientCall *c = norn__v1__agent_service__import_agent__start(ch, &req, &co);
    if (!c) {
        fprintf(stderr, "norn: agents import: cannot start the call\n");
        return EXIT_RPC;
    }
    ImportView view = {.tty = isatty(STDERR_FILENO), .last_stage = -1};
    Norn__V1__ImportAgentResponse *m;
    Norn__V1__Agent *agent = NULL;
    while (norn__v1__agent_service__import_agent__read(c, &m) == 1) {
        if (m->event_case == NORN__V1__IMPORT_AGENT_RESPONSE__EVENT_PROGRESS && m->progress) {
            show_import_progress(&view, m->progress);
        } else if (m->event_case == NORN__V1__IMPORT_AGENT_RESPONSE__EVENT_AGENT && !agent) {
            agent = m->agent;
            m->agent = NULL; /* kept; the rest of the message goes */
        }
        protobuf_c_message_free_unpacked(&m->base, NULL);
    }
    if (view.tty && view.width)
        fputc('\n', stderr);
    RpcStatus st;
    RpcCode code = rpc_stream_finish(c, &st);
    if (code == RPC_OK && !agent) {
        fprintf(stderr, "norn: agents import: the stream ended without the agent\n");
        rpc_status_clear(&st);
        return EXIT_RPC;
    }
    int rc = call_result("agents import", code, &st);
    if (rc == EXIT_OK) {
        if (g->json) {
            print_json(&agent->base);
        } else {
            const Norn__V1__DiscoveryReport *d = agent->discovery;
            kv("agent", "%s", agent->agent_id);
            kv("name", "%s", agent->name);
            kv("entry file", "%s%s%s", agent->subdir, agent->subdir[0] ? "/" : "",
               agent->main_file);
            kv("commit", "%s", agent->commit);
            kv("tools", "%zu", d ? d->n_tools : 0);
            kv("findings", "%zu", d ? d->n_findings : 0);
            kv("task", "%s", agent->task_description);
        }
    }
    if (agent)
        protobuf_c_message_free_unpacked(&agent->base, NULL);
    return rc;
}

static int cmd_agents_delete(Globals *g, RpcChannel *ch, int argc, char **argv)
{
    static const struct option opts[] = {
        {"with-sessions", no_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    Norn__V1__DeleteAgentRequest req = NORN__V1__DELETE_AGENT_REQUEST__INIT;
    int opt;
    options_begin();
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 's': req.delete_sessions = 1; break;
        case 'h':
            puts("usage: norn agents delete ID [--with-sessions]\n"
                 "  Removes the agent and its workspace; --with-sessions also deletes its\n"
                 "  sessions.");
            return EXIT_OK;
        default: return EXIT_USAGE;
        }
    }
    if (need_operands(argc, 1, "agents delete", "one agent id"))
        return EXIT_USAGE;
    req.agent_id = argv[optind];
    Norn__V1__DeleteAgentResponse *resp = NULL;
    RpcCallOptions co = call_options(g);
    RpcStatus st;
    int rc =
        call_result("agents delete",
                    norn__v1__agent_service__delete_agent__call(ch, &req, &resp, &co, &st), &st);
    if (rc != EXIT_OK)
        return rc;
    if (g->json)
        print_json(&resp->base);
    else
        printf("deleted %s (%u sessions)\n", req.agent_id, resp->deleted_sessions);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return EXIT_OK;
}

/* ---- swarms ------------------------------------------------------------------ */

static void swarm_row(const ProtobufCMessage *m)
{
    if (!m) {
        printf("%-28s %6s %-9s %9s  %s\n", "SWARM", "AGENTS", "QUALITY", "ALIGNMENT",
               "STARTED (UTC)");
        return;
    }
    const Norn__V1__Swarm *s = (const Norn__V1__Swarm *)m;
    char started[32], align[16] = "-";
    format_time(s->started_at, started, sizeof started);
    if (s->optional_alignment_score_case)
        snprintf(align, sizeof align, "%.3f", s->alignment_score);
    printf("%-28s %6u %-9s %9s  %s\n", s->swarm_id, s->agent_count,
           short_enum(&norn__v1__session_quality__descriptor, s->overall_quality), align, started);
}

static int cmd_swarms_list(Globals *g, RpcChannel *ch, int argc, char **argv)
{
    static const struct option opts[] = {
        {"limit", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    Norn__V1__ListSwarmsRequest req = NORN__V1__LIST_SWARMS_REQUEST__INIT;
    long limit = DEFAULT_LIMIT;
    int opt;
    options_begin();
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'l':
            if (count_option("--limit", optarg, INT32_MAX, &limit))
                return EXIT_USAGE;
            break;
        case 'h':
            puts("usage: norn swarms list [--limit N]\n"
                 "  Swarms newest first, with their worst member quality and task alignment;\n"
                 "  follows pages until --limit rows (default 50, 0 = all).");
            return EXIT_OK;
        default: return EXIT_USAGE;
        }
    }
    if (need_operands(argc, 0, "swarms list", "no operands"))
        return EXIT_USAGE;
    Pager p = {
        "swarms list", &norn__v1__swarm_service__rpc.methods[NORN__V1__SWARM_SERVICE__LIST_SWARMS],
        &req.base,     "swarms",
        swarm_row,     limit};
    return list_pages(g, ch, &p);
}

/* An optional score: the number, or "-" when the oneof is unset. */
static const char *score(int set, int value, char *buf, size_t cap)
{
    if (!set)
        return "-";
    snprintf(buf, cap, "%d", value);
    return buf;
}

static void print_swarm(const Norn__V1__GetSwarmResponse *r)
{
    const Norn__V1__Swarm *s = r->swarm;
    kv("swarm", "%s", s->swarm_id);
    kv("agents", "%u", s->agent_count);
    kv("quality", "%s", short_enum(&norn__v1__session_quality__descriptor, s->overall_quality));
    if (s->optional_alignment_score_case)
        kv("alignment", "%.3f", s->alignment_score);
    else
        kv("alignment", "-");
    kv_time("started", s->started_at);
    kv_time("ended", s->ended_at);
    if (r->analysis && r->analysis->summary[0])
        kv("analysis", "%s", r->analysis->summary);
    printf("\n%5s %-28s %-20s %-9s %-10s %5s %4s %4s\n", "ORDER", "SESSION", "AGENT", "QUALITY",
           "STATUS", "STEPS", "EFF", "SEC");
    for (size_t i = 0; i < s->n_agents; i++) {
        const Norn__V1__SwarmMember *m = s->agents[i];
        char eff[16], sec[16];
        printf("%5u %-28s %-20.20s %-9s %-10s %5u %4s %4s\n", m->swarm_order, m->session_id,
               m->agent_name,
               short_enum(&norn__v1__session_quality__descriptor, m->overall_quality),
               short_enum(&norn__v1__session_status__descriptor, m->status), m->total_steps,
               score(m->optional_efficiency_score_case, m->efficiency_score, eff, sizeof eff),
               score(m->optional_security_score_case, m->security_score, sec, sizeof sec));
    }
    if (s->n_handoffs)
        printf("\nhandoffs\n");
    for (size_t i = 0; i < s->n_handoffs; i++) {
        const Norn__V1__Handoff *h = s->handoffs[i];
        printf("  %u %s -> %u %s: %.60s%s\n", h->source_order, h->source_agent_name,
               h->target_order, h->target_agent_name, h->handoff_input,
               strlen(h->handoff_input) > 60 ? "..." : "");
    }
    if (r->n_sessions) {
        putchar('\n');
        session_row(NULL);
    }
    for (size_t i = 0; i < r->n_sessions; i++)
        session_row(&r->sessions[i]->base);
}

static int cmd_swarms_get(Globals *g, RpcChannel *ch, int argc, char **argv)
{
    static const struct option opts[] = {
        {"sessions", no_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    Norn__V1__GetSwarmRequest req = NORN__V1__GET_SWARM_REQUEST__INIT;
    int opt;
    options_begin();
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 's': req.include_sessions = 1; break;
        case 'h':
            puts("usage: norn swarms get ID [--sessions]\n"
                 "  One swarm: its members in pipeline order with their quality and scores,\n"
                 "  the hand-offs between them and the task alignment score. --sessions\n"
                 "  adds the member sessions.");
            return EXIT_OK;
        default: return EXIT_USAGE;
        }
    }
    if (need_operands(argc, 1, "swarms get", "one swarm id"))
        return EXIT_USAGE;
    req.swarm_id = argv[optind];
    Norn__V1__GetSwarmResponse *resp = NULL;
    RpcCallOptions co = call_options(g);
    RpcStatus st;
    int rc = call_result("swarms get",
                         norn__v1__swarm_service__get_swarm__call(ch, &req, &resp, &co, &st), &st);
    if (rc != EXIT_OK)
        return rc;
    if (g->json || !resp->swarm)
        print_json(&resp->base);
    else
        print_swarm(resp);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return EXIT_OK;
}

static void print_analysis(const Norn__V1__SwarmAnalysis *a)
{
    printf("swarm      %s (%u agents)%s\n", a->swarm_id, a->agent_count,
           a->cached ? ", from the cache" : "");
    if (a->pipeline_coherence)
        printf("coherence  %s\n",
               short_enum(&norn__v1__session_quality__descriptor, a->pipeline_coherence));
    printf("summary    %s\nhand-offs  %s\n", a->summary, a->handoff_quality);
    for (size_t i = 0; i < a->n_agent_assessments; i++)
        printf("  %u. %s: %s\n", a->agent_assessments[i]->order,
               a->agent_assessments[i]->agent_name, a->agent_assessments[i]->note);
    for (size_t i = 0; i < a->n_recommendations; i++)
        printf("  - %s\n", a->recommendations[i]);
}

static int cmd_swarms_analyze(Globals *g, RpcChannel *ch, int argc, char **argv)
{
    static const struct option opts[] = {
        {"refresh", no_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    Norn__V1__AnalyzeSwarmRequest req = NORN__V1__ANALYZE_SWARM_REQUEST__INIT;
    int opt;
    options_begin();
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'r': req.refresh = 1; break;
        case 'h':
            puts("usage: norn swarms analyze ID [--refresh]\n"
                 "  The AI pipeline analysis of a swarm (summary, one note per agent,\n"
                 "  hand-off quality, coherence, recommendations). Served from the cache\n"
                 "  while the swarm is unchanged; --refresh asks the model again. Needs\n"
                 "  AI evaluation on the server (docs/bedrock.md).");
            return EXIT_OK;
        default: return EXIT_USAGE;
        }
    }
    if (need_operands(argc, 1, "swarms analyze", "one swarm id"))
        return EXIT_USAGE;
    req.swarm_id = argv[optind];
    Norn__V1__AnalyzeSwarmResponse *resp = NULL;
    RpcCallOptions co = call_options(g);
    /* The model may take a while: a deadline of at least a minute. */
    if (co.timeout_ms > 0 && co.timeout_ms < 60000)
        co.timeout_ms = 60000;
    RpcStatus st;
    int rc =
        call_result("swarms analyze",
                    norn__v1__swarm_service__analyze_swarm__call(ch, &req, &resp, &co, &st), &st);
    if (rc != EXIT_OK)
        return rc;
    if (g->json || !resp->analysis)
        print_json(&resp->base);
    else
        print_analysis(resp->analysis);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return EXIT_OK;
}

static int cmd_swarms_delete(Globals *g, RpcChannel *ch, int argc, char **argv)
{
    int rc = help_only(argc, argv,
                       "usage: norn swarms delete ID\n"
                       "  Deletes every member session of the swarm (as sessions delete "
                       "does)\n  and its cached analysis.");
    if (rc >= 0)
        return rc;
    if (need_operands(argc, 1, "swarms delete", "one swarm id"))
        return EXIT_USAGE;
    Norn__V1__DeleteSwarmRequest req = NORN__V1__DELETE_SWARM_REQUEST__INIT;
    req.swarm_id = argv[optind];
    Norn__V1__DeleteSwarmResponse *resp = NULL;
    RpcCallOptions co = call_options(g);
    RpcStatus st;
    rc = call_result("swarms delete",
                     norn__v1__swarm_service__delete_swarm__call(ch, &req, &resp, &co, &st), &st);
    if (rc != EXIT_OK)
        return rc;
    if (g->json)
        print_json(&resp->base);
    else
        printf("deleted %s (%u sessions)\n", req.swarm_id, resp->deleted_sessions);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return EXIT_OK;
}

/* ---- audit ------------------------------------------------------------------- */

static void audit_row(const ProtobufCMessage *m)
{
    if (!m) {
        printf("%-22s %-19s %-13s %-8s %-28s %-16s %s\n", "EVENT", "TIME (UTC)", "TYPE", "SEVERITY",
               "SESSION", "AGENT", "SUMMARY");
        return;
    }
    const Norn__V1__AuditEvent *e = (const Norn__V1__AuditEvent *)m;
    char when[32];
    format_time(e->timestamp, when, sizeof when);
    printf("%-22s %-19s %-13s %-8s %-28s %-16.16s %s\n", e->event_id, when,
           short_enum(&norn__v1__audit_event_type__descriptor, e->event_type),
           short_enum(&norn__v1__audit_severity__descriptor, e->severity), e->session_id,
           e->agent_name, e->summary);
}

static int cmd_audit_list(Globals *g, RpcChannel *ch, int argc, char **argv)
{
    static const struct option opts[] = {
        {"type", required_argument, NULL, 't'},
        {"agent", required_argument, NULL, 'a'},
        {"session", required_argument, NULL, 's'},
        {"min-severity", required_argument, NULL, 'm'},
        {"since", required_argument, NULL, 'S'},
        {"until", required_argument, NULL, 'U'},
        {"limit", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    Norn__V1__ListAuditEventsRequest req = NORN__V1__LIST_AUDIT_EVENTS_REQUEST__INIT;
    Google__Protobuf__Timestamp since, until;
    long limit = DEFAULT_LIMIT;
    int opt, v;
    options_begin();
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 't':
            if (enum_option(&norn__v1__audit_event_type__descriptor, "--type", optarg, &v))
                return EXIT_USAGE;
            req.event_type = (Norn__V1__AuditEventType)v;
            break;
        case 'a': req.agent_name = optarg; break;
        case 's': req.session_id = optarg; break;
        case 'm':
            if (enum_option(&norn__v1__audit_severity__descriptor, "--min-severity", optarg, &v))
                return EXIT_USAGE;
            req.min_severity = (Norn__V1__AuditSeverity)v;
            break;
        case 'S':
            if (time_option("--since", optarg, &since))
                return EXIT_USAGE;
            req.start_time = &since;
            break;
        case 'U':
            if (time_option("--until", optarg, &until))
                return EXIT_USAGE;
            req.end_time = &until;
            break;
        case 'l':
            if (count_option("--limit", optarg, INT32_MAX, &limit))
                return EXIT_USAGE;
            break;
        case 'h':
            puts("usage: norn audit list [--type TYPE] [--agent NAME] [--session ID]\n"
                 "                       [--min-severity info|warning|critical]\n"
                 "                       [--since TIME] [--until TIME] [--limit N]\n"
                 "  The audit trail newest first; follows pages until --limit rows (default\n"
                 "  50, 0 = all). TYPE is session_start, tool_call, issue, session_end or\n"
                 "  guard_action. --since is inclusive, --until exclusive; TIME is\n"
                 "  YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC).");
            return EXIT_OK;
        default: return EXIT_USAGE;
        }
    }
    if (need_operands(argc, 0, "audit list", "no operands"))
        return EXIT_USAGE;
    Pager p = {"audit list",
               &norn__v1__audit_service__rpc.methods[NORN__V1__AUDIT_SERVICE__LIST_AUDIT_EVENTS],
               &req.base,
               "events",
               audit_row,
               limit};
    return list_pages(g, ch, &p);
}

static int cmd_audit_delete(Globals *g, RpcChannel *ch, int argc, char **argv)
{
    int rc = help_only(argc, argv,
                       "usage: norn audit delete EVENT_ID\n"
                       "  Deletes that one audit event; the session it tells of stays.");
    if (rc >= 0)
        return rc;
    if (need_operands(argc, 1, "audit delete", "one event id"))
        return EXIT_USAGE;
    Norn__V1__DeleteAuditEventRequest req = NORN__V1__DELETE_AUDIT_EVENT_REQUEST__INIT;
    req.event_id = argv[optind];
    Norn__V1__DeleteAuditEventResponse *resp = NULL;
    RpcCallOptions co = call_options(g);
    RpcStatus st;
    rc = call_result("audit delete",
                     norn__v1__audit_service__delete_audit_event__call(ch, &req, &resp, &co, &st),
                     &st);
    if (rc != EXIT_OK)
        return rc;
    if (g->json)
        print_json(&resp->base);
    else
        printf("deleted %s\n", req.event_id);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return EXIT_OK;
}

/* ---- config ------------------------------------------------------------------ */

/* Config is flat: every field a singular scalar, enum or string. Both
 * commands go by its descriptor, so new settings need no code here. */
static int settable(const ProtobufCFieldDescriptor *f)
{
    return f->label == PROTOBUF_C_LABEL_NONE && f->type != PROTOBUF_C_TYPE_MESSAGE &&
           f->type != PROTOBUF_C_TYPE_BYTES;
}

static void print_setting(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    const void *p = field_at(m, f);
    printf("%s = ", f->name);
    switch (f->type) {
    case PROTOBUF_C_TYPE_BOOL:
        fputs(*(const protobuf_c_boolean *)p ? "true" : "false", stdout);
        break;
    case PROTOBUF_C_TYPE_ENUM: fputs(short_enum(f->descriptor, *(const int *)p), stdout); break;
    case PROTOBUF_C_TYPE_STRING: fputs(*(char *const *)p, stdout); break;
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32: printf("%d", *(const int32_t *)p); break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: printf("%u", *(const uint32_t *)p); break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: printf("%lld", (long long)*(const int64_t *)p); break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: printf("%llu", (unsigned long long)*(const uint64_t *)p); break;
    case PROTOBUF_C_TYPE_FLOAT: printf("%g", (double)*(const float *)p); break;
    case PROTOBUF_C_TYPE_DOUBLE: printf("%g", *(const double *)p); break;
    default: break;
    }
    putchar('\n');
}

/* Parses `text` by the field's type into m; -1 (with a message) when it
 * does not fit. The string value points into text. */
static int parse_setting(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, char *text)
{
    void *p = field_at(m, f);
    uint64_t u;
    int64_t s;
    int e;
    switch (f->type) {
    case PROTOBUF_C_TYPE_BOOL:
        if (strcmp(text, "true") != 0 && strcmp(text, "false") != 0)
            return bad_value(f->name, text, "true or false");
        *(protobuf_c_boolean *)p = text[0] == 't';
        return 0;
    case PROTOBUF_C_TYPE_ENUM:
        if (enum_option(f->descriptor, f->name, text, &e))
            return -1;
        *(int *)p = e;
        return 0;
    case PROTOBUF_C_TYPE_STRING: *(char **)p = text; return 0;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        if (parse_uint(text, UINT32_MAX, &u))
            return bad_value(f->name, text, "a whole number from 0 to 4294967295");
        *(uint32_t *)p = (uint32_t)u;
        return 0;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        if (parse_uint(text, UINT64_MAX, &u))
            return bad_value(f->name, text, "a whole number >= 0");
        *(uint64_t *)p = u;
        return 0;
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        if (parse_int(text, INT32_MIN, INT32_MAX, &s))
            return bad_value(f->name, text, "a 32-bit whole number");
        *(int32_t *)p = (int32_t)s;
        return 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if (parse_int(text, INT64_MIN, INT64_MAX, &s))
            return bad_value(f->name, text, "a 64-bit whole number");
        *(int64_t *)p = s;
        return 0;
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE: {
        char *end;
        errno = 0;
        double d = strtod(text, &end);
        if (!*text || *end || errno == ERANGE || !isfinite(d))
            return bad_value(f->name, text, "a number");
        if (f->type == PROTOBUF_C_TYPE_FLOAT)
            *(float *)p = (float)d;
        else
            *(double *)p = d;
        return 0;
    }
    default: return bad_value(f->name, text, "set some other way");
    }
}

static int cmd_config_get(Globals *g, RpcChannel *ch, int argc, char **argv)
{
    int rc = help_only(argc, argv,
                       "usage: norn config get\n"
                       "  Every setting as `name = value` (enums by short name, e.g. guard_mode "
                       "=\n  MONITOR); -o json adds the runtime facts (version, start time).");
    if (rc >= 0)
        return rc;
    if (need_operands(argc, 0, "config get", "no operands"))
        return EXIT_USAGE;
    Norn__V1__GetConfigRequest req = NORN__V1__GET_CONFIG_REQUEST__INIT;
    Norn__V1__GetConfigResponse *resp = NULL;
    RpcCallOptions co = call_options(g);
    RpcStatus st;
    rc = call_result("config get",
                     norn__v1__config_service__get_config__call(ch, &req, &resp, &co, &st), &st);
    if (rc != EXIT_OK)
        return rc;
    if (g->json || !resp->config) {
        print_json(&resp->base);
    } else {
        const ProtobufCMessageDescriptor *d = resp->config->base.descriptor;
        for (unsigned i = 0; i < d->n_fields; i++)
            if (settable(&d->fields[i]))
                print_setting(&resp->config->base, &d->fields[i]);
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return EXIT_OK;
}

/* Parses one KEY=VALUE into config and names KEY in mask (once: the last
 * value given wins). */
static int add_setting(Norn__V1__Config *config, Google__Protobuf__FieldMask *mask, char *arg)
{
    char *eq = strchr(arg, '=');
    if (!eq || eq == arg) {
        fprintf(stderr, "norn: config set: '%s' is not KEY=VALUE\n", arg);
        return EXIT_USAGE;
    }
    *eq = '\0';
    const ProtobufCFieldDescriptor *f = field_named(config->base.descriptor, arg);
    int unknown = !f || !settable(f);
    if (unknown)
        fprintf(stderr, "norn: config set: unknown key '%s' (see norn config get)\n", arg);
    *eq = '=';
    if (unknown || parse_setting(&config->base, f, eq + 1))
        return EXIT_USAGE;
    size_t k = 0;
    while (k < mask->n_paths && strcmp(mask->paths[k], f->name) != 0)
        k++;
    if (k == mask->n_paths)
        mask->paths[mask->n_paths++] = (char *)f->name;
    return EXIT_OK;
}

static int cmd_config_set(Globals *g, RpcChannel *ch, int argc, char **argv)
{
    int rc = help_only(argc, argv,
                       "usage: norn config set KEY=VALUE [KEY=VALUE...]\n"
                       "  Changes the named settings together (see norn config get for the "
                       "keys).\n  Values by type: true or false, whole numbers, enum names "
                       "(enforce or\n  GUARD_MODE_ENFORCE), text. The server checks the "
                       "ranges; nothing changes\n  when one is refused.");
    if (rc >= 0)
        return rc;
    if (optind == argc) {
        fprintf(stderr, "norn: config set needs KEY=VALUE (see norn config set --help)\n");
        return EXIT_USAGE;
    }
    Norn__V1__Config config = NORN__V1__CONFIG__INIT;
    Google__Protobuf__FieldMask mask = GOOGLE__PROTOBUF__FIELD_MASK__INIT;
    char **paths = calloc((size_t)argc, sizeof *paths);
    if (!paths)
        return EXIT_RPC;
    mask.paths = paths;
    rc = EXIT_OK;
    for (int i = optind; i < argc && rc == EXIT_OK; i++)
        rc = add_setting(&config, &mask, argv[i]);
    Norn__V1__UpdateConfigResponse *resp = NULL;
    if (rc == EXIT_OK) {
        Norn__V1__UpdateConfigRequest req = NORN__V1__UPDATE_CONFIG_REQUEST__INIT;
        req.config = &config;
        req.update_mask = &mask;
        RpcCallOptions co = call_options(g);
        RpcStatus st;
        rc = call_result("config set",
                         norn__v1__config_service__update_config__call(ch, &req, &resp, &co, &st),
                         &st);
    }
    if (rc == EXIT_OK) {
        if (g->json || !resp->config)
            print_json(&resp->base);
        else
            for (size_t k = 0; k < mask.n_paths; k++)
                print_setting(&resp->config->base,
                              field_named(resp->config->base.descriptor, mask.paths[k]));
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    }
    free(paths);
    return rc;
}

/* ---- stats ------------------------------------------------------------------- */

static void print_stats(const Norn__V1__Stats *s)
{
    kv("sessions", "%llu", (unsigned long long)s->total_sessions);
    kv("active", "%llu", (unsigned long long)s->active_sessions);
    kv("completed", "%llu", (unsigned long long)s->completed_sessions);
    kv("terminated", "%llu", (unsigned long long)s->terminated_sessions);
    kv("threats", "%llu critical", (unsigned long long)s->critical_threats);
    kv("steps", "%llu", (unsigned long long)s->total_steps);
    kv("issues", "%llu", (unsigned long long)s->total_issues);
    kv("agents", "%llu", (unsigned long long)s->total_agents);
    kv("runs", "%llu queued, %llu running", (unsigned long long)s->queued_runs,
       (unsigned long long)s->running_runs);
    kv("efficiency", "%.1f average", s->avg_efficiency);
    kv("security", "%.1f average", s->avg_security);
    kv("revision", "%llu", (unsigned long long)s->revision);
    if (s->n_sessions_by_quality)
        printf("\n%-16s %8s\n", "QUALITY", "SESSIONS");
    for (size_t i = 0; i < s->n_sessions_by_quality; i++)
        printf(
            "%-16s %8llu\n",
            short_enum(&norn__v1__session_quality__descriptor, s->sessions_by_quality[i]->quality),
            (unsigned long long)s->sessions_by_quality[i]->count);
    if (s->n_issues_by_type)
        printf("\n%-22s %8s\n", "ISSUE TYPE", "ISSUES");
    for (size_t i = 0; i < s->n_issues_by_type; i++)
        printf("%-22s %8llu\n",
               short_enum(&norn__v1__issue_type__descriptor, s->issues_by_type[i]->issue_type),
               (unsigned long long)s->issues_by_type[i]->count);
    printf("\nai eval    %llu calls, %llu steps and %llu sessions judged, %llu batches "
           "(%.1f steps each),\n           %llu cache hits, %llu/%llu tokens in/out, %llu "
           "errors, %llu waiting\n",
           (unsigned long long)s->eval_calls, (unsigned long long)s->eval_steps_judged,
           (unsigned long long)s->eval_sessions_judged, (unsigned long long)s->eval_batches,
           s->eval_avg_batch_size, (unsigned long long)s->eval_cache_hits,
           (unsigned long long)s->eval_input_tokens, (unsigned long long)s->eval_output_tokens,
           (unsigned long long)s->eval_errors, (unsigned long long)s->eval_queue_depth);
    printf("           %llu retries, %llu dropped, circuit breaker %s (opened %llu times), "
           "estimated cost %.4f USD\n",
           (unsigned long long)s->eval_retries, (unsigned long long)s->eval_dropped,
           s->eval_breaker_open ? "OPEN" : "closed", (unsigned long long)s->eval_breaker_opened,
           s->eval_estimated_cost_usd);
    if (s->eval_disabled_reason && s->eval_disabled_reason[0])
        printf("           off: %s\n", s->eval_disabled_reason);
    printf("runs       %llu queued, %llu running\n", (unsigned long long)s->queued_runs,
           (unsigned long long)s->running_runs);
}

static int cmd_stats(Globals *g, RpcChannel *ch, int argc, char **argv)
{
    int rc = help_only(argc, argv,
                       "usage: norn stats\n"
                       "  Session totals by status and quality, issues by type, average "
                       "scores,\n  agents, runs and AI evaluation figures, at the revision "
                       "shown.");
    if (rc >= 0)
        return rc;
    if (need_operands(argc, 0, "stats", "no operands"))
        return EXIT_USAGE;
    Norn__V1__GetStatsRequest req = NORN__V1__GET_STATS_REQUEST__INIT;
    Norn__V1__GetStatsResponse *resp = NULL;
    RpcCallOptions co = call_options(g);
    RpcStatus st;
    rc = call_result("stats", norn__v1__stats_service__get_stats__call(ch, &req, &resp, &co, &st),
                     &st);
    if (rc != EXIT_OK)
        return rc;
    if (g->json || !resp->stats)
        print_json(&resp->base);
    else
        print_stats(resp->stats);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return EXIT_OK;
}

/* ---- runs ---------------------------------------------------------------------- */

static void run_row(const ProtobufCMessage *m)
{
    if (!m) {
        printf("%-30s %-31s %-10s %-5s %s\n", "RUN", "AGENT", "STATE", "EXIT", "QUEUED (UTC)");
        return;
    }
    const Norn__V1__Run *r = (const Norn__V1__Run *)m;
    char queued[32], exit_text[16] = "-";
    format_time(r->queued_at, queued, sizeof queued);
    if (r->optional_exit_code_case == NORN__V1__RUN__OPTIONAL_EXIT_CODE_EXIT_CODE)
        snprintf(exit_text, sizeof exit_text, "%d", r->exit_code);
    else if (r->term_signal)
        snprintf(exit_text, sizeof exit_text, "sig%d", r->term_signal);
    printf("%-30s %-31s %-10s %-5s %s\n", r->run_id, r->agent_id,
           short_enum(&norn__v1__run_state__descriptor, r->state), exit_text, queued);
}

static void print_run(const Globals *g, const Norn__V1__Run *r)
{
    if (g->json) {
        print_json(&r->base);
        return;
    }
    kv("run", "%s", r->run_id);
    kv("agent", "%s", r->agent_id);
    kv("session", "%s", r->session_id);
    kv("state", "%s", short_enum(&norn__v1__run_state__descriptor, r->state));
    if (r->task && r->task->description[0])
        kv("task", "%s", r->task->description);
    kv("timeout", "%u s", r->timeout_seconds);
    kv("guard", "%s", short_enum(&norn__v1__guard_mode__descriptor, r->guard_mode));
    kv_time("queued", r->queued_at);
    if (r->started_at)
        kv_time("started", r->started_at);
    if (r->ended_at)
        kv_time("ended", r->ended_at);
    if (r->optional_exit_code_case == NORN__V1__RUN__OPTIONAL_EXIT_CODE_EXIT_CODE)
        kv("exit code", "%d", r->exit_code);
    if (r->term_signal)
        kv("signal", "%d", r->term_signal);
    if (r->error[0])
        kv("error", "%s", r->error);
    if (r->log_tail[0])
        printf("-- log tail --\n%s%s", r->log_tail,
               r->log_tail[strlen(r->log_tail) - 1] == '\n' ? "" : "\n");
}

static int run_finished(const Norn__V1__Run *r)
{
    return r->state != NORN__V1__RUN_STATE__RUN_STATE_QUEUED &&
           r->state != NORN__V1__RUN_STATE__RUN_STATE_RUNNING;
}

/* GetRun; *out is freed by the caller. */
static int get_run(const Globals *g, RpcChannel *ch, const char *what, const char *run_id,
                   Norn__V1__GetRunResponse **out)
{
    Norn__V1__GetRunRequest req = NORN__V1__GET_RUN_REQUEST__INIT;
    req.run_id = (char *)run_id;
    RpcCallOptions co = call_options(g);
    RpcStatus st;
    return call_result(what, norn__v1__agent_service__get_run__call(ch, &req, out, &co, &st), &st);
}

/* Streams the run's session deltas until the session ends, then waits for
 * the run's final state (the process may still be exiting) and prints it. */
static int follow_run(const Globals *g, RpcChannel *ch, const Norn__V1__Run *run)
{
    Norn__V1__WatchSessionsRequest req = NORN__V1__WATCH_SESSIONS_REQUEST__INIT;
    char *ids[1] = {run->session_id};
    req.session_ids = ids;
    req.n_session_ids = 1;
    req.include_steps = 1;
    req.send_initial = 1;
    req.progress_interval_ms = 1000;
    RpcCallOptions co = {0};
    RpcClientCall *c = norn__v1__session_service__watch_sessions__start(ch, &req, &co);
    if (!c) {
        fprintf(stderr, "norn: run --follow: cannot start the watch\n");
        return EXIT_RPC;
    }
    Norn__V1__WatchSessionsResponse *m;
    int ended = 0;
    while (!ended && norn__v1__session_service__watch_sessions__read(c, &m) == 1) {
        if (m->event_case == NORN__V1__WATCH_SESSIONS_RESPONSE__EVENT_DELTA) {
            print_watch_line(g, m);
            const Norn__V1__Session *s = m->delta->session;
            ended = s && s->status != NORN__V1__SESSION_STATUS__SESSION_STATUS_ACTIVE;
        } else if (m->event_case == NORN__V1__WATCH_SESSIONS_RESPONSE__EVENT_INITIAL) {
            ended = m->initial->status != NORN__V1__SESSION_STATUS__SESSION_STATUS_ACTIVE;
        }
        protobuf_c_message_free_unpacked(&m->base, NULL);
    }
    rpc_stream_cancel(c);
    RpcStatus st;
    rpc_stream_finish(c, &st);
    rpc_status_clear(&st);
    for (int tries = 0;; tries++) {
        Norn__V1__GetRunResponse *resp = NULL;
        int rc = get_run(g, ch, "run", run->run_id, &resp);
        if (rc != EXIT_OK)
            return rc;
        if (run_finished(resp->run) || tries == 300) {
            print_run(g, resp->run);
            int ok = resp->run->state == NORN__V1__RUN_STATE__RUN_STATE_SUCCEEDED;
            protobuf_c_message_free_unpacked(&resp->base, NULL);
            return ok ? EXIT_OK : EXIT_RPC;
        }
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        struct timespec ts = {0, 100000000L};
        nanosleep(&ts, NULL);
    }
}

static int cmd_run(Globals *g, RpcChannel *ch, int argc, char **argv)
{
    static const struct option opts[] = {
        {"task", required_argument, NULL, 't'},  {"timeout", required_argument, NULL, 'T'},
        {"guard", required_argument, NULL, 'g'}, {"follow", no_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
    };
    Norn__V1__RunAgentRequest req = NORN__V1__RUN_AGENT_REQUEST__INIT;
    Norn__V1__TaskDefinition task = NORN__V1__TASK_DEFINITION__INIT;
    long timeout = 0;
    int opt, v, follow = 0;
    options_begin();
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 't':
            task.description = optarg;
            req.task = &task;
            break;
        case 'T':
            if (count_option("--timeout", optarg, 86400, &timeout))
                return EXIT_USAGE;
            req.timeout_seconds = (uint32_t)timeout;
            break;
        case 'g':
            if (enum_option(&norn__v1__guard_mode__descriptor, "--guard", optarg, &v))
                return EXIT_USAGE;
            req.guard_mode = (Norn__V1__GuardMode)v;
            break;
        case 'f': follow = 1; break;
        case 'h':
            puts("usage: norn run AGENT_ID [--task T] [--timeout S] [--guard MODE] [--follow]\n"
                 "  Queues a run of an imported agent (default task: the agent's; timeout and\n"
                 "  guard mode (monitor, intervene, enforce): the server's). Prints the queued\n"
                 "  run; --follow prints the run's session deltas, one line each, until the\n"
                 "  session ends, then the run's final state (exit status 0 only when it\n"
                 "  SUCCEEDED).");
            return EXIT_OK;
        default: return EXIT_USAGE;
        }
    }
    if (need_operands(argc, 1, "run", "one agent id"))
        return EXIT_USAGE;
    req.agent_id = argv[optind];
    Norn__V1__RunAgentResponse *resp = NULL;
    RpcCallOptions co = call_options(g);
    RpcStatus st;
    int rc = call_result("run", norn__v1__agent_service__run_agent__call(ch, &req, &resp, &co, &st),
                         &st);
    if (rc != EXIT_OK)
        return rc;
    if (!resp->run) {
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        fprintf(stderr, "norn: run: the server answered without a run\n");
        return EXIT_RPC;
    }
    if (follow) {
        if (!g->json)
            printf("run %s queued; session %s\n", resp->run->run_id, resp->run->session_id);
        fflush(stdout);
        rc = follow_run(g, ch, resp->run);
    } else {
        print_run(g, resp->run);
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rc;
}

static int cmd_runs_list(Globals *g, RpcChannel *ch, int argc, char **argv)
{
    static const struct option opts[] = {
        {"agent", required_argument, NULL, 'a'},
        {"state", required_argument, NULL, 's'},
        {"limit", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    Norn__V1__ListRunsRequest req = NORN__V1__LIST_RUNS_REQUEST__INIT;
    long limit = DEFAULT_LIMIT;
    int opt, v;
    options_begin();
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'a': req.agent_id = optarg; break;
        case 's':
            if (enum_option(&norn__v1__run_state__descriptor, "--state", optarg, &v))
                return EXIT_USAGE;
            req.state = (Norn__V1__RunState)v;
            break;
        case 'l':
            if (count_option("--limit", optarg, INT32_MAX, &limit))
                return EXIT_USAGE;
            break;
        case 'h':
            puts("usage: norn runs list [--agent ID] [--state STATE] [--limit N]\n"
                 "  Runs, newest first (STATE: queued, running, succeeded, failed, timed_out,\n"
                 "  cancelled); follows pages until --limit rows (default 50, 0 = all).");
            return EXIT_OK;
        default: return EXIT_USAGE;
        }
    }
    if (need_operands(argc, 0, "runs list", "no operands"))
        return EXIT_USAGE;
    Pager p = {
        "runs list", &norn__v1__agent_service__rpc.methods[NORN__V1__AGENT_SERVICE__LIST_RUNS],
        &req.base,   "runs",
        run_row,     limit};
    return list_pages(g, ch, &p);
}

static int cmd_runs_get(Globals *g, RpcChannel *ch, int argc, char **argv)
{
    int rc = help_only(argc, argv,
                       "usage: norn runs get RUN_ID\n"
                       "  One run: state, times, exit status, error and the log tail.");
    if (rc >= 0)
        return rc;
    if (need_operands(argc, 1, "runs get", "one run id"))
        return EXIT_USAGE;
    Norn__V1__GetRunResponse *resp = NULL;
    rc = get_run(g, ch, "runs get", argv[optind], &resp);
    if (rc != EXIT_OK)
        return rc;
    if (resp->run)
        print_run(g, resp->run);
    else
        print_json(&resp->base);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return EXIT_OK;
}

static int cmd_runs_cancel(Globals *g, RpcChannel *ch, int argc, char **argv)
{
    int rc = help_only(argc, argv,
                       "usage: norn runs cancel RUN_ID\n"
                       "  Cancels a queued or running run (its process group is killed); a\n"
                       "  finished run cannot be cancelled.");
    if (rc >= 0)
        return rc;
    if (need_operands(argc, 1, "runs cancel", "one run id"))
        return EXIT_USAGE;
    Norn__V1__CancelRunRequest req = NORN__V1__CANCEL_RUN_REQUEST__INIT;
    req.run_id = argv[optind];
    Norn__V1__CancelRunResponse *resp = NULL;
    RpcCallOptions co = call_options(g);
    RpcStatus st;
    rc = call_result("runs cancel",
                     norn__v1__agent_service__cancel_run__call(ch, &req, &resp, &co, &st), &st);
    if (rc != EXIT_OK)
        return rc;
    if (resp->run)
        print_run(g, resp->run);
    else
        print_json(&resp->base);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return EXIT_OK;
}

typedef struct Command {
    const char *group, *verb;
    int (*run)(Globals *g, RpcChannel *ch, int argc, char **argv);
} Command;

static const Command commands[] = {
    {"health", NULL, cmd_health},
    {"sessions", "list", cmd_sessions_list},
    {"sessions", "get", cmd_sessions_get},
    {"sessions", "delete", cmd_sessions_delete},
    {"steps", "list", cmd_steps_list},
    {"watch", NULL, cmd_watch},
    {"agents", "list", cmd_agents_list},
    {"agents", "get", cmd_agents_get},
    {"agents", "register", cmd_agents_register},
    {"agents", "import", cmd_agents_import},
    {"agents", "delete", cmd_agents_delete},
    {"run", NULL, cmd_run},
    {"runs", "list", cmd_runs_list},
    {"runs", "get", cmd_runs_get},
    {"runs", "cancel", cmd_runs_cancel},
    {"swarms", "list", cmd_swarms_list},
    {"swarms", "get", cmd_swarms_get},
    {"swarms", "analyze", cmd_swarms_analyze},
    {"swarms", "delete", cmd_swarms_delete},
    {"audit", "list", cmd_audit_list},
    {"audit", "delete", cmd_audit_delete},
    {"config", "get", cmd_config_get},
    {"config", "set", cmd_config_set},
    {"stats", NULL, cmd_stats},
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
            g.timeout_given = 1;
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
