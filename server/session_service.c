/*
 * session_service.c — norn.v1.SessionService (see session_service.h).
 *
 * Each mutating operation is written once (op_*) and serves both its unary
 * RPC and the matching arm of the bidi Ingest stream. An op validates the
 * request, opens a store transaction (which serialises writers), reads the
 * session, judges, writes everything and commits; the caller gets a
 * malloc-built response message or an RpcCode with a message naming the
 * offending field.
 */
#include "session_service.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "eval_prompt.h"
#include "evaluator.h"
#include "ids.h"
#include "judge.h"
#include "keys.h"
#include "log.h"
#include "msg.h"
#include "norn/v1/session_service.grpc-c.h"

#define MAX_NAME 256
#define MAX_TEXT (64 * 1024)
#define MAX_PROMPT (256 * 1024)
#define MAX_EXPECTED_TOOLS 100
#define MAX_RECORD_STEPS 1000
#define MAX_PAGE 1000
#define DEFAULT_PAGE 50
#define DEFAULT_STEP_PAGE 100
#define TOKEN_VERSION 1
/* Pages stop filling at this many bytes (at least one item), so a client
 * with gRPC's default 4 MiB receive limit can read every page. */
#define PAGE_BYTES (3u << 20)
/* Store marker kinds of a queued session evaluation (id: the session) and
 * of a step waiting for the AI judge (id: session "/" step, 10 digits). */
#define EVAL_MARKER "eval"
#define STEP_MARKER "evs"

struct SessionService {
    Store *store;
    ConfigHolder *config;
    Judge *judge;
    CommitHook hook;
    void *hook_arg;
    WatchHub *hub;
    Evaluator *ev; /* NULL: no AI judge */
};

typedef struct OpError {
    RpcCode code;
    char msg[320];
} OpError;

static int op_fail(OpError *e, RpcCode code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int op_fail(OpError *e, RpcCode code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->code = code;
    return -1;
}

/* ---- validation ------------------------------------------------------------ */

static int check_id(OpError *e, const char *field, const char *v, int required)
{
    if (!v || !*v) {
        if (required)
            return op_fail(e, RPC_INVALID_ARGUMENT, "%s: required", field);
        return 0;
    }
    if (!id_valid(v))
        return op_fail(e, RPC_INVALID_ARGUMENT, "%s: must match [A-Za-z0-9._:-]{1,%d}", field,
                       ID_MAX_LEN);
    return 0;
}

static int check_len(OpError *e, const char *field, const char *v, size_t max)
{
    size_t n = v ? strlen(v) : 0;
    if (n > max)
        return op_fail(e, RPC_INVALID_ARGUMENT, "%s: %zu bytes, at most %zu allowed", field, n,
                       max);
    return 0;
}

static int check_msg_size(OpError *e, const char *field, const ProtobufCMessage *m, size_t max)
{
    size_t n = m ? protobuf_c_message_get_packed_size(m) : 0;
    if (n > max)
        return op_fail(e, RPC_INVALID_ARGUMENT, "%s: %zu bytes encoded, at most %zu allowed", field,
                       n, max);
    return 0;
}

static int check_task(OpError *e, const Norn__V1__TaskDefinition *t)
{
    if (!t)
        return 0;
    if (check_len(e, "task.task_id", t->task_id, MAX_NAME) ||
        check_len(e, "task.description", t->description, MAX_TEXT) ||
        check_len(e, "task.success_criteria", t->success_criteria, MAX_TEXT) ||
        check_msg_size(e, "task.metadata", (const ProtobufCMessage *)t->metadata, MAX_TEXT))
        return -1;
    if (t->n_expected_tools > MAX_EXPECTED_TOOLS)
        return op_fail(e, RPC_INVALID_ARGUMENT, "task.expected_tools: at most %d entries",
                       MAX_EXPECTED_TOOLS);
    for (size_t i = 0; i < t->n_expected_tools; i++)
        if (check_len(e, "task.expected_tools", t->expected_tools[i], MAX_NAME))
            return -1;
    if (t->max_steps > 1000000)
        return op_fail(e, RPC_INVALID_ARGUMENT, "task.max_steps: at most 1000000");
    return 0;
}

static int check_time(OpError *e, const char *field, const Google__Protobuf__Timestamp *ts)
{
    if (!ts)
        return 0;
    /* Between 1970 and 9999, as google.protobuf.Timestamp allows. */
    if (ts->seconds < 0 || ts->seconds > 253402300799LL || ts->nanos < 0 || ts->nanos > 999999999)
        return op_fail(e, RPC_INVALID_ARGUMENT, "%s: not a valid timestamp", field);
    return 0;
}

static int check_result_status(OpError *e, const char *field, Norn__V1__ResultStatus rs)
{
    if ((int)rs < 0 || rs > NORN__V1__RESULT_STATUS__RESULT_STATUS_EXCEPTION)
        return op_fail(e, RPC_INVALID_ARGUMENT, "%s: unknown value %d", field, (int)rs);
    return 0;
}

/* ---- helpers over sessions -------------------------------------------------- */

static void count_step_status(Norn__V1__Session *s, Norn__V1__StepStatus st, int delta)
{
    uint32_t *slot = NULL;
    switch (st) {
    case NORN__V1__STEP_STATUS__STEP_STATUS_SUCCESS: slot = &s->successful_steps; break;
    case NORN__V1__STEP_STATUS__STEP_STATUS_FAILED: slot = &s->failed_steps; break;
    case NORN__V1__STEP_STATUS__STEP_STATUS_IRRELEVANT: slot = &s->irrelevant_steps; break;
    case NORN__V1__STEP_STATUS__STEP_STATUS_REDUNDANT: slot = &s->redundant_steps; break;
    case NORN__V1__STEP_STATUS__STEP_STATUS_BLOCKED: slot = &s->blocked_steps; break;
    default: return;
    }
    if (delta < 0 && *slot == 0)
        return;
    *slot = (uint32_t)((int64_t)*slot + delta);
}

/* A session's contribution to the store counters (status, quality, scores). */
static void counters_apply(StoreCounters *c, const Norn__V1__Session *s, int sign)
{
#define ADJ(field, by)                                                                             \
    ((field) = sign > 0 ? (field) + (by) : ((field) >= (by) ? (field) - (by) : 0))
    if ((unsigned)s->status < STORE_STATUS_SLOTS)
        ADJ(c->by_status[s->status], 1u);
    if ((unsigned)s->overall_quality < STORE_QUALITY_SLOTS)
        ADJ(c->by_quality[s->overall_quality], 1u);
    if (s->optional_efficiency_score_case ==
        NORN__V1__SESSION__OPTIONAL_EFFICIENCY_SCORE_EFFICIENCY_SCORE) {
        ADJ(c->efficiency_scored, 1u);
        ADJ(c->efficiency_sum, (uint64_t)(s->efficiency_score < 0 ? 0 : s->efficiency_score));
    }
    if (s->optional_security_score_case ==
        NORN__V1__SESSION__OPTIONAL_SECURITY_SCORE_SECURITY_SCORE) {
        int32_t score = s->security_score < 0     ? 0
                        : s->security_score > 100 ? 100
                                                  : s->security_score;
        ADJ(c->security_scored, 1u);
        ADJ(c->security_sum, (uint64_t)score);
        ADJ(c->security_hist[score], 1u);
    }
#undef ADJ
}

static const char *quality_name(Norn__V1__SessionQuality q)
{
    static const char *const names[] = {"UNSPECIFIED", "EXCELLENT", "GOOD",   "POOR",
                                        "FAILED",      "STUCK",     "PENDING"};
    return (unsigned)q < 7 ? names[q] : "UNKNOWN";
}

static const char *step_status_name(Norn__V1__StepStatus st)
{
    static const char *const names[] = {"UNSPECIFIED", "SUCCESS", "FAILED", "IRRELEVANT",
                                        "REDUNDANT",   "BLOCKED", "RUNNING"};
    return (unsigned)st < 7 ? names[st] : "UNKNOWN";
}

/* Audit rows are written at ingest time with the original's wording (§6),
 * so listing them never re-reads sessions. */
/* `at` is when it happened as the session tells it (its start, a step's
 * end), as the original's audit log did; NULL = now. */
static void audit_at(StoreTxn *t, const Norn__V1__Session *s, Norn__V1__AuditEventType type,
                     Norn__V1__AuditSeverity sev, const char *summary, const char *detail,
                     const Google__Protobuf__Timestamp *at)
{
    Norn__V1__AuditEvent ev = NORN__V1__AUDIT_EVENT__INIT;
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    uint64_t us = at ? msg_micros(at) : 0;
    if (!us)
        us = store_txn_now_micros(t);
    ts.seconds = (int64_t)(us / 1000000u);
    ts.nanos = (int32_t)(us % 1000000u) * 1000;
    ev.timestamp = &ts;
    ev.event_type = type;
    ev.session_id = s->session_id;
    ev.agent_name = s->agent_name;
    ev.model = s->model;
    ev.summary = (char *)summary;
    ev.severity = sev;
    ev.detail = (char *)(detail ? detail : "");
    store_txn_add_audit(t, &ev);
}

static void audit(StoreTxn *t, const Norn__V1__Session *s, Norn__V1__AuditEventType type,
                  Norn__V1__AuditSeverity sev, const char *summary, const char *detail)
{
    audit_at(t, s, type, sev, summary, detail, NULL);
}

static void audit_issue(StoreTxn *t, const Norn__V1__Session *s, const Norn__V1__Issue *is)
{
    char summary[1200], desc[1100];
    snprintf(summary, sizeof summary, "[%s] %s", judge_issue_type_name(is->issue_type),
             msg_utf8_cut(desc, sizeof desc, is->description, 1000));
    Norn__V1__AuditSeverity sev =
        is->severity >= 8   ? NORN__V1__AUDIT_SEVERITY__AUDIT_SEVERITY_CRITICAL
        : is->severity >= 5 ? NORN__V1__AUDIT_SEVERITY__AUDIT_SEVERITY_WARNING
                            : NORN__V1__AUDIT_SEVERITY__AUDIT_SEVERITY_INFO;
    audit(t, s, NORN__V1__AUDIT_EVENT_TYPE__AUDIT_EVENT_TYPE_ISSUE, sev, summary,
          is->recommendation);
}

static void format_score(char *buf, size_t cap, int has, int32_t v)
{
    if (has)
        snprintf(buf, cap, "%d", v);
    else
        snprintf(buf, cap, "N/A");
}

/* The original's tool_call severity (§6): security under 70 critical, under
 * 90 warning; FAILED/BLOCKED critical; IRRELEVANT/REDUNDANT at least warning. */
static void audit_step(StoreTxn *t, const Norn__V1__Session *s, const Norn__V1__Step *st)
{
    int has_sec =
        st->optional_security_score_case == NORN__V1__STEP__OPTIONAL_SECURITY_SCORE_SECURITY_SCORE;
    int has_rel = st->optional_relevance_score_case ==
                  NORN__V1__STEP__OPTIONAL_RELEVANCE_SCORE_RELEVANCE_SCORE;
    char sec[16], rel[16], summary[700];
    format_score(sec, sizeof sec, has_sec, st->security_score);
    format_score(rel, sizeof rel, has_rel, st->relevance_score);
    snprintf(summary, sizeof summary, "%.300s() \u2192 %s  |  Security: %s%%  Relevance: %s%%",
             st->tool_name, step_status_name(st->status), sec, rel);
    Norn__V1__AuditSeverity sev = NORN__V1__AUDIT_SEVERITY__AUDIT_SEVERITY_INFO;
    if (has_sec && st->security_score < 70)
        sev = NORN__V1__AUDIT_SEVERITY__AUDIT_SEVERITY_CRITICAL;
    else if (has_sec && st->security_score < 90)
        sev = NORN__V1__AUDIT_SEVERITY__AUDIT_SEVERITY_WARNING;
    if (st->status == NORN__V1__STEP_STATUS__STEP_STATUS_FAILED ||
        st->status == NORN__V1__STEP_STATUS__STEP_STATUS_BLOCKED)
        sev = NORN__V1__AUDIT_SEVERITY__AUDIT_SEVERITY_CRITICAL;
    else if ((st->status == NORN__V1__STEP_STATUS__STEP_STATUS_IRRELEVANT ||
              st->status == NORN__V1__STEP_STATUS__STEP_STATUS_REDUNDANT) &&
             sev == NORN__V1__AUDIT_SEVERITY__AUDIT_SEVERITY_INFO)
        sev = NORN__V1__AUDIT_SEVERITY__AUDIT_SEVERITY_WARNING;
    audit_at(t, s, NORN__V1__AUDIT_EVENT_TYPE__AUDIT_EVENT_TYPE_TOOL_CALL, sev, summary,
             st->reasoning, st->ended_at);
}

static void audit_session_end(StoreTxn *t, const Norn__V1__Session *s)
{
    char eff[16], sec[16], summary[300];
    if (s->optional_efficiency_score_case ==
        NORN__V1__SESSION__OPTIONAL_EFFICIENCY_SCORE_EFFICIENCY_SCORE)
        snprintf(eff, sizeof eff, "%d%%", s->efficiency_score);
    else
        snprintf(eff, sizeof eff, "N/A");
    if (s->optional_security_score_case ==
        NORN__V1__SESSION__OPTIONAL_SECURITY_SCORE_SECURITY_SCORE)
        snprintf(sec, sizeof sec, "%d%%", s->security_score);
    else
        snprintf(sec, sizeof sec, "N/A");
    snprintf(summary, sizeof summary,
             "Session ended \u2013 Quality: %s, Efficiency: %s, Security: %s",
             quality_name(s->overall_quality), eff, sec);
    Norn__V1__AuditSeverity sev;
    switch (s->overall_quality) {
    case NORN__V1__SESSION_QUALITY__QUALITY_EXCELLENT:
    case NORN__V1__SESSION_QUALITY__QUALITY_GOOD:
        sev = NORN__V1__AUDIT_SEVERITY__AUDIT_SEVERITY_INFO;
        break;
    case NORN__V1__SESSION_QUALITY__QUALITY_POOR:
        sev = NORN__V1__AUDIT_SEVERITY__AUDIT_SEVERITY_WARNING;
        break;
    default: sev = NORN__V1__AUDIT_SEVERITY__AUDIT_SEVERITY_CRITICAL;
    }
    audit_at(t, s, NORN__V1__AUDIT_EVENT_TYPE__AUDIT_EVENT_TYPE_SESSION_END, sev, summary, NULL,
             s->ended_at);
}

static void set_delta(StoreTxn *t, Norn__V1__DeltaKind kind, Norn__V1__Session *s,
                      Norn__V1__Step **steps, size_t n_steps, Norn__V1__Issue **issues,
                      size_t n_issues)
{
    Norn__V1__SessionDelta d = NORN__V1__SESSION_DELTA__INIT;
    Norn__V1__Session summary = *s;
    summary.n_steps = 0;
    summary.steps = NULL;
    summary.n_issues = 0;
    summary.issues = NULL;
    d.revision = store_txn_revision(t);
    d.kind = kind;
    d.session = &summary;
    d.n_steps = n_steps;
    d.steps = steps;
    d.n_issues = n_issues;
    d.issues = issues;
    store_txn_add_delta(t, &d);
}

static int commit(SessionService *ss, StoreTxn *t, OpError *e)
{
    char err[256];
    uint64_t rev = store_txn_last_revision(t);
    int rc = store_txn_commit(t, err, sizeof err);
    if (rc != NORN_OK) {
        log_error("commit_failed", "error=\"%s\"", err);
        return op_fail(e, norn_error_to_rpc(rc), "storage: %s", err);
    }
    if (ss->hook && rev)
        ss->hook(ss->hook_arg, rev);
    return 0;
}

/* Stamps the session with this transaction's revision and time, moves its
 * share of the counters from `prev` (NULL for a new session) to `s`, and
 * writes it with its index rows. */
static void put_summary(StoreTxn *t, Norn__V1__Session *s, const Norn__V1__Session *prev,
                        uint64_t now)
{
    StoreCounters *c = store_txn_counters(t);
    s->revision = store_txn_revision(t);
    if (s->updated_at)
        google__protobuf__timestamp__free_unpacked(s->updated_at, NULL);
    s->updated_at = msg_timestamp(now);
    if (prev)
        counters_apply(c, prev, -1);
    counters_apply(c, s, +1);
    store_txn_put_session(t, s, prev);
}

/* Loads an active session inside a transaction. */
static int load_active(SessionService *ss, const char *id, Norn__V1__Session **out, OpError *e)
{
    int rc = store_session_get(ss->store, id, out);
    if (rc == NORN_ERR_NOT_FOUND)
        return op_fail(e, RPC_NOT_FOUND, "session_id: no session '%s'", id);
    if (rc != NORN_OK)
        return op_fail(e, norn_error_to_rpc(rc), "storage: cannot read session '%s'", id);
    if ((*out)->status != NORN__V1__SESSION_STATUS__SESSION_STATUS_ACTIVE) {
        norn__v1__session__free_unpacked(*out, NULL);
        *out = NULL;
        return op_fail(e, RPC_FAILED_PRECONDITION,
                       "session '%s' is completed: open it again to add steps", id);
    }
    return 0;
}

/* Stores the issues a judgement raised, numbering them after the session's
 * existing ones, and copies them into the verdict. */
static void store_issues(StoreTxn *t, Norn__V1__Session *s, JudgeOutcome *jo,
                         Norn__V1__StepVerdict *v, StoreCounters *c)
{
    for (size_t i = 0; i < jo->n_issues; i++) {
        Norn__V1__Issue *is = jo->issues[i];
        uint32_t seq = ++s->total_issues;
        char idbuf[64];
        snprintf(idbuf, sizeof idbuf, "%s-issue-%u", s->session_id, seq);
        msg_set_str(&is->issue_id, idbuf);
        store_txn_put_issue(t, s->session_id, seq, is);
        audit_issue(t, s, is);
        c->issues++;
        if ((unsigned)is->issue_type < STORE_ISSUE_SLOTS)
            c->issues_by_type[is->issue_type]++;
        if (v)
            msg_append((void ***)&v->issues, &v->n_issues, msg_clone(&is->base));
    }
}

static void apply_action(StoreTxn *t, Norn__V1__Session *s, Norn__V1__Step *st,
                         Norn__V1__StepVerdict *v, const JudgeOutcome *jo);

/* ---- OpenSession ---------------------------------------------------------------- */

static Norn__V1__OpenSessionResponse *op_open(SessionService *ss,
                                              const Norn__V1__OpenSessionRequest *req, OpError *e)
{
    if (check_id(e, "session_id", req->session_id, 0) ||
        check_len(e, "agent_name", req->agent_name, MAX_NAME) ||
        check_id(e, "agent_id", req->agent_id, 0) || check_len(e, "model", req->model, MAX_NAME) ||
        check_task(e, req->task) || check_len(e, "system_prompt", req->system_prompt, MAX_PROMPT) ||
        check_id(e, "swarm_id", req->swarm_id, 0) ||
        check_len(e, "handoff_input", req->handoff_input, MAX_PROMPT) ||
        check_time(e, "started_at", req->started_at))
        return NULL;
    if ((int)req->guard_mode < 0 || req->guard_mode > NORN__V1__GUARD_MODE__GUARD_MODE_ENFORCE) {
        op_fail(e, RPC_INVALID_ARGUMENT, "guard_mode: unknown value %d", (int)req->guard_mode);
        return NULL;
    }
    char genid[ID_GEN_LEN + 1];
    const char *id = req->session_id;
    if (!id || !*id) {
        id_generate(genid);
        id = genid;
    }
    Norn__V1__Config cfg;
    config_get(ss->config, &cfg);

    StoreTxn *t = store_txn_begin(ss->store);
    StoreCounters *c = store_txn_counters(t);
    Norn__V1__Session *prev = NULL, *s;
    int rc = store_session_get(ss->store, id, &prev);
    if (rc != NORN_OK && rc != NORN_ERR_NOT_FOUND) {
        store_txn_abort(t);
        op_fail(e, norn_error_to_rpc(rc), "storage: cannot read session '%s'", id);
        return NULL;
    }
    int resumed = prev != NULL;
    uint64_t now = store_txn_now_micros(t);
    Norn__V1__DeltaKind kind;
    if (resumed) {
        /* The original's resume (§2.2 ingest): active again, fill what was empty. */
        s = (Norn__V1__Session *)msg_clone(&prev->base);
        if (s->status != NORN__V1__SESSION_STATUS__SESSION_STATUS_ACTIVE) {
            s->status = NORN__V1__SESSION_STATUS__SESSION_STATUS_ACTIVE;
            if (s->ended_at) {
                google__protobuf__timestamp__free_unpacked(s->ended_at, NULL);
                s->ended_at = NULL;
            }
            s->terminated_by_guard = 0;
            msg_set_str(&s->termination_reason, "");
        }
        if (req->task && req->task->description[0] && (!s->task || !s->task->description[0])) {
            if (s->task)
                norn__v1__task_definition__free_unpacked(s->task, NULL);
            s->task = (Norn__V1__TaskDefinition *)msg_clone(&req->task->base);
        }
        if (req->swarm_id[0] && !s->swarm_id[0])
            msg_set_str(&s->swarm_id, req->swarm_id);
        if (req->swarm_order && !s->swarm_order)
            s->swarm_order = req->swarm_order;
        if (req->agent_id[0])
            msg_set_str(&s->agent_id, req->agent_id);
        if (req->model[0])
            msg_set_str(&s->model, req->model);
        if (req->system_prompt[0])
            msg_set_str(&s->system_prompt, req->system_prompt);
        if (req->guard_mode)
            s->guard_mode = req->guard_mode;
        s->invocation_first_step = s->total_steps + 1;
        s->invocation_first_issue = s->total_issues + 1;
        kind = NORN__V1__DELTA_KIND__DELTA_KIND_UPDATED;
    } else {
        s = msg_alloc(sizeof *s);
        norn__v1__session__init(s);
        s->session_id = msg_strdup(id);
        s->agent_name = msg_strdup(req->agent_name[0] ? req->agent_name : "Unknown");
        s->agent_id = msg_strdup(req->agent_id);
        s->model = msg_strdup(req->model);
        s->task = req->task ? (Norn__V1__TaskDefinition *)msg_clone(&req->task->base) : NULL;
        s->system_prompt = msg_strdup(req->system_prompt);
        s->guard_mode = req->guard_mode ? req->guard_mode : cfg.guard_mode;
        s->swarm_id = msg_strdup(req->swarm_id);
        s->swarm_order = req->swarm_order;
        s->handoff_input = msg_strdup(req->handoff_input);
        s->status = NORN__V1__SESSION_STATUS__SESSION_STATUS_ACTIVE;
        s->started_at = msg_timestamp(req->started_at ? msg_micros(req->started_at) : now);
        s->overall_quality = NORN__V1__SESSION_QUALITY__QUALITY_PENDING;
        s->evaluation_state = NORN__V1__EVALUATION_STATE__EVALUATION_STATE_NOT_REQUESTED;
        s->invocation_first_step = 1;
        s->invocation_first_issue = 1;
        c->sessions++;
        char summary[400], task80[340];
        /* The original cuts the task at 80 characters (code points). */
        snprintf(summary, sizeof summary, "Session started \u2013 %s",
                 msg_utf8_cut(task80, sizeof task80, s->task ? s->task->description : "", 80));
        audit_at(t, s, NORN__V1__AUDIT_EVENT_TYPE__AUDIT_EVENT_TYPE_SESSION_START,
                 NORN__V1__AUDIT_SEVERITY__AUDIT_SEVERITY_INFO, summary, NULL, s->started_at);
        kind = NORN__V1__DELTA_KIND__DELTA_KIND_CREATED;
    }

    Norn__V1__OpenSessionResponse *resp = msg_alloc(sizeof *resp);
    norn__v1__open_session_response__init(resp);
    resp->verdict = msg_alloc(sizeof *resp->verdict);
    norn__v1__step_verdict__init(resp->verdict);
    resp->resumed = resumed;

    JudgeOutcome jo;
    judge_open(ss->judge, s, &cfg, &jo);
    store_issues(t, s, &jo, resp->verdict, c);
    apply_action(t, s, NULL, resp->verdict, &jo);

    put_summary(t, s, prev, now);
    set_delta(t, kind, s, NULL, 0, jo.issues, jo.n_issues);
    judge_outcome_clear(&jo);
    if (prev)
        norn__v1__session__free_unpacked(prev, NULL);
    if (commit(ss, t, e)) {
        norn__v1__session__free_unpacked(s, NULL);
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        return NULL;
    }
    resp->session = s;
    return resp;
}

/* ---- BeginStep ------------------------------------------------------------------ */

/* The end of BeginStep and EndStep: writes the step, the summary and the
 * delta, commits, and releases the session copies, the step and the
 * outcome. Nonzero (with e set) when the commit failed. */
static int commit_step(SessionService *ss, StoreTxn *t, Norn__V1__Session *s,
                       Norn__V1__Session *prev, Norn__V1__Step *st, Norn__V1__DeltaKind kind,
                       JudgeOutcome *jo, uint64_t now, OpError *e)
{
    store_txn_put_step(t, s->session_id, st);
    put_summary(t, s, prev, now);
    set_delta(t, kind, s, &st, 1, jo->issues, jo->n_issues);
    judge_outcome_clear(jo);
    norn__v1__session__free_unpacked(prev, NULL);
    norn__v1__step__free_unpacked(st, NULL);
    int failed = commit(ss, t, e);
    norn__v1__session__free_unpacked(s, NULL);
    return failed;
}

static int check_step_common(OpError *e, const char *tool_name, const ProtobufCMessage *input,
                             const Norn__V1__Config *cfg)
{
    if (!tool_name || !*tool_name)
        return op_fail(e, RPC_INVALID_ARGUMENT, "tool_name: required");
    if (check_len(e, "tool_name", tool_name, MAX_NAME) ||
        check_msg_size(e, "tool_input", input, cfg->max_input_bytes))
        return -1;
    return 0;
}

static Norn__V1__Step *new_step(const Norn__V1__Session *s, uint32_t number, uint64_t now)
{
    Norn__V1__Step *st = msg_alloc(sizeof *st);
    norn__v1__step__init(st);
    char idbuf[ID_GEN_LEN + 1];
    id_generate(idbuf);
    st->step_id = msg_strdup(idbuf);
    st->step_number = number;
    st->started_at = msg_timestamp(now);
    (void)s;
    return st;
}

/* ---- AI judging decisions ------------------------------------------------------- */

/* Whether a finished step goes to the AI judge: AI on, a task to judge
 * against, and the configured threshold (all, flagged only, or a stable
 * sample by session and step). */
static int ai_step_wanted(SessionService *ss, const Norn__V1__Session *s, const Norn__V1__Step *st,
                          int flagged, const Norn__V1__Config *cfg)
{
    if (!cfg->enable_ai_eval || !ss->ev || evaluator_disabled_reason(ss->ev) || !s->task ||
        !s->task->description[0])
        return 0;
    switch (cfg->eval_threshold) {
    case NORN__V1__EVAL_THRESHOLD__EVAL_THRESHOLD_FLAGGED:
        return flagged || st->status != NORN__V1__STEP_STATUS__STEP_STATUS_SUCCESS;
    case NORN__V1__EVAL_THRESHOLD__EVAL_THRESHOLD_SAMPLED: {
        uint64_t h = 1469598103934665603ULL;
        for (const char *p = s->session_id; *p; p++)
            h = (h ^ (unsigned char)*p) * 1099511628211ULL;
        h = (h ^ st->step_number) * 1099511628211ULL;
        unsigned pct = cfg->eval_sample_percent ? cfg->eval_sample_percent : 10;
        return (h >> 11) % 100 < pct;
    }
    default: return 1;
    }
}

/* The quality a session gets when AI evaluation is on but cannot run
 * (docs/bedrock.md): an override of the rules stands; otherwise POOR for a
 * terminated run, a security breach, mostly failed steps or an efficiency
 * under 60, else GOOD. Never EXCELLENT: only the model awards that. */
static Norn__V1__SessionQuality heuristic_quality(const Norn__V1__Session *s)
{
    if (s->overall_quality != NORN__V1__SESSION_QUALITY__QUALITY_PENDING &&
        s->overall_quality != NORN__V1__SESSION_QUALITY__QUALITY_UNSPECIFIED)
        return s->overall_quality;
    uint32_t first = s->invocation_first_step ? s->invocation_first_step : 1;
    uint32_t steps = s->total_steps >= first ? s->total_steps - first + 1 : 0;
    if (s->status == NORN__V1__SESSION_STATUS__SESSION_STATUS_TERMINATED ||
        s->security_breach_detected || (steps && s->failed_steps * 2 > steps) ||
        (s->optional_efficiency_score_case ==
             NORN__V1__SESSION__OPTIONAL_EFFICIENCY_SCORE_EFFICIENCY_SCORE &&
         s->efficiency_score < 60))
        return NORN__V1__SESSION_QUALITY__QUALITY_POOR;
    return NORN__V1__SESSION_QUALITY__QUALITY_GOOD;
}

/* At CompleteSession: sets evaluation_state, and the heuristic quality when
 * the model cannot judge. 1 when a session evaluation should be queued. */
static int ai_session_plan(SessionService *ss, Norn__V1__Session *s, const Norn__V1__Config *cfg)
{
    if (!cfg->enable_ai_eval) {
        s->evaluation_state = NORN__V1__EVALUATION_STATE__EVALUATION_STATE_NOT_REQUESTED;
        return 0;
    }
    const char *why = ss->ev ? evaluator_disabled_reason(ss->ev) : "no AI judge in this server";
    if (!why && (!s->task || !s->task->description[0]))
        why = "the session has no task to judge against";
    if (why) {
        char text[400];
        snprintf(text, sizeof text, "AI evaluation unavailable: %s", why);
        msg_set_str(&s->ai_evaluation, text);
        s->evaluation_state = NORN__V1__EVALUATION_STATE__EVALUATION_STATE_UNAVAILABLE;
        s->overall_quality = heuristic_quality(s);
        return 0;
    }
    s->evaluation_state = NORN__V1__EVALUATION_STATE__EVALUATION_STATE_QUEUED;
    return 1;
}

static Norn__V1__StepVerdict *verdict_for(const Norn__V1__Step *st)
{
    Norn__V1__StepVerdict *v = msg_alloc(sizeof *v);
    norn__v1__step_verdict__init(v);
    v->action = NORN__V1__ACTION__ACTION_CONTINUE;
    v->status = st->status;
    v->step_number = st->step_number;
    v->step_id = msg_strdup(st->step_id);
    v->tool_use_id = msg_strdup(st->tool_use_id);
    return v;
}

/* Applies a guard decision to the session and the verdict. */
static void apply_action(StoreTxn *t, Norn__V1__Session *s, Norn__V1__Step *st,
                         Norn__V1__StepVerdict *v, const JudgeOutcome *jo)
{
    v->action = jo->action;
    msg_set_str(&v->reason, jo->reason);
    if (jo->action != NORN__V1__ACTION__ACTION_TERMINATE)
        return;
    s->terminated_by_guard = 1;
    msg_set_str(&s->termination_reason, jo->reason);
    if (st) {
        count_step_status(s, st->status, -1);
        st->status = NORN__V1__STEP_STATUS__STEP_STATUS_BLOCKED;
        count_step_status(s, st->status, +1);
        v->status = st->status;
    }
    char summary[700], reason[600];
    snprintf(summary, sizeof summary, "Norn stopped the agent: %s",
             msg_utf8_cut(reason, sizeof reason, jo->reason, 500));
    audit(t, s, NORN__V1__AUDIT_EVENT_TYPE__AUDIT_EVENT_TYPE_GUARD_ACTION,
          NORN__V1__AUDIT_SEVERITY__AUDIT_SEVERITY_CRITICAL, summary, NULL);
}

static Norn__V1__BeginStepResponse *op_begin(SessionService *ss,
                                             const Norn__V1__BeginStepRequest *req, OpError *e)
{
    Norn__V1__Config cfg;
    config_get(ss->config, &cfg);
    if (check_id(e, "session_id", req->session_id, 1) ||
        check_id(e, "tool_use_id", req->tool_use_id, 1) ||
        check_step_common(e, req->tool_name, (const ProtobufCMessage *)req->tool_input, &cfg) ||
        check_time(e, "started_at", req->started_at))
        return NULL;

    StoreTxn *t = store_txn_begin(ss->store);
    StoreCounters *c = store_txn_counters(t);
    Norn__V1__Session *prev = NULL;
    if (load_active(ss, req->session_id, &prev, e)) {
        store_txn_abort(t);
        return NULL;
    }
    uint32_t existing;
    int rc = store_tool_use_get(ss->store, req->session_id, req->tool_use_id, &existing);
    if (rc == NORN_OK || rc != NORN_ERR_NOT_FOUND) {
        store_txn_abort(t);
        norn__v1__session__free_unpacked(prev, NULL);
        if (rc == NORN_OK)
            op_fail(e, RPC_FAILED_PRECONDITION,
                    "tool_use_id: '%s' was already begun as step %u in this session",
                    req->tool_use_id, existing);
        else
            op_fail(e, norn_error_to_rpc(rc), "storage: cannot read tool uses");
        return NULL;
    }
    if (prev->total_steps >= cfg.max_steps_per_session) {
        store_txn_abort(t);
        op_fail(e, RPC_RESOURCE_EXHAUSTED, "session '%s' has reached max_steps_per_session (%u)",
                prev->session_id, cfg.max_steps_per_session);
        norn__v1__session__free_unpacked(prev, NULL);
        return NULL;
    }
    uint32_t number = prev->total_steps + 1;
    if (req->step_number && req->step_number != number) {
        store_txn_abort(t);
        norn__v1__session__free_unpacked(prev, NULL);
        op_fail(e, RPC_INVALID_ARGUMENT, "step_number: the next step of this session is %u",
                number);
        return NULL;
    }
    Norn__V1__Session *s = (Norn__V1__Session *)msg_clone(&prev->base);
    uint64_t now = store_txn_now_micros(t);
    Norn__V1__Step *st = new_step(s, number, req->started_at ? msg_micros(req->started_at) : now);
    st->tool_use_id = msg_strdup(req->tool_use_id);
    st->tool_name = msg_strdup(req->tool_name);
    st->tool_input =
        req->tool_input ? (Google__Protobuf__Struct *)msg_clone(&req->tool_input->base) : NULL;
    st->status = NORN__V1__STEP_STATUS__STEP_STATUS_RUNNING;
    s->total_steps = number;
    c->steps++;

    JudgeOutcome jo;
    judge_before(ss->judge, s, st, &cfg, &jo);
    Norn__V1__StepVerdict *v = verdict_for(st);
    store_issues(t, s, &jo, v, c);
    apply_action(t, s, st, v, &jo);
    /* A running step's verdict may already carry the provisional status
     * (REDUNDANT for a repeated call). */
    v->status = st->status == NORN__V1__STEP_STATUS__STEP_STATUS_RUNNING && jo.status ? jo.status
                                                                                      : st->status;

    store_txn_put_tool_use(t, s->session_id, st->tool_use_id, number);
    if (commit_step(ss, t, s, prev, st, NORN__V1__DELTA_KIND__DELTA_KIND_STEP_ADDED, &jo, now, e)) {
        norn__v1__step_verdict__free_unpacked(v, NULL);
        return NULL;
    }
    Norn__V1__BeginStepResponse *resp = msg_alloc(sizeof *resp);
    norn__v1__begin_step_response__init(resp);
    resp->verdict = v;
    return resp;
}

/* ---- EndStep -------------------------------------------------------------------- */

static void step_marker_id(char *buf, size_t cap, const char *session_id, uint32_t step)
{
    snprintf(buf, cap, "%s/%010u", session_id, step);
}

/* The end of a step. A step the AI judge will see gets a store marker
 * (so a crash cannot lose the judgement) and its tool_call audit row when
 * the judgement is applied, with the scores in it; any other step gets
 * the row now. Returns 1 when the step goes to the judge. `flagged`: the
 * rules raised an issue before the tool ran. */
static int finish_step(SessionService *ss, StoreTxn *t, Norn__V1__Session *s, Norn__V1__Step *st,
                       const Norn__V1__Config *cfg, Norn__V1__StepVerdict *v, StoreCounters *c,
                       int flagged, JudgeOutcome *jo)
{
    Norn__V1__StepStatus old = st->status;
    judge_after(ss->judge, s, st, cfg, jo);
    if (old != NORN__V1__STEP_STATUS__STEP_STATUS_RUNNING)
        count_step_status(s, old, -1);
    count_step_status(s, st->status, +1);
    if (jo->n_issues)
        s->security_breach_detected = 1;
    int to_judge = ai_step_wanted(ss, s, st, flagged || jo->n_issues > 0, cfg);
    store_issues(t, s, jo, v, c);
    apply_action(t, s, NULL, v, jo);
    v->status = st->status;
    if (to_judge) {
        char id[200];
        step_marker_id(id, sizeof id, s->session_id, st->step_number);
        store_txn_put_marker(t, STEP_MARKER, id);
    } else {
        audit_step(t, s, st);
    }
    return to_judge;
}

static Norn__V1__EndStepResponse *op_end(SessionService *ss, const Norn__V1__EndStepRequest *req,
                                         OpError *e)
{
    Norn__V1__Config cfg;
    config_get(ss->config, &cfg);
    if (check_id(e, "session_id", req->session_id, 1) ||
        check_id(e, "tool_use_id", req->tool_use_id, 1) ||
        check_len(e, "result_text", req->result_text, cfg.max_result_bytes) ||
        check_result_status(e, "result_status", req->result_status) ||
        check_time(e, "ended_at", req->ended_at))
        return NULL;
    if (!isfinite(req->execution_time_ms) || req->execution_time_ms < 0) {
        op_fail(e, RPC_INVALID_ARGUMENT, "execution_time_ms: must be a finite number >= 0");
        return NULL;
    }
    StoreTxn *t = store_txn_begin(ss->store);
    StoreCounters *c = store_txn_counters(t);
    Norn__V1__Session *prev = NULL;
    if (load_active(ss, req->session_id, &prev, e)) {
        store_txn_abort(t);
        return NULL;
    }
    uint32_t number = 0;
    Norn__V1__Step *st = NULL;
    int rc = store_tool_use_get(ss->store, req->session_id, req->tool_use_id, &number);
    if (rc == NORN_OK)
        rc = store_step_get(ss->store, req->session_id, number, &st);
    if (rc != NORN_OK || st->status != NORN__V1__STEP_STATUS__STEP_STATUS_RUNNING) {
        store_txn_abort(t);
        norn__v1__session__free_unpacked(prev, NULL);
        if (rc == NORN_ERR_NOT_FOUND)
            op_fail(e, RPC_FAILED_PRECONDITION,
                    "tool_use_id: no BeginStep for '%s' in this session", req->tool_use_id);
        else if (rc == NORN_OK)
            op_fail(e, RPC_FAILED_PRECONDITION, "tool_use_id: step %u ('%s') has already ended",
                    number, req->tool_use_id);
        else
            op_fail(e, norn_error_to_rpc(rc), "storage: cannot read step");
        if (st)
            norn__v1__step__free_unpacked(st, NULL);
        return NULL;
    }
    Norn__V1__Session *s = (Norn__V1__Session *)msg_clone(&prev->base);
    uint64_t now = store_txn_now_micros(t);
    msg_set_str(&st->result_text, req->result_text);
    st->result_status =
        req->result_status ? req->result_status : NORN__V1__RESULT_STATUS__RESULT_STATUS_SUCCESS;
    uint64_t ended = req->ended_at ? msg_micros(req->ended_at) : now;
    st->ended_at = msg_timestamp(ended);
    uint64_t started = msg_micros(st->started_at);
    st->execution_time_ms = req->execution_time_ms > 0 ? req->execution_time_ms
                            : ended > started          ? (double)(ended - started) / 1000.0
                                                       : 0.0;
    Norn__V1__StepVerdict *v = verdict_for(st);
    JudgeOutcome jo;
    int judge_by_ai = finish_step(ss, t, s, st, &cfg, v, c, 0, &jo);

    if (commit_step(ss, t, s, prev, st, NORN__V1__DELTA_KIND__DELTA_KIND_STEP_UPDATED, &jo, now,
                    e)) {
        norn__v1__step_verdict__free_unpacked(v, NULL);
        return NULL;
    }
    if (judge_by_ai)
        evaluator_enqueue_step(ss->ev, req->session_id, number);
    Norn__V1__EndStepResponse *resp = msg_alloc(sizeof *resp);
    norn__v1__end_step_response__init(resp);
    resp->verdict = v;
    return resp;
}

/* ---- RecordSteps ---------------------------------------------------------------- */

static Norn__V1__RecordStepsResponse *op_record(SessionService *ss,
                                                const Norn__V1__RecordStepsRequest *req, OpError *e)
{
    Norn__V1__Config cfg;
    config_get(ss->config, &cfg);
    if (check_id(e, "session_id", req->session_id, 1))
        return NULL;
    if (req->n_steps == 0 || req->n_steps > MAX_RECORD_STEPS) {
        op_fail(e, RPC_INVALID_ARGUMENT, "steps: between 1 and %d steps per call (got %zu)",
                MAX_RECORD_STEPS, req->n_steps);
        return NULL;
    }
    for (size_t i = 0; i < req->n_steps; i++) {
        const Norn__V1__Step *in = req->steps[i];
        char field[64];
        snprintf(field, sizeof field, "steps[%zu]", i);
        if (check_step_common(e, in->tool_name, (const ProtobufCMessage *)in->tool_input, &cfg) ||
            check_id(e, "steps.tool_use_id", in->tool_use_id, 0) ||
            check_len(e, "steps.result_text", in->result_text, cfg.max_result_bytes) ||
            check_result_status(e, "steps.result_status", in->result_status) ||
            check_time(e, "steps.started_at", in->started_at) ||
            check_time(e, "steps.ended_at", in->ended_at)) {
            size_t l = strlen(e->msg);
            snprintf(e->msg + l, sizeof e->msg - l, " (%s)", field);
            return NULL;
        }
        if (!isfinite(in->execution_time_ms) || in->execution_time_ms < 0) {
            op_fail(e, RPC_INVALID_ARGUMENT, "steps.execution_time_ms: must be >= 0 (%s)", field);
            return NULL;
        }
        for (size_t k = 0; k < i && in->tool_use_id[0]; k++)
            if (strcmp(req->steps[k]->tool_use_id, in->tool_use_id) == 0) {
                op_fail(e, RPC_INVALID_ARGUMENT, "steps.tool_use_id: '%s' appears twice",
                        in->tool_use_id);
                return NULL;
            }
    }
    StoreTxn *t = store_txn_begin(ss->store);
    StoreCounters *c = store_txn_counters(t);
    Norn__V1__Session *prev = NULL;
    if (load_active(ss, req->session_id, &prev, e)) {
        store_txn_abort(t);
        return NULL;
    }
    if ((uint64_t)prev->total_steps + req->n_steps > cfg.max_steps_per_session) {
        store_txn_abort(t);
        op_fail(e, RPC_RESOURCE_EXHAUSTED,
                "steps: %zu more would exceed max_steps_per_session (%u) of session '%s'",
                req->n_steps, cfg.max_steps_per_session, prev->session_id);
        norn__v1__session__free_unpacked(prev, NULL);
        return NULL;
    }
    for (size_t i = 0; i < req->n_steps; i++) {
        uint32_t want = prev->total_steps + 1 + (uint32_t)i;
        if (req->steps[i]->step_number && req->steps[i]->step_number != want) {
            store_txn_abort(t);
            norn__v1__session__free_unpacked(prev, NULL);
            op_fail(e, RPC_INVALID_ARGUMENT,
                    "steps.step_number: step %u of this session comes next (steps[%zu])", want, i);
            return NULL;
        }
        uint32_t other;
        const char *tu = req->steps[i]->tool_use_id;
        if (tu[0] && store_tool_use_get(ss->store, req->session_id, tu, &other) == NORN_OK) {
            store_txn_abort(t);
            norn__v1__session__free_unpacked(prev, NULL);
            op_fail(e, RPC_FAILED_PRECONDITION,
                    "steps.tool_use_id: '%s' was already used as step %u", tu, other);
            return NULL;
        }
    }
    Norn__V1__Session *s = (Norn__V1__Session *)msg_clone(&prev->base);
    uint64_t now = store_txn_now_micros(t);
    Norn__V1__RecordStepsResponse *resp = msg_alloc(sizeof *resp);
    norn__v1__record_steps_response__init(resp);
    Norn__V1__Step **steps = msg_alloc(req->n_steps * sizeof *steps);
    uint32_t *ai_steps = msg_alloc(req->n_steps * sizeof *ai_steps);
    size_t n_ai = 0;
    Norn__V1__Issue **all_issues = NULL;
    size_t n_all = 0;
    for (size_t i = 0; i < req->n_steps; i++) {
        const Norn__V1__Step *in = req->steps[i];
        uint32_t number = ++s->total_steps;
        Norn__V1__Step *st = new_step(s, number, in->started_at ? msg_micros(in->started_at) : now);
        st->tool_use_id = msg_strdup(in->tool_use_id);
        st->tool_name = msg_strdup(in->tool_name);
        st->tool_input =
            in->tool_input ? (Google__Protobuf__Struct *)msg_clone(&in->tool_input->base) : NULL;
        st->result_text = msg_strdup(in->result_text);
        st->result_status =
            in->result_status ? in->result_status : NORN__V1__RESULT_STATUS__RESULT_STATUS_SUCCESS;
        st->execution_time_ms = in->execution_time_ms;
        st->ended_at = msg_timestamp(in->ended_at ? msg_micros(in->ended_at) : now);
        st->status = NORN__V1__STEP_STATUS__STEP_STATUS_RUNNING;
        c->steps++;

        Norn__V1__StepVerdict *v = verdict_for(st);
        JudgeOutcome before, after;
        judge_before(ss->judge, s, st, &cfg, &before);
        store_issues(t, s, &before, v, c);
        apply_action(t, s, NULL, v, &before);
        int to_judge = finish_step(ss, t, s, st, &cfg, v, c, before.n_issues > 0, &after);
        if (before.action == NORN__V1__ACTION__ACTION_TERMINATE)
            v->action = before.action, msg_set_str(&v->reason, before.reason);
        if (to_judge)
            ai_steps[n_ai++] = number;
        for (size_t k = 0; k < before.n_issues; k++)
            msg_append((void ***)&all_issues, &n_all, msg_clone(&before.issues[k]->base));
        for (size_t k = 0; k < after.n_issues; k++)
            msg_append((void ***)&all_issues, &n_all, msg_clone(&after.issues[k]->base));
        judge_outcome_clear(&before);
        judge_outcome_clear(&after);
        store_txn_put_step(t, s->session_id, st);
        if (st->tool_use_id[0])
            store_txn_put_tool_use(t, s->session_id, st->tool_use_id, number);
        steps[i] = st;
        msg_append((void ***)&resp->verdicts, &resp->n_verdicts, v);
    }
    put_summary(t, s, prev, now);
    set_delta(t, NORN__V1__DELTA_KIND__DELTA_KIND_STEP_ADDED, s, steps, req->n_steps, all_issues,
              n_all);
    store_free_steps(steps, req->n_steps);
    store_free_issues(all_issues, n_all);
    norn__v1__session__free_unpacked(prev, NULL);
    int failed = commit(ss, t, e);
    norn__v1__session__free_unpacked(s, NULL);
    for (size_t i = 0; i < n_ai && !failed; i++)
        evaluator_enqueue_step(ss->ev, req->session_id, ai_steps[i]);
    free(ai_steps);
    if (failed) {
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        return NULL;
    }
    return resp;
}

/* ---- CompleteSession ----------------------------------------------------------------- */

static Norn__V1__CompleteSessionResponse *
op_complete(SessionService *ss, const Norn__V1__CompleteSessionRequest *req, OpError *e)
{
    Norn__V1__Config cfg;
    config_get(ss->config, &cfg);
    if (check_id(e, "session_id", req->session_id, 1) ||
        check_len(e, "final_text", req->final_text, cfg.max_result_bytes) ||
        check_len(e, "termination_reason", req->termination_reason, MAX_TEXT) ||
        check_task(e, req->task) || check_time(e, "ended_at", req->ended_at))
        return NULL;
    if (req->status == NORN__V1__SESSION_STATUS__SESSION_STATUS_ACTIVE || (int)req->status < 0 ||
        req->status > NORN__V1__SESSION_STATUS__SESSION_STATUS_TERMINATED) {
        op_fail(e, RPC_INVALID_ARGUMENT, "status: must be COMPLETED, TERMINATED or unset");
        return NULL;
    }
    StoreTxn *t = store_txn_begin(ss->store);
    StoreCounters *c = store_txn_counters(t);
    Norn__V1__Session *prev = NULL;
    if (load_active(ss, req->session_id, &prev, e)) {
        store_txn_abort(t);
        return NULL;
    }
    Norn__V1__Session *s = (Norn__V1__Session *)msg_clone(&prev->base);
    uint64_t now = store_txn_now_micros(t);
    uint64_t ended = req->ended_at ? msg_micros(req->ended_at) : now;
    s->ended_at = msg_timestamp(ended);
    uint64_t started = msg_micros(s->started_at);
    s->total_execution_time_ms = ended > started ? (double)(ended - started) / 1000.0 : 0.0;
    msg_set_str(&s->final_text, req->final_text);
    if (req->token_usage) {
        if (s->token_usage)
            norn__v1__token_usage__free_unpacked(s->token_usage, NULL);
        s->token_usage = (Norn__V1__TokenUsage *)msg_clone(&req->token_usage->base);
    }
    /* The original loses a task learned after the session opened (§11.2). */
    if (req->task && req->task->description[0] && (!s->task || !s->task->description[0])) {
        if (s->task)
            norn__v1__task_definition__free_unpacked(s->task, NULL);
        s->task = (Norn__V1__TaskDefinition *)msg_clone(&req->task->base);
    }
    if (req->termination_reason[0] && !s->termination_reason[0])
        msg_set_str(&s->termination_reason, req->termination_reason);

    JudgeOutcome jo;
    judge_complete(ss->judge, s, req->status, &cfg, &jo);
    store_issues(t, s, &jo, NULL, c);
    int evaluate = ai_session_plan(ss, s, &cfg);
    /* With an evaluation to come, the session-end audit row waits for its
     * verdict, and a marker remembers the evaluation across a crash. */
    if (!evaluate)
        audit_session_end(t, s);
    else
        store_txn_put_marker(t, EVAL_MARKER, s->session_id);

    put_summary(t, s, prev, now);
    set_delta(t, NORN__V1__DELTA_KIND__DELTA_KIND_COMPLETED, s, NULL, 0, jo.issues, jo.n_issues);
    judge_outcome_clear(&jo);
    norn__v1__session__free_unpacked(prev, NULL);
    if (commit(ss, t, e)) {
        norn__v1__session__free_unpacked(s, NULL);
        return NULL;
    }
    if (evaluate)
        evaluator_enqueue_session(ss->ev, s->session_id);
    Norn__V1__Issue **issues = NULL;
    size_t n = 0;
    if (store_issues_scan(ss->store, s->session_id, &issues, &n) == NORN_OK) {
        s->issues = issues;
        s->n_issues = n;
    }
    Norn__V1__CompleteSessionResponse *resp = msg_alloc(sizeof *resp);
    norn__v1__complete_session_response__init(resp);
    resp->session = s;
    return resp;
}

/* ---- reads ------------------------------------------------------------------------- */

static RpcCode rpc_error(RpcCall *call, const OpError *e)
{
    return rpc_fail(call, e->code, "%s", e->msg);
}

static RpcCode get_session(void *ud, RpcCall *call, const Norn__V1__GetSessionRequest *req,
                           Norn__V1__GetSessionResponse *resp)
{
    SessionService *ss = ud;
    OpError e;
    if (check_id(&e, "session_id", req->session_id, 1))
        return rpc_error(call, &e);
    Norn__V1__Session *s = NULL;
    int rc = store_session_get(ss->store, req->session_id, &s);
    if (rc == NORN_ERR_NOT_FOUND)
        return rpc_fail(call, RPC_NOT_FOUND, "session_id: no session '%s'", req->session_id);
    if (rc != NORN_OK)
        return rpc_fail(call, norn_error_to_rpc(rc), "storage: cannot read session");
    rpc_call_adopt(call, &s->base);
    if (req->include_steps) {
        uint32_t next;
        rc = store_steps_scan(ss->store, s->session_id, 0, SIZE_MAX, &s->steps, &s->n_steps, &next);
        if (rc != NORN_OK)
            return rpc_fail(call, norn_error_to_rpc(rc), "storage: cannot read steps");
    }
    if (req->include_issues) {
        rc = store_issues_scan(ss->store, s->session_id, &s->issues, &s->n_issues);
        if (rc != NORN_OK)
            return rpc_fail(call, norn_error_to_rpc(rc), "storage: cannot read issues");
    }
    resp->session = s;
    return RPC_OK;
}

typedef struct ListCtx {
    const Norn__V1__ListSessionsRequest *req;
    size_t want;
    size_t bytes;
    Norn__V1__ListSessionsResponse *resp;
    RpcCall *call;
} ListCtx;

static int list_visit(void *arg, Norn__V1__Session *s)
{
    ListCtx *lc = arg;
    const Norn__V1__ListSessionsRequest *q = lc->req;
    int keep = (!q->status || s->status == q->status) &&
               (!q->quality || s->overall_quality == q->quality) &&
               (!q->agent_id[0] || strcmp(s->agent_id, q->agent_id) == 0) &&
               (!q->agent_name[0] || strcmp(s->agent_name, q->agent_name) == 0) &&
               (!q->swarm_id[0] || strcmp(s->swarm_id, q->swarm_id) == 0);
    if (!keep) {
        norn__v1__session__free_unpacked(s, NULL);
        return 1;
    }
    rpc_call_adopt(lc->call, &s->base);
    lc->resp->sessions[lc->resp->n_sessions++] = s;
    lc->bytes += protobuf_c_message_get_packed_size(&s->base);
    return lc->resp->n_sessions < lc->want && lc->bytes < PAGE_BYTES;
}

static RpcCode list_sessions(void *ud, RpcCall *call, const Norn__V1__ListSessionsRequest *req,
                             Norn__V1__ListSessionsResponse *resp)
{
    SessionService *ss = ud;
    OpError e;
    if (req->page_size > MAX_PAGE)
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "page_size: at most %d", MAX_PAGE);
    if (check_len(&e, "agent_name", req->agent_name, MAX_NAME) ||
        check_id(&e, "swarm_id", req->swarm_id, 0) || check_id(&e, "agent_id", req->agent_id, 0) ||
        check_time(&e, "started_after", req->started_after) ||
        check_time(&e, "started_before", req->started_before))
        return rpc_error(call, &e);
    if ((int)req->status < 0 || req->status > NORN__V1__SESSION_STATUS__SESSION_STATUS_TERMINATED)
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "status: unknown value %d", (int)req->status);
    if ((int)req->quality < 0 || req->quality > NORN__V1__SESSION_QUALITY__QUALITY_PENDING)
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "quality: unknown value %d", (int)req->quality);
    StoreListQuery q = {0};
    q.index = req->swarm_id[0]     ? STORE_BY_SWARM
              : req->agent_name[0] ? STORE_BY_AGENT
                                   : STORE_BY_TIME;
    q.name = q.index == STORE_BY_SWARM ? req->swarm_id : req->agent_name;
    q.before_micros = msg_micros(req->started_before);
    q.after_micros = msg_micros(req->started_after);
    size_t want = req->page_size ? req->page_size : DEFAULT_PAGE;
    /* A selective filter may need more index entries than a page holds;
     * the budget keeps one call's cost bounded by the page size, and the
     * token resumes where it stopped. */
    q.max_scan = want * 20 + 200;
    uint8_t tok[KEY_MAX + 2];
    size_t tok_len = 0;
    if (req->page_token[0]) {
        if (token_decode(req->page_token, tok, sizeof tok, &tok_len) != 0 || tok_len < 2 ||
            tok[0] != TOKEN_VERSION || tok[1] != (uint8_t)q.index)
            return rpc_fail(call, RPC_INVALID_ARGUMENT,
                            "page_token: not a token of this listing (filters must stay the same)");
        q.resume = tok + 2;
        q.resume_len = tok_len - 2;
    }
    StoreCounters counters;
    store_counters(ss->store, &counters, &resp->revision);
    resp->sessions = rpc_call_alloc(call, want * sizeof *resp->sessions);
    ListCtx lc = {req, want, 0, resp, call};
    uint8_t last[KEY_MAX];
    size_t last_len = 0;
    int more = 0;
    int rc = store_sessions_scan(ss->store, &q, list_visit, &lc, last, &last_len, &more);
    if (rc != NORN_OK)
        return rpc_fail(call, norn_error_to_rpc(rc), "storage: cannot list sessions");
    if (more && last_len) {
        uint8_t next[KEY_MAX + 2];
        next[0] = TOKEN_VERSION;
        next[1] = (uint8_t)q.index;
        memcpy(next + 2, last, last_len);
        char *s = rpc_call_alloc(call, (last_len + 2) * 2 + 8);
        token_encode(next, last_len + 2, s, (last_len + 2) * 2 + 8);
        resp->next_page_token = s;
    }
    return RPC_OK;
}

static RpcCode list_steps(void *ud, RpcCall *call, const Norn__V1__ListStepsRequest *req,
                          Norn__V1__ListStepsResponse *resp)
{
    SessionService *ss = ud;
    OpError e;
    if (check_id(&e, "session_id", req->session_id, 1))
        return rpc_error(call, &e);
    if (req->page_size > MAX_PAGE)
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "page_size: at most %d", MAX_PAGE);
    uint32_t from = 1;
    if (req->page_token[0]) {
        uint8_t tok[8];
        size_t len;
        if (token_decode(req->page_token, tok, sizeof tok, &len) != 0 || len != 5 ||
            tok[0] != TOKEN_VERSION)
            return rpc_fail(call, RPC_INVALID_ARGUMENT, "page_token: not a token of ListSteps");
        from = key_get_u32(tok + 1);
    }
    Norn__V1__Session *s = NULL;
    int rc = store_session_get(ss->store, req->session_id, &s);
    if (rc == NORN_ERR_NOT_FOUND)
        return rpc_fail(call, RPC_NOT_FOUND, "session_id: no session '%s'", req->session_id);
    if (rc != NORN_OK)
        return rpc_fail(call, norn_error_to_rpc(rc), "storage: cannot read session");
    norn__v1__session__free_unpacked(s, NULL);
    uint32_t next = 0;
    Norn__V1__Step **steps = NULL;
    size_t n = 0;
    rc = store_steps_scan(ss->store, req->session_id, from,
                          req->page_size ? req->page_size : DEFAULT_STEP_PAGE, &steps, &n, &next);
    if (rc != NORN_OK)
        return rpc_fail(call, norn_error_to_rpc(rc), "storage: cannot read steps");
    resp->steps = rpc_call_alloc(call, (n ? n : 1) * sizeof *resp->steps);
    size_t bytes = 0, keep = 0;
    for (size_t i = 0; i < n; i++) {
        bytes += protobuf_c_message_get_packed_size(&steps[i]->base);
        if (i > 0 && bytes > PAGE_BYTES) {
            /* The page is full: the rest come with the next token. */
            next = steps[i]->step_number;
            for (size_t k = i; k < n; k++)
                norn__v1__step__free_unpacked(steps[k], NULL);
            break;
        }
        rpc_call_adopt(call, &steps[i]->base);
        resp->steps[i] = steps[i];
        keep++;
    }
    resp->n_steps = keep;
    free(steps);
    if (next) {
        uint8_t tok[5];
        tok[0] = TOKEN_VERSION;
        key_put_u32(tok + 1, next);
        char *str = rpc_call_alloc(call, 16);
        token_encode(tok, 5, str, 16);
        resp->next_page_token = str;
    }
    return RPC_OK;
}

void session_service_delete_in_txn(SessionService *ss, StoreTxn *t, const Norn__V1__Session *s)
{
    StoreCounters *c = store_txn_counters(t);
    store_txn_delete_marker(t, EVAL_MARKER, s->session_id);
    char prefix[160];
    snprintf(prefix, sizeof prefix, "%s/", s->session_id);
    store_txn_delete_markers(t, STEP_MARKER, prefix);
    Norn__V1__Issue **issues = NULL;
    size_t n = 0;
    if (store_issues_scan(ss->store, s->session_id, &issues, &n) == NORN_OK) {
        for (size_t i = 0; i < n; i++)
            if ((unsigned)issues[i]->issue_type < STORE_ISSUE_SLOTS &&
                c->issues_by_type[issues[i]->issue_type])
                c->issues_by_type[issues[i]->issue_type]--;
        c->issues = c->issues >= n ? c->issues - n : 0;
        store_free_issues(issues, n);
    }
    c->steps = c->steps >= s->total_steps ? c->steps - s->total_steps : 0;
    c->sessions = c->sessions ? c->sessions - 1 : 0;
    counters_apply(c, s, -1);
    store_txn_delete_session(t, s);
    /* Watchers learn only the identity of what went away. */
    Norn__V1__Session ident = NORN__V1__SESSION__INIT;
    ident.session_id = s->session_id;
    ident.agent_name = s->agent_name;
    ident.agent_id = s->agent_id;
    ident.swarm_id = s->swarm_id;
    Google__Protobuf__Timestamp now_ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    now_ts.seconds = (int64_t)(store_txn_now_micros(t) / 1000000u);
    now_ts.nanos = (int32_t)(store_txn_now_micros(t) % 1000000u) * 1000;
    ident.updated_at = &now_ts;
    Norn__V1__SessionDelta d = NORN__V1__SESSION_DELTA__INIT;
    d.kind = NORN__V1__DELTA_KIND__DELTA_KIND_DELETED;
    d.session = &ident;
    /* The revision is known once the entry is added; the summary in the
     * entry carries it too. */
    ident.revision = store_txn_revision(t);
    store_txn_add_delta(t, &d);
}

int session_service_commit(SessionService *ss, StoreTxn *t, char *err, size_t errlen)
{
    OpError e;
    if (commit(ss, t, &e)) {
        snprintf(err, errlen, "%s", e.msg);
        return e.code;
    }
    return RPC_OK;
}

static RpcCode delete_session(void *ud, RpcCall *call, const Norn__V1__DeleteSessionRequest *req,
                              Norn__V1__DeleteSessionResponse *resp)
{
    SessionService *ss = ud;
    OpError e;
    if (check_id(&e, "session_id", req->session_id, 1))
        return rpc_error(call, &e);
    StoreTxn *t = store_txn_begin(ss->store);
    Norn__V1__Session *s = NULL;
    int rc = store_session_get(ss->store, req->session_id, &s);
    if (rc != NORN_OK) {
        store_txn_abort(t);
        if (rc == NORN_ERR_NOT_FOUND)
            return rpc_fail(call, RPC_NOT_FOUND, "session_id: no session '%s'", req->session_id);
        return rpc_fail(call, norn_error_to_rpc(rc), "storage: cannot read session");
    }
    resp->revision = store_txn_revision(t);
    session_service_delete_in_txn(ss, t, s);
    norn__v1__session__free_unpacked(s, NULL);
    if (commit(ss, t, &e))
        return rpc_error(call, &e);
    return RPC_OK;
}

/* ---- unary adapters for the ops ------------------------------------------------------- */

#define UNARY_OP(fn, op, Req, Resp)                                                                \
    static RpcCode fn(void *ud, RpcCall *call, const Req *req, Resp *resp)                         \
    {                                                                                              \
        OpError e;                                                                                 \
        Resp *r = op(ud, req, &e);                                                                 \
        if (!r)                                                                                    \
            return rpc_error(call, &e);                                                            \
        *resp = *r;                                                                                \
        rpc_call_adopt(call, &r->base);                                                            \
        return RPC_OK;                                                                             \
    }

UNARY_OP(open_session, op_open, Norn__V1__OpenSessionRequest, Norn__V1__OpenSessionResponse)
UNARY_OP(begin_step, op_begin, Norn__V1__BeginStepRequest, Norn__V1__BeginStepResponse)
UNARY_OP(end_step, op_end, Norn__V1__EndStepRequest, Norn__V1__EndStepResponse)
UNARY_OP(record_steps, op_record, Norn__V1__RecordStepsRequest, Norn__V1__RecordStepsResponse)
UNARY_OP(complete_session, op_complete, Norn__V1__CompleteSessionRequest,
         Norn__V1__CompleteSessionResponse)

/* ---- Ingest: the same ops over one bidi stream, answered in order ---------------------- */

/* Runs one Ingest item into `out` (whose payload it sets); returns the
 * result message to free, or NULL with e set. */
static ProtobufCMessage *ingest_one(SessionService *ss, const Norn__V1__IngestRequest *req,
                                    Norn__V1__IngestResponse *out, OpError *e)
{
    ProtobufCMessage *result = NULL;
    switch (req->payload_case) {
    case NORN__V1__INGEST_REQUEST__PAYLOAD_OPEN:
        out->open = op_open(ss, req->open, e);
        out->payload_case = NORN__V1__INGEST_RESPONSE__PAYLOAD_OPEN;
        result = (ProtobufCMessage *)out->open;
        break;
    case NORN__V1__INGEST_REQUEST__PAYLOAD_BEGIN_STEP:
        out->begin_step = op_begin(ss, req->begin_step, e);
        out->payload_case = NORN__V1__INGEST_RESPONSE__PAYLOAD_BEGIN_STEP;
        result = (ProtobufCMessage *)out->begin_step;
        break;
    case NORN__V1__INGEST_REQUEST__PAYLOAD_END_STEP:
        out->end_step = op_end(ss, req->end_step, e);
        out->payload_case = NORN__V1__INGEST_RESPONSE__PAYLOAD_END_STEP;
        result = (ProtobufCMessage *)out->end_step;
        break;
    case NORN__V1__INGEST_REQUEST__PAYLOAD_RECORD_STEPS:
        out->record_steps = op_record(ss, req->record_steps, e);
        out->payload_case = NORN__V1__INGEST_RESPONSE__PAYLOAD_RECORD_STEPS;
        result = (ProtobufCMessage *)out->record_steps;
        break;
    case NORN__V1__INGEST_REQUEST__PAYLOAD_COMPLETE:
        out->complete = op_complete(ss, req->complete, e);
        out->payload_case = NORN__V1__INGEST_RESPONSE__PAYLOAD_COMPLETE;
        result = (ProtobufCMessage *)out->complete;
        break;
    default:
        op_fail(e, RPC_INVALID_ARGUMENT,
                "payload: one of open, begin_step, end_step, "
                "record_steps or complete is required");
        break;
    }
    return result;
}

Norn__V1__IngestResponse *session_service_ingest(SessionService *ss,
                                                 const Norn__V1__IngestRequest *req, RpcCode *code,
                                                 char *msg, size_t cap)
{
    Norn__V1__IngestResponse *out = msg_alloc(sizeof *out);
    norn__v1__ingest_response__init(out);
    out->request_id = req->request_id;
    OpError e = {RPC_OK, ""};
    if (!ingest_one(ss, req, out, &e)) {
        *code = e.code;
        snprintf(msg, cap, "%s", e.msg);
        free(out);
        return NULL;
    }
    *code = RPC_OK;
    if (cap)
        msg[0] = 0;
    return out;
}

static RpcCode ingest_message(void *ud, RpcCall *call, const Norn__V1__IngestRequest *req)
{
    SessionService *ss = ud;
    Norn__V1__IngestResponse out = NORN__V1__INGEST_RESPONSE__INIT;
    out.request_id = req->request_id;
    OpError e = {RPC_OK, ""};
    ProtobufCMessage *result = ingest_one(ss, req, &out, &e);
    /* One bad item is answered with its error; the stream goes on. */
    Norn__V1__ErrorStatus err = NORN__V1__ERROR_STATUS__INIT;
    if (!result) {
        err.code = e.code;
        err.message = e.msg;
        out.payload_case = NORN__V1__INGEST_RESPONSE__PAYLOAD_ERROR;
        out.error = &err;
    }
    RpcCode sent = norn__v1__session_service__ingest__send(call, &out);
    if (result)
        protobuf_c_message_free_unpacked(result, NULL);
    if (sent == RPC_RESOURCE_EXHAUSTED)
        return rpc_fail(call, RPC_RESOURCE_EXHAUSTED,
                        "responses are not being read: the client is too far behind");
    return RPC_OK;
}

static RpcCode ingest_end(void *ud, RpcCall *call)
{
    (void)ud;
    (void)call;
    return RPC_OK;
}

static RpcCode watch_sessions(void *ud, RpcCall *call, const Norn__V1__WatchSessionsRequest *req)
{
    SessionService *ss = ud;
    if (!ss->hub)
        return rpc_fail(call, RPC_UNAVAILABLE, "watching is not available");
    return watch_hub_watch(ss->hub, call, req);
}

static const Norn__V1__SessionService_Handlers handlers = {
    .open_session = open_session,
    .begin_step = begin_step,
    .end_step = end_step,
    .record_steps = record_steps,
    .ingest_message = ingest_message,
    .ingest_end = ingest_end,
    .complete_session = complete_session,
    .get_session = get_session,
    .list_sessions = list_sessions,
    .list_steps = list_steps,
    .delete_session = delete_session,
    .watch_sessions = watch_sessions,
};

SessionService *session_service_new(Store *store, ConfigHolder *config)
{
    SessionService *ss = msg_alloc(sizeof *ss);
    ss->store = store;
    ss->config = config;
    ss->judge = judge_new(store);
    if (!ss->judge) {
        free(ss);
        return NULL;
    }
    return ss;
}

void session_service_on_commit(SessionService *ss, CommitHook hook, void *arg)
{
    ss->hook = hook;
    ss->hook_arg = arg;
}

void session_service_set_watch(SessionService *ss, WatchHub *hub)
{
    ss->hub = hub;
}

int session_service_register(SessionService *ss, RpcServer *srv)
{
    return norn__v1__session_service__serve(srv, &handlers, ss);
}

void session_service_free(SessionService *ss)
{
    if (!ss)
        return;
    judge_free(ss->judge);
    free(ss);
}

/* ---- the AI judge's hooks (called on the evaluator thread) ----------------------- */

static int ev_load_steps(void *ud, const char *id, const uint32_t *numbers, size_t n,
                         Norn__V1__TaskDefinition **task, Norn__V1__Step ***ctx, size_t *n_ctx,
                         Norn__V1__Step ***steps, size_t *n_steps)
{
    SessionService *ss = ud;
    *task = NULL;
    *ctx = NULL;
    *n_ctx = 0;
    *steps = NULL;
    *n_steps = 0;
    Norn__V1__Session *s = NULL;
    if (!n || store_session_get(ss->store, id, &s) != NORN_OK)
        return -1;
    if (s->task)
        *task = (Norn__V1__TaskDefinition *)msg_clone(&s->task->base);
    norn__v1__session__free_unpacked(s, NULL);
    uint32_t first = numbers[0];
    uint32_t from = first > EVALP_CONTEXT_STEPS ? first - EVALP_CONTEXT_STEPS : 1;
    uint32_t next = 0;
    if (first > from &&
        store_steps_scan(ss->store, id, from, first - from, ctx, n_ctx, &next) != NORN_OK) {
        *ctx = NULL;
        *n_ctx = 0;
    }
    Norn__V1__Step **v = msg_alloc(n * sizeof *v);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        Norn__V1__Step *st = NULL;
        if (store_step_get(ss->store, id, numbers[i], &st) == NORN_OK)
            v[k++] = st;
    }
    *steps = v;
    *n_steps = k;
    return 0;
}

static void eval_issue(JudgeOutcome *o, Norn__V1__IssueType type, int severity, const char *desc,
                       const char *rec, const Norn__V1__Step *st, uint64_t now)
{
    Norn__V1__Issue *is = msg_alloc(sizeof *is);
    norn__v1__issue__init(is);
    is->issue_type = type;
    is->severity = severity;
    is->description = msg_strdup(desc);
    is->recommendation = msg_strdup(rec);
    is->step_number = st->step_number;
    is->timestamp = msg_timestamp(now);
    char affected[32];
    snprintf(affected, sizeof affected, "step_%u", st->step_number);
    msg_append_str(&is->affected_steps, &is->n_affected_steps, affected);
    msg_append((void ***)&o->issues, &o->n_issues, is);
}

/* §4.4's effects of one judgement on its step, in the original's order:
 * the scores, IRRELEVANT + TASK_DRIFT, a typed security issue, and the
 * MISSING_CONFIG scan of the full result (which runs even when the model
 * failed). */
static void judge_step_by_ai(Norn__V1__Session *s, Norn__V1__Step *st, const EvalStepResult *x,
                             const Norn__V1__Config *cfg, JudgeOutcome *o, uint64_t now)
{
    char text[2600];
    Norn__V1__StepStatus old = st->status;
    if (x->ok) {
        st->optional_relevance_score_case =
            NORN__V1__STEP__OPTIONAL_RELEVANCE_SCORE_RELEVANCE_SCORE;
        st->relevance_score = x->relevance;
        st->optional_security_score_case = NORN__V1__STEP__OPTIONAL_SECURITY_SCORE_SECURITY_SCORE;
        st->security_score = x->security;
    } else {
        st->optional_relevance_score_case = NORN__V1__STEP__OPTIONAL_RELEVANCE_SCORE__NOT_SET;
        st->optional_security_score_case = NORN__V1__STEP__OPTIONAL_SECURITY_SCORE__NOT_SET;
    }
    msg_set_str(&st->reasoning, x->reasoning ? x->reasoning : "");
    if (x->ok && x->relevance < (int)cfg->relevance_score_threshold) {
        st->status = NORN__V1__STEP_STATUS__STEP_STATUS_IRRELEVANT;
        snprintf(text, sizeof text, "Step %u (%.300s) not relevant to task", st->step_number,
                 st->tool_name);
        eval_issue(o, NORN__V1__ISSUE_TYPE__ISSUE_TYPE_TASK_DRIFT, 6, text,
                   "Agent may be drifting from task objective", st, now);
    }
    if (x->ok && x->security <= EVALP_SECURITY_CONCERN_AT_MOST) {
        snprintf(text, sizeof text, "Security concern in step %u: %.2400s", st->step_number,
                 x->reasoning ? x->reasoning : "");
        eval_issue(o, evalp_security_issue_type(x->reasoning),
                   evalp_security_issue_severity(x->security), text,
                   "Review this action for security implications", st, now);
        s->security_breach_detected = 1;
    }
    const char *pattern = NULL;
    const char *hint = evalp_missing_config(st->result_text, &pattern);
    if (hint) {
        char rec[200];
        snprintf(text, sizeof text, "Step %u (%.300s) failed due to missing configuration: %s",
                 st->step_number, st->tool_name, hint);
        snprintf(rec, sizeof rec, "Fix the missing configuration. Matched pattern: '%s'", pattern);
        eval_issue(o, NORN__V1__ISSUE_TYPE__ISSUE_TYPE_MISSING_CONFIG, 7, text, rec, st, now);
        st->status = NORN__V1__STEP_STATUS__STEP_STATUS_FAILED;
    }
    if (old != st->status) {
        count_step_status(s, old, -1);
        count_step_status(s, st->status, +1);
    }
}

/* Each applied batch is one commit with its own revision (a STEP_UPDATED
 * delta carrying the judged steps and new issues), so watchers see the
 * scores arrive. */
static void ev_apply_steps(void *ud, const char *id, const EvalStepResult *results, size_t n)
{
    SessionService *ss = ud;
    Norn__V1__Config cfg;
    config_get(ss->config, &cfg);
    StoreTxn *t = store_txn_begin(ss->store);
    Norn__V1__Session *prev = NULL;
    if (store_session_get(ss->store, id, &prev) != NORN_OK) {
        store_txn_abort(t);
        return;
    }
    StoreCounters *c = store_txn_counters(t);
    Norn__V1__Session *s = (Norn__V1__Session *)msg_clone(&prev->base);
    uint64_t now = store_txn_now_micros(t);
    Norn__V1__Step **changed = msg_alloc((n ? n : 1) * sizeof *changed);
    size_t n_changed = 0;
    JudgeOutcome all;
    memset(&all, 0, sizeof all);
    for (size_t i = 0; i < n; i++) {
        Norn__V1__Step *st = NULL;
        if (store_step_get(ss->store, id, results[i].step_number, &st) != NORN_OK)
            continue;
        JudgeOutcome one;
        memset(&one, 0, sizeof one);
        judge_step_by_ai(s, st, &results[i], &cfg, &one, now);
        store_issues(t, s, &one, NULL, c);
        audit_step(t, s, st);
        char mid[200];
        step_marker_id(mid, sizeof mid, id, st->step_number);
        store_txn_delete_marker(t, STEP_MARKER, mid);
        for (size_t k = 0; k < one.n_issues; k++)
            msg_append((void ***)&all.issues, &all.n_issues, msg_clone(&one.issues[k]->base));
        judge_outcome_clear(&one);
        store_txn_put_step(t, id, st);
        changed[n_changed++] = st;
    }
    OpError e;
    if (n_changed) {
        put_summary(t, s, prev, now);
        set_delta(t, NORN__V1__DELTA_KIND__DELTA_KIND_STEP_UPDATED, s, changed, n_changed,
                  all.issues, all.n_issues);
        if (commit(ss, t, &e))
            log_error("eval_apply_failed", "session=%s error=\"%s\"", id, e.msg);
    } else {
        store_txn_abort(t);
    }
    store_free_steps(changed, n_changed);
    judge_outcome_clear(&all);
    norn__v1__session__free_unpacked(prev, NULL);
    norn__v1__session__free_unpacked(s, NULL);
}

static int ev_load_session(void *ud, const char *id, Norn__V1__Session **out,
                           uint32_t *default_max_steps)
{
    SessionService *ss = ud;
    Norn__V1__Config cfg;
    config_get(ss->config, &cfg);
    *default_max_steps = cfg.max_steps;
    Norn__V1__Session *s = NULL;
    if (store_session_get(ss->store, id, &s) != NORN_OK)
        return -1;
    uint32_t from = s->invocation_first_step ? s->invocation_first_step : 1;
    while (from) {
        Norn__V1__Step **steps = NULL;
        size_t n = 0;
        uint32_t next = 0;
        if (store_steps_scan(ss->store, id, from, 256, &steps, &n, &next) != NORN_OK)
            break;
        for (size_t i = 0; i < n; i++)
            msg_append((void ***)&s->steps, &s->n_steps, steps[i]);
        free(steps);
        from = next;
    }
    Norn__V1__Issue **issues = NULL;
    size_t ni = 0;
    if (store_issues_scan(ss->store, id, &issues, &ni) == NORN_OK) {
        s->issues = issues;
        s->n_issues = ni;
    }
    *out = s;
    return 0;
}

/* The session evaluation, then the rules again (they beat the model), the
 * session-end audit row that waited for it, and an EVALUATED delta. */
static void ev_apply_session(void *ud, const char *id, const EvalSessionResult *r)
{
    SessionService *ss = ud;
    Norn__V1__Config cfg;
    config_get(ss->config, &cfg);
    StoreTxn *t = store_txn_begin(ss->store);
    Norn__V1__Session *prev = NULL;
    if (store_session_get(ss->store, id, &prev) != NORN_OK) {
        store_txn_abort(t);
        return;
    }
    OpError e;
    if (prev->status == NORN__V1__SESSION_STATUS__SESSION_STATUS_ACTIVE) {
        /* Reopened meanwhile: the next CompleteSession evaluates again. */
        store_txn_delete_marker(t, EVAL_MARKER, id);
        commit(ss, t, &e);
        norn__v1__session__free_unpacked(prev, NULL);
        return;
    }
    Norn__V1__Session *s = (Norn__V1__Session *)msg_clone(&prev->base);
    uint64_t now = store_txn_now_micros(t);
    evalp_session_result_apply(r, s);
    Norn__V1__Issue **issues = NULL;
    size_t ni = 0;
    if (store_issues_scan(ss->store, id, &issues, &ni) != NORN_OK) {
        issues = NULL;
        ni = 0;
    }
    judge_reapply(ss->judge, s, issues, ni, &cfg);
    store_free_issues(issues, ni);
    s->evaluation_state = r->ok ? NORN__V1__EVALUATION_STATE__EVALUATION_STATE_DONE
                                : NORN__V1__EVALUATION_STATE__EVALUATION_STATE_FAILED;
    audit_session_end(t, s);
    store_txn_delete_marker(t, EVAL_MARKER, id);
    put_summary(t, s, prev, now);
    set_delta(t, NORN__V1__DELTA_KIND__DELTA_KIND_EVALUATED, s, NULL, 0, NULL, 0);
    if (commit(ss, t, &e))
        log_error("eval_apply_failed", "session=%s error=\"%s\"", id, e.msg);
    norn__v1__session__free_unpacked(prev, NULL);
    norn__v1__session__free_unpacked(s, NULL);
}

void session_service_evaluator_hooks(SessionService *ss, EvaluatorHooks *h)
{
    memset(h, 0, sizeof *h);
    h->ud = ss;
    h->load_steps = ev_load_steps;
    h->apply_steps = ev_apply_steps;
    h->load_session = ev_load_session;
    h->apply_session = ev_apply_session;
}

static int requeue_one(void *arg, const char *id)
{
    SessionService *ss = arg;
    evaluator_enqueue_session(ss->ev, id);
    log_info("eval_requeued", "session=%s", id);
    return 1;
}

/* A step marker: queued again, or, with the judge off, closed as not
 * judged (which writes its audit row). */
static int requeue_step(void *arg, const char *marker)
{
    SessionService *ss = arg;
    const char *slash = strrchr(marker, '/');
    if (!slash || slash == marker || (size_t)(slash - marker) > 128)
        return 1;
    char id[129];
    snprintf(id, sizeof id, "%.*s", (int)(slash - marker), marker);
    uint32_t step = (uint32_t)strtoul(slash + 1, NULL, 10);
    const char *off = ss->ev ? evaluator_disabled_reason(ss->ev) : "no AI judge";
    if (!off && evaluator_enqueue_step(ss->ev, id, step) == 0)
        return 1;
    char why[300];
    snprintf(why, sizeof why, "Evaluation skipped: %s", off ? off : "the judge refused it");
    EvalStepResult r = {.step_number = step, .ok = 0, .reasoning = why};
    ev_apply_steps(ss, id, &r, 1);
    return 1;
}

void session_service_set_evaluator(SessionService *ss, Evaluator *ev)
{
    ss->ev = ev;
    /* Judgements a crash or shutdown interrupted are queued again. */
    store_markers_scan(ss->store, STEP_MARKER, requeue_step, ss);
    if (ev && !evaluator_disabled_reason(ev))
        store_markers_scan(ss->store, EVAL_MARKER, requeue_one, ss);
}

int session_service_set_run(SessionService *ss, const char *id, const char *run_id, char *err,
                            size_t errlen)
{
    StoreTxn *t = store_txn_begin(ss->store);
    Norn__V1__Session *prev = NULL;
    int rc = store_session_get(ss->store, id, &prev);
    if (rc != NORN_OK) {
        store_txn_abort(t);
        snprintf(err, errlen, "no session '%s'", id);
        return norn_error_to_rpc(rc);
    }
    Norn__V1__Session *s = (Norn__V1__Session *)msg_clone(&prev->base);
    msg_set_str(&s->run_id, run_id);
    put_summary(t, s, prev, store_txn_now_micros(t));
    set_delta(t, NORN__V1__DELTA_KIND__DELTA_KIND_UPDATED, s, NULL, 0, NULL, 0);
    OpError e;
    int failed = commit(ss, t, &e);
    norn__v1__session__free_unpacked(prev, NULL);
    norn__v1__session__free_unpacked(s, NULL);
    if (failed) {
        snprintf(err, errlen, "%s", e.msg);
        return e.code;
    }
    return RPC_OK;
}
