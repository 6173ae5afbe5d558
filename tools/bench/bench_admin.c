/*
 * bench_admin.c — `norn-bench admin`: latency of the dashboard's reads,
 * ListAuditEvents and GetStats.
 *
 * One client, one call at a time, the kinds interleaved so that they see
 * the same conditions:
 *   audit          ListAuditEvents, first page, no filter (time index)
 *   audit agent    ListAuditEvents, first page, agent_name filter (agent
 *                  index); the agent is --agent, or the one named by the
 *                  newest event
 *   audit next     ListAuditEvents, no filter, following pages: a chain of
 *                  page tokens, restarted after --pages pages
 *   stats          GetStats (counters, no scan)
 * Both ListAuditEvents and GetStats are meant to cost the same whatever the
 * store's size; run against stores of different sizes (norn-bench load) to
 * check.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "bench_more.h"
#include "norn/v1/audit_service.grpc-c.h"
#include "norn/v1/stats_service.grpc-c.h"

typedef struct AdminOpts {
    const char *server;
    const char *api_key;
    const char *agent;
    uint64_t requests;
    uint64_t page_size;
    uint64_t pages;
    uint64_t timeout_ms;
} AdminOpts;

enum { K_AUDIT, K_AGENT, K_NEXT, K_STATS, K_N };

typedef struct Kind {
    const char *label;
    LatSamples lat;
    uint64_t calls, events, errors;
} Kind;

typedef struct Admin {
    const AdminOpts *o;
    RpcChannel *ch;
    RpcCallOptions co;
    Kind k[K_N];
    char agent[300];
    char *token; /* the next page of the "audit next" chain, or NULL */
    uint64_t chain_pages;
    RpcCode last_code;
    char first_error[300];
    uint64_t errors;
} Admin;

static void usage(FILE *out)
{
    fputs("usage: norn-bench admin [options]\n"
          "\n"
          "ListAuditEvents (first page without filter, first page with an agent filter,\n"
          "following pages) and GetStats latency, one call at a time, kinds interleaved.\n"
          "\n"
          "options:\n"
          "  --server ADDR       nornd address (NORN_SERVER, default 127.0.0.1:50051)\n"
          "  --api-key KEY       API key (NORN_API_KEY)\n"
          "  --requests R        calls of each kind (default 1000)\n"
          "  --page-size N       ListAuditEvents page size (default 50)\n"
          "  --agent NAME        agent_name filter (default: the newest event's agent)\n"
          "  --pages P           following pages per token chain (default 20)\n"
          "  --timeout-ms N      deadline per call (default 30000)\n"
          "  -h, --help          this text\n",
          out);
}

static void fail(Admin *a, Kind *k, const char *what, RpcCode code, const RpcStatus *st)
{
    a->errors++;
    if (k)
        k->errors++;
    a->last_code = code;
    if (!a->first_error[0])
        snprintf(a->first_error, sizeof a->first_error, "%s: %s: %s", what, rpc_code_name(code),
                 st && st->message ? st->message : "");
}

/* One ListAuditEvents call; recorded under `k` when given. */
static RpcCode list_audit(Admin *a, Kind *k, const char *agent, const char *token,
                          Norn__V1__ListAuditEventsResponse **out)
{
    Norn__V1__ListAuditEventsRequest req = NORN__V1__LIST_AUDIT_EVENTS_REQUEST__INIT;
    req.page_size = (uint32_t)a->o->page_size;
    if (agent)
        req.agent_name = (char *)agent;
    if (token)
        req.page_token = (char *)token;
    Norn__V1__ListAuditEventsResponse *resp = NULL;
    RpcStatus st;
    uint64_t t0 = bench_now_ns();
    RpcCode code =
        norn__v1__audit_service__list_audit_events__call(a->ch, &req, &resp, &a->co, &st);
    uint64_t t1 = bench_now_ns();
    if (code != RPC_OK) {
        fail(a, k, "ListAuditEvents", code, &st);
    } else if (k) {
        lat_add(&k->lat, t1 - t0);
        k->calls++;
        k->events += resp->n_events;
    }
    rpc_status_clear(&st);
    *out = resp;
    return code;
}

static void take_token(Admin *a, const Norn__V1__ListAuditEventsResponse *resp)
{
    free(a->token);
    a->token = NULL;
    if (resp && resp->next_page_token[0] && a->chain_pages < a->o->pages)
        a->token = strdup(resp->next_page_token);
}

static void one_round(Admin *a)
{
    Norn__V1__ListAuditEventsResponse *resp = NULL;
    if (list_audit(a, &a->k[K_AUDIT], NULL, NULL, &resp) == RPC_OK)
        norn__v1__list_audit_events_response__free_unpacked(resp, NULL);

    if (list_audit(a, &a->k[K_AGENT], a->agent, NULL, &resp) == RPC_OK)
        norn__v1__list_audit_events_response__free_unpacked(resp, NULL);

    if (!a->token) { /* start a new chain (this first page is not counted) */
        a->chain_pages = 0;
        if (list_audit(a, NULL, NULL, NULL, &resp) == RPC_OK) {
            take_token(a, resp);
            norn__v1__list_audit_events_response__free_unpacked(resp, NULL);
        }
    }
    if (a->token) {
        a->chain_pages++;
        if (list_audit(a, &a->k[K_NEXT], NULL, a->token, &resp) == RPC_OK) {
            take_token(a, resp);
            norn__v1__list_audit_events_response__free_unpacked(resp, NULL);
        } else {
            free(a->token);
            a->token = NULL;
        }
    }

    Norn__V1__GetStatsRequest sreq = NORN__V1__GET_STATS_REQUEST__INIT;
    Norn__V1__GetStatsResponse *sresp = NULL;
    RpcStatus st;
    uint64_t t0 = bench_now_ns();
    RpcCode code = norn__v1__stats_service__get_stats__call(a->ch, &sreq, &sresp, &a->co, &st);
    uint64_t t1 = bench_now_ns();
    if (code != RPC_OK) {
        fail(a, &a->k[K_STATS], "GetStats", code, &st);
    } else {
        lat_add(&a->k[K_STATS].lat, t1 - t0);
        a->k[K_STATS].calls++;
    }
    if (sresp)
        norn__v1__get_stats_response__free_unpacked(sresp, NULL);
    rpc_status_clear(&st);
}

int bench_admin(int argc, char **argv)
{
    AdminOpts o = {
        .server = getenv("NORN_SERVER") ? getenv("NORN_SERVER") : "127.0.0.1:50051",
        .api_key = getenv("NORN_API_KEY"),
        .requests = 1000,
        .page_size = 50,
        .pages = 20,
        .timeout_ms = 30000,
    };
    enum { O_SERVER = 256, O_KEY, O_REQUESTS, O_PAGE, O_AGENT, O_PAGES, O_TIMEOUT };
    static const struct option longopts[] = {
        {"server", required_argument, NULL, O_SERVER},
        {"api-key", required_argument, NULL, O_KEY},
        {"requests", required_argument, NULL, O_REQUESTS},
        {"page-size", required_argument, NULL, O_PAGE},
        {"agent", required_argument, NULL, O_AGENT},
        {"pages", required_argument, NULL, O_PAGES},
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
        case O_REQUESTS:
            bad = bench_parse_u64("--requests", optarg, 1, 100000000, &o.requests);
            break;
        case O_PAGE: bad = bench_parse_u64("--page-size", optarg, 1, 1000, &o.page_size); break;
        case O_AGENT: o.agent = optarg; break;
        case O_PAGES: bad = bench_parse_u64("--pages", optarg, 1, 1000000, &o.pages); break;
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
        fprintf(stderr, "norn-bench admin: unexpected argument '%s'\n", argv[optind]);
        return BENCH_USAGE;
    }

    Admin a;
    memset(&a, 0, sizeof a);
    a.o = &o;
    a.co.timeout_ms = (int64_t)o.timeout_ms;
    a.k[K_AUDIT].label = "audit";
    a.k[K_AGENT].label = "audit agent";
    a.k[K_NEXT].label = "audit next";
    a.k[K_STATS].label = "stats";
    RpcChannelOptions copts;
    memset(&copts, 0, sizeof copts);
    copts.api_key = o.api_key;
    char err[256];
    a.ch = rpc_channel_open(o.server, &copts, err, sizeof err);
    if (!a.ch) {
        fprintf(stderr, "norn-bench admin: %s\n", err);
        return BENCH_USAGE;
    }

    /* Connect, and find an agent to filter on. */
    Norn__V1__ListAuditEventsResponse *first = NULL;
    RpcCode code = list_audit(&a, NULL, NULL, NULL, &first);
    if (code != RPC_OK) {
        fprintf(stderr, "norn-bench admin: %s\n", a.first_error);
        rpc_channel_close(a.ch);
        return bench_exit_for(code);
    }
    if (o.agent)
        snprintf(a.agent, sizeof a.agent, "%s", o.agent);
    for (size_t i = 0; !a.agent[0] && i < first->n_events; i++)
        snprintf(a.agent, sizeof a.agent, "%s", first->events[i]->agent_name);
    size_t first_n = first->n_events;
    norn__v1__list_audit_events_response__free_unpacked(first, NULL);
    if (!first_n)
        fputs("norn-bench admin: warning: the store has no audit events\n", stderr);

    Norn__V1__GetStatsRequest sreq = NORN__V1__GET_STATS_REQUEST__INIT;
    Norn__V1__GetStatsResponse *sresp = NULL;
    RpcStatus st;
    unsigned long long sessions = 0, steps = 0;
    if (norn__v1__stats_service__get_stats__call(a.ch, &sreq, &sresp, &a.co, &st) == RPC_OK &&
        sresp->stats) {
        sessions = (unsigned long long)sresp->stats->total_sessions;
        steps = (unsigned long long)sresp->stats->total_steps;
    }
    if (sresp)
        norn__v1__get_stats_response__free_unpacked(sresp, NULL);
    rpc_status_clear(&st);

    printf("admin: server %s, %llu sessions and %llu steps stored, %llu calls per kind, "
           "page %llu, agent '%s'\n",
           o.server, sessions, steps, (unsigned long long)o.requests,
           (unsigned long long)o.page_size, a.agent);
    fflush(stdout);
    uint64_t t0 = bench_now_ns();
    for (uint64_t r = 0; r < o.requests && a.errors < 100; r++)
        one_round(&a);
    double secs = (double)(bench_now_ns() - t0) / 1e9;
    printf("elapsed                %.2f s\n", secs);
    for (int i = 0; i < K_N; i++) {
        Kind *k = &a.k[i];
        char label[40];
        snprintf(label, sizeof label, "%s", k->label);
        lat_print(stdout, label, &k->lat);
        if (i != K_STATS && k->calls)
            printf("%-22s %.1f events per page\n", "", (double)k->events / (double)k->calls);
        lat_free(&k->lat);
    }
    int rc = BENCH_OK;
    if (a.errors) {
        fprintf(stderr, "%llu errors, first: %s\n", (unsigned long long)a.errors, a.first_error);
        rc = bench_exit_for(a.last_code);
        if (rc == BENCH_OK)
            rc = BENCH_FAILED;
    }
    free(a.token);
    rpc_channel_close(a.ch);
    return rc;
}
