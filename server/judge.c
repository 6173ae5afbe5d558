/*
 * judge.c — see judge.h.
 *
 * The cache holds one AnalyzerState per active session plus the issues of
 * its current invocation (the final verdict weighs them). It is bounded:
 * the least recently used entry goes first, and completing a session drops
 * its entry. A missing entry is rebuilt by replaying the invocation's
 * stored steps through the analyzer in order — the analyzer is a pure
 * function of that sequence, so a restart or an eviction never changes a
 * verdict.
 *
 * Callers hold the store's write lock (every judgement happens inside a
 * store transaction), which already serialises judgements; the mutex keeps
 * the cache safe on its own terms.
 */
#include "judge.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "analyzer.h"
#include "log.h"
#include "msg.h"

#define CACHE_MAX 4096
#define BUCKETS 8192 /* power of two, > CACHE_MAX */
#define REPLAY_PAGE 256

typedef struct Entry {
    struct Entry *prev, *next; /* LRU list, most recent first */
    struct Entry *hnext;       /* hash chain */
    char *session_id;
    AnalyzerState *state;
    AnalyzerIssueRef *refs; /* issues of this invocation */
    size_t n_refs, cap_refs;
} Entry;

struct Judge {
    Store *store;
    pthread_mutex_t mu;
    Entry *head, *tail;
    size_t n;
    Entry *buckets[BUCKETS];
};

static size_t bucket_of(const char *id)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 1099511628211ULL;
    return (size_t)(h & (BUCKETS - 1));
}

Judge *judge_new(Store *store)
{
    Judge *j = msg_alloc(sizeof *j);
    j->store = store;
    pthread_mutex_init(&j->mu, NULL);
    return j;
}

static void entry_free(Entry *e)
{
    analyzer_state_free(e->state);
    free(e->refs);
    free(e->session_id);
    free(e);
}

static void unhash(Judge *j, Entry *e)
{
    Entry **p = &j->buckets[bucket_of(e->session_id)];
    while (*p && *p != e)
        p = &(*p)->hnext;
    if (*p)
        *p = e->hnext;
    e->hnext = NULL;
}

static void unlink_entry(Judge *j, Entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        j->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        j->tail = e->prev;
    e->prev = e->next = NULL;
    j->n--;
}

static void push_front(Judge *j, Entry *e)
{
    e->next = j->head;
    if (j->head)
        j->head->prev = e;
    j->head = e;
    if (!j->tail)
        j->tail = e;
    j->n++;
}

void judge_free(Judge *j)
{
    if (!j)
        return;
    for (Entry *e = j->head, *n; e; e = n) {
        n = e->next;
        entry_free(e);
    }
    pthread_mutex_destroy(&j->mu);
    free(j);
}

static void outcome_init(JudgeOutcome *o)
{
    memset(o, 0, sizeof *o);
    o->action = NORN__V1__ACTION__ACTION_CONTINUE;
}

void judge_outcome_clear(JudgeOutcome *o)
{
    for (size_t i = 0; i < o->n_issues; i++)
        norn__v1__issue__free_unpacked(o->issues[i], NULL);
    free(o->issues);
    outcome_init(o);
}

const char *judge_issue_type_name(Norn__V1__IssueType t)
{
    return analyzer_issue_type_name(t);
}

static AnalyzerConfig analyzer_config(const Norn__V1__Config *cfg, Norn__V1__GuardMode mode)
{
    AnalyzerConfig ac = analyzer_config_default();
    ac.loop_window = (int)cfg->loop_window;
    ac.loop_threshold = (int)cfg->loop_threshold;
    ac.max_steps = (int)cfg->max_steps;
    ac.guard_mode = mode ? mode : cfg->guard_mode;
    char err[200];
    if (analyzer_config_validate(&ac, err, sizeof err) != 0) {
        log_warn("analyzer_config_invalid", "error=\"%s\" using=defaults", err);
        AnalyzerConfig d = analyzer_config_default();
        d.guard_mode = ac.guard_mode;
        return d;
    }
    return ac;
}

static void add_ref(Entry *e, Norn__V1__IssueType type, int severity)
{
    if (e->n_refs == e->cap_refs) {
        size_t cap = e->cap_refs ? e->cap_refs * 2 : 16;
        AnalyzerIssueRef *r = realloc(e->refs, cap * sizeof *r);
        if (!r)
            return;
        e->refs = r;
        e->cap_refs = cap;
    }
    e->refs[e->n_refs++] = (AnalyzerIssueRef){type, severity};
}

static void note_refs(Entry *e, const AnalyzerResult *r)
{
    for (size_t i = 0; i < r->n_issues; i++)
        add_ref(e, r->issues[i].type, r->issues[i].severity);
}

/* Converts analyzer issues into norn.v1 issues owned by the outcome. */
static void take_issues(JudgeOutcome *o, const AnalyzerIssue *issues, size_t n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    for (size_t i = 0; i < n; i++) {
        const AnalyzerIssue *a = &issues[i];
        Norn__V1__Issue *is = msg_alloc(sizeof *is);
        norn__v1__issue__init(is);
        is->issue_type = a->type;
        is->severity = a->severity;
        is->description = msg_strdup(a->description);
        is->recommendation = msg_strdup(a->recommendation);
        is->step_number = a->step_number;
        is->timestamp = msg_timestamp(now);
        if (a->affected_step[0])
            msg_append_str(&is->affected_steps, &is->n_affected_steps, a->affected_step);
        msg_append((void ***)&o->issues, &o->n_issues, is);
    }
}

static void take_result(JudgeOutcome *o, const AnalyzerResult *r)
{
    o->action = r->action;
    o->status = r->status;
    if (r->reason)
        msg_utf8_cut(o->reason, sizeof o->reason, r->reason, sizeof o->reason);
    take_issues(o, r->issues, r->n_issues);
}

static void remove_entry(Judge *j, Entry *e)
{
    unhash(j, e);
    unlink_entry(j, e);
    entry_free(e);
}

static Entry *entry_new(Judge *j, const Norn__V1__Session *s, const Norn__V1__Config *cfg)
{
    AnalyzerConfig ac = analyzer_config(cfg, s->guard_mode);
    Entry *e = msg_alloc(sizeof *e);
    e->session_id = msg_strdup(s->session_id);
    e->state = analyzer_state_new(&ac);
    if (!e->state) {
        entry_free(e);
        return NULL;
    }
    analyzer_begin_invocation(e->state, ac.guard_mode);
    if (j->n >= CACHE_MAX)
        remove_entry(j, j->tail);
    push_front(j, e);
    size_t b = bucket_of(e->session_id);
    e->hnext = j->buckets[b];
    j->buckets[b] = e;
    return e;
}

static Entry *find(Judge *j, const char *id)
{
    for (Entry *e = j->buckets[bucket_of(id)]; e; e = e->hnext) {
        if (strcmp(e->session_id, id) == 0) {
            unlink_entry(j, e);
            push_front(j, e);
            return e;
        }
    }
    return NULL;
}

/* Re-judges the current invocation from storage: the system prompt, then
 * every stored step of the invocation as "before" and, once ended, "after". */
static Entry *rebuild(Judge *j, const Norn__V1__Session *s, const Norn__V1__Config *cfg)
{
    Entry *e = entry_new(j, s, cfg);
    if (!e)
        return NULL;
    AnalyzerResult r;
    memset(&r, 0, sizeof r);
    if (s->system_prompt && s->system_prompt[0]) {
        analyzer_system_prompt(e->state, s->system_prompt, &r);
        note_refs(e, &r);
        analyzer_result_clear(&r);
    }
    uint32_t from = s->invocation_first_step ? s->invocation_first_step : 1;
    size_t replayed = 0;
    for (;;) {
        Norn__V1__Step **steps = NULL;
        size_t n = 0;
        uint32_t next = 0;
        if (store_steps_scan(j->store, s->session_id, from, REPLAY_PAGE, &steps, &n, &next) != 0)
            break;
        for (size_t i = 0; i < n; i++) {
            const Norn__V1__Step *st = steps[i];
            analyzer_before_tool(e->state, st->step_number, st->tool_name, st->tool_input, &r);
            note_refs(e, &r);
            analyzer_result_clear(&r);
            if (st->status != NORN__V1__STEP_STATUS__STEP_STATUS_RUNNING &&
                st->status != NORN__V1__STEP_STATUS__STEP_STATUS_BLOCKED) {
                analyzer_after_tool(e->state, st->step_number, st->tool_name, st->result_text,
                                    strlen(st->result_text), st->result_status, &r);
                note_refs(e, &r);
                analyzer_result_clear(&r);
            }
            replayed++;
        }
        store_free_steps(steps, n);
        if (!next)
            break;
        from = next;
    }
    log_debug("judge_rebuilt", "session=%s steps=%zu", s->session_id, replayed);
    return e;
}

static Entry *get_entry(Judge *j, const Norn__V1__Session *s, const Norn__V1__Config *cfg)
{
    Entry *e = find(j, s->session_id);
    return e ? e : rebuild(j, s, cfg);
}

void judge_open(Judge *j, Norn__V1__Session *s, const Norn__V1__Config *cfg, JudgeOutcome *out)
{
    outcome_init(out);
    pthread_mutex_lock(&j->mu);
    Entry *old = find(j, s->session_id);
    if (old)
        remove_entry(j, old);
    Entry *e = entry_new(j, s, cfg);
    if (e && s->system_prompt && s->system_prompt[0]) {
        AnalyzerResult r;
        memset(&r, 0, sizeof r);
        if (analyzer_system_prompt(e->state, s->system_prompt, &r) == 0) {
            note_refs(e, &r);
            take_result(out, &r);
            if (r.n_issues)
                s->security_breach_detected = 1;
        }
        analyzer_result_clear(&r);
    }
    pthread_mutex_unlock(&j->mu);
}

static void count_injections(Norn__V1__Session *s, const JudgeOutcome *o)
{
    for (size_t i = 0; i < o->n_issues; i++)
        if (o->issues[i]->issue_type == NORN__V1__ISSUE_TYPE__ISSUE_TYPE_PROMPT_INJECTION)
            s->injection_attempts++;
}

void judge_before(Judge *j, Norn__V1__Session *s, Norn__V1__Step *st, const Norn__V1__Config *cfg,
                  JudgeOutcome *out)
{
    outcome_init(out);
    pthread_mutex_lock(&j->mu);
    Entry *e = get_entry(j, s, cfg);
    if (e) {
        AnalyzerResult r;
        memset(&r, 0, sizeof r);
        if (analyzer_before_tool(e->state, st->step_number, st->tool_name, st->tool_input, &r) ==
            0) {
            note_refs(e, &r);
            take_result(out, &r);
        }
        analyzer_result_clear(&r);
    }
    pthread_mutex_unlock(&j->mu);
    count_injections(s, out);
}

void judge_after(Judge *j, Norn__V1__Session *s, Norn__V1__Step *st, const Norn__V1__Config *cfg,
                 JudgeOutcome *out)
{
    outcome_init(out);
    pthread_mutex_lock(&j->mu);
    Entry *e = get_entry(j, s, cfg);
    int judged = 0;
    if (e) {
        AnalyzerResult r;
        memset(&r, 0, sizeof r);
        if (analyzer_after_tool(e->state, st->step_number, st->tool_name, st->result_text,
                                strlen(st->result_text), st->result_status, &r) == 0) {
            note_refs(e, &r);
            take_result(out, &r);
            if (r.status)
                st->status = r.status;
            judged = 1;
        }
        analyzer_result_clear(&r);
    }
    pthread_mutex_unlock(&j->mu);
    if (!judged)
        st->status = st->result_status == NORN__V1__RESULT_STATUS__RESULT_STATUS_SUCCESS
                         ? NORN__V1__STEP_STATUS__STEP_STATUS_SUCCESS
                         : NORN__V1__STEP_STATUS__STEP_STATUS_FAILED;
    count_injections(s, out);
}

/* §3.8/§3.9 for the invocation of s held by entry e, then forgets e. At
 * session end (ai == NULL) the verdict starts from PENDING and sets the
 * stored status and the efficiency issue (into out); after the AI's session
 * evaluation (ai: that evaluation's issues to weigh) it starts from the
 * quality and scores the model put on s. Caller holds j->mu. */
static void finalize_entry(Judge *j, Entry *e, Norn__V1__Session *s, const AnalyzerIssueRef *ai,
                           size_t n_ai, JudgeOutcome *out)
{
    uint32_t first = s->invocation_first_step ? s->invocation_first_step : 1;
    AnalyzerSessionFacts f;
    memset(&f, 0, sizeof f);
    f.total_steps = s->total_steps >= first ? s->total_steps - first + 1 : 0;
    f.has_task = s->task && s->task->description[0];
    f.task_max_steps = s->task ? s->task->max_steps : 0;
    f.security_breach_detected = s->security_breach_detected;
    f.loop_detected = s->loop_detected;
    f.terminated_by_guard = s->terminated_by_guard;
    if (ai) {
        f.quality = s->overall_quality;
        f.has_security_score = s->optional_security_score_case ==
                               NORN__V1__SESSION__OPTIONAL_SECURITY_SCORE_SECURITY_SCORE;
        f.security_score = s->security_score;
        f.has_efficiency_score = s->optional_efficiency_score_case ==
                                 NORN__V1__SESSION__OPTIONAL_EFFICIENCY_SCORE_EFFICIENCY_SCORE;
        f.efficiency_score = s->efficiency_score;
        f.issues = ai;
        f.n_issues = n_ai;
    } else {
        /* No AI verdict yet: the AI evaluator finalizes again with its own. */
        f.quality = NORN__V1__SESSION_QUALITY__QUALITY_PENDING;
        f.issues = e->refs;
        f.n_issues = e->n_refs;
    }
    AnalyzerFinal fin;
    memset(&fin, 0, sizeof fin);
    if (analyzer_finalize(e->state, &f, &fin) == 0) {
        s->overall_quality = fin.quality;
        if (fin.has_efficiency_score) {
            s->optional_efficiency_score_case =
                NORN__V1__SESSION__OPTIONAL_EFFICIENCY_SCORE_EFFICIENCY_SCORE;
            s->efficiency_score = fin.efficiency_score;
        }
        if (fin.has_security_score) {
            s->optional_security_score_case =
                NORN__V1__SESSION__OPTIONAL_SECURITY_SCORE_SECURITY_SCORE;
            s->security_score = fin.security_score;
        }
        s->loop_detected = fin.loop_detected;
        s->security_breach_detected = fin.security_breach_detected;
        s->security_threats_detected = fin.hard_issue_count;
        /* The second pass neither restates the status nor returns the
         * efficiency issue again (stored at session end). */
        if (!ai) {
            s->status = fin.status;
            take_issues(out, fin.issues, fin.n_issues);
        }
    }
    analyzer_final_clear(&fin);
    remove_entry(j, e);
}

void judge_complete(Judge *j, Norn__V1__Session *s, Norn__V1__SessionStatus requested,
                    const Norn__V1__Config *cfg, JudgeOutcome *out)
{
    outcome_init(out);
    pthread_mutex_lock(&j->mu);
    Entry *e = get_entry(j, s, cfg);
    if (e)
        finalize_entry(j, e, s, NULL, 0, out);
    pthread_mutex_unlock(&j->mu);
    /* An explicit client status wins (an agent that crashed says so); without
     * one, TERMINATED means Norn told the agent to stop. */
    if (requested)
        s->status = requested;
    else if (s->status != NORN__V1__SESSION_STATUS__SESSION_STATUS_TERMINATED)
        s->status = s->terminated_by_guard ? NORN__V1__SESSION_STATUS__SESSION_STATUS_TERMINATED
                                           : NORN__V1__SESSION_STATUS__SESSION_STATUS_COMPLETED;
}

void judge_reapply(Judge *j, Norn__V1__Session *s, Norn__V1__Issue *const *issues, size_t n,
                   const Norn__V1__Config *cfg)
{
    uint32_t first_issue = s->invocation_first_issue ? s->invocation_first_issue : 1;
    AnalyzerIssueRef *refs = calloc(n ? n : 1, sizeof *refs);
    if (!refs)
        return;
    size_t n_refs = 0;
    for (size_t i = first_issue - 1; i < n; i++)
        refs[n_refs++] = (AnalyzerIssueRef){issues[i]->issue_type, issues[i]->severity};
    pthread_mutex_lock(&j->mu);
    Entry *e = get_entry(j, s, cfg);
    if (e)
        finalize_entry(j, e, s, refs, n_refs, NULL);
    pthread_mutex_unlock(&j->mu);
    free(refs);
}
