/* retention.c — see retention.h. */
#include "retention.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "keys.h"
#include "log.h"
#include "msg.h"

#define CHUNK 200
#define FIRST_PASS_MS 2000

struct Retention {
    Store *store;
    ConfigHolder *config;
    SessionService *sessions;
    int64_t interval_ms;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
};

typedef struct Old {
    Norn__V1__Session **items;
    size_t n;
    uint64_t cutoff;
} Old;

static int old_visit(void *arg, Norn__V1__Session *s)
{
    Old *o = arg;
    if (o->n < CHUNK && msg_micros(s->started_at) < o->cutoff) {
        o->items[o->n++] = s;
        return o->n < CHUNK;
    }
    norn__v1__session__free_unpacked(s, NULL);
    return o->n < CHUNK;
}

/* Sessions started before the cutoff: the time index lists newest first,
 * so the scan starts at the cutoff and everything it meets is old. */
static uint64_t purge_sessions(Retention *r, uint64_t cutoff)
{
    uint64_t removed = 0;
    for (;;) {
        Old o = {msg_alloc(CHUNK * sizeof(Norn__V1__Session *)), 0, cutoff};
        StoreTxn *t = store_txn_begin(r->store);
        StoreListQuery q = {0};
        q.index = STORE_BY_TIME;
        q.before_micros = cutoff;
        q.max_scan = CHUNK;
        uint8_t last[KEY_MAX];
        size_t last_len;
        int more;
        int rc = store_sessions_scan(r->store, &q, old_visit, &o, last, &last_len, &more);
        for (size_t i = 0; i < o.n; i++)
            session_service_delete_in_txn(r->sessions, t, o.items[i]);
        size_t n = o.n;
        for (size_t i = 0; i < o.n; i++)
            norn__v1__session__free_unpacked(o.items[i], NULL);
        free(o.items);
        if (rc != NORN_OK || n == 0) {
            store_txn_abort(t);
            break;
        }
        char err[300];
        if (session_service_commit(r->sessions, t, err, sizeof err) != 0) {
            log_warn("retention_failed", "error=\"%s\"", err);
            break;
        }
        removed += n;
    }
    return removed;
}

typedef struct OldEvents {
    uint8_t keys[CHUNK][16];
    size_t n;
    uint64_t cutoff;
} OldEvents;

static int event_visit(void *arg, Norn__V1__AuditEvent *ev, const uint8_t key[16])
{
    OldEvents *o = arg;
    norn__v1__audit_event__free_unpacked(ev, NULL);
    if (key_get_u64(key) < o->cutoff && o->n < CHUNK)
        memcpy(o->keys[o->n++], key, 16);
    return o->n < CHUNK;
}

static uint64_t purge_events(Retention *r, uint64_t cutoff)
{
    uint64_t removed = 0;
    OldEvents *o = msg_alloc(sizeof *o);
    for (;;) {
        o->n = 0;
        o->cutoff = cutoff;
        StoreAuditQuery q = {0};
        q.index = STORE_AUDIT_BY_TIME;
        q.before_micros = cutoff;
        q.max_scan = CHUNK;
        uint8_t last[16];
        int more;
        if (store_audit_scan(r->store, &q, event_visit, o, last, &more) != NORN_OK || !o->n)
            break;
        StoreTxn *t = store_txn_begin(r->store);
        for (size_t i = 0; i < o->n; i++)
            store_txn_delete_audit(t, o->keys[i]);
        char err[300];
        if (store_txn_commit(t, err, sizeof err) != NORN_OK) {
            log_warn("retention_failed", "error=\"%s\"", err);
            break;
        }
        removed += o->n;
    }
    free(o);
    return removed;
}

void retention_run_once(Retention *r, uint64_t *sessions, uint64_t *events)
{
    Norn__V1__Config cfg;
    config_get(r->config, &cfg);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    uint64_t age = (uint64_t)cfg.log_retention_days * 86400u * 1000000u;
    /* 0 days keeps everything. */
    uint64_t cutoff = cfg.log_retention_days && now > age ? now - age : 0;
    *sessions = cutoff ? purge_sessions(r, cutoff) : 0;
    *events = cutoff ? purge_events(r, cutoff) : 0;
    if (*sessions || *events)
        log_info("retention", "days=%u sessions_removed=%llu events_removed=%llu",
                 cfg.log_retention_days, (unsigned long long)*sessions,
                 (unsigned long long)*events);
}

static void *retention_main(void *arg)
{
    Retention *r = arg;
    int64_t wait_ms = FIRST_PASS_MS;
    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += wait_ms / 1000;
        until.tv_nsec += (wait_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&r->cv, &r->mu, &until);
        if (r->stop)
            break;
        pthread_mutex_unlock(&r->mu);
        uint64_t s, e;
        retention_run_once(r, &s, &e);
        pthread_mutex_lock(&r->mu);
        wait_ms = r->interval_ms;
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

Retention *retention_start(Store *store, ConfigHolder *config, SessionService *sessions,
                           int64_t interval_ms)
{
    Retention *r = msg_alloc(sizeof *r);
    r->store = store;
    r->config = config;
    r->sessions = sessions;
    r->interval_ms = interval_ms > 0 ? interval_ms : 600000;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if (pthread_create(&r->thread, NULL, retention_main, r) != 0) {
        free(r);
        return NULL;
    }
    return r;
}

void retention_stop(Retention *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->stop = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}
