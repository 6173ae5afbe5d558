/*
 * bench_watch.c — `norn-bench watch`: commit-to-watcher latency of the live
 * feed, and nornd's memory per idle watcher.
 *
 * N WatchSessions streams (from now, without steps) are spread over C
 * channels, each its own TCP connection. The client API is synchronous, so
 * every stream has a reader thread of its own (small stacks: --stack-kb).
 * A stream counts as established once its first message arrives; warm-up
 * commits are made until every stream has seen one.
 *
 * Latency mode (--watchers N): one writer thread then commits at --rate R
 * per second, each commit an OpenSession (a CREATED delta) followed by a
 * RecordSteps of one step (a STEP_ADDED delta), on a session id of its own
 * that carries the commit's number. The time just before each call is
 * stamped in a shared table; every reader records, for every delta it
 * receives, arrival time minus the stamp of the call that made it. Reported
 * over all (watcher, delta) pairs: p50/p90/p99/max, and deltas missing;
 * and per delta, the time until it reached its first and its last watcher
 * (the fan-out's span).
 *
 * Idle mode (--idle N): only opens and establishes the N streams.
 *
 * With --pid (nornd's pid, same machine) both modes read nornd's VmRSS
 * before the streams are opened (channels connected, one commit made) and
 * after they are established and have settled, and report the difference
 * per watcher.
 */
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "bench_more.h"
#include "norn/v1/session_service.grpc-c.h"
#include "norn/v1/stats_service.grpc-c.h"

typedef struct WatchOpts {
    const char *server;
    const char *api_key;
    uint64_t watchers;
    uint64_t channels;
    uint64_t rate;
    double seconds;
    uint64_t stack_kb;
    uint64_t timeout_ms;
    uint64_t settle_ms;
    uint64_t establish_s;
    uint64_t pid;
    uint64_t readers; /* 0 = a reader thread per stream */
    int idle;
} WatchOpts;

/* When the calls of measured commit i started, and when their deltas
 * reached the first and the last watcher ([0] OpenSession, [1] RecordSteps). */
typedef struct Stamp {
    _Atomic uint64_t open_ns, record_ns;
    _Atomic uint64_t first[2], last[2];
} Stamp;

typedef struct Shared {
    const WatchOpts *o;
    char prefix[40]; /* session ids of this run: prefix + 'w' or 'm' + number */
    size_t prefix_len;
    Stamp *stamps;
    size_t n_stamps;
    atomic_size_t established;
    atomic_size_t ended;           /* streams over before the end of the run */
    atomic_uint_fast64_t measured; /* measured deltas received, all watchers */
    atomic_int stop;
    RpcStreamSet *set;        /* --readers >= 1: every stream */
    atomic_size_t set_closed; /* streams of the set that ended, early or not */
} Shared;

typedef struct Watcher {
    int idx;
    Shared *sh;
    RpcChannel *ch;
    pthread_t thread;
    /* Guards call (the main thread cancels it); with a stream set, also
     * the figures below (two readers may hold events of one stream). */
    pthread_mutex_t mu;
    RpcClientCall *call;
    int established;
    LatSamples lat;
    uint64_t deltas, warmup, foreign, unmatched;
    int ended_early;
    RpcCode end_code;
    char end_msg[200];
} Watcher;

static void usage(FILE *out)
{
    fputs("usage: norn-bench watch --watchers N [options]\n"
          "       norn-bench watch --idle N --pid PID [options]\n"
          "\n"
          "WatchSessions fan-out. Opens N watch streams over C channels, read by a few\n"
          "threads from one completion queue (--readers), and waits until all are established. "
          "With --watchers, one writer then\n"
          "commits R times a second (OpenSession + RecordSteps of 1 step, 2 deltas) and\n"
          "every delta's commit-to-watcher latency is recorded: from just before the call\n"
          "to its arrival at each watcher. With --idle, the streams are only opened.\n"
          "With --pid, nornd's resident memory is read before and after the streams are\n"
          "opened and the growth per watcher reported.\n"
          "\n"
          "options:\n"
          "  --server ADDR       nornd address (NORN_SERVER, default 127.0.0.1:50051)\n"
          "  --api-key KEY       API key (NORN_API_KEY)\n"
          "  --watchers N        watch streams, latency run (default 100)\n"
          "  --idle N            watch streams, idle: memory only\n"
          "  --channels C        channels (TCP connections) the streams share\n"
          "                      (default N/100 + 1)\n"
          "  --rate R            commits per second (default 50)\n"
          "  --seconds S         measured duration (default 10)\n"
          "  --pid PID           nornd's pid, to read its VmRSS (same machine)\n"
          "  --readers R         threads reading all streams from one queue (default 2);\n"
          "                      0 = one thread per stream, blocking reads\n"
          "  --stack-kb K        reader thread stack size (default 128)\n"
          "  --settle-ms N       wait before reading memory (default 1000)\n"
          "  --establish-s N     give up when the streams are not established by then\n"
          "                      (default 120)\n"
          "  --timeout-ms N      deadline per unary call (default 30000)\n"
          "  -h, --help          this text\n",
          out);
}

static void sleep_ns(uint64_t ns)
{
    struct timespec t = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    while (nanosleep(&t, &t) != 0) {
    }
}

static void sleep_until(uint64_t when_ns)
{
    uint64_t now = bench_now_ns();
    if (when_ns > now)
        sleep_ns(when_ns - now);
}

/* VmRSS of `pid` in KiB (0 = this process); -1 when unreadable. */
static long long rss_kib(uint64_t pid)
{
    char path[64], line[256];
    if (pid)
        snprintf(path, sizeof path, "/proc/%llu/status", (unsigned long long)pid);
    else
        snprintf(path, sizeof path, "/proc/self/status");
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long long kib = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtoll(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kib;
}

static RpcChannel *open_channel(const WatchOpts *o, size_t i)
{
    RpcChannelOptions copts;
    memset(&copts, 0, sizeof copts);
    copts.api_key = o->api_key;
    /* Distinct arguments: a connection of its own (see bench_ingest.c). */
    copts.max_recv_bytes = (64u << 20) + i;
    char err[256];
    RpcChannel *ch = rpc_channel_open(o->server, &copts, err, sizeof err);
    if (!ch) {
        fprintf(stderr, "norn-bench watch: %s\n", err);
        exit(BENCH_USAGE);
    }
    return ch;
}

/* Connects a channel with a cheap call; the status of that call. */
static RpcCode connect_channel(RpcChannel *ch, const RpcCallOptions *co, char *err, size_t errlen)
{
    Norn__V1__GetStatsRequest req = NORN__V1__GET_STATS_REQUEST__INIT;
    Norn__V1__GetStatsResponse *resp = NULL;
    RpcStatus st;
    RpcCode code = norn__v1__stats_service__get_stats__call(ch, &req, &resp, co, &st);
    if (code != RPC_OK)
        snprintf(err, errlen, "GetStats: %s: %s", rpc_code_name(code),
                 st.message ? st.message : "");
    if (resp)
        norn__v1__get_stats_response__free_unpacked(resp, NULL);
    rpc_status_clear(&st);
    return code;
}

/* ---- readers ----------------------------------------------------------------------- */

static void on_delta(Watcher *w, const Norn__V1__SessionDelta *d, uint64_t now)
{
    Shared *sh = w->sh;
    const char *sid = d->session ? d->session->session_id : "";
    if (strncmp(sid, sh->prefix, sh->prefix_len) != 0) {
        w->foreign++;
        return;
    }
    char kind = sid[sh->prefix_len];
    if (kind == 'w') {
        w->warmup++;
        return;
    }
    char *end;
    unsigned long long i = strtoull(sid + sh->prefix_len + 1, &end, 10);
    if (kind != 'm' || *end || i >= sh->n_stamps) {
        w->unmatched++;
        return;
    }
    Stamp *s = &sh->stamps[i];
    int which = d->kind == NORN__V1__DELTA_KIND__DELTA_KIND_CREATED ? 0 : 1;
    uint64_t t0 = which == 0 ? atomic_load_explicit(&s->open_ns, memory_order_acquire)
                             : atomic_load_explicit(&s->record_ns, memory_order_acquire);
    if (!t0 || now < t0) {
        w->unmatched++;
        return;
    }
    lat_add(&w->lat, now - t0);
    uint64_t seen = atomic_load_explicit(&s->first[which], memory_order_relaxed);
    while ((!seen || now < seen) &&
           !atomic_compare_exchange_weak_explicit(&s->first[which], &seen, now,
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
    seen = atomic_load_explicit(&s->last[which], memory_order_relaxed);
    while (now > seen &&
           !atomic_compare_exchange_weak_explicit(&s->last[which], &seen, now, memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
    w->deltas++;
    atomic_fetch_add(&sh->measured, 1);
}

static void *reader_main(void *arg)
{
    Watcher *w = arg;
    Shared *sh = w->sh;
    Norn__V1__WatchSessionsRequest req = NORN__V1__WATCH_SESSIONS_REQUEST__INIT;
    req.include_steps = 0;
    RpcClientCall *call = norn__v1__session_service__watch_sessions__start(w->ch, &req, NULL);
    if (!call) {
        w->ended_early = 1;
        w->end_code = RPC_INTERNAL;
        snprintf(w->end_msg, sizeof w->end_msg, "cannot start the call");
        atomic_fetch_add(&sh->ended, 1);
        return NULL;
    }
    pthread_mutex_lock(&w->mu);
    w->call = call;
    pthread_mutex_unlock(&w->mu);
    if (atomic_load(&sh->stop))
        rpc_stream_cancel(call);
    for (;;) {
        Norn__V1__WatchSessionsResponse *m = NULL;
        int r = norn__v1__session_service__watch_sessions__read(call, &m);
        uint64_t now = bench_now_ns();
        if (r != 1)
            break;
        if (!w->established) {
            w->established = 1;
            atomic_fetch_add(&sh->established, 1);
        }
        if (m->event_case == NORN__V1__WATCH_SESSIONS_RESPONSE__EVENT_DELTA && m->delta)
            on_delta(w, m->delta, now);
        norn__v1__watch_sessions_response__free_unpacked(m, NULL);
    }
    int early = !atomic_load(&sh->stop);
    pthread_mutex_lock(&w->mu);
    w->call = NULL;
    pthread_mutex_unlock(&w->mu);
    RpcStatus st;
    RpcCode code = rpc_stream_finish(call, &st);
    if (early) {
        const char *resume = rpc_status_trailer(&st, "norn-resume-revision");
        w->ended_early = 1;
        w->end_code = code;
        snprintf(w->end_msg, sizeof w->end_msg, "%s: %s%s%s", rpc_code_name(code),
                 st.message ? st.message : "", resume ? "; resume at " : "", resume ? resume : "");
        atomic_fetch_add(&sh->ended, 1);
    }
    rpc_status_clear(&st);
    return NULL;
}

/* A stream of the set ended. */
static void on_set_end(Watcher *w, RpcStatus *st)
{
    Shared *sh = w->sh;
    if (!atomic_load(&sh->stop)) {
        const char *resume = rpc_status_trailer(st, "norn-resume-revision");
        pthread_mutex_lock(&w->mu);
        w->ended_early = 1;
        w->end_code = st->code;
        snprintf(w->end_msg, sizeof w->end_msg, "%s: %s%s%s", rpc_code_name(st->code),
                 st->message ? st->message : "", resume ? "; resume at " : "",
                 resume ? resume : "");
        pthread_mutex_unlock(&w->mu);
        atomic_fetch_add(&sh->ended, 1);
    }
    atomic_fetch_add(&sh->set_closed, 1);
}

/* Reads every stream of the set until all have ended after the stop. */
static void *set_reader_main(void *arg)
{
    Shared *sh = arg;
    size_t n = (size_t)sh->o->watchers;
    while (!(atomic_load(&sh->stop) && atomic_load(&sh->set_closed) >= n)) {
        RpcStreamEvent ev;
        if (!rpc_stream_set_next(sh->set, 100, &ev))
            continue;
        uint64_t now = bench_now_ns();
        Watcher *w = ev.user;
        if (!ev.msg) {
            on_set_end(w, &ev.status);
            rpc_status_clear(&ev.status);
            continue;
        }
        Norn__V1__WatchSessionsResponse *m = (Norn__V1__WatchSessionsResponse *)ev.msg;
        pthread_mutex_lock(&w->mu);
        if (!w->established) {
            w->established = 1;
            atomic_fetch_add(&sh->established, 1);
        }
        if (m->event_case == NORN__V1__WATCH_SESSIONS_RESPONSE__EVENT_DELTA && m->delta)
            on_delta(w, m->delta, now);
        pthread_mutex_unlock(&w->mu);
        norn__v1__watch_sessions_response__free_unpacked(m, NULL);
    }
    return NULL;
}

static void stop_readers(Shared *sh, Watcher *ws, size_t n)
{
    atomic_store(&sh->stop, 1);
    if (sh->set) {
        rpc_stream_set_cancel(sh->set);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        pthread_mutex_lock(&ws[i].mu);
        if (ws[i].call)
            rpc_stream_cancel(ws[i].call);
        pthread_mutex_unlock(&ws[i].mu);
    }
}

/* ---- the writer ---------------------------------------------------------------------- */

typedef struct Writer {
    RpcChannel *ch;
    RpcCallOptions co;
    LatSamples open_lat, record_lat;
    uint64_t opened, recorded, errors;
    RpcCode last_code;
    char first_error[256];
} Writer;

static void writer_error(Writer *wr, const char *what, RpcCode code, const RpcStatus *st)
{
    wr->errors++;
    wr->last_code = code;
    if (!wr->first_error[0])
        snprintf(wr->first_error, sizeof wr->first_error, "%s: %s: %s", what, rpc_code_name(code),
                 st && st->message ? st->message : "");
}

/* One commit: OpenSession then RecordSteps of one step on session `sid`,
 * each call stamped (when `stamp` is given) just before it starts. */
static void commit(Writer *wr, const char *sid, Stamp *stamp)
{
    Norn__V1__OpenSessionRequest oreq = NORN__V1__OPEN_SESSION_REQUEST__INIT;
    oreq.session_id = (char *)sid;
    oreq.agent_name = "bench-watch";
    oreq.model = "bench-model";
    Norn__V1__OpenSessionResponse *oresp = NULL;
    RpcStatus st;
    uint64_t t0 = bench_now_ns();
    if (stamp)
        atomic_store_explicit(&stamp->open_ns, t0, memory_order_release);
    RpcCode code =
        norn__v1__session_service__open_session__call(wr->ch, &oreq, &oresp, &wr->co, &st);
    uint64_t t1 = bench_now_ns();
    if (oresp)
        norn__v1__open_session_response__free_unpacked(oresp, NULL);
    if (code != RPC_OK) {
        writer_error(wr, "OpenSession", code, &st);
        rpc_status_clear(&st);
        return;
    }
    rpc_status_clear(&st);
    wr->opened++;
    if (stamp)
        lat_add(&wr->open_lat, t1 - t0);

    char path[160], result[200];
    snprintf(path, sizeof path, "/srv/data/%s.json", sid);
    snprintf(result, sizeof result, "ok: 42 records from %s", path);
    Google__Protobuf__Value v = GOOGLE__PROTOBUF__VALUE__INIT;
    v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    v.string_value = path;
    Google__Protobuf__Struct__FieldsEntry e = GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT;
    e.key = "path";
    e.value = &v;
    Google__Protobuf__Struct__FieldsEntry *ep = &e;
    Google__Protobuf__Struct input = GOOGLE__PROTOBUF__STRUCT__INIT;
    input.n_fields = 1;
    input.fields = &ep;
    Norn__V1__Step step = NORN__V1__STEP__INIT;
    step.tool_use_id = "toolu_1";
    step.tool_name = "read_file";
    step.tool_input = &input;
    step.result_text = result;
    step.result_status = NORN__V1__RESULT_STATUS__RESULT_STATUS_SUCCESS;
    step.execution_time_ms = 12;
    Norn__V1__Step *sp = &step;
    Norn__V1__RecordStepsRequest rreq = NORN__V1__RECORD_STEPS_REQUEST__INIT;
    rreq.session_id = (char *)sid;
    rreq.n_steps = 1;
    rreq.steps = &sp;
    Norn__V1__RecordStepsResponse *rresp = NULL;
    t0 = bench_now_ns();
    if (stamp)
        atomic_store_explicit(&stamp->record_ns, t0, memory_order_release);
    code = norn__v1__session_service__record_steps__call(wr->ch, &rreq, &rresp, &wr->co, &st);
    t1 = bench_now_ns();
    if (rresp)
        norn__v1__record_steps_response__free_unpacked(rresp, NULL);
    if (code != RPC_OK)
        writer_error(wr, "RecordSteps", code, &st);
    else {
        wr->recorded++;
        if (stamp)
            lat_add(&wr->record_lat, t1 - t0);
    }
    rpc_status_clear(&st);
}

static void warmup_commit(Writer *wr, Shared *sh, uint64_t n)
{
    char sid[64];
    snprintf(sid, sizeof sid, "%sw%llu", sh->prefix, (unsigned long long)n);
    commit(wr, sid, NULL);
}

/* ---- the command --------------------------------------------------------------------- */

static int parse_opts(int argc, char **argv, WatchOpts *o)
{
    enum {
        O_SERVER = 256,
        O_KEY,
        O_WATCHERS,
        O_IDLE,
        O_CHANNELS,
        O_RATE,
        O_SECONDS,
        O_PID,
        O_STACK,
        O_READERS,
        O_SETTLE,
        O_ESTABLISH,
        O_TIMEOUT
    };
    static const struct option longopts[] = {
        {"server", required_argument, NULL, O_SERVER},
        {"api-key", required_argument, NULL, O_KEY},
        {"watchers", required_argument, NULL, O_WATCHERS},
        {"idle", required_argument, NULL, O_IDLE},
        {"channels", required_argument, NULL, O_CHANNELS},
        {"rate", required_argument, NULL, O_RATE},
        {"seconds", required_argument, NULL, O_SECONDS},
        {"pid", required_argument, NULL, O_PID},
        {"stack-kb", required_argument, NULL, O_STACK},
        {"readers", required_argument, NULL, O_READERS},
        {"settle-ms", required_argument, NULL, O_SETTLE},
        {"establish-s", required_argument, NULL, O_ESTABLISH},
        {"timeout-ms", required_argument, NULL, O_TIMEOUT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c, have_watchers = 0;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case O_SERVER: o->server = optarg; break;
        case O_KEY: o->api_key = optarg; break;
        case O_WATCHERS:
            bad = bench_parse_u64("--watchers", optarg, 1, 20000, &o->watchers);
            have_watchers = 1;
            break;
        case O_IDLE:
            bad = bench_parse_u64("--idle", optarg, 1, 20000, &o->watchers);
            o->idle = 1;
            break;
        case O_CHANNELS: bad = bench_parse_u64("--channels", optarg, 1, 1000, &o->channels); break;
        case O_RATE: bad = bench_parse_u64("--rate", optarg, 1, 100000, &o->rate); break;
        case O_SECONDS:
            bad = bench_parse_double("--seconds", optarg, 0.1, 86400, &o->seconds);
            break;
        case O_PID: bad = bench_parse_u64("--pid", optarg, 1, INT_MAX, &o->pid); break;
        case O_STACK: bad = bench_parse_u64("--stack-kb", optarg, 32, 65536, &o->stack_kb); break;
        case O_READERS: bad = bench_parse_u64("--readers", optarg, 0, 64, &o->readers); break;
        case O_SETTLE:
            bad = bench_parse_u64("--settle-ms", optarg, 0, 600000, &o->settle_ms);
            break;
        case O_ESTABLISH:
            bad = bench_parse_u64("--establish-s", optarg, 1, 3600, &o->establish_s);
            break;
        case O_TIMEOUT:
            bad = bench_parse_u64("--timeout-ms", optarg, 0, 3600000, &o->timeout_ms);
            break;
        case 'h': usage(stdout); return -1;
        default: usage(stderr); return BENCH_USAGE;
        }
        if (bad)
            return BENCH_USAGE;
    }
    if (optind != argc) {
        fprintf(stderr, "norn-bench watch: unexpected argument '%s'\n", argv[optind]);
        return BENCH_USAGE;
    }
    if (have_watchers && o->idle) {
        fputs("norn-bench watch: --watchers and --idle exclude each other\n", stderr);
        return BENCH_USAGE;
    }
    if (!o->channels)
        o->channels = o->watchers / 100 + 1;
    if (o->channels > o->watchers)
        o->channels = o->watchers;
    return BENCH_OK;
}

int bench_watch(int argc, char **argv)
{
    WatchOpts o = {
        .server = getenv("NORN_SERVER") ? getenv("NORN_SERVER") : "127.0.0.1:50051",
        .api_key = getenv("NORN_API_KEY"),
        .watchers = 100,
        .rate = 50,
        .seconds = 10,
        .stack_kb = 128,
        .readers = 2,
        .timeout_ms = 30000,
        .settle_ms = 1000,
        .establish_s = 120,
    };
    int prc = parse_opts(argc, argv, &o);
    if (prc)
        return prc < 0 ? BENCH_OK : prc;

    Shared sh;
    memset(&sh, 0, sizeof sh);
    sh.o = &o;
    uint64_t seed = bench_now_ns() ^ ((uint64_t)getpid() << 32);
    snprintf(sh.prefix, sizeof sh.prefix, "bw-%08llx-",
             (unsigned long long)(bench_rand(&seed) & 0xffffffffu));
    sh.prefix_len = strlen(sh.prefix);
    sh.n_stamps = o.idle ? 0 : (size_t)((double)o.rate * o.seconds) + 1;
    sh.stamps = calloc(sh.n_stamps + 1, sizeof *sh.stamps);
    Watcher *ws = calloc(o.watchers, sizeof *ws);
    RpcChannel **chs = calloc(o.channels, sizeof *chs);
    if (!sh.stamps || !ws || !chs) {
        fputs("norn-bench: out of memory\n", stderr);
        return BENCH_FAILED;
    }

    Writer wr;
    memset(&wr, 0, sizeof wr);
    wr.co.timeout_ms = (int64_t)o.timeout_ms;
    wr.ch = open_channel(&o, o.channels);
    char err[300];
    RpcCode code = connect_channel(wr.ch, &wr.co, err, sizeof err);
    for (size_t i = 0; i < o.channels && code == RPC_OK; i++) {
        chs[i] = open_channel(&o, i);
        code = connect_channel(chs[i], &wr.co, err, sizeof err);
    }
    if (code != RPC_OK) {
        fprintf(stderr, "norn-bench watch: %s\n", err);
        return bench_exit_for(code);
    }
    if (o.idle)
        printf("watch: server %s, %llu idle watchers over %llu channels\n", o.server,
               (unsigned long long)o.watchers, (unsigned long long)o.channels);
    else
        printf("watch: server %s, %llu watchers over %llu channels, %llu commits/s "
               "(OpenSession + RecordSteps of 1 step), %.1f s\n",
               o.server, (unsigned long long)o.watchers, (unsigned long long)o.channels,
               (unsigned long long)o.rate, o.seconds);
    fflush(stdout);

    /* One commit before the first reading, so that the ingest path's
     * first-use allocations are not charged to the watchers. */
    uint64_t n_warm = 0;
    warmup_commit(&wr, &sh, n_warm++);
    if (wr.errors) {
        fprintf(stderr, "norn-bench watch: %s\n", wr.first_error);
        return bench_exit_for(wr.last_code);
    }
    long long rss_before = -1, rss_after = -1;
    if (o.pid) {
        sleep_ns(o.settle_ms * 1000000u);
        if ((rss_before = rss_kib(o.pid)) < 0) {
            fprintf(stderr, "norn-bench watch: cannot read /proc/%llu/status\n",
                    (unsigned long long)o.pid);
            return BENCH_USAGE;
        }
    }
    long long client_before = rss_kib(0);

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    size_t stack = (size_t)o.stack_kb * 1024;
    if (stack < (size_t)PTHREAD_STACK_MIN)
        stack = PTHREAD_STACK_MIN;
    pthread_attr_setstacksize(&attr, stack);
    uint64_t t_open = bench_now_ns();
    size_t started = 0, readers = 0;
    pthread_t *reader_threads = NULL;
    if (o.readers) {
        sh.set = rpc_stream_set_new();
        reader_threads = calloc(o.readers, sizeof *reader_threads);
        if (!sh.set || !reader_threads) {
            fputs("norn-bench: out of memory\n", stderr);
            return BENCH_FAILED;
        }
    }
    Norn__V1__WatchSessionsRequest req = NORN__V1__WATCH_SESSIONS_REQUEST__INIT;
    for (size_t i = 0; i < o.watchers; i++) {
        Watcher *w = &ws[i];
        w->idx = (int)i;
        w->sh = &sh;
        w->ch = chs[i % o.channels];
        pthread_mutex_init(&w->mu, NULL);
        if (sh.set) {
            if (rpc_stream_set_start(sh.set, w->ch,
                                     &norn__v1__session_service__rpc
                                          .methods[NORN__V1__SESSION_SERVICE__WATCH_SESSIONS],
                                     &req.base, NULL, w) != 0) {
                fprintf(stderr, "norn-bench watch: cannot start stream %zu\n", i);
                break;
            }
        } else if (pthread_create(&w->thread, &attr, reader_main, w) != 0) {
            fprintf(stderr, "norn-bench watch: cannot start reader thread %zu\n", i);
            break;
        }
        started++;
    }
    /* Streams that could not start count as closed for the readers. */
    atomic_store(&sh.set_closed, o.watchers - started);
    for (size_t i = 0; sh.set && i < o.readers; i++) {
        if (pthread_create(&reader_threads[i], &attr, set_reader_main, &sh) != 0) {
            fprintf(stderr, "norn-bench watch: cannot start reader thread %zu\n", i);
            break;
        }
        readers++;
    }
    pthread_attr_destroy(&attr);

    /* Warm-up commits until every stream has seen one (a stream that the
     * server registers after a commit does not get it: watches start now). */
    int rc = started == o.watchers && (!sh.set || readers == o.readers) ? BENCH_OK : BENCH_FAILED;
    uint64_t give_up = t_open + o.establish_s * 1000000000u;
    while (rc == BENCH_OK && atomic_load(&sh.established) + atomic_load(&sh.ended) < started) {
        if (bench_now_ns() > give_up) {
            fprintf(stderr, "norn-bench watch: only %zu of %zu streams established after %llu s\n",
                    atomic_load(&sh.established), started, (unsigned long long)o.establish_s);
            rc = BENCH_FAILED;
            break;
        }
        warmup_commit(&wr, &sh, n_warm++);
        if (wr.errors >= 10) {
            rc = bench_exit_for(wr.last_code);
            break;
        }
        for (int k = 0; k < 50 && atomic_load(&sh.established) + atomic_load(&sh.ended) < started;
             k++)
            sleep_ns(10000000u);
    }
    uint64_t t_est = bench_now_ns();
    size_t ended_at_start = atomic_load(&sh.ended);
    if (rc == BENCH_OK) {
        printf("established            %zu streams in %.2f s (%llu warm-up commits)\n",
               atomic_load(&sh.established), (double)(t_est - t_open) / 1e9,
               (unsigned long long)n_warm - 1);
        if (ended_at_start)
            printf("streams ended early    %zu\n", ended_at_start);
    }
    if (rc == BENCH_OK && o.pid) {
        sleep_ns(o.settle_ms * 1000000u);
        rss_after = rss_kib(o.pid);
        printf("nornd VmRSS            before %.1f MiB, after %.1f MiB: %+.2f KiB per watcher\n",
               (double)rss_before / 1024, (double)rss_after / 1024,
               (double)(rss_after - rss_before) / (double)o.watchers);
    }
    long long client_after = rss_kib(0);
    if (rc == BENCH_OK && client_before >= 0 && client_after >= 0)
        printf("norn-bench VmRSS       %+.2f KiB per watcher (reader threads, calls)\n",
               (double)(client_after - client_before) / (double)o.watchers);
    fflush(stdout);

    uint64_t commits = 0, late = 0;
    uint64_t t_start = 0, t_end = 0;
    if (rc == BENCH_OK && !o.idle) {
        uint64_t errors_before = wr.errors;
        uint64_t opened0 = wr.opened, recorded0 = wr.recorded;
        t_start = bench_now_ns();
        uint64_t period = 1000000000u / o.rate;
        for (uint64_t i = 0; i < sh.n_stamps - 1; i++) {
            uint64_t due = t_start + i * period;
            if (bench_now_ns() > due + period)
                late++;
            sleep_until(due);
            char sid[64];
            snprintf(sid, sizeof sid, "%sm%llu", sh.prefix, (unsigned long long)i);
            commit(&wr, sid, &sh.stamps[i]);
            commits++;
            if (wr.errors - errors_before >= 100)
                break;
        }
        t_end = bench_now_ns();
        /* Wait for the deltas in flight. */
        uint64_t expect = (wr.opened - opened0 + wr.recorded - recorded0) *
                          (uint64_t)(started - atomic_load(&sh.ended));
        uint64_t drain_until = bench_now_ns() + 10000000000u;
        while (atomic_load(&sh.measured) < expect && bench_now_ns() < drain_until)
            sleep_ns(5000000u);
        uint64_t got = atomic_load(&sh.measured);
        double secs = (double)(t_end - t_start) / 1e9;
        printf("commits                %llu in %.2f s (%.1f/s; %llu started late)\n",
               (unsigned long long)commits, secs, secs > 0 ? (double)commits / secs : 0.0,
               (unsigned long long)late);
        printf("deltas                 %llu of %llu expected at the watchers",
               (unsigned long long)got, (unsigned long long)expect);
        if (got < expect)
            printf(" (%llu MISSING)", (unsigned long long)(expect - got));
        printf("\n");
        if (got < expect)
            rc = BENCH_FAILED;
    }
    stop_readers(&sh, ws, started);
    LatSamples all = {0};
    uint64_t foreign = 0, unmatched = 0;
    for (size_t i = 0; i < readers; i++)
        pthread_join(reader_threads[i], NULL);
    free(reader_threads);
    rpc_stream_set_free(sh.set);
    for (size_t i = 0; i < started; i++) {
        Watcher *w = &ws[i];
        if (!sh.set)
            pthread_join(w->thread, NULL);
        lat_merge(&all, &w->lat);
        lat_free(&w->lat);
        foreign += w->foreign;
        unmatched += w->unmatched;
        pthread_mutex_destroy(&w->mu);
    }
    size_t ended = atomic_load(&sh.ended);
    if (ended) {
        size_t shown = 0;
        for (size_t i = 0; i < started && shown < 5; i++)
            if (ws[i].ended_early) {
                fprintf(stderr, "watcher %d ended early: %s\n", ws[i].idx, ws[i].end_msg);
                shown++;
            }
        fprintf(stderr, "%zu streams ended early\n", ended);
        if (rc == BENCH_OK)
            rc = BENCH_FAILED;
    }
    if (!o.idle && t_start) {
        lat_print(stdout, "OpenSession latency", &wr.open_lat);
        lat_print(stdout, "RecordSteps latency", &wr.record_lat);
        lat_print(stdout, "commit->watcher", &all);
        /* Per delta: until its first and its last watcher had it. */
        LatSamples first = {0}, last = {0};
        for (uint64_t i = 0; i < commits; i++) {
            Stamp *s = &sh.stamps[i];
            uint64_t t0[2] = {atomic_load(&s->open_ns), atomic_load(&s->record_ns)};
            for (int k = 0; k < 2; k++)
                if (t0[k] && atomic_load(&s->first[k])) {
                    lat_add(&first, atomic_load(&s->first[k]) - t0[k]);
                    lat_add(&last, atomic_load(&s->last[k]) - t0[k]);
                }
        }
        lat_print(stdout, "delta->first watcher", &first);
        lat_print(stdout, "delta->last watcher", &last);
        lat_free(&first);
        lat_free(&last);
        if (foreign)
            printf("deltas of other sessions  %llu (ignored)\n", (unsigned long long)foreign);
        if (unmatched)
            printf("unmatched deltas       %llu\n", (unsigned long long)unmatched);
    }
    if (wr.errors) {
        fprintf(stderr, "writer: %llu errors, first: %s\n", (unsigned long long)wr.errors,
                wr.first_error);
        int e = bench_exit_for(wr.last_code);
        if (e > rc)
            rc = e;
    }
    lat_free(&all);
    lat_free(&wr.open_lat);
    lat_free(&wr.record_lat);
    for (size_t i = 0; i < o.channels; i++)
        rpc_channel_close(chs[i]);
    rpc_channel_close(wr.ch);
    free(chs);
    free(ws);
    free(sh.stamps);
    return rc;
}
