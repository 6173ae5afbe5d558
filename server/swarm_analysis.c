/*
 * swarm_analysis.c — AnalyzeSwarm through the evaluator, cached per swarm
 * revision (see swarm_analysis.h).
 */
#include "swarm_analysis.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eval_prompt.h"
#include "log.h"
#include "msg.h"

#define CACHE_MAX 1024

typedef struct CacheItem {
    struct CacheItem *next;
    char *swarm_id;
    uint64_t revision; /* highest member revision when analysed */
    size_t members;
    Norn__V1__SwarmAnalysis *analysis;
} CacheItem;

struct SwarmAnalyzer {
    Evaluator *ev;
    pthread_mutex_t mu;
    CacheItem *items; /* most recent first */
    size_t n;
};

/* One analysis waiting for the model. */
typedef struct Pending {
    SwarmAnalyzer *sa;
    RpcCall *call;
    char *swarm_id;
    uint64_t revision;
    size_t members;
    int cacheable;
} Pending;

SwarmAnalyzer *swarm_analyzer_new(Evaluator *ev)
{
    SwarmAnalyzer *sa = msg_alloc(sizeof *sa);
    sa->ev = ev;
    pthread_mutex_init(&sa->mu, NULL);
    return sa;
}

static void item_free(CacheItem *it)
{
    free(it->swarm_id);
    norn__v1__swarm_analysis__free_unpacked(it->analysis, NULL);
    free(it);
}

void swarm_analyzer_free(SwarmAnalyzer *sa)
{
    if (!sa)
        return;
    for (CacheItem *it = sa->items, *n; it; it = n) {
        n = it->next;
        item_free(it);
    }
    pthread_mutex_destroy(&sa->mu);
    free(sa);
}

static uint64_t swarm_revision(Norn__V1__Session *const *members, size_t n, int *all_completed)
{
    uint64_t rev = 0;
    *all_completed = n > 0;
    for (size_t i = 0; i < n; i++) {
        if (members[i]->revision > rev)
            rev = members[i]->revision;
        /* The original caches only finished pipelines (§5). */
        if (members[i]->status == NORN__V1__SESSION_STATUS__SESSION_STATUS_ACTIVE ||
            members[i]->overall_quality == NORN__V1__SESSION_QUALITY__QUALITY_PENDING)
            *all_completed = 0;
    }
    return rev;
}

Norn__V1__SwarmAnalysis *swarm_analyzer_cached(SwarmAnalyzer *sa, const char *swarm_id,
                                               Norn__V1__Session *const *members, size_t n)
{
    int done;
    uint64_t rev = swarm_revision(members, n, &done);
    Norn__V1__SwarmAnalysis *copy = NULL;
    pthread_mutex_lock(&sa->mu);
    for (CacheItem *it = sa->items; it; it = it->next)
        if (strcmp(it->swarm_id, swarm_id) == 0) {
            if (it->revision == rev && it->members == n)
                copy = (Norn__V1__SwarmAnalysis *)msg_clone(&it->analysis->base);
            break;
        }
    pthread_mutex_unlock(&sa->mu);
    if (copy)
        copy->cached = 1;
    return copy;
}

static void cache_put(SwarmAnalyzer *sa, const char *swarm_id, uint64_t rev, size_t members,
                      const Norn__V1__SwarmAnalysis *a)
{
    CacheItem *it = msg_alloc(sizeof *it);
    it->swarm_id = msg_strdup(swarm_id);
    it->revision = rev;
    it->members = members;
    it->analysis = (Norn__V1__SwarmAnalysis *)msg_clone(&a->base);
    pthread_mutex_lock(&sa->mu);
    CacheItem **pp = &sa->items;
    while (*pp && strcmp((*pp)->swarm_id, swarm_id) != 0)
        pp = &(*pp)->next;
    if (*pp) {
        CacheItem *old = *pp;
        *pp = old->next;
        item_free(old);
        sa->n--;
    }
    it->next = sa->items;
    sa->items = it;
    if (++sa->n > CACHE_MAX) {
        CacheItem **last = &sa->items;
        while ((*last)->next)
            last = &(*last)->next;
        item_free(*last);
        *last = NULL;
        sa->n--;
    }
    pthread_mutex_unlock(&sa->mu);
}

void swarm_analyzer_forget(SwarmAnalyzer *sa, const char *swarm_id)
{
    pthread_mutex_lock(&sa->mu);
    for (CacheItem **pp = &sa->items; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->swarm_id, swarm_id) == 0) {
            CacheItem *old = *pp;
            *pp = old->next;
            item_free(old);
            sa->n--;
            break;
        }
    pthread_mutex_unlock(&sa->mu);
}

static void pending_free(Pending *p)
{
    rpc_call_unref(p->call);
    free(p->swarm_id);
    free(p);
}

/* The model answered (evaluator thread). */
static void analysis_done(void *arg, const char *text, const char *error)
{
    Pending *p = arg;
    char err[300];
    if (!text) {
        rpc_call_finish(p->call, RPC_UNAVAILABLE, error ? error : "the model did not answer");
        log_warn("swarm_analysis_failed", "swarm=%s error=\"%s\"", p->swarm_id, error);
        pending_free(p);
        return;
    }
    EvalSwarmResult r;
    memset(&r, 0, sizeof r);
    if (evalp_parse_swarm(text, &r, err, sizeof err) != 0) {
        char msg[400];
        snprintf(msg, sizeof msg, "Analysis failed: %s", err);
        rpc_call_finish(p->call, RPC_INTERNAL, msg);
        evalp_swarm_result_clear(&r);
        pending_free(p);
        return;
    }
    Norn__V1__SwarmAnalysis *a = msg_alloc(sizeof *a);
    norn__v1__swarm_analysis__init(a);
    evalp_swarm_result_apply(&r, a);
    evalp_swarm_result_clear(&r);
    a->swarm_id = msg_strdup(p->swarm_id);
    a->agent_count = (uint32_t)p->members;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    a->analyzed_at = msg_timestamp((uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
    if (p->cacheable)
        cache_put(p->sa, p->swarm_id, p->revision, p->members, a);
    Norn__V1__AnalyzeSwarmResponse resp = NORN__V1__ANALYZE_SWARM_RESPONSE__INIT;
    resp.analysis = a;
    rpc_call_send(p->call, &resp.base);
    rpc_call_finish(p->call, RPC_OK, NULL);
    norn__v1__swarm_analysis__free_unpacked(a, NULL);
    pending_free(p);
}

RpcCode swarm_analyzer_serve(SwarmAnalyzer *sa, RpcCall *call, const char *swarm_id,
                             Norn__V1__Session *const *members, size_t n, int refresh,
                             Norn__V1__AnalyzeSwarmResponse *resp)
{
    if (!refresh) {
        Norn__V1__SwarmAnalysis *hit = swarm_analyzer_cached(sa, swarm_id, members, n);
        if (hit) {
            rpc_call_adopt(call, &hit->base);
            resp->analysis = hit;
            return RPC_OK;
        }
    }
    const char *off = evaluator_disabled_reason(sa->ev);
    if (off)
        return rpc_fail(call, RPC_FAILED_PRECONDITION, "AI evaluation is unavailable: %s", off);
    char *user = evalp_swarm_prompt(members, n);
    if (!user)
        return rpc_fail(call, RPC_INTERNAL, "cannot build the analysis prompt");
    Pending *p = msg_alloc(sizeof *p);
    p->sa = sa;
    p->call = call;
    p->swarm_id = msg_strdup(swarm_id);
    p->members = n;
    p->revision = swarm_revision(members, n, &p->cacheable);
    rpc_call_ref(call);
    int rc =
        evaluator_call(sa->ev, EVALP_SWARM_SYSTEM, user, EVALP_SWARM_TEMPERATURE, analysis_done, p);
    free(user);
    if (rc != 0) {
        pending_free(p);
        return rpc_fail(call, RPC_RESOURCE_EXHAUSTED,
                        "the AI judge's queue is full: try again shortly");
    }
    return RPC_PENDING;
}
