/*
 * watch.c — the watch hub (see watch.h).
 *
 * One thread owns delivery. It keeps the newest revisions in a ring, each
 * delta packed at most twice (with and without steps), and moves every
 * watcher forward from its next revision: from the ring when it is recent,
 * from the store's revision log when it is resuming from further back.
 * A watcher's queue is bounded: when it is full the hub simply stops
 * feeding that watcher (others go on); when the watcher then lags more than
 * max_lag revisions, its stream ends with RESOURCE_EXHAUSTED and the
 * revision to resume from.
 */
#include "watch.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "keys.h"
#include "ids.h"
#include "log.h"
#include "msg.h"
#include "norn/v1/session_service.grpc-c.h"

#define RING_SIZE 4096 /* power of two */
#define MAX_WATCH_IDS 100
#define MAX_NAME 256
#define TICK_MS 50
#define CATCH_UP_BATCH 256
/* A watcher whose queue stays full this long while it lags more than
 * max_lag revisions is not reading: it is cut off. One that reads, however
 * far behind it starts, drains its queue and catches up. */
#define STALL_MS 1000

typedef struct RingEntry {
    uint64_t rev;
    Norn__V1__SessionDelta *delta;
    RpcPacked *full; /* with steps */
    RpcPacked *lite; /* without steps */
} RingEntry;

typedef struct Watcher {
    struct Watcher *prev, *next;
    WatchHub *hub;
    RpcCall *call;
    char **ids;
    size_t n_ids;
    char *agent;
    char *swarm;
    int include_steps;
    uint32_t progress_ms;
    uint64_t next_rev;
    uint64_t last_sent_ms;
    uint64_t full_since_ms; /* 0 = its queue has room */
    int done;
} Watcher;

struct WatchHub {
    Store *store;
    ConfigHolder *config;
    WatchLimits lim;
    pthread_t thread;
    pthread_mutex_t mu;
    int stop;
    /* Newest committed revision we were told of. Commits publish it without
     * the hub lock, which the fan-out holds: ingest never waits on watchers. */
    _Atomic uint64_t published;
    pthread_mutex_t wake_mu; /* guards wake_pending; held only briefly */
    pthread_cond_t wake_cv;
    int wake_pending;
    uint64_t loaded; /* newest revision in the ring */
    uint64_t ring_first;
    RingEntry ring[RING_SIZE];
    Watcher *watchers;
    size_t n_watchers;
    uint64_t delivered, cut_off;
    uint64_t last_trim_ms;
};

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

void watch_limits_default(WatchLimits *l)
{
    l->queue_bytes = 256 * 1024;
    l->max_lag = RING_SIZE;
    l->max_initial = 10000;
    l->trim_every_ms = 5000;
}

/* ---- matching and sending ------------------------------------------------------- */

static int matches(const Watcher *w, const Norn__V1__SessionDelta *d)
{
    const Norn__V1__Session *s = d->session;
    if (!s)
        return 0;
    if (w->agent && strcmp(w->agent, s->agent_name) != 0)
        return 0;
    if (w->swarm && strcmp(w->swarm, s->swarm_id) != 0)
        return 0;
    if (!w->n_ids)
        return 1;
    for (size_t i = 0; i < w->n_ids; i++)
        if (strcmp(w->ids[i], s->session_id) == 0)
            return 1;
    return 0;
}

static RpcPacked *pack_delta(const Norn__V1__SessionDelta *d, int with_steps)
{
    Norn__V1__SessionDelta copy = *d;
    if (!with_steps) {
        copy.n_steps = 0;
        copy.steps = NULL;
    }
    Norn__V1__WatchSessionsResponse r = NORN__V1__WATCH_SESSIONS_RESPONSE__INIT;
    r.event_case = NORN__V1__WATCH_SESSIONS_RESPONSE__EVENT_DELTA;
    r.delta = &copy;
    return rpc_packed_new(&r.base);
}

static void cut_off(WatchHub *h, Watcher *w, RpcCode code, const char *why)
{
    char rev[32];
    snprintf(rev, sizeof rev, "%llu", (unsigned long long)w->next_rev);
    rpc_call_add_trailer(w->call, "norn-resume-revision", rev);
    char msg[200];
    snprintf(msg, sizeof msg, "%s; resume from revision %s", why, rev);
    rpc_call_finish(w->call, code, msg);
    w->done = 1;
    h->cut_off++;
    log_info("watcher_cut_off", "resume_revision=%s reason=\"%s\"", rev, why);
}

static int queue_full(const WatchHub *h, Watcher *w)
{
    return rpc_call_queued_bytes(w->call) >= h->lim.queue_bytes;
}

static void sent(WatchHub *h, Watcher *w, RpcCode rc)
{
    if (rc == RPC_OK) {
        h->delivered++;
        w->last_sent_ms = now_ms();
    } else if (rc == RPC_CANCELLED) {
        w->done = 1; /* the call is over; on_done removes it */
    } else {
        cut_off(h, w, RPC_RESOURCE_EXHAUSTED, "watcher is not reading its stream");
    }
}

/* Entries older than the ring come from the store, packed for this watcher. */
typedef struct CatchUp {
    WatchHub *h;
    Watcher *w;
    int gap;
} CatchUp;

static int catch_up_visit(void *arg, Norn__V1__SessionDelta *d)
{
    CatchUp *cu = arg;
    Watcher *w = cu->w;
    if (d->revision != w->next_rev) {
        cu->gap = 1; /* trimmed under us */
        norn__v1__session_delta__free_unpacked(d, NULL);
        return 0;
    }
    if (matches(w, d)) {
        RpcPacked *p = pack_delta(d, w->include_steps);
        sent(cu->h, w, p ? rpc_call_send_packed(w->call, p) : RPC_RESOURCE_EXHAUSTED);
        rpc_packed_free(p);
    }
    w->next_rev++;
    norn__v1__session_delta__free_unpacked(d, NULL);
    return !w->done && !queue_full(cu->h, w) && w->next_rev < cu->h->ring_first;
}

static void deliver(WatchHub *h, Watcher *w)
{
    while (!w->done && w->next_rev <= h->loaded) {
        if (queue_full(h, w)) {
            uint64_t now = now_ms();
            if (!w->full_since_ms)
                w->full_since_ms = now;
            else if (h->loaded - w->next_rev + 1 > h->lim.max_lag &&
                     now - w->full_since_ms >= STALL_MS)
                cut_off(h, w, RPC_RESOURCE_EXHAUSTED, "watcher fell too far behind");
            return; /* paced: it gets more when its queue drains */
        }
        w->full_since_ms = 0;
        if (w->next_rev >= h->ring_first) {
            RingEntry *e = &h->ring[w->next_rev & (RING_SIZE - 1)];
            if (matches(w, e->delta)) {
                RpcPacked **pp = w->include_steps ? &e->full : &e->lite;
                if (!*pp)
                    *pp = pack_delta(e->delta, w->include_steps);
                sent(h, w, *pp ? rpc_call_send_packed(w->call, *pp) : RPC_RESOURCE_EXHAUSTED);
            }
            w->next_rev++;
            continue;
        }
        CatchUp cu = {h, w, 0};
        uint64_t before = w->next_rev;
        if (store_revlog_scan(h->store, w->next_rev, CATCH_UP_BATCH, catch_up_visit, &cu) !=
                NORN_OK ||
            cu.gap || (w->next_rev == before && !w->done)) {
            cut_off(h, w, RPC_RESOURCE_EXHAUSTED, "the revisions it needs were compacted");
            return;
        }
    }
}

static void progress(WatchHub *h, Watcher *w, uint64_t now)
{
    if (w->done || !w->progress_ms || w->next_rev <= h->loaded ||
        now - w->last_sent_ms < w->progress_ms || rpc_call_queued_bytes(w->call) > 0)
        return;
    Norn__V1__WatchProgress p = NORN__V1__WATCH_PROGRESS__INIT;
    p.revision = w->next_rev - 1;
    Norn__V1__WatchSessionsResponse r = NORN__V1__WATCH_SESSIONS_RESPONSE__INIT;
    r.event_case = NORN__V1__WATCH_SESSIONS_RESPONSE__EVENT_PROGRESS;
    r.progress = &p;
    sent(h, w, rpc_call_send(w->call, &r.base));
}

/* ---- the revision log: load into the ring, trim by count and age --------------- */

typedef struct Loader {
    Norn__V1__SessionDelta **items;
    size_t n, cap;
} Loader;

static int load_visit(void *arg, Norn__V1__SessionDelta *d)
{
    Loader *l = arg;
    if (l->n == l->cap) {
        norn__v1__session_delta__free_unpacked(d, NULL);
        return 0;
    }
    l->items[l->n++] = d;
    return 1;
}

static void ring_put(WatchHub *h, Norn__V1__SessionDelta *d)
{
    RingEntry *e = &h->ring[d->revision & (RING_SIZE - 1)];
    if (e->delta)
        norn__v1__session_delta__free_unpacked(e->delta, NULL);
    rpc_packed_free(e->full);
    rpc_packed_free(e->lite);
    e->rev = d->revision;
    e->delta = d;
    e->full = e->lite = NULL;
    h->loaded = d->revision;
    if (h->loaded >= RING_SIZE && h->ring_first < h->loaded - RING_SIZE + 1)
        h->ring_first = h->loaded - RING_SIZE + 1;
}

typedef struct AgeScan {
    uint64_t cutoff_us;
    uint64_t keep_from;
} AgeScan;

static int age_visit(void *arg, Norn__V1__SessionDelta *d)
{
    AgeScan *a = arg;
    uint64_t t = d->session ? msg_micros(d->session->updated_at) : 0;
    /* An entry without a time cannot be judged; it does not stop the trim. */
    int older = !t || t < a->cutoff_us;
    if (older)
        a->keep_from = d->revision + 1;
    norn__v1__session_delta__free_unpacked(d, NULL);
    return older;
}

static void trim(WatchHub *h, uint64_t current)
{
    Norn__V1__Config cfg;
    config_get(h->config, &cfg);
    uint64_t oldest = store_revlog_oldest(h->store);
    if (!oldest)
        return;
    uint64_t keep_from = oldest;
    if (current > cfg.revlog_max_entries && current - cfg.revlog_max_entries + 1 > keep_from)
        keep_from = current - cfg.revlog_max_entries + 1;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now_us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    AgeScan a = {now_us - (uint64_t)cfg.revlog_max_age_seconds * 1000000u, keep_from};
    store_revlog_scan(h->store, keep_from, 10000, age_visit, &a);
    keep_from = a.keep_from;
    if (keep_from > current) /* always keep the newest entry: it names the oldest */
        keep_from = current;
    if (keep_from <= oldest)
        return;
    StoreTxn *t = store_txn_begin(h->store);
    store_txn_trim_revlog(t, keep_from);
    char err[200];
    if (store_txn_commit(t, err, sizeof err) != NORN_OK)
        log_warn("revlog_trim_failed", "error=\"%s\"", err);
    else
        log_debug("revlog_trimmed", "keep_from=%llu", (unsigned long long)keep_from);
}

/* Wakes the hub thread (new revision, new watcher, stop). */
static void wake(WatchHub *h)
{
    pthread_mutex_lock(&h->wake_mu);
    h->wake_pending = 1;
    pthread_cond_signal(&h->wake_cv);
    pthread_mutex_unlock(&h->wake_mu);
}

static void *hub_main(void *arg)
{
    WatchHub *h = arg;
    Norn__V1__SessionDelta *batch[CATCH_UP_BATCH];
    pthread_mutex_lock(&h->mu);
    while (!h->stop) {
        if (h->loaded >= atomic_load(&h->published)) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += TICK_MS * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            /* Sleep without the hub lock, so watchers can come and go. */
            pthread_mutex_unlock(&h->mu);
            pthread_mutex_lock(&h->wake_mu);
            if (!h->wake_pending && h->loaded >= atomic_load(&h->published))
                pthread_cond_timedwait(&h->wake_cv, &h->wake_mu, &until);
            h->wake_pending = 0;
            pthread_mutex_unlock(&h->wake_mu);
            pthread_mutex_lock(&h->mu);
            if (h->stop)
                break;
        }
        uint64_t from = h->loaded + 1, to = atomic_load(&h->published);
        if (from <= to && !h->watchers) {
            /* Nobody is watching: nothing to read. A watcher that comes later
             * and starts further back reads the log from the store. */
            h->loaded = to;
            h->ring_first = to + 1;
        } else if (from <= to) {
            /* Read the new entries without holding the hub lock. */
            pthread_mutex_unlock(&h->mu);
            Loader l = {batch, 0, CATCH_UP_BATCH};
            store_revlog_scan(h->store, from, CATCH_UP_BATCH, load_visit, &l);
            pthread_mutex_lock(&h->mu);
            for (size_t i = 0; i < l.n; i++) {
                if (batch[i]->revision == h->loaded + 1)
                    ring_put(h, batch[i]);
                else
                    norn__v1__session_delta__free_unpacked(batch[i], NULL);
            }
        }
        uint64_t now = now_ms();
        for (Watcher *w = h->watchers; w; w = w->next) {
            deliver(h, w);
            progress(h, w, now);
        }
        if (now - h->last_trim_ms >= h->lim.trim_every_ms) {
            h->last_trim_ms = now;
            uint64_t current = h->loaded;
            pthread_mutex_unlock(&h->mu);
            trim(h, current);
            pthread_mutex_lock(&h->mu);
        }
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

/* ---- public ------------------------------------------------------------------------- */

WatchHub *watch_hub_new(Store *store, ConfigHolder *config, const WatchLimits *limits)
{
    WatchHub *h = msg_alloc(sizeof *h);
    h->store = store;
    h->config = config;
    if (limits)
        h->lim = *limits;
    else
        watch_limits_default(&h->lim);
    if (h->lim.max_lag > RING_SIZE)
        h->lim.max_lag = RING_SIZE;
    StoreCounters c;
    uint64_t current = 0;
    store_counters(store, &c, &current);
    atomic_init(&h->published, current);
    h->loaded = current;
    h->ring_first = h->loaded + 1;
    h->last_trim_ms = now_ms();
    pthread_mutex_init(&h->mu, NULL);
    pthread_mutex_init(&h->wake_mu, NULL);
    pthread_cond_init(&h->wake_cv, NULL);
    if (pthread_create(&h->thread, NULL, hub_main, h) != 0) {
        pthread_mutex_destroy(&h->mu);
        pthread_mutex_destroy(&h->wake_mu);
        pthread_cond_destroy(&h->wake_cv);
        free(h);
        return NULL;
    }
    return h;
}

static void watcher_free(Watcher *w)
{
    for (size_t i = 0; i < w->n_ids; i++)
        free(w->ids[i]);
    free(w->ids);
    free(w->agent);
    free(w->swarm);
    free(w);
}

void watch_hub_free(WatchHub *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    h->stop = 1;
    pthread_mutex_unlock(&h->mu);
    wake(h);
    pthread_join(h->thread, NULL);
    /* Watchers still listed belong to calls the server has ended. */
    for (Watcher *w = h->watchers, *n; w; w = n) {
        n = w->next;
        rpc_call_unref(w->call);
        watcher_free(w);
    }
    for (size_t i = 0; i < RING_SIZE; i++) {
        if (h->ring[i].delta)
            norn__v1__session_delta__free_unpacked(h->ring[i].delta, NULL);
        rpc_packed_free(h->ring[i].full);
        rpc_packed_free(h->ring[i].lite);
    }
    pthread_mutex_destroy(&h->mu);
    pthread_mutex_destroy(&h->wake_mu);
    pthread_cond_destroy(&h->wake_cv);
    free(h);
}

void watch_hub_publish(void *hub, uint64_t revision)
{
    WatchHub *h = hub;
    uint64_t cur = atomic_load(&h->published);
    while (revision > cur && !atomic_compare_exchange_weak(&h->published, &cur, revision))
        ;
    wake(h);
}

static void watcher_done(void *arg)
{
    Watcher *w = arg;
    WatchHub *h = w->hub;
    pthread_mutex_lock(&h->mu);
    if (w->prev)
        w->prev->next = w->next;
    else
        h->watchers = w->next;
    if (w->next)
        w->next->prev = w->prev;
    h->n_watchers--;
    pthread_mutex_unlock(&h->mu);
    rpc_call_unref(w->call);
    watcher_free(w);
}

typedef struct InitialCtx {
    RpcCall *call;
    const Watcher *w;
    RpcCode rc;
    size_t sent, max;
} InitialCtx;

static int initial_visit(void *arg, Norn__V1__Session *s)
{
    InitialCtx *ic = arg;
    const Watcher *w = ic->w;
    if ((!w->agent || strcmp(w->agent, s->agent_name) == 0) &&
        (!w->swarm || strcmp(w->swarm, s->swarm_id) == 0)) {
        Norn__V1__WatchSessionsResponse r = NORN__V1__WATCH_SESSIONS_RESPONSE__INIT;
        r.event_case = NORN__V1__WATCH_SESSIONS_RESPONSE__EVENT_INITIAL;
        r.initial = s;
        ic->rc = rpc_call_send(ic->call, &r.base);
        ic->sent++;
    }
    norn__v1__session__free_unpacked(s, NULL);
    return ic->rc == RPC_OK && ic->sent < ic->max;
}

/* A consistent snapshot of the matching sessions as of one revision, then
 * initial_end with that revision; deltas follow from the next one. */
static RpcCode send_initial(WatchHub *h, RpcCall *call, const Watcher *w, uint64_t *rev_out)
{
    StoreSnapshot *snap = store_snapshot_open(h->store, rev_out);
    if (!snap)
        return rpc_fail(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
    InitialCtx ic = {call, w, RPC_OK, 0, h->lim.max_initial};
    if (w->n_ids) {
        for (size_t i = 0; i < w->n_ids && ic.rc == RPC_OK; i++) {
            Norn__V1__Session *s = NULL;
            if (store_session_get_at(h->store, snap, w->ids[i], &s) == NORN_OK)
                initial_visit(&ic, s);
        }
    } else {
        StoreListQuery q = {0};
        q.index = w->swarm ? STORE_BY_SWARM : w->agent ? STORE_BY_AGENT : STORE_BY_TIME;
        q.name = w->swarm ? w->swarm : w->agent;
        q.snapshot = snap;
        q.max_scan = 1024;
        uint8_t last[KEY_MAX];
        size_t last_len = 0;
        int more = 1;
        while (more && ic.rc == RPC_OK && ic.sent < ic.max) {
            q.resume = last_len ? last : NULL;
            q.resume_len = last_len;
            if (store_sessions_scan(h->store, &q, initial_visit, &ic, last, &last_len, &more) !=
                NORN_OK) {
                ic.rc = RPC_UNAVAILABLE;
                break;
            }
        }
    }
    store_snapshot_close(h->store, snap);
    if (ic.rc == RPC_UNAVAILABLE)
        return rpc_fail(call, RPC_UNAVAILABLE, "storage: cannot read the snapshot");
    if (ic.rc != RPC_OK)
        return rpc_fail(call, RPC_RESOURCE_EXHAUSTED,
                        "snapshot larger than the stream's buffer: narrow the watch's filter");
    Norn__V1__WatchInitialEnd end = NORN__V1__WATCH_INITIAL_END__INIT;
    end.revision = *rev_out;
    Norn__V1__WatchSessionsResponse e = NORN__V1__WATCH_SESSIONS_RESPONSE__INIT;
    e.event_case = NORN__V1__WATCH_SESSIONS_RESPONSE__EVENT_INITIAL_END;
    e.initial_end = &end;
    if (rpc_call_send(call, &e.base) != RPC_OK)
        return rpc_fail(call, RPC_RESOURCE_EXHAUSTED, "snapshot larger than the stream's buffer");
    return RPC_OK;
}

RpcCode watch_hub_watch(WatchHub *h, RpcCall *call, const Norn__V1__WatchSessionsRequest *req)
{
    if (req->n_session_ids > MAX_WATCH_IDS)
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "session_ids: at most %d", MAX_WATCH_IDS);
    for (size_t i = 0; i < req->n_session_ids; i++)
        if (!id_valid(req->session_ids[i]))
            return rpc_fail(call, RPC_INVALID_ARGUMENT,
                            "session_ids[%zu]: must match [A-Za-z0-9._:-]{1,%d}", i, ID_MAX_LEN);
    if (strlen(req->agent_name) > MAX_NAME)
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "agent_name: at most %d bytes", MAX_NAME);
    if (req->swarm_id[0] && !id_valid(req->swarm_id))
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "swarm_id: must match [A-Za-z0-9._:-]{1,%d}",
                        ID_MAX_LEN);
    if (req->progress_interval_ms &&
        (req->progress_interval_ms < 100 || req->progress_interval_ms > 3600000))
        return rpc_fail(call, RPC_INVALID_ARGUMENT,
                        "progress_interval_ms: 0 (none) or between 100 and 3600000");

    Watcher *w = msg_alloc(sizeof *w);
    w->hub = h;
    w->call = call;
    w->include_steps = req->include_steps;
    w->progress_ms = req->progress_interval_ms;
    w->agent = req->agent_name[0] ? msg_strdup(req->agent_name) : NULL;
    w->swarm = req->swarm_id[0] ? msg_strdup(req->swarm_id) : NULL;
    for (size_t i = 0; i < req->n_session_ids; i++)
        msg_append_str(&w->ids, &w->n_ids, req->session_ids[i]);
    w->last_sent_ms = now_ms();

    uint64_t start = 0;
    if (req->send_initial) {
        uint64_t rev = 0;
        RpcCode rc = send_initial(h, call, w, &rev);
        if (rc != RPC_OK) {
            watcher_free(w);
            return rc;
        }
        start = rev + 1;
    } else if (req->start_revision) {
        StoreCounters c;
        uint64_t current;
        store_counters(h->store, &c, &current);
        uint64_t oldest = store_revlog_oldest(h->store);
        if (!oldest)
            oldest = current + 1;
        if (req->start_revision < oldest) {
            char buf[32];
            snprintf(buf, sizeof buf, "%llu", (unsigned long long)oldest);
            rpc_call_add_trailer(call, "norn-oldest-revision", buf);
            watcher_free(w);
            return rpc_fail(call, RPC_OUT_OF_RANGE,
                            "start_revision: %llu is compacted; the oldest retained is %llu",
                            (unsigned long long)req->start_revision, (unsigned long long)oldest);
        }
        start = req->start_revision;
    }
    rpc_call_ref(call);
    pthread_mutex_lock(&h->mu);
    w->next_rev = start ? start : atomic_load(&h->published) + 1;
    w->next = h->watchers;
    if (h->watchers)
        h->watchers->prev = w;
    h->watchers = w;
    h->n_watchers++;
    pthread_mutex_unlock(&h->mu);
    wake(h);
    rpc_call_on_done(call, watcher_done, w);
    return RPC_PENDING;
}

void watch_hub_stats(WatchHub *h, WatchStats *out)
{
    pthread_mutex_lock(&h->mu);
    out->watchers = h->n_watchers;
    out->delivered = h->delivered;
    out->cut_off = h->cut_off;
    out->revision = h->loaded;
    pthread_mutex_unlock(&h->mu);
}
