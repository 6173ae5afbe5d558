/*
 * registry_service.c — AgentService (registry part), SwarmService and
 * AuditService; see registry_service.h.
 */
#include "registry_service.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_import.h"
#include "error.h"
#include "ids.h"
#include "keys.h"
#include "log.h"
#include "msg.h"
#include "norn/v1/agent_service.grpc-c.h"
#include "norn/v1/audit_service.grpc-c.h"
#include "norn/v1/swarm_service.grpc-c.h"
#include "run_service.h"

#define MAX_NAME 256
#define MAX_TEXT (64 * 1024)
#define MAX_PAGE 1000
#define DEFAULT_PAGE 50
#define DEFAULT_AUDIT_PAGE 200
#define MAX_SWARM_MEMBERS 1000
#define DELETE_CHUNK 200
#define TOKEN_VERSION 1

struct Registry {
    Store *store;
    ConfigHolder *config;
    SessionService *sessions;
    SwarmAnalyzer *analyzer; /* NULL: AnalyzeSwarm is unavailable */
    AgentImporter *importer; /* NULL: ImportAgent is UNIMPLEMENTED, no workspaces */
    RunService *runs;        /* NULL: the run RPCs answer UNAVAILABLE */
};

static RpcCode storage_error(RpcCall *call, int rc, const char *what)
{
    return rpc_fail(call, norn_error_to_rpc(rc), "storage: cannot %s", what);
}

/* ---- AgentService: the registry -------------------------------------------- */

static char *strip(const char *s)
{
    while (*s && isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    char *r = msg_alloc(n + 1);
    memcpy(r, s, n);
    return r;
}

/* The hook path (reference §2.2 register): idempotent on name + source. */
static RpcCode register_agent(void *ud, RpcCall *call, const Norn__V1__RegisterAgentRequest *req,
                              Norn__V1__RegisterAgentResponse *resp)
{
    Registry *r = ud;
    char *name = strip(req->name);
    size_t nlen = strlen(name);
    if (!nlen || nlen > MAX_NAME || strlen(req->task_description) > MAX_TEXT ||
        strlen(req->source_file) > 1024) {
        free(name);
        if (!nlen)
            return rpc_fail(call, RPC_INVALID_ARGUMENT, "name: required");
        return rpc_fail(call, RPC_INVALID_ARGUMENT,
                        nlen > MAX_NAME ? "name: at most 256 bytes"
                        : strlen(req->source_file) > 1024
                            ? "source_file: at most 1024 bytes"
                            : "task_description: at most 65536 bytes");
    }
    StoreTxn *t = store_txn_begin(r->store);
    char id[ID_MAX_LEN + 1];
    int rc = store_agent_by_name(r->store, NORN__V1__AGENT_SOURCE__AGENT_SOURCE_HOOK, name, id,
                                 sizeof id);
    Norn__V1__Agent *a = NULL;
    if (rc == NORN_OK && store_agent_get(r->store, id, &a) == NORN_OK) {
        store_txn_abort(t);
        free(name);
        rpc_call_adopt(call, &a->base);
        resp->agent = a;
        resp->created = 0;
        return RPC_OK;
    }
    a = msg_alloc(sizeof *a);
    norn__v1__agent__init(a);
    char gen[ID_GEN_LEN + 1], full[ID_GEN_LEN + 8];
    id_generate(gen);
    snprintf(full, sizeof full, "hook-%s", gen);
    a->agent_id = msg_strdup(full);
    a->name = name;
    a->source = NORN__V1__AGENT_SOURCE__AGENT_SOURCE_HOOK;
    if (req->task_description[0]) {
        a->task_description = msg_strdup(req->task_description);
    } else {
        size_t l = nlen + 32;
        a->task_description = msg_alloc(l);
        snprintf(a->task_description, l, "Live monitoring: %s", name);
    }
    a->source_file = msg_strdup(req->source_file[0] ? req->source_file : "unknown.py");
    a->added_at = msg_timestamp(store_txn_now_micros(t));
    a->status = NORN__V1__AGENT_STATUS__AGENT_STATUS_ANALYZED;
    a->discovery = msg_alloc(sizeof *a->discovery);
    norn__v1__discovery_report__init(a->discovery);
    a->discovery->agent_type = msg_strdup("Hook Agent");
    rpc_call_adopt(call, &a->base);
    store_txn_put_agent(t, a);
    store_txn_counters(t)->agents++;
    char err[200];
    rc = store_txn_commit(t, err, sizeof err);
    if (rc != NORN_OK)
        return rpc_fail(call, norn_error_to_rpc(rc), "storage: %s", err);
    resp->agent = a;
    resp->created = 1;
    return RPC_OK;
}

static RpcCode get_agent(void *ud, RpcCall *call, const Norn__V1__GetAgentRequest *req,
                         Norn__V1__GetAgentResponse *resp)
{
    Registry *r = ud;
    if (!id_valid(req->agent_id))
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "agent_id: must match [A-Za-z0-9._:-]{1,%d}",
                        ID_MAX_LEN);
    Norn__V1__Agent *a = NULL;
    int rc = store_agent_get(r->store, req->agent_id, &a);
    if (rc == NORN_ERR_NOT_FOUND)
        return rpc_fail(call, RPC_NOT_FOUND, "agent_id: no agent '%s'", req->agent_id);
    if (rc != NORN_OK)
        return storage_error(call, rc, "read the agent");
    rpc_call_adopt(call, &a->base);
    resp->agent = a;
    return RPC_OK;
}

typedef struct AgentPage {
    RpcCall *call;
    Norn__V1__ListAgentsResponse *resp;
    Norn__V1__AgentSource source;
    size_t want;
    char last[ID_MAX_LEN + 1];
} AgentPage;

static int agent_visit(void *arg, Norn__V1__Agent *a)
{
    AgentPage *p = arg;
    snprintf(p->last, sizeof p->last, "%s", a->agent_id);
    if (p->source && a->source != p->source) {
        norn__v1__agent__free_unpacked(a, NULL);
        return 1;
    }
    rpc_call_adopt(p->call, &a->base);
    p->resp->agents[p->resp->n_agents++] = a;
    return p->resp->n_agents < p->want;
}

static RpcCode list_agents(void *ud, RpcCall *call, const Norn__V1__ListAgentsRequest *req,
                           Norn__V1__ListAgentsResponse *resp)
{
    Registry *r = ud;
    if (req->page_size > MAX_PAGE)
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "page_size: at most %d", MAX_PAGE);
    if ((int)req->source < 0 || req->source > NORN__V1__AGENT_SOURCE__AGENT_SOURCE_HOOK)
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "source: unknown value %d", (int)req->source);
    char after[ID_MAX_LEN + 1] = "";
    if (req->page_token[0]) {
        uint8_t tok[ID_MAX_LEN + 2];
        size_t len;
        if (token_decode(req->page_token, tok, sizeof tok - 1, &len) != 0 || len < 2 ||
            tok[0] != TOKEN_VERSION)
            return rpc_fail(call, RPC_INVALID_ARGUMENT, "page_token: not a token of ListAgents");
        memcpy(after, tok + 1, len - 1);
        after[len - 1] = '\0';
        if (!id_valid(after))
            return rpc_fail(call, RPC_INVALID_ARGUMENT, "page_token: not a token of ListAgents");
    }
    AgentPage p = {call, resp, req->source, req->page_size ? req->page_size : DEFAULT_PAGE, ""};
    resp->agents = rpc_call_alloc(call, p.want * sizeof *resp->agents);
    int more = 0;
    int rc = store_agents_scan(r->store, after, p.want * 20 + 200, agent_visit, &p, &more);
    if (rc != NORN_OK)
        return storage_error(call, rc, "list agents");
    if (more && p.last[0]) {
        uint8_t tok[ID_MAX_LEN + 2];
        tok[0] = TOKEN_VERSION;
        size_t n = strlen(p.last);
        memcpy(tok + 1, p.last, n);
        char *s = rpc_call_alloc(call, (n + 1) * 2 + 8);
        token_encode(tok, n + 1, s, (n + 1) * 2 + 8);
        resp->next_page_token = s;
    }
    return RPC_OK;
}

typedef struct Collect {
    Norn__V1__Session **items;
    size_t n, cap;
} Collect;

static int collect_visit(void *arg, Norn__V1__Session *s)
{
    Collect *c = arg;
    if (c->n == c->cap) {
        norn__v1__session__free_unpacked(s, NULL);
        return 0;
    }
    c->items[c->n++] = s;
    return 1;
}

static void collect_free(Collect *c)
{
    for (size_t i = 0; i < c->n; i++)
        norn__v1__session__free_unpacked(c->items[i], NULL);
    free(c->items);
}

/* Every session of one index name (agent id or swarm), at most `cap`. */
static int collect_sessions(Store *store, StoreIndex index, const char *name, size_t cap,
                            Collect *out)
{
    out->items = msg_alloc(cap * sizeof *out->items);
    out->n = 0;
    out->cap = cap;
    StoreListQuery q = {0};
    q.index = index;
    q.name = name;
    q.max_scan = cap;
    uint8_t last[KEY_MAX];
    size_t last_len;
    int more;
    return store_sessions_scan(store, &q, collect_visit, out, last, &last_len, &more);
}

/* Deletes the agent and, when asked, its sessions — by agent id, never by
 * a name another agent may share (§12.4 F23). Sessions go in chunks, each
 * one atomic; the agent goes last, so an interrupted delete can be run
 * again. */
static RpcCode delete_agent(void *ud, RpcCall *call, const Norn__V1__DeleteAgentRequest *req,
                            Norn__V1__DeleteAgentResponse *resp)
{
    Registry *r = ud;
    if (!id_valid(req->agent_id))
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "agent_id: must match [A-Za-z0-9._:-]{1,%d}",
                        ID_MAX_LEN);
    Norn__V1__Agent *a = NULL;
    int rc = store_agent_get(r->store, req->agent_id, &a);
    if (rc == NORN_ERR_NOT_FOUND)
        return rpc_fail(call, RPC_NOT_FOUND, "agent_id: no agent '%s'", req->agent_id);
    if (rc != NORN_OK)
        return storage_error(call, rc, "read the agent");
    rpc_call_adopt(call, &a->base);
    char err[300];
    while (req->delete_sessions) {
        StoreTxn *t = store_txn_begin(r->store);
        Collect c;
        rc = collect_sessions(r->store, STORE_BY_AGENT_ID, a->agent_id, DELETE_CHUNK, &c);
        if (rc != NORN_OK || c.n == 0) {
            collect_free(&c);
            store_txn_abort(t);
            if (rc != NORN_OK)
                return storage_error(call, rc, "list the agent's sessions");
            break;
        }
        for (size_t i = 0; i < c.n; i++)
            session_service_delete_in_txn(r->sessions, t, c.items[i]);
        size_t n = c.n;
        collect_free(&c);
        int code = session_service_commit(r->sessions, t, err, sizeof err);
        if (code != RPC_OK)
            return rpc_fail(call, (RpcCode)code, "%s", err);
        resp->deleted_sessions += (uint32_t)n;
    }
    /* The workspace before the entry: a delete that fails here leaves the
     * agent listed, so it can be deleted again. */
    if (r->importer && agent_importer_remove_workspace(r->importer, a->agent_id, err, sizeof err) ==
                           NORN_ERR_INTERNAL) {
        log_error("agent_workspace_left", "agent_id=%s error=%s", a->agent_id,
                  log_quote(err, (char[400]){0}, 400));
        return rpc_fail(call, RPC_INTERNAL, "%s", err);
    }
    StoreTxn *t = store_txn_begin(r->store);
    store_txn_delete_agent(t, a);
    StoreCounters *c = store_txn_counters(t);
    if (c->agents)
        c->agents--;
    rc = store_txn_commit(t, err, sizeof err);
    if (rc != NORN_OK)
        return rpc_fail(call, norn_error_to_rpc(rc), "storage: %s", err);
    return RPC_OK;
}

/* Queued for the import workers (agent_import.c); they stream and finish. */
static RpcCode import_agent(void *ud, RpcCall *call, const Norn__V1__ImportAgentRequest *req)
{
    Registry *r = ud;
    if (!r->importer)
        return rpc_fail(call, RPC_UNIMPLEMENTED, "agent import is not enabled on this server");
    return agent_importer_handle(r->importer, call, req);
}

/* Runs are served by run_service.c. */
static RpcCode runs_unavailable(RpcCall *call)
{
    return rpc_fail(call, RPC_UNAVAILABLE, "runs: this server has no executor");
}

static RpcCode run_agent(void *ud, RpcCall *call, const Norn__V1__RunAgentRequest *req,
                         Norn__V1__RunAgentResponse *resp)
{
    Registry *r = ud;
    return r->runs ? run_service_run_agent(r->runs, call, req, resp) : runs_unavailable(call);
}

static RpcCode get_run(void *ud, RpcCall *call, const Norn__V1__GetRunRequest *req,
                       Norn__V1__GetRunResponse *resp)
{
    Registry *r = ud;
    return r->runs ? run_service_get_run(r->runs, call, req, resp) : runs_unavailable(call);
}

static RpcCode list_runs(void *ud, RpcCall *call, const Norn__V1__ListRunsRequest *req,
                         Norn__V1__ListRunsResponse *resp)
{
    Registry *r = ud;
    return r->runs ? run_service_list_runs(r->runs, call, req, resp) : runs_unavailable(call);
}

static RpcCode cancel_run(void *ud, RpcCall *call, const Norn__V1__CancelRunRequest *req,
                          Norn__V1__CancelRunResponse *resp)
{
    Registry *r = ud;
    return r->runs ? run_service_cancel_run(r->runs, call, req, resp) : runs_unavailable(call);
}

void registry_set_runs(Registry *r, RunService *rs)
{
    r->runs = rs;
}

static const Norn__V1__AgentService_Handlers agent_handlers = {
    .register_agent = register_agent,
    .import_agent = import_agent,
    .get_agent = get_agent,
    .list_agents = list_agents,
    .delete_agent = delete_agent,
    .run_agent = run_agent,
    .get_run = get_run,
    .list_runs = list_runs,
    .cancel_run = cancel_run,
};

/* ---- SwarmService -------------------------------------------------------------- */

int swarm_worst_quality(const int *qualities, size_t n)
{
    static const int order[] = {
        NORN__V1__SESSION_QUALITY__QUALITY_FAILED, NORN__V1__SESSION_QUALITY__QUALITY_STUCK,
        NORN__V1__SESSION_QUALITY__QUALITY_POOR,   NORN__V1__SESSION_QUALITY__QUALITY_PENDING,
        NORN__V1__SESSION_QUALITY__QUALITY_GOOD,   NORN__V1__SESSION_QUALITY__QUALITY_EXCELLENT,
    };
    for (size_t k = 0; k < sizeof order / sizeof order[0]; k++)
        for (size_t i = 0; i < n; i++)
            if (qualities[i] == order[k])
                return order[k];
    return NORN__V1__SESSION_QUALITY__QUALITY_PENDING;
}

/* Splits on whitespace into a set of lower-cased words (duplicates
 * dropped). Returns the count; words point into `buf`. */
static size_t word_set(const char *text, char *buf, size_t cap, char **words, size_t max)
{
    size_t n = 0, o = 0;
    const char *p = text;
    while (*p && n < max) {
        while (*p && isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        char *w = buf + o;
        while (*p && !isspace((unsigned char)*p) && o + 1 < cap)
            buf[o++] = (char)tolower((unsigned char)*p++);
        while (*p && !isspace((unsigned char)*p))
            p++;
        if (o + 1 >= cap)
            break;
        buf[o++] = '\0';
        int dup = 0;
        for (size_t i = 0; i < n && !dup; i++)
            dup = strcmp(words[i], w) == 0;
        if (!dup)
            words[n++] = w;
    }
    return n;
}

double swarm_alignment_score(const char *const *tasks, size_t n)
{
    if (n < 2)
        return 1.0;
    enum { MAX_WORDS = 512, BUF = 8192 };
    static __thread char abuf[BUF], bbuf[BUF];
    static __thread char *awords[MAX_WORDS], *bwords[MAX_WORDS];
    size_t na = word_set(tasks[0] ? tasks[0] : "", abuf, BUF, awords, MAX_WORDS);
    double sum = 0;
    for (size_t m = 1; m < n; m++) {
        if (na == 0) {
            sum += 1.0;
            continue;
        }
        size_t nb = word_set(tasks[m] ? tasks[m] : "", bbuf, BUF, bwords, MAX_WORDS);
        if (nb == 0)
            continue;
        size_t common = 0;
        for (size_t i = 0; i < nb; i++)
            for (size_t k = 0; k < na; k++)
                if (strcmp(bwords[i], awords[k]) == 0) {
                    common++;
                    break;
                }
        sum += (double)common / (double)(na + nb - common);
    }
    return round(sum / (double)(n - 1) * 1000.0) / 1000.0;
}

static int by_order(const void *a, const void *b)
{
    const Norn__V1__Session *x = *(Norn__V1__Session *const *)a;
    const Norn__V1__Session *y = *(Norn__V1__Session *const *)b;
    if (x->swarm_order != y->swarm_order)
        return x->swarm_order < y->swarm_order ? -1 : 1;
    uint64_t tx = msg_micros(x->started_at), ty = msg_micros(y->started_at);
    return tx < ty ? -1 : tx > ty;
}

/* The swarm view of its member sessions (§5), members ordered by
 * swarm_order. */
static Norn__V1__Swarm *build_swarm(RpcCall *call, const char *swarm_id, Collect *c)
{
    qsort(c->items, c->n, sizeof *c->items, by_order);
    Norn__V1__Swarm *sw = rpc_call_alloc(call, sizeof *sw);
    norn__v1__swarm__init(sw);
    sw->swarm_id = rpc_call_strdup(call, swarm_id);
    sw->agent_count = (uint32_t)c->n;
    sw->agents = rpc_call_alloc(call, (c->n + 1) * sizeof *sw->agents);
    sw->handoffs = rpc_call_alloc(call, (c->n + 1) * sizeof *sw->handoffs);
    int *qual = rpc_call_alloc(call, (c->n + 1) * sizeof *qual);
    const char **tasks = rpc_call_alloc(call, (c->n + 1) * sizeof *tasks);
    uint64_t first = 0, last = 0;
    int all_ended = 1;
    for (size_t i = 0; i < c->n; i++) {
        const Norn__V1__Session *s = c->items[i];
        Norn__V1__SwarmMember *m = rpc_call_alloc(call, sizeof *m);
        norn__v1__swarm_member__init(m);
        m->session_id = s->session_id;
        m->agent_name = s->agent_name;
        m->agent_id = s->agent_id;
        m->swarm_order = s->swarm_order;
        m->overall_quality =
            s->overall_quality ? s->overall_quality : NORN__V1__SESSION_QUALITY__QUALITY_PENDING;
        if (s->optional_efficiency_score_case) {
            m->optional_efficiency_score_case =
                NORN__V1__SWARM_MEMBER__OPTIONAL_EFFICIENCY_SCORE_EFFICIENCY_SCORE;
            m->efficiency_score = s->efficiency_score;
        }
        if (s->optional_security_score_case) {
            m->optional_security_score_case =
                NORN__V1__SWARM_MEMBER__OPTIONAL_SECURITY_SCORE_SECURITY_SCORE;
            m->security_score = s->security_score;
        }
        m->task = s->task ? s->task->description : (char *)"";
        m->status = s->status;
        m->total_steps = s->total_steps;
        m->handoff_input = s->handoff_input;
        m->started_at = s->started_at;
        m->ended_at = s->ended_at;
        sw->agents[sw->n_agents++] = m;
        qual[i] = m->overall_quality;
        tasks[i] = m->task;
        uint64_t st = msg_micros(s->started_at), en = msg_micros(s->ended_at);
        if (st && (!first || st < first))
            first = st;
        if (en > last)
            last = en;
        if (!en)
            all_ended = 0;
        if (i > 0 && s->handoff_input[0]) {
            const Norn__V1__Session *src = c->items[i - 1];
            Norn__V1__Handoff *h = rpc_call_alloc(call, sizeof *h);
            norn__v1__handoff__init(h);
            h->source_session_id = src->session_id;
            h->source_agent_name = src->agent_name;
            h->source_order = src->swarm_order;
            h->target_session_id = s->session_id;
            h->target_agent_name = s->agent_name;
            h->target_order = s->swarm_order;
            h->handoff_input = s->handoff_input;
            sw->handoffs[sw->n_handoffs++] = h;
        }
    }
    sw->overall_quality = swarm_worst_quality(qual, c->n);
    if (first) {
        Google__Protobuf__Timestamp *ts = msg_timestamp(first);
        rpc_call_adopt(call, &ts->base);
        sw->started_at = ts;
    }
    if (last && all_ended) {
        Google__Protobuf__Timestamp *ts = msg_timestamp(last);
        rpc_call_adopt(call, &ts->base);
        sw->ended_at = ts;
    }
    if (c->n >= 2) {
        sw->optional_alignment_score_case =
            NORN__V1__SWARM__OPTIONAL_ALIGNMENT_SCORE_ALIGNMENT_SCORE;
        sw->alignment_score = swarm_alignment_score(tasks, c->n);
    }
    return sw;
}

/* Loads a swarm's members; the sessions are handed to the call. */
static RpcCode load_swarm(Registry *r, RpcCall *call, const char *swarm_id, Collect *c)
{
    c->items = NULL;
    c->n = 0;
    if (!id_valid(swarm_id))
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "swarm_id: must match [A-Za-z0-9._:-]{1,%d}",
                        ID_MAX_LEN);
    int rc = collect_sessions(r->store, STORE_BY_SWARM, swarm_id, MAX_SWARM_MEMBERS, c);
    for (size_t i = 0; i < c->n; i++)
        rpc_call_adopt(call, &c->items[i]->base);
    if (rc != NORN_OK)
        return storage_error(call, rc, "read the swarm");
    if (c->n == 0)
        return rpc_fail(call, RPC_NOT_FOUND, "swarm_id: no swarm '%s'", swarm_id);
    return RPC_OK;
}

static RpcCode get_swarm(void *ud, RpcCall *call, const Norn__V1__GetSwarmRequest *req,
                         Norn__V1__GetSwarmResponse *resp)
{
    Registry *r = ud;
    Collect c;
    RpcCode code = load_swarm(r, call, req->swarm_id, &c);
    if (code == RPC_OK) {
        resp->swarm = build_swarm(call, req->swarm_id, &c);
        Norn__V1__SwarmAnalysis *a =
            r->analyzer ? swarm_analyzer_cached(r->analyzer, req->swarm_id, c.items, c.n) : NULL;
        if (a) {
            rpc_call_adopt(call, &a->base);
            resp->analysis = a;
        }
        if (req->include_sessions) {
            resp->sessions = rpc_call_alloc(call, (c.n + 1) * sizeof *resp->sessions);
            for (size_t i = 0; i < c.n; i++)
                resp->sessions[resp->n_sessions++] = c.items[i];
        }
    }
    free(c.items); /* the sessions belong to the call */
    return code;
}

typedef struct SwarmPage {
    Registry *r;
    RpcCall *call;
    Norn__V1__ListSwarmsResponse *resp;
    RpcCode code;
} SwarmPage;

static int swarm_visit(void *arg, const char *swarm_id)
{
    SwarmPage *p = arg;
    Collect c;
    int rc = collect_sessions(p->r->store, STORE_BY_SWARM, swarm_id, MAX_SWARM_MEMBERS, &c);
    for (size_t i = 0; i < c.n; i++)
        rpc_call_adopt(p->call, &c.items[i]->base);
    if (rc == NORN_OK && c.n)
        p->resp->swarms[p->resp->n_swarms++] = build_swarm(p->call, swarm_id, &c);
    free(c.items);
    if (rc != NORN_OK)
        p->code = storage_error(p->call, rc, "read a swarm");
    return rc == NORN_OK;
}

static RpcCode list_swarms(void *ud, RpcCall *call, const Norn__V1__ListSwarmsRequest *req,
                           Norn__V1__ListSwarmsResponse *resp)
{
    Registry *r = ud;
    if (req->page_size > MAX_PAGE)
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "page_size: at most %d", MAX_PAGE);
    size_t want = req->page_size ? req->page_size : DEFAULT_PAGE;
    uint8_t tok[KEY_MAX + 1];
    size_t tok_len = 0;
    if (req->page_token[0] && (token_decode(req->page_token, tok, sizeof tok, &tok_len) != 0 ||
                               tok_len < 10 || tok[0] != TOKEN_VERSION))
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "page_token: not a token of ListSwarms");
    resp->swarms = rpc_call_alloc(call, want * sizeof *resp->swarms);
    SwarmPage p = {r, call, resp, RPC_OK};
    uint8_t last[KEY_MAX];
    size_t last_len = 0;
    int more = 0;
    store_swarms_scan(r->store, tok_len ? tok + 1 : NULL, tok_len ? tok_len - 1 : 0, want,
                      swarm_visit, &p, last, &last_len, &more);
    if (p.code != RPC_OK)
        return p.code;
    if (more && last_len) {
        uint8_t next[KEY_MAX + 1];
        next[0] = TOKEN_VERSION;
        memcpy(next + 1, last, last_len);
        char *s = rpc_call_alloc(call, (last_len + 1) * 2 + 8);
        token_encode(next, last_len + 1, s, (last_len + 1) * 2 + 8);
        resp->next_page_token = s;
    }
    return RPC_OK;
}

/* The prompt lists each member's tools, so the members get their steps
 * (at most MAX_ANALYSIS_STEPS each; they belong to the call). */
#define MAX_ANALYSIS_STEPS 500

static RpcCode analyze_swarm(void *ud, RpcCall *call, const Norn__V1__AnalyzeSwarmRequest *req,
                             Norn__V1__AnalyzeSwarmResponse *resp)
{
    Registry *r = ud;
    Collect c;
    RpcCode code = load_swarm(r, call, req->swarm_id, &c);
    Norn__V1__Config cfg;
    config_get(r->config, &cfg);
    if (code == RPC_OK && (!r->analyzer || !cfg.enable_ai_eval))
        code = rpc_fail(call, RPC_FAILED_PRECONDITION,
                        "AI evaluation is disabled (config enable_ai_eval)");
    if (code != RPC_OK) {
        free(c.items);
        return code;
    }
    qsort(c.items, c.n, sizeof *c.items, by_order);
    for (size_t i = 0; i < c.n && code == RPC_OK; i++) {
        Norn__V1__Session *s = c.items[i];
        Norn__V1__Step **steps = NULL;
        size_t n = 0;
        uint32_t next = 0;
        if (store_steps_scan(r->store, s->session_id, 1, MAX_ANALYSIS_STEPS, &steps, &n, &next) ==
            NORN_OK) {
            s->steps = steps;
            s->n_steps = n;
        }
    }
    code = swarm_analyzer_serve(r->analyzer, call, req->swarm_id, c.items, c.n, req->refresh, resp);
    free(c.items); /* the sessions belong to the call */
    return code;
}

/* All members go in one batch, each with its own DELETED revision. */
static RpcCode delete_swarm(void *ud, RpcCall *call, const Norn__V1__DeleteSwarmRequest *req,
                            Norn__V1__DeleteSwarmResponse *resp)
{
    Registry *r = ud;
    if (!id_valid(req->swarm_id))
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "swarm_id: must match [A-Za-z0-9._:-]{1,%d}",
                        ID_MAX_LEN);
    StoreTxn *t = store_txn_begin(r->store);
    Collect c;
    int rc = collect_sessions(r->store, STORE_BY_SWARM, req->swarm_id, MAX_SWARM_MEMBERS, &c);
    if (rc != NORN_OK || c.n == 0) {
        collect_free(&c);
        store_txn_abort(t);
        if (rc != NORN_OK)
            return storage_error(call, rc, "read the swarm");
        return rpc_fail(call, RPC_NOT_FOUND, "swarm_id: no swarm '%s'", req->swarm_id);
    }
    for (size_t i = 0; i < c.n; i++)
        session_service_delete_in_txn(r->sessions, t, c.items[i]);
    resp->deleted_sessions = (uint32_t)c.n;
    collect_free(&c);
    char err[300];
    int code = session_service_commit(r->sessions, t, err, sizeof err);
    if (code != RPC_OK)
        return rpc_fail(call, (RpcCode)code, "%s", err);
    if (r->analyzer)
        swarm_analyzer_forget(r->analyzer, req->swarm_id);
    return RPC_OK;
}

static const Norn__V1__SwarmService_Handlers swarm_handlers = {
    .list_swarms = list_swarms,
    .get_swarm = get_swarm,
    .analyze_swarm = analyze_swarm,
    .delete_swarm = delete_swarm,
};

/* ---- AuditService --------------------------------------------------------------- */

typedef struct AuditPage {
    const Norn__V1__ListAuditEventsRequest *req;
    RpcCall *call;
    Norn__V1__ListAuditEventsResponse *resp;
    size_t want;
} AuditPage;

static int audit_visit(void *arg, Norn__V1__AuditEvent *ev, const uint8_t key[16])
{
    (void)key;
    AuditPage *p = arg;
    const Norn__V1__ListAuditEventsRequest *q = p->req;
    int keep = (!q->event_type || ev->event_type == q->event_type) &&
               (!q->min_severity || ev->severity >= q->min_severity) &&
               (!q->agent_name[0] || strcmp(ev->agent_name, q->agent_name) == 0) &&
               (!q->session_id[0] || strcmp(ev->session_id, q->session_id) == 0);
    if (!keep) {
        norn__v1__audit_event__free_unpacked(ev, NULL);
        return 1;
    }
    rpc_call_adopt(p->call, &ev->base);
    p->resp->events[p->resp->n_events++] = ev;
    return p->resp->n_events < p->want;
}

/* A page token carries this digest of the request's filters, so a token is
 * only good for the listing that made it. */
static uint32_t audit_filter_digest(const Norn__V1__ListAuditEventsRequest *req)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    char nums[96];
    snprintf(nums, sizeof nums, "%d|%d|%llu|%llu", (int)req->event_type, (int)req->min_severity,
             (unsigned long long)msg_micros(req->start_time),
             (unsigned long long)msg_micros(req->end_time));
    const char *parts[] = {req->agent_name, "\x1f", req->session_id, "\x1f", nums};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        for (const char *p = parts[i]; *p; p++)
            h = (h ^ (uint8_t)*p) * 16777619u;
    return h;
}

/* The most selective index for the filters; the others are checked on the
 * events the index yields, within a scan budget that follows the page size. */
static RpcCode list_audit_events(void *ud, RpcCall *call,
                                 const Norn__V1__ListAuditEventsRequest *req,
                                 Norn__V1__ListAuditEventsResponse *resp)
{
    Registry *r = ud;
    if (req->page_size > MAX_PAGE)
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "page_size: at most %d", MAX_PAGE);
    if ((int)req->event_type < 0 ||
        req->event_type > NORN__V1__AUDIT_EVENT_TYPE__AUDIT_EVENT_TYPE_GUARD_ACTION)
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "event_type: unknown value %d",
                        (int)req->event_type);
    if ((int)req->min_severity < 0 ||
        req->min_severity > NORN__V1__AUDIT_SEVERITY__AUDIT_SEVERITY_CRITICAL)
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "min_severity: unknown value %d",
                        (int)req->min_severity);
    if (req->session_id[0] && !id_valid(req->session_id))
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "session_id: must match [A-Za-z0-9._:-]{1,%d}",
                        ID_MAX_LEN);
    if (strlen(req->agent_name) > MAX_NAME)
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "agent_name: at most %d bytes", MAX_NAME);
    StoreAuditQuery q = {0};
    char num[8];
    if (req->session_id[0]) {
        q.index = STORE_AUDIT_BY_SESSION;
        q.name = req->session_id;
    } else if (req->agent_name[0]) {
        q.index = STORE_AUDIT_BY_AGENT;
        q.name = req->agent_name;
    } else if (req->event_type) {
        q.index = STORE_AUDIT_BY_TYPE;
        snprintf(num, sizeof num, "%d", (int)req->event_type);
        q.name = num;
    } else if (req->min_severity == NORN__V1__AUDIT_SEVERITY__AUDIT_SEVERITY_CRITICAL) {
        q.index = STORE_AUDIT_BY_SEVERITY;
        snprintf(num, sizeof num, "%d", (int)req->min_severity);
        q.name = num;
    }
    q.after_micros = msg_micros(req->start_time);
    q.before_micros = msg_micros(req->end_time);
    if (q.before_micros && q.after_micros >= q.before_micros)
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "end_time: must be after start_time");
    size_t want = req->page_size ? req->page_size : DEFAULT_AUDIT_PAGE;
    q.max_scan = want * 20 + 200;
    uint8_t tok[32];
    size_t tok_len = 0;
    uint32_t digest = audit_filter_digest(req);
    if (req->page_token[0]) {
        if (token_decode(req->page_token, tok, sizeof tok, &tok_len) != 0 || tok_len != 22 ||
            tok[0] != TOKEN_VERSION || tok[1] != (uint8_t)q.index ||
            key_get_u32(tok + 18) != digest)
            return rpc_fail(call, RPC_INVALID_ARGUMENT,
                            "page_token: not a token of this listing (filters must stay the same)");
        q.resume = tok + 2;
    }
    resp->events = rpc_call_alloc(call, want * sizeof *resp->events);
    AuditPage p = {req, call, resp, want};
    uint8_t last[16];
    int more = 0;
    int rc = store_audit_scan(r->store, &q, audit_visit, &p, last, &more);
    if (rc != NORN_OK)
        return storage_error(call, rc, "list audit events");
    if (more) {
        uint8_t next[22];
        next[0] = TOKEN_VERSION;
        next[1] = (uint8_t)q.index;
        memcpy(next + 2, last, 16);
        key_put_u32(next + 18, digest);
        char *s = rpc_call_alloc(call, 48);
        token_encode(next, 22, s, 48);
        resp->next_page_token = s;
    }
    return RPC_OK;
}

/* Deletes that one event and nothing else (§12.4 F18: the original deleted
 * whole sessions for session_start/session_end events). */
static RpcCode delete_audit_event(void *ud, RpcCall *call,
                                  const Norn__V1__DeleteAuditEventRequest *req,
                                  Norn__V1__DeleteAuditEventResponse *resp)
{
    (void)resp;
    Registry *r = ud;
    uint8_t key[24];
    size_t len = 0;
    if (token_decode(req->event_id, key, sizeof key, &len) != 0 || len != 16)
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "event_id: not an audit event id");
    StoreTxn *t = store_txn_begin(r->store);
    int rc = store_txn_delete_audit(t, key);
    if (rc != NORN_OK) {
        store_txn_abort(t);
        if (rc == NORN_ERR_NOT_FOUND)
            return rpc_fail(call, RPC_NOT_FOUND, "event_id: no event '%s'", req->event_id);
        return storage_error(call, rc, "read the event");
    }
    char err[200];
    rc = store_txn_commit(t, err, sizeof err);
    if (rc != NORN_OK)
        return rpc_fail(call, norn_error_to_rpc(rc), "storage: %s", err);
    return RPC_OK;
}

static const Norn__V1__AuditService_Handlers audit_handlers = {
    .list_audit_events = list_audit_events,
    .delete_audit_event = delete_audit_event,
};

/* ---- lifecycle --------------------------------------------------------------------- */

void registry_set_swarm_analyzer(Registry *r, SwarmAnalyzer *sa)
{
    r->analyzer = sa;
}

Registry *registry_new(Store *store, ConfigHolder *config, SessionService *sessions)
{
    Registry *r = msg_alloc(sizeof *r);
    r->store = store;
    r->config = config;
    r->sessions = sessions;
    return r;
}

void registry_set_importer(Registry *r, AgentImporter *importer)
{
    r->importer = importer;
}

int registry_register(Registry *r, RpcServer *srv)
{
    return norn__v1__agent_service__serve(srv, &agent_handlers, r) |
           norn__v1__swarm_service__serve(srv, &swarm_handlers, r) |
           norn__v1__audit_service__serve(srv, &audit_handlers, r);
}

void registry_free(Registry *r)
{
    free(r);
}
