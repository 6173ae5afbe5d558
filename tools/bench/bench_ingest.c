/*
 * bench_ingest.c — `norn-bench ingest`: RecordSteps throughput.
 *
 * N streams run in parallel, each a thread with its own channel (and TCP
 * connection) and its own sessions: OpenSession, then RecordSteps calls of B
 * whole steps each until the time is up, rolling over to a new session
 * (CompleteSession + OpenSession) before the session would pass
 * --steps-per-session. Steps look like a real agent's: one of a few tool
 * names, a tool_input Struct with three fields that differ from step to
 * step (so loop detection sees no repetition), and a result text of
 * --result-bytes bytes.
 *
 * Reported: steps/s and calls/s over the whole run (session roll-overs
 * included in the time), and the RecordSteps call latency p50/p90/p99/max.
 */
#include <getopt.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "norn/v1/session_service.grpc-c.h"

typedef struct IngestOpts {
    const char *server;
    const char *api_key;
    uint64_t streams;
    uint64_t batch;
    double seconds;
    uint64_t steps_per_session;
    uint64_t result_bytes;
    uint64_t timeout_ms;
    int shared_connection;
} IngestOpts;

/* One step's storage: the message and the buffers it points into. */
typedef struct StepSlot {
    Norn__V1__Step step;
    Google__Protobuf__Struct input;
    Google__Protobuf__Struct__FieldsEntry entries[3];
    Google__Protobuf__Struct__FieldsEntry *entry_ptrs[3];
    Google__Protobuf__Value values[3];
    char tool_use_id[64];
    char path[128];
    char *result;
} StepSlot;

typedef struct Worker {
    int idx;
    const IngestOpts *o;
    pthread_barrier_t *barrier;
    pthread_t thread;
    RpcChannel *ch;
    RpcCallOptions call_opts;

    StepSlot *slots;
    Norn__V1__Step **step_ptrs;
    char session_id[64];
    uint64_t session_steps;
    uint64_t seq;

    /* results */
    uint64_t start_ns, end_ns;
    uint64_t steps, calls, sessions, errors, not_continue;
    RpcCode last_code;
    char first_error[256];
    int fatal;
    LatSamples lat;
} Worker;

static const char *const tool_names[] = {"read_file", "web_search", "run_sql", "http_get"};

static void usage(FILE *out)
{
    fputs("usage: norn-bench ingest [options]\n"
          "\n"
          "RecordSteps throughput: N concurrent streams (threads, each with its own channel\n"
          "and sessions) send batches of B steps until the time is up.\n"
          "\n"
          "options:\n"
          "  --server ADDR             nornd address (NORN_SERVER, default 127.0.0.1:50051)\n"
          "  --api-key KEY             API key (NORN_API_KEY)\n"
          "  --streams N               concurrent streams (default 4)\n"
          "  --batch B                 steps per RecordSteps call, 1..1000 (default 100)\n"
          "  --seconds S               measured duration (default 10)\n"
          "  --steps-per-session K     roll over to a new session before K steps\n"
          "                            (default 10000, the server's max_steps_per_session)\n"
          "  --result-bytes N          result_text size per step (default 200)\n"
          "  --timeout-ms N            deadline per call (default 30000)\n"
          "  --shared-connection       let all streams share one TCP connection\n"
          "                            (default: one connection per stream)\n"
          "  -h, --help                this text\n",
          out);
}

static void set_error(Worker *w, RpcCode code, const char *what, const RpcStatus *st)
{
    w->errors++;
    w->last_code = code;
    if (!w->first_error[0])
        snprintf(w->first_error, sizeof w->first_error, "%s: %s: %s", what, rpc_code_name(code),
                 st && st->message ? st->message : "");
    if (code == RPC_UNAVAILABLE || code == RPC_DEADLINE_EXCEEDED || code == RPC_UNAUTHENTICATED ||
        code == RPC_PERMISSION_DENIED || w->errors >= 100)
        w->fatal = 1;
}

static void prepare_slots(Worker *w)
{
    size_t b = w->o->batch;
    w->slots = calloc(b, sizeof *w->slots);
    w->step_ptrs = calloc(b, sizeof *w->step_ptrs);
    if (!w->slots || !w->step_ptrs) {
        fputs("norn-bench: out of memory\n", stderr);
        exit(BENCH_FAILED);
    }
    for (size_t i = 0; i < b; i++) {
        StepSlot *s = &w->slots[i];
        norn__v1__step__init(&s->step);
        google__protobuf__struct__init(&s->input);
        static const char *const keys[3] = {"path", "limit", "recursive"};
        for (int k = 0; k < 3; k++) {
            google__protobuf__struct__fields_entry__init(&s->entries[k]);
            google__protobuf__value__init(&s->values[k]);
            s->entries[k].key = (char *)keys[k];
            s->entries[k].value = &s->values[k];
            s->entry_ptrs[k] = &s->entries[k];
        }
        s->values[0].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
        s->values[0].string_value = s->path;
        s->values[1].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
        s->values[2].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
        s->input.n_fields = 3;
        s->input.fields = s->entry_ptrs;
        s->result = malloc(w->o->result_bytes + 1);
        if (!s->result) {
            fputs("norn-bench: out of memory\n", stderr);
            exit(BENCH_FAILED);
        }
        s->step.tool_use_id = s->tool_use_id;
        s->step.tool_input = &s->input;
        s->step.result_text = s->result;
        s->step.result_status = NORN__V1__RESULT_STATUS__RESULT_STATUS_SUCCESS;
        w->step_ptrs[i] = &s->step;
    }
}

/* Gives every step of the next call fresh, distinct content. */
static void fill_batch(Worker *w)
{
    static const char filler[] = "lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do "
                                 "eiusmod tempor incididunt ut labore et dolore magna aliqua. ";
    size_t rb = w->o->result_bytes;
    for (size_t i = 0; i < w->o->batch; i++) {
        StepSlot *s = &w->slots[i];
        uint64_t n = ++w->seq;
        snprintf(s->tool_use_id, sizeof s->tool_use_id, "toolu_%d_%llu", w->idx,
                 (unsigned long long)n);
        snprintf(s->path, sizeof s->path, "/srv/data/stream-%d/part-%llu.json", w->idx,
                 (unsigned long long)n);
        s->values[1].number_value = (double)(100 + n % 50);
        s->values[2].bool_value = (n & 1) != 0;
        s->step.tool_name = (char *)tool_names[n % 4];
        s->step.execution_time_ms = 5.0 + (double)(n % 40);
        int p = snprintf(s->result, rb + 1, "ok: %llu records from %s; ", (unsigned long long)n,
                         s->path);
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
}

static int open_session(Worker *w)
{
    Norn__V1__OpenSessionRequest req = NORN__V1__OPEN_SESSION_REQUEST__INIT;
    Norn__V1__TaskDefinition task = NORN__V1__TASK_DEFINITION__INIT;
    char agent[64], desc[128];
    snprintf(agent, sizeof agent, "bench-ingest-%d", w->idx);
    snprintf(desc, sizeof desc, "Summarise the records of stream %d (benchmark)", w->idx);
    task.description = desc;
    req.agent_name = agent;
    req.model = "bench-model";
    req.task = &task;
    req.system_prompt = "You are a careful data assistant. Use the tools to answer.";
    Norn__V1__OpenSessionResponse *resp = NULL;
    RpcStatus st;
    RpcCode code =
        norn__v1__session_service__open_session__call(w->ch, &req, &resp, &w->call_opts, &st);
    if (code != RPC_OK || !resp->session) {
        set_error(w, code, "OpenSession", &st);
        rpc_status_clear(&st);
        if (resp)
            norn__v1__open_session_response__free_unpacked(resp, NULL);
        w->fatal = 1;
        return -1;
    }
    snprintf(w->session_id, sizeof w->session_id, "%s", resp->session->session_id);
    w->session_steps = resp->session->total_steps;
    w->sessions++;
    norn__v1__open_session_response__free_unpacked(resp, NULL);
    rpc_status_clear(&st);
    return 0;
}

static void complete_session(Worker *w)
{
    if (!w->session_id[0])
        return;
    Norn__V1__CompleteSessionRequest req = NORN__V1__COMPLETE_SESSION_REQUEST__INIT;
    req.session_id = w->session_id;
    req.status = NORN__V1__SESSION_STATUS__SESSION_STATUS_COMPLETED;
    req.final_text = "Done: all records summarised.";
    Norn__V1__CompleteSessionResponse *resp = NULL;
    RpcStatus st;
    RpcCode code =
        norn__v1__session_service__complete_session__call(w->ch, &req, &resp, &w->call_opts, &st);
    if (code != RPC_OK)
        set_error(w, code, "CompleteSession", &st);
    if (resp)
        norn__v1__complete_session_response__free_unpacked(resp, NULL);
    rpc_status_clear(&st);
    w->session_id[0] = '\0';
}

static void record_once(Worker *w)
{
    const IngestOpts *o = w->o;
    if (w->session_steps + o->batch > o->steps_per_session) {
        complete_session(w);
        if (open_session(w) != 0)
            return;
    }
    fill_batch(w);
    Norn__V1__RecordStepsRequest req = NORN__V1__RECORD_STEPS_REQUEST__INIT;
    req.session_id = w->session_id;
    req.n_steps = o->batch;
    req.steps = w->step_ptrs;
    Norn__V1__RecordStepsResponse *resp = NULL;
    RpcStatus st;
    uint64_t t0 = bench_now_ns();
    RpcCode code =
        norn__v1__session_service__record_steps__call(w->ch, &req, &resp, &w->call_opts, &st);
    uint64_t t1 = bench_now_ns();
    if (code != RPC_OK) {
        set_error(w, code, "RecordSteps", &st);
        /* A full or completed session: start a fresh one next time. */
        if (code == RPC_RESOURCE_EXHAUSTED || code == RPC_FAILED_PRECONDITION)
            w->session_steps = o->steps_per_session;
    } else {
        lat_add(&w->lat, t1 - t0);
        w->calls++;
        w->steps += o->batch;
        w->session_steps += o->batch;
        if (resp->n_verdicts != o->batch) {
            w->errors++;
            if (!w->first_error[0])
                snprintf(w->first_error, sizeof w->first_error,
                         "RecordSteps: %zu verdicts for %llu steps", resp->n_verdicts,
                         (unsigned long long)o->batch);
        }
        for (size_t i = 0; i < resp->n_verdicts; i++)
            if (resp->verdicts[i]->action != NORN__V1__ACTION__ACTION_CONTINUE)
                w->not_continue++;
    }
    if (resp)
        norn__v1__record_steps_response__free_unpacked(resp, NULL);
    rpc_status_clear(&st);
}

static void *worker_main(void *arg)
{
    Worker *w = arg;
    const IngestOpts *o = w->o;
    /* The first session (and with it the connection) is set up before the
     * clock starts. */
    open_session(w);
    pthread_barrier_wait(w->barrier);
    w->start_ns = bench_now_ns();
    uint64_t deadline = w->start_ns + (uint64_t)(o->seconds * 1e9);
    while (!w->fatal && bench_now_ns() < deadline)
        record_once(w);
    w->end_ns = bench_now_ns();
    if (!w->fatal)
        complete_session(w);
    return NULL;
}

int bench_ingest(int argc, char **argv)
{
    IngestOpts o = {
        .server = getenv("NORN_SERVER") ? getenv("NORN_SERVER") : "127.0.0.1:50051",
        .api_key = getenv("NORN_API_KEY"),
        .streams = 4,
        .batch = 100,
        .seconds = 10,
        .steps_per_session = 10000,
        .result_bytes = 200,
        .timeout_ms = 30000,
    };
    enum { O_SERVER = 256, O_KEY, O_STREAMS, O_BATCH, O_SECONDS, O_SPS, O_RB, O_TIMEOUT, O_SHARED };
    static const struct option longopts[] = {
        {"server", required_argument, NULL, O_SERVER},
        {"api-key", required_argument, NULL, O_KEY},
        {"streams", required_argument, NULL, O_STREAMS},
        {"batch", required_argument, NULL, O_BATCH},
        {"seconds", required_argument, NULL, O_SECONDS},
        {"steps-per-session", required_argument, NULL, O_SPS},
        {"result-bytes", required_argument, NULL, O_RB},
        {"timeout-ms", required_argument, NULL, O_TIMEOUT},
        {"shared-connection", no_argument, NULL, O_SHARED},
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
        case O_BATCH: bad = bench_parse_u64("--batch", optarg, 1, 1000, &o.batch); break;
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
        case O_SHARED: o.shared_connection = 1; break;
        case 'h': usage(stdout); return BENCH_OK;
        default: usage(stderr); return BENCH_USAGE;
        }
        if (bad)
            return BENCH_USAGE;
    }
    if (optind != argc) {
        fprintf(stderr, "norn-bench ingest: unexpected argument '%s'\n", argv[optind]);
        return BENCH_USAGE;
    }
    if (o.batch > o.steps_per_session) {
        fputs("norn-bench ingest: --batch must not exceed --steps-per-session\n", stderr);
        return BENCH_USAGE;
    }

    Worker *ws = calloc(o.streams, sizeof *ws);
    pthread_barrier_t barrier;
    if (!ws || pthread_barrier_init(&barrier, NULL, (unsigned)o.streams)) {
        fputs("norn-bench: out of memory\n", stderr);
        return BENCH_FAILED;
    }
    for (size_t i = 0; i < o.streams; i++) {
        Worker *w = &ws[i];
        w->idx = (int)i;
        w->o = &o;
        w->barrier = &barrier;
        w->call_opts.timeout_ms = (int64_t)o.timeout_ms;
        RpcChannelOptions copts;
        memset(&copts, 0, sizeof copts);
        copts.api_key = o.api_key;
        /* gRPC shares one connection among channels with identical
         * arguments; a per-channel receive limit makes them differ, so
         * every stream gets its own connection, as separate agents would. */
        copts.max_recv_bytes = (64u << 20) + (o.shared_connection ? 0 : i);
        char err[256];
        w->ch = rpc_channel_open(o.server, &copts, err, sizeof err);
        if (!w->ch) {
            fprintf(stderr, "norn-bench ingest: %s\n", err);
            exit(BENCH_USAGE);
        }
        prepare_slots(w);
    }
    printf("ingest: server %s, %llu streams, batch %llu, %.1f s, result %llu bytes, "
           "roll-over at %llu steps\n",
           o.server, (unsigned long long)o.streams, (unsigned long long)o.batch, o.seconds,
           (unsigned long long)o.result_bytes, (unsigned long long)o.steps_per_session);
    fflush(stdout);
    for (size_t i = 0; i < o.streams; i++)
        if (pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]) != 0) {
            fputs("norn-bench ingest: cannot start a thread\n", stderr);
            exit(BENCH_FAILED);
        }
    LatSamples all = {0};
    uint64_t steps = 0, calls = 0, sessions = 0, errors = 0, not_continue = 0;
    uint64_t t_start = UINT64_MAX, t_end = 0;
    int rc = BENCH_OK;
    for (size_t i = 0; i < o.streams; i++) {
        Worker *w = &ws[i];
        pthread_join(w->thread, NULL);
        steps += w->steps;
        calls += w->calls;
        sessions += w->sessions;
        errors += w->errors;
        not_continue += w->not_continue;
        if (w->start_ns && w->start_ns < t_start)
            t_start = w->start_ns;
        if (w->end_ns > t_end)
            t_end = w->end_ns;
        lat_merge(&all, &w->lat);
        if (w->first_error[0]) {
            fprintf(stderr, "stream %d: %llu errors, first: %s\n", w->idx,
                    (unsigned long long)w->errors, w->first_error);
            int e = w->last_code != RPC_OK ? bench_exit_for(w->last_code) : BENCH_FAILED;
            if (e > rc)
                rc = e;
        }
    }
    double secs = t_end > t_start ? (double)(t_end - t_start) / 1e9 : 0;
    printf("elapsed                %.2f s\n", secs);
    printf("steps                  %llu  (%.0f steps/s)\n", (unsigned long long)steps,
           secs > 0 ? (double)steps / secs : 0.0);
    printf("RecordSteps calls      %llu  (%.0f calls/s)\n", (unsigned long long)calls,
           secs > 0 ? (double)calls / secs : 0.0);
    printf("sessions opened        %llu\n", (unsigned long long)sessions);
    printf("errors                 %llu\n", (unsigned long long)errors);
    if (not_continue)
        printf("verdicts not CONTINUE  %llu\n", (unsigned long long)not_continue);
    lat_print(stdout, "RecordSteps latency", &all);
    lat_free(&all);
    for (size_t i = 0; i < o.streams; i++) {
        Worker *w = &ws[i];
        rpc_channel_close(w->ch);
        for (size_t k = 0; k < o.batch; k++)
            free(w->slots[k].result);
        free(w->slots);
        free(w->step_ptrs);
        lat_free(&w->lat);
    }
    pthread_barrier_destroy(&barrier);
    free(ws);
    return rc;
}
