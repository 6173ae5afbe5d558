/*
 * watch.c — the watch hub (see watch.h).
 *
 * The hub thread keeps the newest revisions in a ring, each delta packed at
 * most twice (with and without steps), and wakes the senders. Each sender
 * thread owns the feeds of some connections and moves each of its watchers
 * forward from its next revision: from the ring when it is recent, from the
 * store's revision log when it is resuming from further back. Sharding by
 * connection keeps a connection's writes on one thread and lets the fan-out
 * use every core; the single-threaded fan-out cost about 12 us per
 * watcher-delta (docs/benchmarks-more.md).
 * A watcher's queue is bounded: when it is full its sender simply stops
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
#include <unistd.h>

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
#define MAX_SENDERS 8

typedef struct RingEntry {
    uint64_t rev;
    Norn__V1__SessionDelta *delta;
    /* Packed on first use by whichever sender needs it first. */
    RpcPacked *_Atomic full; /* with steps */
    RpcPacked *_Atomic lite; /* without steps */
} RingEntry;

/* A WatchSessions stream; touched only by its feed's sender once added. */
typedef struct Watcher {
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
    int done;
} Watcher;

struct WatchHub {
    Store *store;
    ConfigHolder *config;
    WatchLimits lim;
    pthread_t thread;
    int stop; /* under wake_mu */
    /* Newest committed revision we were told of. Commits publish it with an
     * atomic and a brief wake-up: ingest never waits on the fan-out. */
    _Atomic uint64_t published;
    pthread_mutex_t wake_mu; /* guards wake_pending; held only briefly */
    pthread_cond_t wake_cv;
    int wake_pending;
    /* Guards loaded, ring_first and the ring: the hub thread writes, the
     * senders read. */
    pthread_rwlock_t ring_lock;
    uint64_t loaded; /* newest revision in the ring */
    uint64_t ring_first;
    RingEntry ring[RING_SIZE];
    atomic_size_t n_watchers;
    _Atomic uint64_t delivered, cut_off;
    uint64_t last_trim_ms; /* hub thread only */
};

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/* ---- feeds and their sender threads ----------------------------------------------- */

struct WatchFeed {
    struct WatchFeed *prev, *next;
    struct Shard *shard;
    RpcCall *call;
    void *owner;
    WatchPump pump;
    void *ctx;
    void (*free_ctx)(void *);
    uint64_t full_since_ms; /* 0 = its queue has room; sender thread only */
};

typedef struct Shard {
    pthread_t thread;
    pthread_mutex_t mu; /* the feed list; held for a whole pass */
    WatchFeed *feeds;
    pthread_mutex_t wake_mu; /* kicks, passes, stop; held only briefly */
    pthread_cond_t wake_cv, pass_cv;
    uint64_t kicks;  /* passes asked for */
    uint64_t passes; /* the kick count the last finished pass began at */
    int stop;
} Shard;

typedef struct Senders {
    int refs;
    size_t n;
    Shard shards[MAX_SENDERS];
} Senders;

static pthread_mutex_t senders_mu = PTHREAD_MUTEX_INITIALIZER; /* the pool and its refs */
static Senders *senders;

static void timespec_in_ms(struct timespec *t, long ms)
{
    clock_gettime(CLOCK_REALTIME, t);
    t->tv_nsec += ms * 1000000L;
    while (t->tv_nsec >= 1000000000L) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000L;
    }
}

static void *shard_main(void *arg)
{
    Shard *s = arg;
    uint64_t seen = 0;
    pthread_mutex_lock(&s->wake_mu);
    while (!s->stop) {
        if (s->kicks == seen) {
            struct timespec until;
            timespec_in_ms(&until, TICK_MS); /* progress and stall checks */
            pthread_cond_timedwait(&s->wake_cv, &s->wake_mu, &until);
            if (s->stop)
                break;
        }
        uint64_t target = s->kicks;
        pthread_mutex_unlock(&s->wake_mu);
        uint64_t now = now_ms();
        pthread_mutex_lock(&s->mu);
        for (WatchFeed *f = s->feeds; f; f = f->next)
            f->pump(f->ctx, f, now);
        pthread_mutex_unlock(&s->mu);
        pthread_mutex_lock(&s->wake_mu);
        seen = target;
        s->passes = target;
        pthread_cond_broadcast(&s->pass_cv);
    }
    pthread_mutex_unlock(&s->wake_mu);
    return NULL;
}

static void shard_kick(Shard *s)
{
    pthread_mutex_lock(&s->wake_mu);
    s->kicks++;
    pthread_cond_signal(&s->wake_cv);
    pthread_mutex_unlock(&s->wake_mu);
}

static void shard_destroy(Shard *s)
{
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->wake_mu);
    pthread_cond_destroy(&s->wake_cv);
    pthread_cond_destroy(&s->pass_cv);
}

/* Half the cores by default (at least one): the completion-queue workers
 * need the rest for ingest. On 2 cores with 1,000 watchers, two senders
 * made RecordSteps p50 4.4-5.7 ms against 1.0-1.5 ms with one, for no gain
 * in delivery (docs/benchmarks-more.md). NORN_WATCH_SENDERS overrides. */
static size_t sender_count(void)
{
    const char *env = getenv("NORN_WATCH_SENDERS");
    long n = env ? strtol(env, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN) / 2;
    if (n < 1)
        n = 1;
    return n > MAX_SENDERS ? MAX_SENDERS : (size_t)n;
}

static void senders_stop(Senders *p, size_t started)
{
    for (size_t i = 0; i < started; i++) {
        Shard *s = &p->shards[i];
        pthread_mutex_lock(&s->wake_mu);
        s->stop = 1;
        pthread_cond_broadcast(&s->wake_cv);
        pthread_cond_broadcast(&s->pass_cv);
        pthread_mutex_unlock(&s->wake_mu);
        pthread_join(s->thread, NULL);
    }
    for (size_t i = 0; i < p->n; i++) {
        Shard *s = &p->shards[i];
        /* Feeds left here belong to calls the server has ended. */
        for (WatchFeed *f = s->feeds, *n; f; f = n) {
            n = f->next;
            f->free_ctx(f->ctx);
            rpc_call_unref(f->call);
            free(f);
        }
        shard_destroy(s);
    }
    free(p);
}

int watch_senders_acquire(void)
{
    int rc = 0;
    pthread_mutex_lock(&senders_mu);
    if (!senders) {
        Senders *p = calloc(1, sizeof *p);
        if (!p) {
            pthread_mutex_unlock(&senders_mu);
            return -1;
        }
        p->n = sender_count();
        for (size_t i = 0; i < p->n; i++) {
            Shard *s = &p->shards[i];
            pthread_mutex_init(&s->mu, NULL);
            pthread_mutex_init(&s->wake_mu, NULL);
            pthread_cond_init(&s->wake_cv, NULL);
            pthread_cond_init(&s->pass_cv, NULL);
        }
        for (size_t i = 0; i < p->n; i++) {
            if (pthread_create(&p->shards[i].thread, NULL, shard_main, &p->shards[i]) != 0) {
                log_error("watch_senders_failed", "reason=\"cannot start sender thread %zu\"", i);
                senders_stop(p, i);
                p = NULL;
                rc = -1;
                break;
            }
        }
        senders = p;
    }
    if (senders)
        senders->refs++;
    pthread_mutex_unlock(&senders_mu);
    return rc;
}

void watch_senders_release(void)
{
    pthread_mutex_lock(&senders_mu);
    Senders *p = senders;
    if (p && --p->refs == 0)
        senders = NULL;
    else
        p = NULL;
    pthread_mutex_unlock(&senders_mu);
    if (p)
        senders_stop(p, p->n);
}

void watch_senders_flush(void)
{
    Senders *p = senders; /* the caller holds a reference */
    uint64_t target[MAX_SENDERS];
    for (size_t i = 0; i < p->n; i++) {
        Shard *s = &p->shards[i];
        pthread_mutex_lock(&s->wake_mu);
        target[i] = ++s->kicks;
        pthread_cond_signal(&s->wake_cv);
        pthread_mutex_unlock(&s->wake_mu);
    }
    for (size_t i = 0; i < p->n; i++) {
        Shard *s = &p->shards[i];
        pthread_mutex_lock(&s->wake_mu);
        while (s->passes < target[i] && !s->stop)
            pthread_cond_wait(&s->pass_cv, &s->wake_mu);
        pthread_mutex_unlock(&s->wake_mu);
    }
}

static void senders_kick_all(void)
{
    Senders *p = senders;
    for (size_t i = 0; i < p->n; i++)
        shard_kick(&p->shards[i]);
}

static void feed_unlink_locked(Shard *s, WatchFeed *f)
{
    if (f->prev)
        f->prev->next = f->next;
    else
        s->feeds = f->next;
    if (f->next)
        f->next->prev = f->prev;
}

/* The call is over (adapter thread, no adapter locks held). */
static void feed_done(void *arg)
{
    WatchFeed *f = arg;
    Shard *s = f->shard;
    pthread_mutex_lock(&s->mu); /* waits for a pass that is pumping it */
    feed_unlink_locked(s, f);
    pthread_mutex_unlock(&s->mu);
    f->free_ctx(f->ctx);
    rpc_call_unref(f->call);
    free(f);
}

int watch_feed_add(RpcCall *call, void *owner, WatchPump pump, void *ctx, void (*free_ctx)(void *))
{
    WatchFeed *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    Senders *p = senders; /* the caller holds a reference */
    Shard *s = &p->shards[rpc_call_connection_key(call) % p->n];
    f->shard = s;
    f->call = call;
    f->owner = owner;
    f->pump = pump;
    f->ctx = ctx;
    f->free_ctx = free_ctx;
    rpc_call_ref(call);
    pthread_mutex_lock(&s->mu);
    f->next = s->feeds;
    if (s->feeds)
        s->feeds->prev = f;
    s->feeds = f;
    pthread_mutex_unlock(&s->mu);
    /* May run feed_done at once when the call is already over. */
    rpc_call_on_done(call, feed_done, f);
    shard_kick(s);
    return 0;
}

RpcCall *watch_feed_call(const WatchFeed *f)
{
    return f->call;
}

WatchRoom watch_feed_room(WatchFeed *f, size_t queue_bytes, int behind, uint64_t now)
{
    if (rpc_call_queued_bytes(f->call) < queue_bytes) {
        f->full_since_ms = 0;
        return WATCH_ROOM_OK;
    }
    if (!f->full_since_ms)
        f->full_since_ms = now;
    else if (behind && now - f->full_since_ms >= STALL_MS)
        return WATCH_ROOM_STALLED;
    return WATCH_ROOM_FULL;
}

void watch_feeds_drop(void *owner)
{
    Senders *p = senders;
    for (size_t i = 0; i < p->n; i++) {
        Shard *s = &p->shards[i];
        pthread_mutex_lock(&s->mu);
        for (WatchFeed *f = s->feeds, *n; f; f = n) {
            n = f->next;
            if (f->owner != owner)
                continue;
            feed_unlink_locked(s, f);
            f->free_ctx(f->ctx);
            rpc_call_unref(f->call);
            free(f);
        }
        pthread_mutex_unlock(&s->mu);
    }
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
    atomic_fetch_add(&h->cut_off, 1);
    log_info("watcher_cut_off", "resume_revision=%s reason=\"%s\"", rev, why);
}

static int queue_full(const WatchHub *h, Watcher *w)
{
    return rpc_call_queued_bytes(w->call) >= h->lim.queue_bytes;
}

static void sent(WatchHub *h, Watcher *w, RpcCode rc)
{
    if (rc == RPC_OK) {
        atomic_fetch_add(&h->delivered, 1);
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

/* The entry's packed form for this watcher, packed by the first sender
 * that needs it (senders race here only under the ring's read lock). */
static RpcPacked *ring_packed(RingEntry *e, int with_steps)
{
    RpcPacked *_Atomic *slot = with_steps ? &e->full : &e->lite;
    RpcPacked *p = atomic_load(slot);
    if (p)
        return p;
    RpcPacked *mine = pack_delta(e->delta, with_steps);
    if (!mine || atomic_compare_exchange_strong(slot, &p, mine))
        return mine;
    rpc_packed_free(mine); /* another sender was first */
    return p;
}

/* Called with the ring's read lock held. */
static void deliver(WatchHub *h, Watcher *w, WatchFeed *f, uint64_t now)
{
    while (!w->done && w->next_rev <= h->loaded) {
        WatchRoom room = watch_feed_room(f, h->lim.queue_bytes,
                                         h->loaded - w->next_rev + 1 > h->lim.max_lag, now);
        if (room == WATCH_ROOM_STALLED)
            cut_off(h, w, RPC_RESOURCE_EXHAUSTED, "watcher fell too far behind");
        if (room != WATCH_ROOM_OK)
            return; /* paced: it gets more when its queue drains */
        if (w->next_rev >= h->ring_first) {
            RingEntry *e = &h->ring[w->next_rev & (RING_SIZE - 1)];
            if (matches(w, e->delta)) {
                RpcPacked *p = ring_packed(e, w->include_steps);
                sent(h, w, p ? rpc_call_send_packed(w->call, p) : RPC_RESOURCE_EXHAUSTED);
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

/* The WatchPump of a WatchSessions stream. */
static void watcher_pump(void *ctx, WatchFeed *f, uint64_t now)
{
    Watcher *w = ctx;
    if (w->done)
        return;
    WatchHub *h = w->hub;
    pthread_rwlock_rdlock(&h->ring_lock);
    deliver(h, w, f, now);
    progress(h, w, now);
    pthread_rwlock_unlock(&h->ring_lock);
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
    rpc_packed_free(atomic_load(&e->full));
    rpc_packed_free(atomic_load(&e->lite));
    e->rev = d->revision;
    e->delta = d;
    atomic_store(&e->full, NULL);
    atomic_store(&e->lite, NULL);
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

/* Wakes the hub thread (new revision, stop). */
static void wake(WatchHub *h)
{
    pthread_mutex_lock(&h->wake_mu);
    h->wake_pending = 1;
    pthread_cond_signal(&h->wake_cv);
    pthread_mutex_unlock(&h->wake_mu);
}

/* Sleeps until a commit is published, stop, or a tick; 1 = stop. */
static int hub_wait(WatchHub *h)
{
    pthread_mutex_lock(&h->wake_mu);
    if (!h->stop && !h->wake_pending && h->loaded >= atomic_load(&h->published)) {
        struct timespec until;
        timespec_in_ms(&until, TICK_MS);
        pthread_cond_timedwait(&h->wake_cv, &h->wake_mu, &until);
    }
    h->wake_pending = 0;
    int stop = h->stop;
    pthread_mutex_unlock(&h->wake_mu);
    return stop;
}

static void *hub_main(void *arg)
{
    WatchHub *h = arg;
    Norn__V1__SessionDelta *batch[CATCH_UP_BATCH];
    /* Only this thread writes loaded and ring_first: it reads them unlocked. */
    while (!hub_wait(h)) {
        uint64_t from = h->loaded + 1, to = atomic_load(&h->published);
        if (from <= to && !atomic_load(&h->n_watchers)) {
            /* Nobody is watching: nothing to read. A watcher that comes later
             * and starts further back reads the log from the store. */
            pthread_rwlock_wrlock(&h->ring_lock);
            h->loaded = to;
            h->ring_first = to + 1;
            pthread_rwlock_unlock(&h->ring_lock);
        } else if (from <= to) {
            /* Read the new entries without the ring lock: senders go on. */
            Loader l = {batch, 0, CATCH_UP_BATCH};
            store_revlog_scan(h->store, from, CATCH_UP_BATCH, load_visit, &l);
            pthread_rwlock_wrlock(&h->ring_lock);
            for (size_t i = 0; i < l.n; i++) {
                if (batch[i]->revision == h->loaded + 1)
                    ring_put(h, batch[i]);
                else
                    norn__v1__session_delta__free_unpacked(batch[i], NULL);
            }
            pthread_rwlock_unlock(&h->ring_lock);
            if (l.n)
                senders_kick_all();
            if (h->loaded < atomic_load(&h->published))
                wake(h); /* more than one batch behind: go on at once */
        }
        uint64_t now = now_ms();
        if (now - h->last_trim_ms >= h->lim.trim_every_ms) {
            h->last_trim_ms = now;
            trim(h, h->loaded);
        }
    }
    return NULL;
}

/* ---- public ------------------------------------------------------------------------- */

WatchHub *watch_hub_new(Store *store, ConfigHolder *config, const WatchLimits *limits)
{
    if (watch_senders_acquire() != 0)
        return NULL;
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
    pthread_rwlock_init(&h->ring_lock, NULL);
    pthread_mutex_init(&h->wake_mu, NULL);
    pthread_cond_init(&h->wake_cv, NULL);
    if (pthread_create(&h->thread, NULL, hub_main, h) != 0) {
        pthread_rwlock_destroy(&h->ring_lock);
        pthread_mutex_destroy(&h->wake_mu);
        pthread_cond_destroy(&h->wake_cv);
        free(h);
        watch_senders_release();
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
    pthread_mutex_lock(&h->wake_mu);
    h->stop = 1;
    pthread_mutex_unlock(&h->wake_mu);
    wake(h);
    pthread_join(h->thread, NULL);
    /* Watchers still listed belong to calls the server has ended. */
    watch_feeds_drop(h);
    for (size_t i = 0; i < RING_SIZE; i++) {
        if (h->ring[i].delta)
            norn__v1__session_delta__free_unpacked(h->ring[i].delta, NULL);
        rpc_packed_free(atomic_load(&h->ring[i].full));
        rpc_packed_free(atomic_load(&h->ring[i].lite));
    }
    pthread_rwlock_destroy(&h->ring_lock);
    pthread_mutex_destroy(&h->wake_mu);
    pthread_cond_destroy(&h->wake_cv);
    free(h);
    watch_senders_release();
}

void watch_hub_publish(void *hub, uint64_t revision)
{
    WatchHub *h = hub;
    uint64_t cur = atomic_load(&h->published);
    while (revision > cur && !atomic_compare_exchange_weak(&h->published, &cur, revision))
        ;
    wake(h);
}

/* The feed's free_ctx: the call is over. */
static void watcher_gone(void *arg)
{
    Watcher *w = arg;
    atomic_fetch_sub(&w->hub->n_watchers, 1);
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
    /* Counted before `published` is read: the hub then loads what this
     * watcher needs instead of skipping it as unwatched. */
    atomic_fetch_add(&h->n_watchers, 1);
    w->next_rev = start ? start : atomic_load(&h->published) + 1;
    if (watch_feed_add(call, h, watcher_pump, w, watcher_gone) != 0) {
        watcher_gone(w);
        return rpc_fail(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
    }
    return RPC_PENDING;
}

void watch_hub_stats(WatchHub *h, WatchStats *out)
{
    out->watchers = atomic_load(&h->n_watchers);
    out->delivered = atomic_load(&h->delivered);
    out->cut_off = atomic_load(&h->cut_off);
    pthread_rwlock_rdlock(&h->ring_lock);
    out->revision = h->loaded;
    pthread_rwlock_unlock(&h->ring_lock);
}
