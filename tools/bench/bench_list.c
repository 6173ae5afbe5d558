/*
 * bench_list.c — `norn-bench list`: ListSessions latency.
 *
 * After --warmup unmeasured calls, --requests first-page calls are timed
 * one after another (or from --concurrency threads at once); then, with
 * --follow P, --chains listings each follow next_page_token for up to P
 * more pages, and those later pages are timed separately (they seek into
 * the index where the previous page stopped instead of at its start).
 * Optionally (--random-window) each first page starts at a random
 * started_before inside the data's time range instead of at the newest
 * session, which reaches index and session rows that are not hot in cache.
 */
#include <getopt.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "norn/v1/session_service.grpc-c.h"

typedef struct ListOpts {
    const char *server;
    const char *api_key;
    uint64_t page_size;
    uint64_t requests;
    uint64_t warmup;
    uint64_t follow;
    uint64_t chains;
    uint64_t concurrency;
    uint64_t timeout_ms;
    const char *agent;
    const char *swarm;
    int random_window;
} ListOpts;

typedef struct Lister {
    const ListOpts *o;
    RpcChannel *ch;
    RpcCallOptions call_opts;
    uint64_t n_requests;
    uint64_t seed;
    uint64_t window_lo, window_hi; /* micros, for --random-window */
    pthread_t thread;
    LatSamples first, later;
    uint64_t sessions_seen, short_pages, errors;
    RpcCode last_code;
    char first_error[256];
} Lister;

static void usage(FILE *out)
{
    fputs("usage: norn-bench list [options]\n"
          "\n"
          "ListSessions latency: first pages, then pages reached through next_page_token.\n"
          "\n"
          "options:\n"
          "  --server ADDR         nornd address (NORN_SERVER, default 127.0.0.1:50051)\n"
          "  --api-key KEY         API key (NORN_API_KEY)\n"
          "  --page-size N         sessions per page, 1..1000 (default 50)\n"
          "  --requests R          measured first-page calls (default 2000)\n"
          "  --warmup N            unmeasured calls before (default 100)\n"
          "  --follow P            then follow next_page_token for up to P pages per\n"
          "                        listing (default 10; 0 = first pages only)\n"
          "  --chains C            listings followed that way (default 100)\n"
          "  --concurrency N       first-page calls from N threads at once (default 1)\n"
          "  --agent NAME          filter by agent_name (the by-agent index)\n"
          "  --swarm ID            filter by swarm_id (the by-swarm index)\n"
          "  --random-window       start each first page at a random started_before\n"
          "                        within the stored sessions' time range\n"
          "  --timeout-ms N        deadline per call (default 30000)\n"
          "  -h, --help            this text\n",
          out);
}

static void lister_error(Lister *l, RpcCode code, const RpcStatus *st)
{
    l->errors++;
    l->last_code = code;
    if (!l->first_error[0])
        snprintf(l->first_error, sizeof l->first_error, "ListSessions: %s: %s", rpc_code_name(code),
                 st->message ? st->message : "");
}

/* One ListSessions call; returns the response (caller frees) or NULL. */
static Norn__V1__ListSessionsResponse *list_once(Lister *l, const char *token, uint64_t before,
                                                 LatSamples *lat)
{
    const ListOpts *o = l->o;
    Norn__V1__ListSessionsRequest req = NORN__V1__LIST_SESSIONS_REQUEST__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    req.page_size = (uint32_t)o->page_size;
    req.page_token = (char *)(token ? token : "");
    if (o->agent)
        req.agent_name = (char *)o->agent;
    if (o->swarm)
        req.swarm_id = (char *)o->swarm;
    if (before) {
        ts.seconds = (int64_t)(before / 1000000u);
        ts.nanos = (int32_t)(before % 1000000u) * 1000;
        req.started_before = &ts;
    }
    Norn__V1__ListSessionsResponse *resp = NULL;
    RpcStatus st;
    uint64_t t0 = bench_now_ns();
    RpcCode code =
        norn__v1__session_service__list_sessions__call(l->ch, &req, &resp, &l->call_opts, &st);
    uint64_t t1 = bench_now_ns();
    if (code != RPC_OK) {
        lister_error(l, code, &st);
        rpc_status_clear(&st);
        return NULL;
    }
    rpc_status_clear(&st);
    if (lat) {
        lat_add(lat, t1 - t0);
        l->sessions_seen += resp->n_sessions;
        if (resp->n_sessions < o->page_size && resp->next_page_token[0])
            l->short_pages++;
    }
    return resp;
}

static uint64_t pick_before(Lister *l)
{
    if (!l->o->random_window || l->window_hi <= l->window_lo)
        return 0;
    return l->window_lo + bench_rand(&l->seed) % (l->window_hi - l->window_lo);
}

static void *first_pages(void *arg)
{
    Lister *l = arg;
    for (uint64_t i = 0; i < l->n_requests; i++) {
        Norn__V1__ListSessionsResponse *r = list_once(l, NULL, pick_before(l), &l->first);
        if (!r) {
            if (l->last_code == RPC_UNAVAILABLE || l->errors >= 20)
                break;
            continue;
        }
        norn__v1__list_sessions_response__free_unpacked(r, NULL);
    }
    return NULL;
}

/* The time range of the stored sessions: the newest from the first page,
 * the oldest (to within a second) by bisection on started_before. */
static void find_window(Lister *l)
{
    Norn__V1__ListSessionsResponse *r = list_once(l, NULL, 0, NULL);
    if (!r || !r->n_sessions || !r->sessions[0]->started_at) {
        if (r)
            norn__v1__list_sessions_response__free_unpacked(r, NULL);
        return;
    }
    const Google__Protobuf__Timestamp *ts = r->sessions[0]->started_at;
    uint64_t newest = (uint64_t)ts->seconds * 1000000u + (uint64_t)ts->nanos / 1000u;
    norn__v1__list_sessions_response__free_unpacked(r, NULL);
    /* Largest `before` with nothing older than it: bisect over [0, newest]. */
    uint64_t lo = 1, hi = newest;
    while (hi - lo > 1000000u) {
        uint64_t mid = lo + (hi - lo) / 2;
        Norn__V1__ListSessionsResponse *m = list_once(l, NULL, mid, NULL);
        int any = m && m->n_sessions > 0;
        if (m)
            norn__v1__list_sessions_response__free_unpacked(m, NULL);
        if (any)
            hi = mid;
        else
            lo = mid;
    }
    l->window_lo = hi;
    l->window_hi = newest + 1;
}

/* The measurement itself, over listers with open channels. */
static int run(const ListOpts *o, Lister *ls)
{
    Lister *l0 = &ls[0];
    printf("list: server %s, page size %llu%s%s%s%s%s, %llu requests (+%llu warm-up), "
           "concurrency %llu\n",
           o->server, (unsigned long long)o->page_size, o->agent ? ", agent " : "",
           o->agent ? o->agent : "", o->swarm ? ", swarm " : "", o->swarm ? o->swarm : "",
           o->random_window ? ", random window" : "", (unsigned long long)o->requests,
           (unsigned long long)o->warmup, (unsigned long long)o->concurrency);
    if (o->random_window) {
        find_window(l0);
        for (size_t i = 1; i < o->concurrency; i++) {
            ls[i].window_lo = l0->window_lo;
            ls[i].window_hi = l0->window_hi;
        }
        printf("time window            %.0f s of sessions\n",
               (double)(l0->window_hi - l0->window_lo) / 1e6);
    }
    for (uint64_t i = 0; i < o->warmup; i++) {
        Norn__V1__ListSessionsResponse *r = list_once(l0, NULL, pick_before(l0), NULL);
        if (!r) {
            fprintf(stderr, "norn-bench list: %s\n", l0->first_error);
            return bench_exit_for(l0->last_code);
        }
        norn__v1__list_sessions_response__free_unpacked(r, NULL);
    }

    uint64_t t0 = bench_now_ns();
    if (o->concurrency == 1) {
        first_pages(l0);
    } else {
        for (size_t i = 0; i < o->concurrency; i++)
            if (pthread_create(&ls[i].thread, NULL, first_pages, &ls[i]) != 0) {
                fputs("norn-bench list: cannot start a thread\n", stderr);
                exit(BENCH_FAILED);
            }
        for (size_t i = 0; i < o->concurrency; i++)
            pthread_join(ls[i].thread, NULL);
    }
    double secs = (double)(bench_now_ns() - t0) / 1e9;
    LatSamples first = {0};
    uint64_t seen = 0;
    for (size_t i = 0; i < o->concurrency; i++) {
        lat_merge(&first, &ls[i].first);
        seen += ls[i].sessions_seen;
    }
    printf("first pages            %zu calls in %.2f s (%.0f calls/s), %.1f sessions/page\n",
           first.n, secs, secs > 0 ? (double)first.n / secs : 0.0,
           first.n ? (double)seen / (double)first.n : 0.0);
    lat_print(stdout, "first page latency", &first);

    if (o->follow) {
        uint64_t pages = 0;
        l0->sessions_seen = 0;
        for (uint64_t ch = 0; ch < o->chains && l0->errors < 20; ch++) {
            Norn__V1__ListSessionsResponse *r = list_once(l0, NULL, pick_before(l0), NULL);
            for (uint64_t p = 0; r && r->next_page_token[0] && p < o->follow; p++) {
                char *tok = strdup(r->next_page_token);
                norn__v1__list_sessions_response__free_unpacked(r, NULL);
                r = list_once(l0, tok, 0, &l0->later);
                free(tok);
                pages++;
            }
            if (r)
                norn__v1__list_sessions_response__free_unpacked(r, NULL);
        }
        printf("following pages        %llu pages over %llu listings, %.1f sessions/page\n",
               (unsigned long long)pages, (unsigned long long)o->chains,
               l0->later.n ? (double)l0->sessions_seen / (double)l0->later.n : 0.0);
        lat_print(stdout, "next page latency", &l0->later);
    }
    uint64_t errors = 0;
    int rc = BENCH_OK;
    for (size_t i = 0; i < o->concurrency; i++) {
        errors += ls[i].errors;
        if (ls[i].first_error[0]) {
            fprintf(stderr, "norn-bench list: %llu errors, first: %s\n",
                    (unsigned long long)ls[i].errors, ls[i].first_error);
            int e = bench_exit_for(ls[i].last_code);
            if (e > rc)
                rc = e;
        }
        if (ls[i].short_pages)
            fprintf(stderr,
                    "norn-bench list: %llu pages came back short of page_size with more to "
                    "come (the server's scan budget)\n",
                    (unsigned long long)ls[i].short_pages);
    }
    printf("errors                 %llu\n", (unsigned long long)errors);
    lat_free(&first);
    return rc;
}

int bench_list(int argc, char **argv)
{
    ListOpts o = {
        .server = getenv("NORN_SERVER") ? getenv("NORN_SERVER") : "127.0.0.1:50051",
        .api_key = getenv("NORN_API_KEY"),
        .page_size = 50,
        .requests = 2000,
        .warmup = 100,
        .follow = 10,
        .chains = 100,
        .concurrency = 1,
        .timeout_ms = 30000,
    };
    enum {
        O_SERVER = 256,
        O_KEY,
        O_PAGE,
        O_REQ,
        O_WARM,
        O_FOLLOW,
        O_CHAINS,
        O_CONC,
        O_AGENT,
        O_SWARM,
        O_RANDOM,
        O_TIMEOUT
    };
    static const struct option longopts[] = {
        {"server", required_argument, NULL, O_SERVER},
        {"api-key", required_argument, NULL, O_KEY},
        {"page-size", required_argument, NULL, O_PAGE},
        {"requests", required_argument, NULL, O_REQ},
        {"warmup", required_argument, NULL, O_WARM},
        {"follow", required_argument, NULL, O_FOLLOW},
        {"chains", required_argument, NULL, O_CHAINS},
        {"concurrency", required_argument, NULL, O_CONC},
        {"agent", required_argument, NULL, O_AGENT},
        {"swarm", required_argument, NULL, O_SWARM},
        {"random-window", no_argument, NULL, O_RANDOM},
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
        case O_PAGE: bad = bench_parse_u64("--page-size", optarg, 1, 1000, &o.page_size); break;
        case O_REQ: bad = bench_parse_u64("--requests", optarg, 1, 100000000, &o.requests); break;
        case O_WARM: bad = bench_parse_u64("--warmup", optarg, 0, 100000000, &o.warmup); break;
        case O_FOLLOW: bad = bench_parse_u64("--follow", optarg, 0, 1000000, &o.follow); break;
        case O_CHAINS: bad = bench_parse_u64("--chains", optarg, 1, 1000000, &o.chains); break;
        case O_CONC: bad = bench_parse_u64("--concurrency", optarg, 1, 64, &o.concurrency); break;
        case O_AGENT: o.agent = optarg; break;
        case O_SWARM: o.swarm = optarg; break;
        case O_RANDOM: o.random_window = 1; break;
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
        fprintf(stderr, "norn-bench list: unexpected argument '%s'\n", argv[optind]);
        return BENCH_USAGE;
    }

    Lister *ls = calloc(o.concurrency, sizeof *ls);
    if (!ls) {
        fputs("norn-bench: out of memory\n", stderr);
        return BENCH_FAILED;
    }
    int rc = BENCH_OK;
    for (size_t i = 0; i < o.concurrency && rc == BENCH_OK; i++) {
        RpcChannelOptions copts;
        memset(&copts, 0, sizeof copts);
        copts.api_key = o.api_key;
        copts.max_recv_bytes = (64u << 20) + i; /* one connection per thread */
        char err[256];
        ls[i].o = &o;
        ls[i].call_opts.timeout_ms = (int64_t)o.timeout_ms;
        ls[i].seed = 0x6e6f726e + i;
        ls[i].ch = rpc_channel_open(o.server, &copts, err, sizeof err);
        if (!ls[i].ch) {
            fprintf(stderr, "norn-bench list: %s\n", err);
            rc = BENCH_USAGE;
        }
        ls[i].n_requests = o.requests / o.concurrency + (i < o.requests % o.concurrency);
    }
    if (rc == BENCH_OK)
        rc = run(&o, ls);
    for (size_t i = 0; i < o.concurrency; i++) {
        lat_free(&ls[i].first);
        lat_free(&ls[i].later);
        if (ls[i].ch)
            rpc_channel_close(ls[i].ch);
    }
    free(ls);
    return rc;
}
