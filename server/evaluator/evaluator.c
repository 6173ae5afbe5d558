/*
 * evaluator.c — the AI judge's engine (see evaluator.h): queue, batching,
 * cache, libcurl multi transport, retries and circuit breaker.
 *
 * One thread owns the curl multi handle and every request. Producers (RPC
 * threads) touch only the pending queue under `mu` and wake the thread with
 * curl_multi_wakeup. A request ("Req") lives from dispatch to its final
 * answer, across retries; the number of live requests is bounded by
 * max_in_flight, so memory is bounded by that and by max_pending_steps.
 */
#include "evaluator.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "sigv4.h"

#define CONTEXT_STEPS 5
#define PEND_BUCKETS 4096 /* power of two */
#define CACHE_BUCKETS 8192
#define MAX_CALLS_QUEUED 256

typedef enum { REQ_STEPS, REQ_SESSION, REQ_CALL } ReqKind;

/* One session's waiting work. */
typedef struct Pend {
    struct Pend *prev, *next; /* in order of arrival */
    struct Pend *hnext;
    char *session_id;
    uint32_t *steps; /* step numbers, FIFO */
    size_t n, cap;
    uint64_t oldest_ms; /* when steps[0] was queued */
    int session_wanted; /* evaluate the session once the steps are done */
    unsigned in_flight; /* step requests of this session alive */
} Pend;

typedef struct Req {
    struct Req *next;        /* waiting-for-retry list */
    struct Req *active_next; /* in-transfer list */
    ReqKind kind;
    char *session_id;
    /* REQ_STEPS: results for every step of the batch; the ones answered
     * from the cache are already ok and not in the prompt. */
    EvalStepResult *results;
    size_t n_results;
    uint32_t *asked; /* step numbers in the prompt */
    uint8_t (*keys)[32];
    size_t n_asked;
    char *task; /* for the cache */
    /* REQ_CALL */
    EvalCallDone done;
    void *done_arg;
    char *body;
    unsigned attempts;
    uint64_t retry_at_ms;
    /* the transfer */
    CURL *easy;
    struct curl_slist *headers;
    char *resp;
    size_t resp_len;
    size_t resp_limit; /* EvaluatorOptions.max_response_bytes */
    int resp_overflow;
    long retry_after_s;
    char error_type[96];
} Req;

typedef struct CacheEntry {
    struct CacheEntry *prev, *next, *hnext;
    uint8_t key[32];
    int relevance, security;
    char *reasoning;
} CacheEntry;

/* A step dropped from a full queue: closed as not judged by the thread. */
typedef struct Dropped {
    struct Dropped *next;
    uint32_t step_number;
    char session_id[];
} Dropped;

typedef struct CallItem {
    struct CallItem *next;
    char *body;
    EvalCallDone done;
    void *arg;
} CallItem;

struct Evaluator {
    EvaluatorOptions opt;
    EvalCredentials creds;
    EvaluatorHooks hooks;
    char disabled[256];
    char url[1400];
    char host[1100]; /* the Host header, signed */
    char path[400];  /* the model path, as sent */

    pthread_mutex_t mu; /* guards everything below up to `stats` */
    Pend *head, *tail;
    Pend *buckets[PEND_BUCKETS];
    size_t pending_steps;
    size_t sessions_waiting;
    CallItem *calls, *calls_tail;
    Dropped *dropped, *dropped_tail; /* waiting to be closed as not judged */
    size_t n_calls;
    unsigned batch_size, batch_wait_ms;
    EvaluatorStats stats;
    int stop;

    /* evaluator thread only */
    CURLM *multi;
    pthread_t thread;
    int started;
    /* After evaluator_stop: enqueues are refused (a queued session keeps its
     * store marker and is evaluated after the next start). */
    atomic_int stopped;
    unsigned live; /* requests alive (in transfer or waiting to retry) */
    Req *waiting;  /* waiting to retry */
    Req *active;   /* in transfer */
    unsigned consecutive_failures;
    uint64_t breaker_until_ms; /* open until then; 0 = closed */
    int probing;               /* half-open: one request in flight */
    unsigned rng;
    CacheEntry *cache_head, *cache_tail;
    CacheEntry *cache_buckets[CACHE_BUCKETS];
    size_t cache_n;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static size_t fnv(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ULL;
    return (size_t)h;
}

void evaluator_options_default(EvaluatorOptions *o)
{
    memset(o, 0, sizeof *o);
    snprintf(o->region, sizeof o->region, "us-east-1");
    snprintf(o->model_id, sizeof o->model_id, "us.amazon.nova-2-lite-v1:0");
    o->batch_size = 8;
    o->batch_wait_ms = 200;
    o->max_in_flight = 4;
    o->connect_timeout_ms = 5000;
    o->request_timeout_ms = 60000;
    o->max_attempts = 4;
    o->backoff_base_ms = 200;
    o->backoff_max_ms = 20000;
    o->breaker_failures = 5;
    o->breaker_cooldown_ms = 30000;
    o->max_pending_steps = 100000;
    o->cache_entries = 10000;
    o->max_response_bytes = 4u << 20;
}

static void copy_env(char *dst, size_t cap, const char *name)
{
    const char *v = getenv(name);
    snprintf(dst, cap, "%s", v ? v : "");
}

int evaluator_credentials_from_env(EvalCredentials *c)
{
    memset(c, 0, sizeof *c);
    copy_env(c->bearer, sizeof c->bearer, "AWS_BEARER_TOKEN_BEDROCK");
    copy_env(c->access_key, sizeof c->access_key, "AWS_ACCESS_KEY_ID");
    copy_env(c->secret_key, sizeof c->secret_key, "AWS_SECRET_ACCESS_KEY");
    copy_env(c->session_token, sizeof c->session_token, "AWS_SESSION_TOKEN");
    return c->bearer[0] || (c->access_key[0] && c->secret_key[0]);
}

/* ---- the step cache (evaluator thread only) ---------------------------------- */

static CacheEntry *cache_find(Evaluator *ev, const uint8_t key[32])
{
    for (CacheEntry *e = ev->cache_buckets[fnv(key, 32) & (CACHE_BUCKETS - 1)]; e; e = e->hnext)
        if (memcmp(e->key, key, 32) == 0)
            return e;
    return NULL;
}

static void cache_unlink(Evaluator *ev, CacheEntry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        ev->cache_head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        ev->cache_tail = e->prev;
    e->prev = e->next = NULL;
}

static void cache_front(Evaluator *ev, CacheEntry *e)
{
    e->next = ev->cache_head;
    if (ev->cache_head)
        ev->cache_head->prev = e;
    ev->cache_head = e;
    if (!ev->cache_tail)
        ev->cache_tail = e;
}

static void cache_evict_tail(Evaluator *ev)
{
    CacheEntry *e = ev->cache_tail;
    if (!e)
        return;
    cache_unlink(ev, e);
    CacheEntry **p = &ev->cache_buckets[fnv(e->key, 32) & (CACHE_BUCKETS - 1)];
    while (*p != e)
        p = &(*p)->hnext;
    *p = e->hnext;
    free(e->reasoning);
    free(e);
    ev->cache_n--;
}

static void cache_put(Evaluator *ev, const uint8_t key[32], const EvalStepResult *r)
{
    if (!ev->opt.cache_entries || cache_find(ev, key))
        return;
    CacheEntry *e = calloc(1, sizeof *e);
    if (!e)
        return;
    e->reasoning = strdup(r->reasoning ? r->reasoning : "");
    if (!e->reasoning) {
        free(e);
        return;
    }
    memcpy(e->key, key, 32);
    e->relevance = r->relevance;
    e->security = r->security;
    size_t b = fnv(key, 32) & (CACHE_BUCKETS - 1);
    e->hnext = ev->cache_buckets[b];
    ev->cache_buckets[b] = e;
    cache_front(ev, e);
    if (++ev->cache_n > ev->opt.cache_entries)
        cache_evict_tail(ev);
}

/* ---- the pending queue (under mu) -------------------------------------------- */

static Pend *pend_find(Evaluator *ev, const char *id, int create)
{
    size_t b = fnv(id, strlen(id)) & (PEND_BUCKETS - 1);
    for (Pend *p = ev->buckets[b]; p; p = p->hnext)
        if (strcmp(p->session_id, id) == 0)
            return p;
    if (!create)
        return NULL;
    Pend *p = calloc(1, sizeof *p);
    if (!p || !(p->session_id = strdup(id))) {
        free(p);
        return NULL;
    }
    p->hnext = ev->buckets[b];
    ev->buckets[b] = p;
    p->prev = ev->tail;
    if (ev->tail)
        ev->tail->next = p;
    else
        ev->head = p;
    ev->tail = p;
    return p;
}

static void pend_remove(Evaluator *ev, Pend *p)
{
    Pend **h = &ev->buckets[fnv(p->session_id, strlen(p->session_id)) & (PEND_BUCKETS - 1)];
    while (*h != p)
        h = &(*h)->hnext;
    *h = p->hnext;
    if (p->prev)
        p->prev->next = p->next;
    else
        ev->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        ev->tail = p->prev;
    free(p->steps);
    free(p->session_id);
    free(p);
}

static void pend_maybe_remove(Evaluator *ev, Pend *p)
{
    if (p->n == 0 && p->in_flight == 0 && !p->session_wanted)
        pend_remove(ev, p);
}

/* Drops the oldest pending step of all (queue overflow). */
static void drop_oldest(Evaluator *ev)
{
    for (Pend *p = ev->head; p; p = p->next) {
        if (p->n == 0)
            continue;
        /* Logged at 1, 2, 4, 8, ... drops: visible, never a flood. */
        uint64_t dropped = ev->stats.dropped + 1;
        if ((dropped & (dropped - 1)) == 0)
            log_warn("eval_dropped",
                     "session=%s step=%u dropped_total=%llu "
                     "reason=\"queue full (%zu steps)\"",
                     p->session_id, p->steps[0], (unsigned long long)dropped, ev->pending_steps);
        /* The step still gets its audit row and loses its store marker: the
         * thread applies "not judged" for it. */
        size_t idlen = strlen(p->session_id);
        Dropped *d = malloc(sizeof *d + idlen + 1);
        if (d) {
            d->next = NULL;
            d->step_number = p->steps[0];
            memcpy(d->session_id, p->session_id, idlen + 1);
            if (ev->dropped_tail)
                ev->dropped_tail->next = d;
            else
                ev->dropped = d;
            ev->dropped_tail = d;
        }
        memmove(p->steps, p->steps + 1, (p->n - 1) * sizeof *p->steps);
        p->n--;
        p->oldest_ms = now_ms();
        ev->pending_steps--;
        ev->stats.dropped++;
        pend_maybe_remove(ev, p);
        return;
    }
}

int evaluator_enqueue_step(Evaluator *ev, const char *session_id, uint32_t step_number)
{
    if (!ev || ev->disabled[0] || atomic_load(&ev->stopped))
        return -1;
    pthread_mutex_lock(&ev->mu);
    if (ev->pending_steps >= ev->opt.max_pending_steps)
        drop_oldest(ev);
    Pend *p = pend_find(ev, session_id, 1);
    int rc = -1;
    if (p) {
        if (p->n == p->cap) {
            size_t cap = p->cap ? p->cap * 2 : 8;
            uint32_t *s = realloc(p->steps, cap * sizeof *s);
            if (s) {
                p->steps = s;
                p->cap = cap;
            }
        }
        if (p->n < p->cap) {
            if (p->n == 0)
                p->oldest_ms = now_ms();
            p->steps[p->n++] = step_number;
            ev->pending_steps++;
            rc = 0;
        } else {
            pend_maybe_remove(ev, p);
        }
    }
    pthread_mutex_unlock(&ev->mu);
    if (rc == 0)
        curl_multi_wakeup(ev->multi);
    return rc;
}

int evaluator_enqueue_session(Evaluator *ev, const char *session_id)
{
    if (!ev || ev->disabled[0] || atomic_load(&ev->stopped))
        return -1;
    pthread_mutex_lock(&ev->mu);
    Pend *p = pend_find(ev, session_id, 1);
    if (p && !p->session_wanted) {
        p->session_wanted = 1;
        ev->sessions_waiting++;
    }
    pthread_mutex_unlock(&ev->mu);
    if (!p)
        return -1;
    curl_multi_wakeup(ev->multi);
    return 0;
}

int evaluator_call(Evaluator *ev, const char *system, const char *user, double temperature,
                   EvalCallDone done, void *arg)
{
    if (!ev || ev->disabled[0] || atomic_load(&ev->stopped))
        return -1;
    CallItem *c = calloc(1, sizeof *c);
    if (!c)
        return -1;
    c->body = evalp_converse_body(system, user, temperature, 0);
    c->done = done;
    c->arg = arg;
    int rc = -1;
    pthread_mutex_lock(&ev->mu);
    if (c->body && ev->n_calls < MAX_CALLS_QUEUED) {
        if (ev->calls_tail)
            ev->calls_tail->next = c;
        else
            ev->calls = c;
        ev->calls_tail = c;
        ev->n_calls++;
        rc = 0;
    }
    pthread_mutex_unlock(&ev->mu);
    if (rc) {
        free(c->body);
        free(c);
        return -1;
    }
    curl_multi_wakeup(ev->multi);
    return 0;
}

void evaluator_set_batching(Evaluator *ev, unsigned batch_size, unsigned batch_wait_ms)
{
    if (!ev)
        return;
    pthread_mutex_lock(&ev->mu);
    ev->batch_size = batch_size ? batch_size : 1;
    ev->batch_wait_ms = batch_wait_ms;
    pthread_mutex_unlock(&ev->mu);
    curl_multi_wakeup(ev->multi);
}

const char *evaluator_disabled_reason(const Evaluator *ev)
{
    if (!ev)
        return "AI evaluation is not configured";
    return ev->disabled[0] ? ev->disabled : NULL;
}

void evaluator_stats(Evaluator *ev, EvaluatorStats *out)
{
    memset(out, 0, sizeof *out);
    if (!ev)
        return;
    pthread_mutex_lock(&ev->mu);
    *out = ev->stats;
    out->queue_depth = ev->pending_steps + ev->sessions_waiting + ev->n_calls;
    pthread_mutex_unlock(&ev->mu);
}

/* ---- requests ---------------------------------------------------------------- */

static void req_free(Req *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_results; i++)
        evalp_step_result_clear(&r->results[i]);
    free(r->results);
    free(r->asked);
    free(r->keys);
    free(r->task);
    free(r->session_id);
    free(r->body);
    free(r->resp);
    free(r);
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    Req *r = arg;
    size_t len = size * n;
    if (r->resp_len + len > r->resp_limit || r->resp_overflow) {
        r->resp_overflow = 1;
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    }
    char *p = realloc(r->resp, r->resp_len + len + 1);
    if (!p)
        return 0;
    memcpy(p + r->resp_len, data, len);
    r->resp = p;
    r->resp_len += len;
    p[r->resp_len] = 0;
    return len;
}

static int header_is(const char *line, size_t len, const char *name, const char **value,
                     size_t *vlen)
{
    size_t nl = strlen(name);
    if (len <= nl + 1 || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return 0;
    const char *v = line + nl + 1;
    const char *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    *value = v;
    *vlen = (size_t)(end - v);
    return 1;
}

static size_t on_header(char *line, size_t size, size_t n, void *arg)
{
    Req *r = arg;
    size_t len = size * n;
    const char *v;
    size_t vl;
    if (header_is(line, len, "retry-after", &v, &vl)) {
        char buf[16];
        snprintf(buf, sizeof buf, "%.*s", (int)(vl < 15 ? vl : 15), v);
        r->retry_after_s = strtol(buf, NULL, 10);
    } else if (header_is(line, len, "x-amzn-errortype", &v, &vl)) {
        snprintf(r->error_type, sizeof r->error_type, "%.*s", (int)(vl < 95 ? vl : 95), v);
    }
    return len;
}

/* Starts (or restarts) the transfer of r. 0, or -1 when curl refuses. */
static int req_start(Evaluator *ev, Req *r)
{
    free(r->resp);
    r->resp = NULL;
    r->resp_len = 0;
    r->resp_overflow = 0;
    r->resp_limit = ev->opt.max_response_bytes;
    r->retry_after_s = -1;
    r->error_type[0] = 0;
    r->attempts++;
    CURL *e = curl_easy_init();
    if (!e)
        return -1;
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Accept: application/json");
    char auth[4200];
    if (ev->creds.bearer[0]) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", ev->creds.bearer);
        h = curl_slist_append(h, auth);
    } else {
        /* Signed per attempt, so a retry never carries a stale date. */
        SigV4Request sr = {"POST",  ev->host,       ev->path, "", "application/json",
                           r->body, strlen(r->body)};
        SigV4Keys k = {ev->creds.access_key, ev->creds.secret_key, ev->creds.session_token,
                       ev->opt.region, "bedrock"};
        char date[17], sig[600];
        if (sigv4_sign(&sr, &k, time(NULL), date, sig, sizeof sig) != 0) {
            curl_slist_free_all(h);
            curl_easy_cleanup(e);
            return -1;
        }
        snprintf(auth, sizeof auth, "Host: %s", ev->host);
        h = curl_slist_append(h, auth);
        snprintf(auth, sizeof auth, "X-Amz-Date: %s", date);
        h = curl_slist_append(h, auth);
        snprintf(auth, sizeof auth, "Authorization: %s", sig);
        h = curl_slist_append(h, auth);
        if (ev->creds.session_token[0]) {
            snprintf(auth, sizeof auth, "X-Amz-Security-Token: %s", ev->creds.session_token);
            h = curl_slist_append(h, auth);
        }
    }
    r->headers = h;
    curl_easy_setopt(e, CURLOPT_URL, ev->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(r->body));
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)ev->opt.connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)ev->opt.request_timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "nornd-evaluator");
    r->easy = e;
    r->active_next = ev->active;
    ev->active = r;
    if (curl_multi_add_handle(ev->multi, e) != CURLM_OK) {
        ev->active = r->active_next;
        curl_easy_cleanup(e);
        curl_slist_free_all(h);
        r->easy = NULL;
        r->headers = NULL;
        return -1;
    }
    /* Half-open breaker: this transfer is the probe. Set only here, when a
     * request is really on its way: work answered locally (cache hits, a
     * zero-step session, a session gone) must not hold the probe slot. */
    if (ev->breaker_until_ms)
        ev->probing = 1;
    return 0;
}

static void req_end_transfer(Evaluator *ev, Req *r)
{
    for (Req **pp = &ev->active; *pp; pp = &(*pp)->active_next)
        if (*pp == r) {
            *pp = r->active_next;
            break;
        }
    if (r->easy) {
        curl_multi_remove_handle(ev->multi, r->easy);
        curl_easy_cleanup(r->easy);
        r->easy = NULL;
    }
    curl_slist_free_all(r->headers);
    r->headers = NULL;
}

/* The request is over (answered or failed for good): release its slot. */
static void req_retire(Evaluator *ev, Req *r)
{
    ev->live--;
    if (r->kind == REQ_STEPS) {
        pthread_mutex_lock(&ev->mu);
        Pend *p = pend_find(ev, r->session_id, 0);
        if (p) {
            p->in_flight--;
            pend_maybe_remove(ev, p);
        }
        pthread_mutex_unlock(&ev->mu);
    }
    req_free(r);
}

static void fail_request(Evaluator *ev, Req *r, const char *why)
{
    pthread_mutex_lock(&ev->mu);
    ev->stats.errors++;
    pthread_mutex_unlock(&ev->mu);
    log_warn("eval_failed", "kind=%d session=%s attempts=%u error=\"%s\"", (int)r->kind,
             r->session_id ? r->session_id : "", r->attempts, why);
    char msg[600];
    switch (r->kind) {
    case REQ_STEPS:
        snprintf(msg, sizeof msg, "Evaluation failed: %s", why);
        for (size_t i = 0; i < r->n_results; i++) {
            EvalStepResult *x = &r->results[i];
            if (x->ok)
                continue;
            free(x->reasoning);
            x->reasoning = strdup(msg);
        }
        ev->hooks.apply_steps(ev->hooks.ud, r->session_id, r->results, r->n_results);
        break;
    case REQ_SESSION: {
        EvalSessionResult sr;
        memset(&sr, 0, sizeof sr);
        evalp_session_fail(&sr, why);
        ev->hooks.apply_session(ev->hooks.ud, r->session_id, &sr);
        evalp_session_result_clear(&sr);
        break;
    }
    case REQ_CALL: r->done(r->done_arg, NULL, why); break;
    }
}

static void answer_request(Evaluator *ev, Req *r, const char *text)
{
    switch (r->kind) {
    case REQ_STEPS: {
        EvalStepResult *got = calloc(r->n_asked ? r->n_asked : 1, sizeof *got);
        if (!got) {
            fail_request(ev, r, "out of memory");
            return;
        }
        evalp_parse_step_batch(text, r->asked, r->n_asked, got);
        size_t k = 0, judged = 0;
        for (size_t i = 0; i < r->n_results && k < r->n_asked; i++) {
            EvalStepResult *x = &r->results[i];
            if (x->ok || x->step_number != r->asked[k])
                continue;
            evalp_step_result_clear(x);
            *x = got[k];
            memset(&got[k], 0, sizeof got[k]);
            if (x->ok) {
                cache_put(ev, r->keys[k], x);
                judged++;
            }
            k++;
        }
        for (size_t i = 0; i < r->n_asked; i++)
            evalp_step_result_clear(&got[i]);
        free(got);
        pthread_mutex_lock(&ev->mu);
        ev->stats.steps_judged += judged;
        pthread_mutex_unlock(&ev->mu);
        ev->hooks.apply_steps(ev->hooks.ud, r->session_id, r->results, r->n_results);
        break;
    }
    case REQ_SESSION: {
        EvalSessionResult sr;
        memset(&sr, 0, sizeof sr);
        evalp_parse_session(text, &sr);
        pthread_mutex_lock(&ev->mu);
        ev->stats.sessions_judged++;
        pthread_mutex_unlock(&ev->mu);
        ev->hooks.apply_session(ev->hooks.ud, r->session_id, &sr);
        evalp_session_result_clear(&sr);
        break;
    }
    case REQ_CALL: r->done(r->done_arg, text, NULL); break;
    }
}

static void breaker_note(Evaluator *ev, int ok)
{
    if (ok) {
        if (ev->breaker_until_ms)
            log_info("eval_breaker_closed", "after=probe");
        ev->consecutive_failures = 0;
        ev->breaker_until_ms = 0;
        ev->probing = 0;
        pthread_mutex_lock(&ev->mu);
        ev->stats.breaker_open = 0;
        pthread_mutex_unlock(&ev->mu);
        return;
    }
    ev->consecutive_failures++;
    if (ev->probing || ev->consecutive_failures >= ev->opt.breaker_failures) {
        ev->breaker_until_ms = now_ms() + ev->opt.breaker_cooldown_ms;
        ev->probing = 0;
        pthread_mutex_lock(&ev->mu);
        if (!ev->stats.breaker_open)
            ev->stats.breaker_opened++;
        ev->stats.breaker_open = 1;
        pthread_mutex_unlock(&ev->mu);
        log_warn("eval_breaker_open", "failures=%u cooldown_ms=%u", ev->consecutive_failures,
                 ev->opt.breaker_cooldown_ms);
    }
}

/* Schedules another attempt, or fails the request for good. */
static void retry_or_fail(Evaluator *ev, Req *r, const char *why)
{
    breaker_note(ev, 0);
    if (r->attempts >= ev->opt.max_attempts) {
        fail_request(ev, r, why);
        req_retire(ev, r);
        return;
    }
    uint64_t delay;
    if (r->retry_after_s >= 0) {
        delay = (uint64_t)r->retry_after_s * 1000u;
    } else {
        uint64_t cap = (uint64_t)ev->opt.backoff_base_ms
                       << (r->attempts - 1 < 16 ? r->attempts - 1 : 16);
        if (cap > ev->opt.backoff_max_ms)
            cap = ev->opt.backoff_max_ms;
        delay = cap / 2 + (cap ? (uint64_t)rand_r(&ev->rng) % (cap / 2 + 1) : 0);
    }
    if (delay > ev->opt.backoff_max_ms)
        delay = ev->opt.backoff_max_ms;
    r->retry_at_ms = now_ms() + delay;
    r->next = ev->waiting;
    ev->waiting = r;
    pthread_mutex_lock(&ev->mu);
    ev->stats.retries++;
    pthread_mutex_unlock(&ev->mu);
    log_info("eval_retry", "attempt=%u delay_ms=%llu error=\"%s\"", r->attempts,
             (unsigned long long)delay, why);
}

static void on_transfer_done(Evaluator *ev, Req *r, CURLcode cc)
{
    long status = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    req_end_transfer(ev, r);
    if (ev->probing)
        ev->probing = 0;
    char why[400];
    if (cc != CURLE_OK) {
        snprintf(why, sizeof why, "%s",
                 r->resp_overflow ? "response too large" : curl_easy_strerror(cc));
        if (r->resp_overflow) {
            breaker_note(ev, 0);
            fail_request(ev, r, why);
            req_retire(ev, r);
        } else {
            retry_or_fail(ev, r, why);
        }
        return;
    }
    if (status != 200) {
        char msg[200] = "";
        if (r->resp) {
            const char *m = strstr(r->resp, "\"message\"");
            if (m && (m = strchr(m + 9, '"')))
                snprintf(msg, sizeof msg, "%.*s", (int)strcspn(m + 1, "\""), m + 1);
        }
        snprintf(why, sizeof why, "Bedrock answered HTTP %ld%s%s%s%s", status,
                 r->error_type[0] ? " " : "", r->error_type, msg[0] ? ": " : "", msg);
        if (status == 429 || status >= 500)
            retry_or_fail(ev, r, why);
        else {
            breaker_note(ev, 0);
            fail_request(ev, r, why);
            req_retire(ev, r);
        }
        return;
    }
    breaker_note(ev, 1);
    char *text = NULL;
    EvalUsage usage = {0, 0};
    char perr[256];
    if (evalp_parse_converse(r->resp ? r->resp : "", r->resp_len, &text, &usage, perr,
                             sizeof perr) != 0) {
        snprintf(why, sizeof why, "unusable Converse response: %s", perr);
        fail_request(ev, r, why);
        req_retire(ev, r);
        return;
    }
    pthread_mutex_lock(&ev->mu);
    ev->stats.calls++;
    ev->stats.input_tokens += usage.input_tokens;
    ev->stats.output_tokens += usage.output_tokens;
    pthread_mutex_unlock(&ev->mu);
    answer_request(ev, r, text);
    free(text);
    req_retire(ev, r);
}

/* ---- dispatch (evaluator thread) --------------------------------------------- */

static void free_steps(Norn__V1__Step **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        norn__v1__step__free_unpacked(v[i], NULL);
    free(v);
}

/* Builds and starts a step batch for `numbers` of session `id`; steps the
 * cache knows are answered without a call. Takes `numbers`. */
static void dispatch_steps(Evaluator *ev, const char *id, uint32_t *numbers, size_t n)
{
    Norn__V1__TaskDefinition *task = NULL;
    Norn__V1__Step **ctx = NULL, **steps = NULL;
    size_t n_ctx = 0, n_steps = 0;
    Req *r = calloc(1, sizeof *r);
    if (!r || ev->hooks.load_steps(ev->hooks.ud, id, numbers, n, &task, &ctx, &n_ctx, &steps,
                                   &n_steps) != 0) {
        free(r);
        free(numbers);
        pthread_mutex_lock(&ev->mu);
        Pend *p = pend_find(ev, id, 0);
        if (p) {
            p->in_flight--;
            pend_maybe_remove(ev, p);
        }
        pthread_mutex_unlock(&ev->mu);
        return;
    }
    free(numbers);
    ev->live++;
    r->kind = REQ_STEPS;
    /* req_retire finds the session's queue entry by this id. */
    r->session_id = strdup(id);
    if (!r->session_id) {
        ev->live--;
        free(r);
        r = NULL;
        pthread_mutex_lock(&ev->mu);
        Pend *p = pend_find(ev, id, 0);
        if (p) {
            p->in_flight--;
            pend_maybe_remove(ev, p);
        }
        pthread_mutex_unlock(&ev->mu);
        if (task)
            norn__v1__task_definition__free_unpacked(task, NULL);
        free_steps(ctx, n_ctx);
        free_steps(steps, n_steps);
        return;
    }
    r->task = strdup(task && task->description ? task->description : "");
    r->results = calloc(n_steps ? n_steps : 1, sizeof *r->results);
    r->asked = calloc(n_steps ? n_steps : 1, sizeof *r->asked);
    r->keys = calloc(n_steps ? n_steps : 1, sizeof *r->keys);
    Norn__V1__Step **ask = calloc(n_steps ? n_steps : 1, sizeof *ask);
    size_t hits = 0;
    if (!r->session_id || !r->task || !r->results || !r->asked || !r->keys || !ask) {
        free(ask);
        goto oom;
    }
    r->n_results = n_steps;
    for (size_t i = 0; i < n_steps; i++) {
        Norn__V1__Step *st = steps[i];
        r->results[i].step_number = st->step_number;
        uint8_t key[32];
        CacheEntry *ce = NULL;
        if (evalp_step_cache_key(r->task, st->tool_name, st->tool_input, st->result_text, key) == 0)
            ce = cache_find(ev, key);
        if (ce) {
            cache_unlink(ev, ce);
            cache_front(ev, ce);
            r->results[i].ok = 1;
            r->results[i].relevance = ce->relevance;
            r->results[i].security = ce->security;
            r->results[i].reasoning = strdup(ce->reasoning);
            hits++;
        } else {
            memcpy(r->keys[r->n_asked], key, 32);
            r->asked[r->n_asked] = st->step_number;
            ask[r->n_asked++] = st;
        }
    }
    if (r->n_asked) {
        char *user = evalp_step_batch_prompt(task, ctx, n_ctx, ask, r->n_asked);
        r->body =
            user ? evalp_converse_body(EVALP_STEP_SYSTEM, user, EVALP_STEP_TEMPERATURE, 0) : NULL;
        free(user);
    }
    free(ask);
    pthread_mutex_lock(&ev->mu);
    ev->stats.cache_hits += hits;
    ev->stats.steps_judged += hits;
    if (r->n_asked) {
        ev->stats.batches++;
        ev->stats.batched_steps += r->n_asked;
    }
    pthread_mutex_unlock(&ev->mu);
    if (task)
        norn__v1__task_definition__free_unpacked(task, NULL);
    free_steps(ctx, n_ctx);
    free_steps(steps, n_steps);
    if (!r->n_asked) {
        if (n_steps)
            ev->hooks.apply_steps(ev->hooks.ud, id, r->results, r->n_results);
        req_retire(ev, r);
        return;
    }
    if (!r->body || req_start(ev, r) != 0) {
        fail_request(ev, r, "cannot build the request");
        req_retire(ev, r);
    }
    return;
oom:
    if (task)
        norn__v1__task_definition__free_unpacked(task, NULL);
    free_steps(ctx, n_ctx);
    free_steps(steps, n_steps);
    req_retire(ev, r);
}

static void dispatch_session(Evaluator *ev, const char *id)
{
    Norn__V1__Session *s = NULL;
    uint32_t default_max_steps = 0;
    if (ev->hooks.load_session(ev->hooks.ud, id, &s, &default_max_steps) != 0 || !s)
        return;
    EvalSessionResult sr;
    memset(&sr, 0, sizeof sr);
    if (s->n_steps == 0) {
        evalp_session_zero_steps(&sr);
        ev->hooks.apply_session(ev->hooks.ud, id, &sr);
        evalp_session_result_clear(&sr);
        norn__v1__session__free_unpacked(s, NULL);
        pthread_mutex_lock(&ev->mu);
        ev->stats.sessions_judged++;
        pthread_mutex_unlock(&ev->mu);
        return;
    }
    char *user =
        evalp_session_prompt(s, s->steps, s->n_steps, s->issues, s->n_issues, default_max_steps);
    norn__v1__session__free_unpacked(s, NULL);
    Req *r = calloc(1, sizeof *r);
    if (!r) {
        free(user);
        return;
    }
    ev->live++;
    r->kind = REQ_SESSION;
    r->session_id = strdup(id);
    r->body =
        user ? evalp_converse_body(EVALP_SESSION_SYSTEM, user, EVALP_SESSION_TEMPERATURE, 0) : NULL;
    free(user);
    if (!r->session_id || !r->body || req_start(ev, r) != 0) {
        if (r->session_id)
            fail_request(ev, r, "cannot build the request");
        req_retire(ev, r);
    }
}

/* What the breaker allows now: 0 nothing, 1 one probe, 2 anything. */
static int breaker_allows(Evaluator *ev, uint64_t now)
{
    if (!ev->breaker_until_ms)
        return 2;
    if (now < ev->breaker_until_ms || ev->probing)
        return 0;
    return 1;
}

/* Starts whatever is due; returns how long the thread may sleep (ms). */
/* Closes the dropped steps as not judged (no network: the breaker does not
 * apply). */
static void close_dropped(Evaluator *ev)
{
    pthread_mutex_lock(&ev->mu);
    Dropped *list = ev->dropped;
    ev->dropped = ev->dropped_tail = NULL;
    pthread_mutex_unlock(&ev->mu);
    for (Dropped *d = list, *n; d; d = n) {
        n = d->next;
        EvalStepResult r = {.step_number = d->step_number,
                            .ok = 0,
                            .reasoning = (char *)"Evaluation skipped: the judge's queue was full"};
        ev->hooks.apply_steps(ev->hooks.ud, d->session_id, &r, 1);
        free(d);
    }
}

static long dispatch_due(Evaluator *ev)
{
    close_dropped(ev);
    uint64_t now = now_ms();
    long sleep_ms = 1000;
    /* retries first: they are the oldest work */
    for (Req **pp = &ev->waiting; *pp;) {
        Req *r = *pp;
        int allow = breaker_allows(ev, now);
        if (r->retry_at_ms <= now && allow) {
            *pp = r->next;
            r->next = NULL;
            if (req_start(ev, r) != 0) {
                fail_request(ev, r, "cannot restart the request");
                req_retire(ev, r);
            }
            continue;
        }
        uint64_t at = r->retry_at_ms > ev->breaker_until_ms ? r->retry_at_ms : ev->breaker_until_ms;
        long wait = at > now ? (long)(at - now) : 1;
        if (wait < sleep_ms)
            sleep_ms = wait;
        pp = &r->next;
    }
    for (;;) {
        int allow = breaker_allows(ev, now);
        if (!allow || ev->live >= ev->opt.max_in_flight) {
            if (!allow && ev->breaker_until_ms > now &&
                (long)(ev->breaker_until_ms - now) < sleep_ms)
                sleep_ms = (long)(ev->breaker_until_ms - now);
            break;
        }
        /* Pick the next piece of work under the lock, run it outside. */
        ReqKind kind = REQ_CALL;
        char *sid = NULL;
        uint32_t *numbers = NULL;
        size_t n = 0;
        CallItem *call = NULL;
        pthread_mutex_lock(&ev->mu);
        unsigned bs = ev->batch_size, wait = ev->batch_wait_ms;
        if (ev->calls) {
            call = ev->calls;
            ev->calls = call->next;
            if (!ev->calls)
                ev->calls_tail = NULL;
            ev->n_calls--;
        } else {
            for (Pend *p = ev->head; p; p = p->next) {
                if (p->n && (p->n >= bs || p->session_wanted || p->oldest_ms + wait <= now)) {
                    n = p->n < bs ? p->n : bs;
                    numbers = malloc(n * sizeof *numbers);
                    if (!numbers)
                        break;
                    memcpy(numbers, p->steps, n * sizeof *numbers);
                    memmove(p->steps, p->steps + n, (p->n - n) * sizeof *p->steps);
                    p->n -= n;
                    p->oldest_ms = now;
                    p->in_flight++;
                    ev->pending_steps -= n;
                    sid = strdup(p->session_id);
                    kind = REQ_STEPS;
                    break;
                }
                if (p->n) {
                    long left = (long)(p->oldest_ms + wait - now);
                    if (left < sleep_ms)
                        sleep_ms = left < 1 ? 1 : left;
                }
                if (!p->n && !p->in_flight && p->session_wanted) {
                    sid = strdup(p->session_id);
                    p->session_wanted = 0;
                    ev->sessions_waiting--;
                    kind = REQ_SESSION;
                    pend_maybe_remove(ev, p);
                    break;
                }
            }
        }
        pthread_mutex_unlock(&ev->mu);
        if (call) {
            Req *r = calloc(1, sizeof *r);
            if (!r) {
                call->done(call->arg, NULL, "out of memory");
            } else {
                ev->live++;
                r->kind = REQ_CALL;
                r->body = call->body;
                call->body = NULL;
                r->done = call->done;
                r->done_arg = call->arg;
                if (req_start(ev, r) != 0) {
                    fail_request(ev, r, "cannot start the request");
                    req_retire(ev, r);
                }
            }
            free(call->body);
            free(call);
        } else if (sid && kind == REQ_STEPS) {
            dispatch_steps(ev, sid, numbers, n);
        } else if (sid) {
            dispatch_session(ev, sid);
        } else {
            free(numbers);
            break;
        }
        free(sid);
        if (ev->probing)
            break;
    }
    return sleep_ms < 1 ? 1 : sleep_ms;
}

static void *evaluator_main(void *arg)
{
    Evaluator *ev = arg;
    for (;;) {
        pthread_mutex_lock(&ev->mu);
        int stop = ev->stop;
        pthread_mutex_unlock(&ev->mu);
        if (stop)
            break;
        long sleep_ms = dispatch_due(ev);
        int running = 0;
        curl_multi_perform(ev->multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(ev->multi, &left))) {
            if (m->msg != CURLMSG_DONE)
                continue;
            Req *r = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
            on_transfer_done(ev, r, m->data.result);
        }
        curl_multi_poll(ev->multi, NULL, 0, (int)(sleep_ms > 1000 ? 1000 : sleep_ms), NULL);
    }
    return NULL;
}

/* The base URL (no trailing '/') into ev->url and its authority (the Host
 * header) into ev->host: the configured endpoint, or the regional one. */
static int set_endpoint(Evaluator *ev)
{
    const char *base = ev->opt.endpoint;
    char regional[200];
    if (!base[0]) {
        snprintf(regional, sizeof regional, "https://bedrock-runtime.%s.amazonaws.com",
                 ev->opt.region);
        base = regional;
    }
    size_t l = strlen(base);
    while (l && base[l - 1] == '/')
        l--;
    const char *auth = NULL;
    if (strncmp(base, "https://", 8) == 0)
        auth = base + 8;
    else if (strncmp(base, "http://", 7) == 0)
        auth = base + 7;
    if (!auth || l >= sizeof ev->host)
        return -1;
    size_t alen = strcspn(auth, "/?#");
    if (auth + alen > base + l)
        alen = (size_t)(base + l - auth);
    if (!alen || memchr(auth, '@', alen))
        return -1;
    snprintf(ev->url, sizeof ev->url, "%.*s", (int)l, base);
    snprintf(ev->host, sizeof ev->host, "%.*s", (int)alen, auth);
    /* A base URL with a path ("https://vpce.../prefix") keeps it. */
    if (auth + alen < base + l) {
        char prefixed[400];
        snprintf(prefixed, sizeof prefixed, "%.*s", (int)(base + l - (auth + alen)), auth + alen);
        if (strlen(prefixed) + 1 >= sizeof ev->path)
            return -1;
        snprintf(ev->path, sizeof ev->path, "%s", prefixed);
    }
    return 0;
}

Evaluator *evaluator_new(const EvaluatorOptions *o, const EvalCredentials *creds,
                         const EvaluatorHooks *hooks)
{
    Evaluator *ev = calloc(1, sizeof *ev);
    if (!ev)
        return NULL;
    ev->opt = *o;
    if (!ev->opt.max_in_flight)
        ev->opt.max_in_flight = 1;
    if (!ev->opt.max_attempts)
        ev->opt.max_attempts = 1;
    if (!ev->opt.breaker_failures)
        ev->opt.breaker_failures = 1;
    ev->hooks = *hooks;
    ev->batch_size = o->batch_size ? o->batch_size : 1;
    ev->batch_wait_ms = o->batch_wait_ms;
    ev->rng = (unsigned)now_ms() ^ (unsigned)(uintptr_t)ev;
    pthread_mutex_init(&ev->mu, NULL);
    if (creds)
        ev->creds = *creds;
    if (!ev->creds.bearer[0] && !(ev->creds.access_key[0] && ev->creds.secret_key[0]))
        snprintf(ev->disabled, sizeof ev->disabled,
                 "no AWS credentials: set AWS_BEARER_TOKEN_BEDROCK, or AWS_ACCESS_KEY_ID and "
                 "AWS_SECRET_ACCESS_KEY");
    char *path = evalp_model_path(ev->opt.model_id);
    if (!path || set_endpoint(ev) != 0 || strlen(ev->path) + strlen(path) >= sizeof ev->path) {
        log_error("eval_config", "error=\"bad model id or endpoint\" model=\"%s\" endpoint=\"%s\"",
                  ev->opt.model_id, ev->opt.endpoint);
        free(path);
        evaluator_free(ev);
        return NULL;
    }
    strcat(ev->path, path);
    snprintf(ev->url + strlen(ev->url), sizeof ev->url - strlen(ev->url), "%s", path);
    free(path);
    ev->multi = curl_multi_init();
    if (!ev->multi) {
        evaluator_free(ev);
        return NULL;
    }
    curl_multi_setopt(ev->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    curl_multi_setopt(ev->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)ev->opt.max_in_flight);
    if (ev->disabled[0]) {
        log_warn("eval_disabled", "reason=\"%s\"", ev->disabled);
        return ev;
    }
    if (pthread_create(&ev->thread, NULL, evaluator_main, ev) != 0) {
        evaluator_free(ev);
        return NULL;
    }
    ev->started = 1;
    log_info("eval_enabled", "url=%s auth=%s batch_size=%u batch_wait_ms=%u", ev->url,
             ev->creds.bearer[0] ? "bearer" : "sigv4", ev->batch_size, ev->batch_wait_ms);
    return ev;
}

/* Ends every one-shot call (queued, in transfer, waiting to retry) with
 * "the server is shutting down". Evaluator thread stopped. */
static void fail_calls(Evaluator *ev)
{
    for (Req **pp = &ev->active; *pp;) {
        Req *r = *pp;
        if (r->kind != REQ_CALL) {
            pp = &r->active_next;
            continue;
        }
        req_end_transfer(ev, r); /* unlinks r */
        r->done(r->done_arg, NULL, "the server is shutting down");
        req_free(r);
    }
    for (Req **pp = &ev->waiting; *pp;) {
        Req *r = *pp;
        if (r->kind != REQ_CALL) {
            pp = &r->next;
            continue;
        }
        *pp = r->next;
        r->done(r->done_arg, NULL, "the server is shutting down");
        req_free(r);
    }
    pthread_mutex_lock(&ev->mu);
    CallItem *calls = ev->calls;
    ev->calls = ev->calls_tail = NULL;
    ev->n_calls = 0;
    pthread_mutex_unlock(&ev->mu);
    for (CallItem *c = calls, *n; c; c = n) {
        n = c->next;
        c->done(c->arg, NULL, "the server is shutting down");
        free(c->body);
        free(c);
    }
}

void evaluator_stop(Evaluator *ev)
{
    if (!ev || !ev->started)
        return;
    pthread_mutex_lock(&ev->mu);
    ev->stop = 1;
    pthread_mutex_unlock(&ev->mu);
    curl_multi_wakeup(ev->multi);
    pthread_join(ev->thread, NULL);
    ev->started = 0;
    /* Nothing is judged from now on: later enqueues are refused (a queued
     * session evaluation keeps its store marker and runs after a restart),
     * and one-shot callers hear now, while their RPC calls still exist. */
    atomic_store(&ev->stopped, 1);
    fail_calls(ev);
}

void evaluator_free(Evaluator *ev)
{
    if (!ev)
        return;
    evaluator_stop(ev);
    /* Abandon transfers and retries: judging is best effort at shutdown. */
    while (ev->active) {
        Req *r = ev->active;
        req_end_transfer(ev, r);
        req_free(r);
    }
    for (Req *r = ev->waiting, *n; r; r = n) {
        n = r->next;
        req_free(r);
    }
    while (ev->head)
        pend_remove(ev, ev->head);
    for (Dropped *d = ev->dropped, *n; d; d = n) {
        n = d->next;
        free(d);
    }
    fail_calls(ev);
    while (ev->cache_tail)
        cache_evict_tail(ev);
    if (ev->multi)
        curl_multi_cleanup(ev->multi);
    pthread_mutex_destroy(&ev->mu);
    free(ev);
}
