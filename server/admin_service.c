/*
 * admin_service.c — ConfigService and StatsService (see admin_service.h).
 */
#include "admin_service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "msg.h"
#include "norn/v1/config_service.grpc-c.h"
#include "norn/v1/stats_service.grpc-c.h"

#define NORN_VERSION "0.1.0"

struct AdminService {
    Store *store;
    ConfigHolder *config;
    Evaluator *ev;
    RunService *runs;
    uint64_t started_us;
};

/* ---- ConfigService --------------------------------------------------------- */

static RpcCode get_config(void *ud, RpcCall *call, const Norn__V1__GetConfigRequest *req,
                          Norn__V1__GetConfigResponse *resp)
{
    (void)req;
    AdminService *a = ud;
    Norn__V1__Config cur;
    config_get(a->config, &cur);
    Norn__V1__Config *copy = (Norn__V1__Config *)msg_clone(&cur.base);
    rpc_call_adopt(call, &copy->base);
    resp->config = copy;
    Norn__V1__RuntimeInfo *rt = rpc_call_alloc(call, sizeof *rt);
    norn__v1__runtime_info__init(rt);
    rt->server_version = NORN_VERSION;
    Google__Protobuf__Timestamp *ts = msg_timestamp(a->started_us);
    rpc_call_adopt(call, &ts->base);
    rt->started_at = ts;
    rt->bedrock_credentials = a->ev && !evaluator_disabled_reason(a->ev);
    resp->runtime = rt;
    return RPC_OK;
}

/* Copies one field named by the mask from `src` into `dst`. Config is flat:
 * scalars, enums and strings only. */
static int copy_field(Norn__V1__Config *dst, const Norn__V1__Config *src, const char *path)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(&norn__v1__config__descriptor, path);
    if (!f || f->label == PROTOBUF_C_LABEL_REPEATED || f->type == PROTOBUF_C_TYPE_MESSAGE)
        return -1;
    char *d = (char *)dst + f->offset;
    const char *s = (const char *)src + f->offset;
    if (f->type == PROTOBUF_C_TYPE_STRING) {
        msg_set_str((char **)d, *(char *const *)s);
        return 0;
    }
    size_t size = f->type == PROTOBUF_C_TYPE_BOOL ? sizeof(protobuf_c_boolean) : 4;
    if (f->type == PROTOBUF_C_TYPE_UINT64 || f->type == PROTOBUF_C_TYPE_INT64 ||
        f->type == PROTOBUF_C_TYPE_DOUBLE)
        size = 8;
    memcpy(d, s, size);
    return 0;
}

static RpcCode update_config(void *ud, RpcCall *call, const Norn__V1__UpdateConfigRequest *req,
                             Norn__V1__UpdateConfigResponse *resp)
{
    AdminService *a = ud;
    if (!req->config)
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "config: required");
    if (!req->update_mask || req->update_mask->n_paths == 0)
        return rpc_fail(call, RPC_INVALID_ARGUMENT,
                        "update_mask: name the fields to change (e.g. \"guard_mode\")");
    Norn__V1__Config cur;
    config_get(a->config, &cur);
    Norn__V1__Config *next = (Norn__V1__Config *)msg_clone(&cur.base);
    rpc_call_adopt(call, &next->base);
    for (size_t i = 0; i < req->update_mask->n_paths; i++)
        if (copy_field(next, req->config, req->update_mask->paths[i]) != 0)
            return rpc_fail(call, RPC_INVALID_ARGUMENT, "update_mask: unknown field '%.100s'",
                            req->update_mask->paths[i]);
    char buf[200];
    const char *bad = config_validate(next, buf, sizeof buf);
    if (bad)
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "config.%s", bad);
    StoreTxn *t = store_txn_begin(a->store);
    store_txn_put_config(t, next);
    char err[200];
    int rc = store_txn_commit(t, err, sizeof err);
    if (rc != NORN_OK)
        return rpc_fail(call, norn_error_to_rpc(rc), "storage: %s", err);
    config_set(a->config, next);
    evaluator_set_batching(a->ev, next->bedrock_batch_size, next->bedrock_batch_wait_ms);
    resp->config = next;
    return RPC_OK;
}

static const Norn__V1__ConfigService_Handlers config_handlers = {
    .get_config = get_config,
    .update_config = update_config,
};

/* ---- StatsService ------------------------------------------------------------ */

/* The original's /api/stats figures (reference §7) with its count bugs
 * fixed (§12.4 F16): every session counts, not the newest 50; a security
 * score of 0 is 0, not 100; sessions without a score are left out of an
 * average instead of counting as 0 (efficiency) or 100 (security). With no
 * scored session the averages are the original's empty answer, 0 and 100. */
static RpcCode get_stats(void *ud, RpcCall *call, const Norn__V1__GetStatsRequest *req,
                         Norn__V1__GetStatsResponse *resp)
{
    (void)req;
    AdminService *a = ud;
    StoreCounters c;
    uint64_t revision;
    store_counters(a->store, &c, &revision);
    Norn__V1__Stats *s = rpc_call_alloc(call, sizeof *s);
    norn__v1__stats__init(s);
    s->total_sessions = c.sessions;
    s->active_sessions = c.by_status[NORN__V1__SESSION_STATUS__SESSION_STATUS_ACTIVE];
    s->completed_sessions = c.by_status[NORN__V1__SESSION_STATUS__SESSION_STATUS_COMPLETED];
    s->terminated_sessions = c.by_status[NORN__V1__SESSION_STATUS__SESSION_STATUS_TERMINATED];
    Norn__V1__Config cfg;
    config_get(a->config, &cfg);
    for (uint32_t score = 0; score < cfg.security_score_threshold && score <= 100; score++)
        s->critical_threats += c.security_hist[score];
    s->total_agents = c.agents;
    if (a->runs) {
        unsigned queued = 0, running = 0;
        run_service_counts(a->runs, &queued, &running);
        s->queued_runs = queued;
        s->running_runs = running;
    }
    s->avg_efficiency = c.efficiency_scored ? (double)c.efficiency_sum / c.efficiency_scored : 0;
    s->avg_security = c.security_scored ? (double)c.security_sum / c.security_scored : 100;
    s->total_steps = c.steps;
    s->total_issues = c.issues;
    s->revision = revision;
    EvaluatorStats es;
    evaluator_stats(a->ev, &es);
    s->eval_calls = es.calls;
    s->eval_steps_judged = es.steps_judged;
    s->eval_sessions_judged = es.sessions_judged;
    s->eval_batches = es.batches;
    s->eval_avg_batch_size = es.batches ? (double)es.batched_steps / es.batches : 0;
    s->eval_cache_hits = es.cache_hits;
    s->eval_input_tokens = es.input_tokens;
    s->eval_output_tokens = es.output_tokens;
    s->eval_errors = es.errors;
    s->eval_queue_depth = es.queue_depth;
    s->eval_retries = es.retries;
    s->eval_dropped = es.dropped;
    s->eval_estimated_cost_usd = (double)es.input_tokens * cfg.eval_price_input_per_mtok / 1e6 +
                                 (double)es.output_tokens * cfg.eval_price_output_per_mtok / 1e6;
    s->eval_breaker_open = es.breaker_open;
    s->eval_breaker_opened = es.breaker_opened;
    const char *off = evaluator_disabled_reason(a->ev);
    s->eval_disabled_reason = rpc_call_strdup(call, off ? off : "");
    size_t nq = 0, ni = 0;
    for (int q = 1; q < STORE_QUALITY_SLOTS; q++)
        nq += c.by_quality[q] != 0;
    for (int t = 1; t < STORE_ISSUE_SLOTS; t++)
        ni += c.issues_by_type[t] != 0;
    s->sessions_by_quality = rpc_call_alloc(call, (nq + 1) * sizeof *s->sessions_by_quality);
    for (int q = 1; q < STORE_QUALITY_SLOTS; q++) {
        if (!c.by_quality[q])
            continue;
        Norn__V1__QualityCount *qc = rpc_call_alloc(call, sizeof *qc);
        norn__v1__quality_count__init(qc);
        qc->quality = (Norn__V1__SessionQuality)q;
        qc->count = c.by_quality[q];
        s->sessions_by_quality[s->n_sessions_by_quality++] = qc;
    }
    s->issues_by_type = rpc_call_alloc(call, (ni + 1) * sizeof *s->issues_by_type);
    for (int t = 1; t < STORE_ISSUE_SLOTS; t++) {
        if (!c.issues_by_type[t])
            continue;
        Norn__V1__IssueTypeCount *ic = rpc_call_alloc(call, sizeof *ic);
        norn__v1__issue_type_count__init(ic);
        ic->issue_type = (Norn__V1__IssueType)t;
        ic->count = c.issues_by_type[t];
        s->issues_by_type[s->n_issues_by_type++] = ic;
    }
    resp->stats = s;
    return RPC_OK;
}

static const Norn__V1__StatsService_Handlers stats_handlers = {
    .get_stats = get_stats,
};

AdminService *admin_service_new(Store *store, ConfigHolder *config)
{
    AdminService *a = msg_alloc(sizeof *a);
    a->store = store;
    a->config = config;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    a->started_us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    return a;
}

void admin_service_set_evaluator(AdminService *a, Evaluator *ev)
{
    a->ev = ev;
}

void admin_service_set_runs(AdminService *a, RunService *rs)
{
    a->runs = rs;
}

int admin_service_register(AdminService *a, RpcServer *srv)
{
    return norn__v1__config_service__serve(srv, &config_handlers, a) |
           norn__v1__stats_service__serve(srv, &stats_handlers, a);
}

void admin_service_free(AdminService *a)
{
    free(a);
}
