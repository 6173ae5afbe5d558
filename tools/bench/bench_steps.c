/*
 * bench_steps.c — `norn-bench steps`: BeginStep + EndStep round trips.
 *
 * The step-by-step ingest path, as an agent SDK drives it around every tool
 * call: BeginStep ("may the tool run?"), then EndStep with the result. N
 * streams run in parallel, each a thread with its own channel (TCP
 * connection) and its own sessions; each step has a distinct tool_use_id
 * and tool_input, so loop detection sees no repetition. A stream rolls over
 * to a new session (CompleteSession + OpenSession) before the session
 * reaches --steps-per-session.
 *
 * Reported: step pairs/s over the run (roll-overs included in the time),
 * the latency of each call kind and of the whole pair.
 */
#include <getopt.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "bench_more.h"
#include "norn/v1/session_service.grpc-c.h"

typedef struct StepsOpts {
    const char *server;
    const char *api_key;
    uint64_t streams;
    double seconds;
    uint64_t steps_per_session;
    uint64_t result_bytes;
    uint64_t timeout_ms;
} StepsOpts;

typedef struct Stream {
    int idx;
    const StepsOpts *o;
    pthread_barrier_t *barrier;
    pthread_t thread;
    RpcChannel *ch;
    RpcCallOptions co;
    char session_id[64];
    uint64_t session_steps;
    uint64_t seq;
    char *result;

    uint64_t start_ns, end_ns;
    uint64_t pairs, sessions, errors, not_continue;
    RpcCode last_code;
    char first_error[256];
    int fatal;
    LatSamples begin_lat, end_lat, pair_lat;
} Stream;

static const char *const tool_names[] = {"read_file", "web_search", "run_sql", "http_get"};

static void usage(FILE *out)
{
    fputs("usage: norn-bench steps [options]\n"
          "\n"
          "BeginStep + EndStep round trips: N concurrent streams (threads, each with its own\n"
          "channel and sessions) run one BeginStep then one EndStep per step until the time\n"
          "is up.\n"
          "\n"
          "options:\n"
          "  --server ADDR             nornd address (NORN_SERVER, default 127.0.0.1:50051)\n"
          "  --api-key KEY             API key (NORN_API_KEY)\n"
          "  --streams N               concurrent streams (default 4)\n"
          "  --seconds S               measured duration (default 10)\n"
          "  --steps-per-session K     roll over to a new session before K steps\n"
          "                            (default 10000, the server's max_steps_per_session)\n"
          "  --result-bytes N          result_text size per step (default 200)\n"
          "  --timeout-ms N            deadline per call (default 30000)\n"
          "  -h, --help                this text\n",
          out);
}

static void set_error(Stream *s, RpcCode code, const char *what, const RpcStatus *st)
{
    s->errors++;
    s->last_code = code;
    if (!s->first_error[0])
        snprintf(s->first_error, sizeof s->first_error, "%s: %s: %s", what, rpc_code_name(code),
                 st && st->message ? st->message : "");
    if (code == RPC_UNAVAILABLE || code == RPC_DEADLINE_EXCEEDED || code == RPC_UNAUTHENTICATED ||
        code == RPC_PERMISSION_DENIED || s->errors >= 100)
        s->fatal = 1;
}

static int open_session(Stream *s)
{
    Norn__V1__OpenSessionRequest req = NORN__V1__OPEN_SESSION_REQUEST__INIT;
    Norn__V1__TaskDefinition task = NORN__V1__TASK_DEFINITION__INIT;
    char agent[64], desc[128];
    snprintf(agent, sizeof agent, "bench-steps-%d", s->idx);
    snprintf(desc, sizeof desc, "Collect the figures of stream %d (benchmark)", s->idx);
    task.description = desc;
    req.agent_name = agent;
    req.model = "bench-model";
    req.task = &task;
    req.system_prompt = "You are a careful data assistant. Use the tools to answer.";
    Norn__V1__OpenSessionResponse *resp = NULL;
    RpcStatus st;
    RpcCode code = norn__v1__session_service__open_session__call(s->ch, &req, &resp, &s->co, &st);
    if (code != RPC_OK || !resp->session) {
        set_error(s, code, "OpenSession", &st);
        rpc_status_clear(&st);
        if (resp)
            norn__v1__open_session_response__free_unpacked(resp, NULL);
        s->fatal = 1;
        return -1;
    }
    snprintf(s->session_id, sizeof s->session_id, "%s", resp->session->session_id);
    s->session_steps = resp->session->total_steps;
    s->sessions++;
    norn__v1__open_session_response__free_unpacked(resp, NULL);
    rpc_status_clear(&st);
    return 0;
}

static void complete_session(Stream *s)
{
    if (!s->session_id[0])
        return;
    Norn__V1__CompleteSessionRequest req = NORN__V1__COMPLETE_SESSION_REQUEST__INIT;
    req.session_id = s->session_id;
    req.status = NORN__V1__SESSION_STATUS__SESSION_STATUS_COMPLETED;
    req.final_text = "Done: all figures collected.";
    Norn__V1__CompleteSessionResponse *resp = NULL;
    RpcStatus st;
    RpcCode code =
        norn__v1__session_service__complete_session__call(s->ch, &req, &resp, &s->co, &st);
    if (code != RPC_OK)
        set_error(s, code, "CompleteSession", &st);
    if (resp)
        norn__v1__complete_session_response__free_unpacked(resp, NULL);
    rpc_status_clear(&st);
    s->session_id[0] = '\0';
}

static void fill_result(Stream *s, uint64_t n, const char *path)
{
    static const char filler[] = "lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do "
                                 "eiusmod tempor incididunt ut labore et dolore magna aliqua. ";
    size_t rb = s->o->result_bytes;
    int p = snprintf(s->result, rb + 1, "ok: %llu records from %s; ", (unsigned long long)n, path);
    size_t len = p < 0 ? 0 : (size_t)p > rb ? rb : (size_t)p;
    while (len < rb) {
        size_t chunk = sizeof filler - 1;
        if (chunk > rb - len)
            chunk = rb - len;
        memcpy(s->result + len, filler, chunk);
        len += chunk;
    }
    s->result[rb] = '\0';
}

/* One step: BeginStep, then (when the tool may run) EndStep. */
static void step_once(Stream *s)
{
    const StepsOpts *o = s->o;
    if (s->session_steps + 1 > o->steps_per_session || !s->session_id[0]) {
        complete_session(s);
        if (open_session(s) != 0)
            return;
    }
    uint64_t n = ++s->seq;
    char tool_use_id[64], path[128];
    snprintf(tool_use_id, sizeof tool_use_id, "toolu_%d_%llu", s->idx, (unsigned long long)n);
    snprintf(path, sizeof path, "/srv/data/stream-%d/part-%llu.json", s->idx,
             (unsigned long long)n);

    Google__Protobuf__Value v[3];
    Google__Protobuf__Struct__FieldsEntry e[3], *ep[3];
    static const char *const keys[3] = {"path", "limit", "recursive"};
    for (int k = 0; k < 3; k++) {
        google__protobuf__value__init(&v[k]);
        google__protobuf__struct__fields_entry__init(&e[k]);
        e[k].key = (char *)keys[k];
        e[k].value = &v[k];
        ep[k] = &e[k];
    }
    v[0].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    v[0].string_value = path;
    v[1].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
    v[1].number_value = (double)(100 + n % 50);
    v[2].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
    v[2].bool_value = (n & 1) != 0;
    Google__Protobuf__Struct input = GOOGLE__PROTOBUF__STRUCT__INIT;
    input.n_fields = 3;
    input.fields = ep;

    Norn__V1__BeginStepRequest breq = NORN__V1__BEGIN_STEP_REQUEST__INIT;
    breq.session_id = s->session_id;
    breq.tool_use_id = tool_use_id;
    breq.tool_name = (char *)tool_names[n % 4];
    breq.tool_input = &input;
    Norn__V1__BeginStepResponse *bresp = NULL;
    RpcStatus st;
    uint64_t t0 = bench_now_ns();
    RpcCode code = norn__v1__session_service__begin_step__call(s->ch, &breq, &bresp, &s->co, &st);
    uint64_t t1 = bench_now_ns();
    int run = 0;
    if (code != RPC_OK) {
        set_error(s, code, "BeginStep", &st);
        /* A full or ended session: start a fresh one next time. */
        if (code == RPC_RESOURCE_EXHAUSTED || code == RPC_FAILED_PRECONDITION)
            s->session_steps = o->steps_per_session;
    } else {
        lat_add(&s->begin_lat, t1 - t0);
        s->session_steps++;
        run = bresp->verdict && bresp->verdict->action == NORN__V1__ACTION__ACTION_CONTINUE;
        if (!run)
            s->not_continue++;
    }
    if (bresp)
        norn__v1__begin_step_response__free_unpacked(bresp, NULL);
    rpc_status_clear(&st);
    if (!run)
        return;

    fill_result(s, n, path);
    Norn__V1__EndStepRequest ereq = NORN__V1__END_STEP_REQUEST__INIT;
    ereq.session_id = s->session_id;
    ereq.tool_use_id = tool_use_id;
    ereq.result_text = s->result;
    ereq.result_status = NORN__V1__RESULT_STATUS__RESULT_STATUS_SUCCESS;
    ereq.execution_time_ms = 5.0 + (double)(n % 40);
    Norn__V1__EndStepResponse *eresp = NULL;
    uint64_t t2 = bench_now_ns();
    code = norn__v1__session_service__end_step__call(s->ch, &ereq, &eresp, &s->co, &st);
    uint64_t t3 = bench_now_ns();
    if (code != RPC_OK) {
        set_error(s, code, "EndStep", &st);
    } else {
        lat_add(&s->end_lat, t3 - t2);
        lat_add(&s->pair_lat, t3 - t0);
        s->pairs++;
    }
    if (eresp)
        norn__v1__end_step_response__free_unpacked(eresp, NULL);
    rpc_status_clear(&st);
}

static void *stream_main(void *arg)
{
    Stream *s = arg;
    /* The first session (and with it the connection) is set up before the
     * clock starts. */
    open_session(s);
    pthread_barrier_wait(s->barrier);
    s->start_ns = bench_now_ns();
    uint64_t deadline = s->start_ns + (uint64_t)(s->o->seconds * 1e9);
    while (!s->fatal && bench_now_ns() < deadline)
        step_once(s);
    s->end_ns = bench_now_ns();
    if (!s->fatal)
        complete_session(s);
    return NULL;
}

int bench_steps(int argc, char **argv)
{
    StepsOpts o = {
        .server = getenv("NORN_SERVER") ? getenv("NORN_SERVER") : "127.0.0.1:50051",
        .api_key = getenv("NORN_API_KEY"),
        .streams = 4,
        .seconds = 10,
        .steps_per_session = 10000,
        .result_bytes = 200,
        .timeout_ms = 30000,
    };
    enum { O_SERVER = 256, O_KEY, O_STREAMS, O_SECONDS, O_SPS, O_RB, O_TIMEOUT };
    static const struct option longopts[] = {
        {"server", required_argument, NULL, O_SERVER},
        {"api-key", required_argument, NULL, O_KEY},
        {"streams", required_argument, NULL, O_STREAMS},
        {"seconds", required_argument, NULL, O_SECONDS},
        {"steps-per-session", required_argument, NULL, O_SPS},
        {"result-bytes", required_argument, NULL, O_RB},
        {"timeout-ms", required_argument, NULL, O_TIMEOUT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case O_SERVER: o.server = optarg; break;
        case O_KEY: o.api_key = optarg; break;
        case O_STREAMS: bad = bench_parse_u64("--streams", optarg, 1, 256, &o.streams); break;
        case O_SECONDS:
            bad = bench_parse_double("--seconds", optarg, 0.1, 86400, &o.seconds);
            break;
        case O_SPS:
            bad = bench_parse_u64("--steps-per-session", optarg, 1, 1000000, &o.steps_per_session);
            break;
        case O_RB:
            bad = bench_parse_u64("--result-bytes", optarg, 1, 1 << 20, &o.result_bytes);
            break;
        case O_TIMEOUT:
            bad = bench_parse_u64("--timeout-ms", optarg, 0, 3600000, &o.timeout_ms);
            break;
        case 'h': usage(stdout); return BENCH_OK;
        default: usage(stderr); return BENCH_USAGE;
        }
        if (bad)
            return BENCH_USAGE;
    }
    if (optind != argc) {
        fprintf(stderr, "norn-bench steps: unexpected argument '%s'\n", argv[optind]);
        return BENCH_USAGE;
    }

    Stream *ss = calloc(o.streams, sizeof *ss);
    pthread_barrier_t barrier;
    if (!ss || pthread_barrier_init(&barrier, NULL, (unsigned)o.streams)) {
        fputs("norn-bench: out of memory\n", stderr);
        return BENCH_FAILED;
    }
    for (size_t i = 0; i < o.streams; i++) {
        Stream *s = &ss[i];
        s->idx = (int)i;
        s->o = &o;
        s->barrier = &barrier;
        s->co.timeout_ms = (int64_t)o.timeout_ms;
        RpcChannelOptions copts;
        memset(&copts, 0, sizeof copts);
        copts.api_key = o.api_key;
        /* Distinct arguments: a connection of its own (see bench_ingest.c). */
        copts.max_recv_bytes = (64u << 20) + i;
        char err[256];
        s->ch = rpc_channel_open(o.server, &copts, err, sizeof err);
        s->result = malloc(o.result_bytes + 1);
        if (!s->ch || !s->result) {
            fprintf(stderr, "norn-bench steps: %s\n", s->ch ? "out of memory" : err);
            exit(BENCH_USAGE);
        }
    }
    printf("steps: server %s, %llu streams, %.1f s, result %llu bytes, roll-over at %llu steps\n",
           o.server, (unsigned long long)o.streams, o.seconds, (unsigned long long)o.result_bytes,
           (unsigned long long)o.steps_per_session);
    fflush(stdout);
    for (size_t i = 0; i < o.streams; i++)
        if (pthread_create(&ss[i].thread, NULL, stream_main, &ss[i]) != 0) {
            fputs("norn-bench steps: cannot start a thread\n", stderr);
            exit(BENCH_FAILED);
        }
    LatSamples begin = {0}, end = {0}, pair = {0};
    uint64_t pairs = 0, sessions = 0, errors = 0, not_continue = 0;
    uint64_t t_start = UINT64_MAX, t_end = 0;
    int rc = BENCH_OK;
    for (size_t i = 0; i < o.streams; i++) {
        Stream *s = &ss[i];
        pthread_join(s->thread, NULL);
        pairs += s->pairs;
        sessions += s->sessions;
        errors += s->errors;
        not_continue += s->not_continue;
        if (s->start_ns && s->start_ns < t_start)
            t_start = s->start_ns;
        if (s->end_ns > t_end)
            t_end = s->end_ns;
        lat_merge(&begin, &s->begin_lat);
        lat_merge(&end, &s->end_lat);
        lat_merge(&pair, &s->pair_lat);
        if (s->first_error[0]) {
            fprintf(stderr, "stream %d: %llu errors, first: %s\n", s->idx,
                    (unsigned long long)s->errors, s->first_error);
            int e = s->last_code != RPC_OK ? bench_exit_for(s->last_code) : BENCH_FAILED;
            if (e > rc)
                rc = e;
        }
    }
    double secs = t_end > t_start ? (double)(t_end - t_start) / 1e9 : 0;
    printf("elapsed                %.2f s\n", secs);
    printf("step pairs             %llu  (%.0f pairs/s, %.0f calls/s)\n", (unsigned long long)pairs,
           secs > 0 ? (double)pairs / secs : 0.0, secs > 0 ? 2.0 * (double)pairs / secs : 0.0);
    printf("sessions opened        %llu\n", (unsigned long long)sessions);
    printf("errors                 %llu\n", (unsigned long long)errors);
    if (not_continue)
        printf("BeginStep not CONTINUE %llu\n", (unsigned long long)not_continue);
    lat_print(stdout, "BeginStep latency", &begin);
    lat_print(stdout, "EndStep latency", &end);
    lat_print(stdout, "pair latency", &pair);
    lat_free(&begin);
    lat_free(&end);
    lat_free(&pair);
    for (size_t i = 0; i < o.streams; i++) {
        rpc_channel_close(ss[i].ch);
        free(ss[i].result);
        lat_free(&ss[i].begin_lat);
        lat_free(&ss[i].end_lat);
        lat_free(&ss[i].pair_lat);
    }
    pthread_barrier_destroy(&barrier);
    free(ss);
    return rc;
}
