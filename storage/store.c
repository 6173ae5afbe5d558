/*
 * store.c — RocksDB behind store.h.
 *
 * Options chosen on purpose:
 *  - WAL on (the default); sync per commit only when asked, since a commit
 *    that reached the WAL survives a process crash without fsync;
 *  - one LRU block cache shared by every column family, so the cache budget
 *    is one number;
 *  - bloom filters on the point-lookup families (sessions, tool_uses);
 *  - prefix scans bounded with iterate_upper_bound, which works for every
 *    prefix length (session ids vary in length).
 */
#include "store.h"

#include <pthread.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "keys.h"

enum {
    CF_DEFAULT,
    CF_SESSIONS,
    CF_STEPS,
    CF_TOOL_USES,
    CF_ISSUES,
    CF_BY_TIME,
    CF_BY_AGENT,
    CF_BY_SWARM,
    CF_AUDIT,
    CF_AUDIT_IDX,
    CF_AGENTS,
    CF_RUNS,
    CF_REVLOG,
    CF_META,
    CF_BY_AGENT_ID,
    CF_SWARMS,
    CF_SWARMS_BY_TIME,
    CF_COUNT
};

static const char *const cf_names[CF_COUNT] = {
    "default",
    "sessions",
    "steps",
    "tool_uses",
    "issues",
    "sessions_by_time",
    "sessions_by_agent",
    "sessions_by_swarm",
    "audit",
    "audit_idx",
    "agents",
    "runs",
    "revlog",
    "meta",
    "sessions_by_agent_id",
    "swarms",
    "swarms_by_time",
};

#define META_REVISION "revision"
#define META_COUNTERS "counters"
#define META_AUDIT_SEQ "audit_seq"
#define META_CONFIG "config"
#define COUNTER_WORDS (sizeof(StoreCounters) / sizeof(uint64_t))

struct Store {
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_options_t *cf_opts[CF_COUNT];
    rocksdb_block_based_table_options_t *table_opts[CF_COUNT];
    rocksdb_cache_t *cache;
    rocksdb_column_family_handle_t *cf[CF_COUNT];
    rocksdb_writeoptions_t *wopts;
    rocksdb_readoptions_t *ropts;

    pthread_mutex_t write_mu; /* held by an open transaction */
    pthread_mutex_t state_mu; /* guards the committed copies below */
    uint64_t revision;        /* last committed */
    uint64_t audit_seq;
    StoreCounters counters;
};

struct StoreSnapshot {
    const rocksdb_snapshot_t *snap;
    rocksdb_readoptions_t *ro;
};

struct StoreTxn {
    Store *s;
    rocksdb_writebatch_t *wb;
    uint64_t revision;
    uint64_t audit_seq;
    uint64_t now_micros;
    StoreCounters counters;
    int failed;
    uint64_t n_deltas; /* revisions this transaction consumes */
    char **deleted;    /* sessions deleted in this transaction */
    size_t n_deleted;
};

void store_options_init(StoreOptions *o)
{
    o->block_cache_bytes = 64u << 20;
    o->sync_writes = 0;
}

uint64_t store_ts_micros(const Google__Protobuf__Timestamp *ts)
{
    if (!ts || ts->seconds < 0)
        return 0;
    return (uint64_t)ts->seconds * 1000000u + (uint64_t)(ts->nanos / 1000);
}

static uint64_t now_micros(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

/* ---- low-level helpers ---------------------------------------------------- */

static char *get_raw_at(Store *s, const StoreSnapshot *snap, int cf, const Key *k, size_t *len,
                        char **err)
{
    return rocksdb_get_cf(s->db, snap ? snap->ro : s->ropts, s->cf[cf], (const char *)k->b, k->len,
                          len, err);
}

static char *get_raw(Store *s, int cf, const Key *k, size_t *len, char **err)
{
    return get_raw_at(s, NULL, cf, k, len, err);
}

static int get_message_at(Store *s, const StoreSnapshot *snap, int cf, const Key *k,
                          const ProtobufCMessageDescriptor *d, ProtobufCMessage **out)
{
    size_t len = 0;
    char *err = NULL;
    char *v = get_raw_at(s, snap, cf, k, &len, &err);
    if (err) {
        rocksdb_free(err);
        return NORN_ERR_STORAGE;
    }
    if (!v)
        return NORN_ERR_NOT_FOUND;
    *out = protobuf_c_message_unpack(d, NULL, len, (const uint8_t *)v);
    rocksdb_free(v);
    return *out ? NORN_OK : NORN_ERR_STORAGE;
}

static int get_message(Store *s, int cf, const Key *k, const ProtobufCMessageDescriptor *d,
                       ProtobufCMessage **out)
{
    return get_message_at(s, NULL, cf, k, d, out);
}

static uint64_t get_u64_meta(Store *s, const char *name)
{
    Key k;
    key_session(&k, name);
    size_t len = 0;
    char *err = NULL;
    char *v = get_raw(s, CF_META, &k, &len, &err);
    uint64_t r = 0;
    if (v && len == 8)
        r = key_get_u64((const uint8_t *)v);
    rocksdb_free(v);
    rocksdb_free(err);
    return r;
}

/* An iterator over [lo, hi) of one column family; bounds are copied into
 * the returned holder so they outlive the iterator, as RocksDB requires. */
typedef struct RangeIter {
    rocksdb_iterator_t *it;
    rocksdb_readoptions_t *ro;
    Key lo, hi;
} RangeIter;

static void range_open_at(Store *s, const StoreSnapshot *snap, int cf, RangeIter *r, const Key *lo,
                          const Key *hi)
{
    r->ro = rocksdb_readoptions_create();
    if (snap)
        rocksdb_readoptions_set_snapshot(r->ro, snap->snap);
    if (lo) {
        r->lo = *lo;
        rocksdb_readoptions_set_iterate_lower_bound(r->ro, (const char *)r->lo.b, r->lo.len);
    }
    if (hi) {
        r->hi = *hi;
        rocksdb_readoptions_set_iterate_upper_bound(r->ro, (const char *)r->hi.b, r->hi.len);
    }
    r->it = rocksdb_create_iterator_cf(s->db, r->ro, s->cf[cf]);
}

static void range_open(Store *s, int cf, RangeIter *r, const Key *lo, const Key *hi)
{
    range_open_at(s, NULL, cf, r, lo, hi);
}

static void range_close(RangeIter *r)
{
    rocksdb_iter_destroy(r->it);
    rocksdb_readoptions_destroy(r->ro);
}

static void prefix_range(Store *s, int cf, RangeIter *r, const Key *prefix)
{
    Key end;
    range_open(s, cf, r, prefix, key_prefix_end(prefix, &end) == 0 ? &end : NULL);
    rocksdb_iter_seek(r->it, (const char *)prefix->b, prefix->len);
}

/* ---- open / close --------------------------------------------------------- */

int store_open(const char *dir, const StoreOptions *o, Store **out, char *err, size_t errlen)
{
    StoreOptions defaults;
    if (!o) {
        store_options_init(&defaults);
        o = &defaults;
    }
    Store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NORN_ERR_NO_MEMORY;
    }
    pthread_mutex_init(&s->write_mu, NULL);
    pthread_mutex_init(&s->state_mu, NULL);
    s->cache = rocksdb_cache_create_lru(o->block_cache_bytes);
    s->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(s->opts, 1);
    rocksdb_options_set_create_missing_column_families(s->opts, 1);
    rocksdb_options_increase_parallelism(s->opts, 2);
    rocksdb_options_set_max_background_jobs(s->opts, 2);
    for (int i = 0; i < CF_COUNT; i++) {
        s->cf_opts[i] = rocksdb_options_create_copy(s->opts);
        s->table_opts[i] = rocksdb_block_based_options_create();
        rocksdb_block_based_options_set_block_cache(s->table_opts[i], s->cache);
        if (i == CF_SESSIONS || i == CF_TOOL_USES || i == CF_META)
            rocksdb_block_based_options_set_filter_policy(s->table_opts[i],
                                                          rocksdb_filterpolicy_create_bloom(10));
        rocksdb_options_set_block_based_table_factory(s->cf_opts[i], s->table_opts[i]);
        rocksdb_options_set_compression(s->cf_opts[i], rocksdb_lz4_compression);
    }
    char *rerr = NULL;
    s->db =
        rocksdb_open_column_families(s->opts, dir, CF_COUNT, cf_names,
                                     (const rocksdb_options_t *const *)s->cf_opts, s->cf, &rerr);
    if (!s->db) {
        snprintf(err, errlen, "cannot open store in %s: %s", dir, rerr ? rerr : "unknown error");
        rocksdb_free(rerr);
        store_close(s);
        return NORN_ERR_STORAGE;
    }
    s->wopts = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(s->wopts, o->sync_writes);
    s->ropts = rocksdb_readoptions_create();

    s->revision = get_u64_meta(s, META_REVISION);
    s->audit_seq = get_u64_meta(s, META_AUDIT_SEQ);
    Key k;
    key_session(&k, META_COUNTERS);
    size_t len = 0;
    char *v = get_raw(s, CF_META, &k, &len, &rerr);
    /* Counters only ever gain fields at the end: an older, shorter blob
     * reads with the new ones at zero. */
    if (v && len % 8 == 0 && len <= COUNTER_WORDS * 8) {
        uint64_t *c = (uint64_t *)&s->counters;
        for (size_t i = 0; i < len / 8; i++)
            c[i] = key_get_u64((const uint8_t *)v + i * 8);
    } else if (v) {
        snprintf(err, errlen, "store in %s has counters of an unknown layout", dir);
        rocksdb_free(v);
        store_close(s);
        return NORN_ERR_STORAGE;
    }
    rocksdb_free(v);
    rocksdb_free(rerr);
    *out = s;
    return NORN_OK;
}

void store_close(Store *s)
{
    if (!s)
        return;
    if (s->db) {
        for (int i = 0; i < CF_COUNT; i++)
            if (s->cf[i])
                rocksdb_column_family_handle_destroy(s->cf[i]);
        rocksdb_close(s->db);
    }
    for (int i = 0; i < CF_COUNT; i++) {
        if (s->cf_opts[i])
            rocksdb_options_destroy(s->cf_opts[i]);
        if (s->table_opts[i])
            rocksdb_block_based_options_destroy(s->table_opts[i]);
    }
    if (s->opts)
        rocksdb_options_destroy(s->opts);
    if (s->cache)
        rocksdb_cache_destroy(s->cache);
    if (s->wopts)
        rocksdb_writeoptions_destroy(s->wopts);
    if (s->ropts)
        rocksdb_readoptions_destroy(s->ropts);
    pthread_mutex_destroy(&s->write_mu);
    pthread_mutex_destroy(&s->state_mu);
    free(s);
}

void store_counters(Store *s, StoreCounters *out, uint64_t *revision)
{
    pthread_mutex_lock(&s->state_mu);
    *out = s->counters;
    if (revision)
        *revision = s->revision;
    pthread_mutex_unlock(&s->state_mu);
}

/* ---- reads ---------------------------------------------------------------- */

int store_session_get_at(Store *s, const StoreSnapshot *snap, const char *id,
                         Norn__V1__Session **out)
{
    Key k;
    if (key_session(&k, id))
        return NORN_ERR_INVALID;
    return get_message_at(s, snap, CF_SESSIONS, &k, &norn__v1__session__descriptor,
                          (ProtobufCMessage **)out);
}

int store_session_get(Store *s, const char *id, Norn__V1__Session **out)
{
    return store_session_get_at(s, NULL, id, out);
}

StoreSnapshot *store_snapshot_open(Store *s, uint64_t *revision)
{
    StoreSnapshot *snap = calloc(1, sizeof *snap);
    if (!snap)
        return NULL;
    /* No commit can land between reading the revision and taking the
     * snapshot while the write lock is held. */
    pthread_mutex_lock(&s->write_mu);
    snap->snap = rocksdb_create_snapshot(s->db);
    pthread_mutex_lock(&s->state_mu);
    *revision = s->revision;
    pthread_mutex_unlock(&s->state_mu);
    pthread_mutex_unlock(&s->write_mu);
    snap->ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_snapshot(snap->ro, snap->snap);
    return snap;
}

void store_snapshot_close(Store *s, StoreSnapshot *snap)
{
    if (!snap)
        return;
    rocksdb_readoptions_destroy(snap->ro);
    rocksdb_release_snapshot(s->db, snap->snap);
    free(snap);
}

int store_step_get(Store *s, const char *id, uint32_t step, Norn__V1__Step **out)
{
    Key k;
    if (key_step(&k, id, step))
        return NORN_ERR_INVALID;
    return get_message(s, CF_STEPS, &k, &norn__v1__step__descriptor, (ProtobufCMessage **)out);
}

int store_tool_use_get(Store *s, const char *id, const char *tool_use_id, uint32_t *step)
{
    Key k;
    if (key_tool_use(&k, id, tool_use_id))
        return NORN_ERR_INVALID;
    size_t len = 0;
    char *err = NULL;
    char *v = get_raw(s, CF_TOOL_USES, &k, &len, &err);
    if (err) {
        rocksdb_free(err);
        return NORN_ERR_STORAGE;
    }
    if (!v)
        return NORN_ERR_NOT_FOUND;
    int rc = len == 4 ? NORN_OK : NORN_ERR_STORAGE;
    if (rc == NORN_OK)
        *step = key_get_u32((const uint8_t *)v);
    rocksdb_free(v);
    return rc;
}

static int append_ptr(void ***arr, size_t *n, size_t *cap, void *p)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        void **a = realloc(*arr, nc * sizeof *a);
        if (!a)
            return -1;
        *arr = a;
        *cap = nc;
    }
    (*arr)[(*n)++] = p;
    return 0;
}

int store_steps_scan(Store *s, const char *id, uint32_t from, size_t limit, Norn__V1__Step ***out,
                     size_t *n, uint32_t *next)
{
    Key prefix, start;
    if (key_session_prefix(&prefix, id) || key_step(&start, id, from))
        return NORN_ERR_INVALID;
    RangeIter r;
    Key end;
    range_open(s, CF_STEPS, &r, &prefix, key_prefix_end(&prefix, &end) == 0 ? &end : NULL);
    rocksdb_iter_seek(r.it, (const char *)start.b, start.len);
    void **arr = NULL;
    size_t cap = 0;
    *n = 0;
    *next = 0;
    int rc = NORN_OK;
    for (; rocksdb_iter_valid(r.it); rocksdb_iter_next(r.it)) {
        size_t klen, vlen;
        const char *key = rocksdb_iter_key(r.it, &klen);
        if (*n == limit) {
            *next = key_get_u32((const uint8_t *)key + klen - 4);
            break;
        }
        const char *v = rocksdb_iter_value(r.it, &vlen);
        Norn__V1__Step *st = norn__v1__step__unpack(NULL, vlen, (const uint8_t *)v);
        if (!st || append_ptr(&arr, n, &cap, st) != 0) {
            if (st)
                norn__v1__step__free_unpacked(st, NULL);
            rc = NORN_ERR_STORAGE;
            break;
        }
    }
    char *err = NULL;
    rocksdb_iter_get_error(r.it, &err);
    if (err) {
        rocksdb_free(err);
        rc = NORN_ERR_STORAGE;
    }
    range_close(&r);
    if (rc != NORN_OK) {
        store_free_steps((Norn__V1__Step **)arr, *n);
        *n = 0;
        arr = NULL;
    }
    *out = (Norn__V1__Step **)arr;
    return rc;
}

int store_issues_scan(Store *s, const char *id, Norn__V1__Issue ***out, size_t *n)
{
    Key prefix;
    if (key_session_prefix(&prefix, id))
        return NORN_ERR_INVALID;
    RangeIter r;
    prefix_range(s, CF_ISSUES, &r, &prefix);
    void **arr = NULL;
    size_t cap = 0;
    *n = 0;
    int rc = NORN_OK;
    for (; rocksdb_iter_valid(r.it); rocksdb_iter_next(r.it)) {
        size_t vlen;
        const char *v = rocksdb_iter_value(r.it, &vlen);
        Norn__V1__Issue *is = norn__v1__issue__unpack(NULL, vlen, (const uint8_t *)v);
        if (!is || append_ptr(&arr, n, &cap, is) != 0) {
            if (is)
                norn__v1__issue__free_unpacked(is, NULL);
            rc = NORN_ERR_STORAGE;
            break;
        }
    }
    range_close(&r);
    if (rc != NORN_OK) {
        store_free_issues((Norn__V1__Issue **)arr, *n);
        *n = 0;
        arr = NULL;
    }
    *out = (Norn__V1__Issue **)arr;
    return rc;
}

void store_free_steps(Norn__V1__Step **steps, size_t n)
{
    for (size_t i = 0; i < n; i++)
        norn__v1__step__free_unpacked(steps[i], NULL);
    free(steps);
}

void store_free_issues(Norn__V1__Issue **issues, size_t n)
{
    for (size_t i = 0; i < n; i++)
        norn__v1__issue__free_unpacked(issues[i], NULL);
    free(issues);
}

int store_sessions_scan(Store *s, const StoreListQuery *q, StoreVisit visit, void *arg,
                        uint8_t *last, size_t *last_len, int *more)
{
    int cf = q->index == STORE_BY_AGENT      ? CF_BY_AGENT
             : q->index == STORE_BY_AGENT_ID ? CF_BY_AGENT_ID
             : q->index == STORE_BY_SWARM    ? CF_BY_SWARM
                                             : CF_BY_TIME;
    Key prefix = {.len = 0};
    if (cf != CF_BY_TIME && key_name_prefix(&prefix, q->name ? q->name : ""))
        return NORN_ERR_INVALID;
    size_t plen = prefix.len;

    /* Newest first: inverted times ascend. "before" is the scan start,
     * "after" the end. */
    Key lo = prefix, hi;
    if (q->before_micros) {
        key_put_u64(lo.b + plen, UINT64_MAX - q->before_micros + 1);
        lo.len = plen + 8;
    }
    int has_hi;
    if (q->after_micros) {
        hi = prefix;
        key_put_u64(hi.b + plen, UINT64_MAX - q->after_micros + 1);
        hi.len = plen + 8;
        has_hi = 1;
    } else {
        has_hi = plen ? key_prefix_end(&prefix, &hi) == 0 : 0;
    }
    RangeIter r;
    range_open_at(s, q->snapshot, cf, &r, plen || q->before_micros ? &lo : NULL,
                  has_hi ? &hi : NULL);
    if (q->resume && q->resume_len && q->resume_len <= KEY_MAX) {
        rocksdb_iter_seek(r.it, (const char *)q->resume, q->resume_len);
        /* Resume strictly after the last key returned. */
        size_t klen;
        if (rocksdb_iter_valid(r.it)) {
            const char *key = rocksdb_iter_key(r.it, &klen);
            if (klen == q->resume_len && memcmp(key, q->resume, klen) == 0)
                rocksdb_iter_next(r.it);
        }
    } else if (plen || q->before_micros) {
        rocksdb_iter_seek(r.it, (const char *)lo.b, lo.len);
    } else {
        rocksdb_iter_seek_to_first(r.it);
    }
    size_t scanned = 0;
    int rc = NORN_OK;
    *more = 0;
    *last_len = 0;
    for (; rocksdb_iter_valid(r.it); rocksdb_iter_next(r.it)) {
        if (scanned == q->max_scan) {
            *more = 1;
            break;
        }
        size_t klen;
        const char *key = rocksdb_iter_key(r.it, &klen);
        char id[200];
        scanned++;
        memcpy(last, key, klen);
        *last_len = klen;
        if (key_index_session_id((const uint8_t *)key, klen, plen, id, sizeof id) < 0)
            continue;
        Norn__V1__Session *sess = NULL;
        int g = store_session_get_at(s, q->snapshot, id, &sess);
        if (g == NORN_ERR_NOT_FOUND)
            continue; /* cannot happen: index rows go with their session */
        if (g != NORN_OK) {
            rc = g;
            break;
        }
        if (!visit(arg, sess)) {
            rocksdb_iter_next(r.it);
            *more = rocksdb_iter_valid(r.it);
            break;
        }
    }
    range_close(&r);
    return rc;
}

/* audit_idx keys: kind ‖ name 00 ‖ micros ‖ seq. */
static int audit_idx_key(Key *k, char kind, const char *name, uint64_t micros, uint64_t seq)
{
    k->len = 0;
    if (strlen(name) + 19 > KEY_MAX)
        return -1;
    k->b[k->len++] = (uint8_t)kind;
    size_t n = strlen(name) + 1;
    memcpy(k->b + k->len, name, n);
    k->len += n;
    key_put_u64(k->b + k->len, micros);
    key_put_u64(k->b + k->len + 8, seq);
    k->len += 16;
    return 0;
}

static size_t audit_idx_prefix(Key *k, char kind, const char *name)
{
    audit_idx_key(k, kind, name, 0, 0);
    k->len -= 16;
    return k->len;
}

/* The index rows of one event: session, agent, type, severity. */
static int audit_idx_keys(const Norn__V1__AuditEvent *ev, uint64_t micros, uint64_t seq,
                          Key keys[4], size_t *n)
{
    char type[8], sev[8];
    snprintf(type, sizeof type, "%d", (int)ev->event_type);
    snprintf(sev, sizeof sev, "%d", (int)ev->severity);
    *n = 0;
    if (ev->session_id && *ev->session_id &&
        audit_idx_key(&keys[(*n)++], STORE_AUDIT_BY_SESSION, ev->session_id, micros, seq))
        return -1;
    if (ev->agent_name && *ev->agent_name &&
        audit_idx_key(&keys[(*n)++], STORE_AUDIT_BY_AGENT, ev->agent_name, micros, seq))
        return -1;
    if (audit_idx_key(&keys[(*n)++], STORE_AUDIT_BY_TYPE, type, micros, seq) ||
        audit_idx_key(&keys[(*n)++], STORE_AUDIT_BY_SEVERITY, sev, micros, seq))
        return -1;
    return 0;
}

int store_audit_get(Store *s, const uint8_t key[16], Norn__V1__AuditEvent **out)
{
    Key k = {.len = 16};
    memcpy(k.b, key, 16);
    return get_message(s, CF_AUDIT, &k, &norn__v1__audit_event__descriptor,
                       (ProtobufCMessage **)out);
}

int store_audit_scan(Store *s, const StoreAuditQuery *q, StoreAuditVisit visit, void *arg,
                     uint8_t last[16], int *more)
{
    /* Newest first: walk backwards between the time bounds, in the audit
     * family itself or in one index of audit_idx. */
    Key prefix = {.len = 0};
    int cf = CF_AUDIT;
    if (q->index != STORE_AUDIT_BY_TIME) {
        cf = CF_AUDIT_IDX;
        if (!q->name || strlen(q->name) + 19 > KEY_MAX)
            return NORN_ERR_INVALID;
        audit_idx_prefix(&prefix, (char)q->index, q->name);
    }
    size_t plen = prefix.len;
    Key lo = prefix, hi = prefix;
    key_put_u64(lo.b + plen, q->after_micros);
    lo.len = plen + 8;
    int has_hi = 1;
    if (q->before_micros) {
        key_put_u64(hi.b + plen, q->before_micros);
        hi.len = plen + 8;
    } else if (plen) {
        has_hi = key_prefix_end(&prefix, &hi) == 0;
    } else {
        has_hi = 0;
    }
    RangeIter r;
    range_open(s, cf, &r, &lo, has_hi ? &hi : NULL);
    if (q->resume) {
        Key k = prefix;
        memcpy(k.b + plen, q->resume, 16);
        k.len = plen + 16;
        rocksdb_iter_seek_for_prev(r.it, (const char *)k.b, k.len);
        size_t klen;
        if (rocksdb_iter_valid(r.it)) {
            const char *key = rocksdb_iter_key(r.it, &klen);
            if (klen == k.len && memcmp(key, k.b, klen) == 0)
                rocksdb_iter_prev(r.it);
        }
    } else {
        rocksdb_iter_seek_to_last(r.it);
    }
    size_t scanned = 0;
    int rc = NORN_OK;
    *more = 0;
    for (; rocksdb_iter_valid(r.it); rocksdb_iter_prev(r.it)) {
        if (scanned++ == q->max_scan) {
            *more = 1;
            break;
        }
        size_t klen;
        const char *key = rocksdb_iter_key(r.it, &klen);
        if (klen != plen + 16)
            continue;
        const uint8_t *tkey = (const uint8_t *)key + plen; /* micros ‖ seq */
        memcpy(last, tkey, 16);
        Norn__V1__AuditEvent *ev = NULL;
        if (cf == CF_AUDIT_IDX) {
            int g = store_audit_get(s, tkey, &ev);
            if (g == NORN_ERR_NOT_FOUND)
                continue;
            if (g != NORN_OK) {
                rc = g;
                break;
            }
        } else {
            size_t vlen;
            const char *v = rocksdb_iter_value(r.it, &vlen);
            ev = norn__v1__audit_event__unpack(NULL, vlen, (const uint8_t *)v);
            if (!ev) {
                rc = NORN_ERR_STORAGE;
                break;
            }
        }
        if (!visit(arg, ev, tkey)) {
            rocksdb_iter_prev(r.it);
            *more = rocksdb_iter_valid(r.it);
            break;
        }
    }
    range_close(&r);
    return rc;
}

/* agents: "a" id -> Agent; "n" source-byte name -> id. */
static int agent_key(Key *k, const char *id)
{
    k->len = 0;
    k->b[k->len++] = 'a';
    size_t n = strlen(id);
    if (n + 1 > KEY_MAX)
        return -1;
    memcpy(k->b + 1, id, n);
    k->len += n;
    return 0;
}

static int agent_name_key(Key *k, int source, const char *name)
{
    k->len = 0;
    size_t n = strlen(name);
    if (n + 2 > KEY_MAX)
        return -1;
    k->b[k->len++] = 'n';
    k->b[k->len++] = (uint8_t)source;
    memcpy(k->b + 2, name, n);
    k->len += n;
    return 0;
}

int store_agent_get(Store *s, const char *agent_id, Norn__V1__Agent **out)
{
    Key k;
    if (agent_key(&k, agent_id))
        return NORN_ERR_INVALID;
    return get_message(s, CF_AGENTS, &k, &norn__v1__agent__descriptor, (ProtobufCMessage **)out);
}

int store_agent_by_name(Store *s, int source, const char *name, char *id, size_t cap)
{
    Key k;
    if (agent_name_key(&k, source, name))
        return NORN_ERR_INVALID;
    size_t len = 0;
    char *err = NULL;
    char *v = get_raw(s, CF_AGENTS, &k, &len, &err);
    if (err) {
        rocksdb_free(err);
        return NORN_ERR_STORAGE;
    }
    if (!v)
        return NORN_ERR_NOT_FOUND;
    int rc = len < cap ? NORN_OK : NORN_ERR_STORAGE;
    if (rc == NORN_OK) {
        memcpy(id, v, len);
        id[len] = '\0';
    }
    rocksdb_free(v);
    return rc;
}

int store_agents_scan(Store *s, const char *after, size_t max, StoreAgentVisit visit, void *arg,
                      int *more)
{
    Key lo, hi;
    agent_key(&lo, "");
    hi = lo;
    hi.b[0] = 'b';
    RangeIter r;
    range_open(s, CF_AGENTS, &r, &lo, &hi);
    if (after && *after) {
        Key k;
        if (agent_key(&k, after)) {
            range_close(&r);
            return NORN_ERR_INVALID;
        }
        rocksdb_iter_seek(r.it, (const char *)k.b, k.len);
        size_t klen;
        if (rocksdb_iter_valid(r.it)) {
            const char *key = rocksdb_iter_key(r.it, &klen);
            if (klen == k.len && memcmp(key, k.b, klen) == 0)
                rocksdb_iter_next(r.it);
        }
    } else {
        rocksdb_iter_seek_to_first(r.it);
    }
    int rc = NORN_OK;
    size_t n = 0;
    *more = 0;
    for (; rocksdb_iter_valid(r.it); rocksdb_iter_next(r.it)) {
        if (n == max) {
            *more = 1;
            break;
        }
        size_t vlen;
        const char *v = rocksdb_iter_value(r.it, &vlen);
        Norn__V1__Agent *a = norn__v1__agent__unpack(NULL, vlen, (const uint8_t *)v);
        if (!a) {
            rc = NORN_ERR_STORAGE;
            break;
        }
        n++;
        if (!visit(arg, a)) {
            rocksdb_iter_next(r.it);
            *more = rocksdb_iter_valid(r.it);
            break;
        }
    }
    range_close(&r);
    return rc;
}

int store_swarms_scan(Store *s, const uint8_t *resume, size_t resume_len, size_t max,
                      StoreSwarmVisit visit, void *arg, uint8_t *last, size_t *last_len, int *more)
{
    RangeIter r;
    range_open(s, CF_SWARMS_BY_TIME, &r, NULL, NULL);
    if (resume && resume_len && resume_len <= KEY_MAX) {
        rocksdb_iter_seek(r.it, (const char *)resume, resume_len);
        size_t klen;
        if (rocksdb_iter_valid(r.it)) {
            const char *key = rocksdb_iter_key(r.it, &klen);
            if (klen == resume_len && memcmp(key, resume, klen) == 0)
                rocksdb_iter_next(r.it);
        }
    } else {
        rocksdb_iter_seek_to_first(r.it);
    }
    size_t n = 0;
    *more = 0;
    *last_len = 0;
    for (; rocksdb_iter_valid(r.it); rocksdb_iter_next(r.it)) {
        if (n == max) {
            *more = 1;
            break;
        }
        size_t klen;
        const char *key = rocksdb_iter_key(r.it, &klen);
        char id[200];
        if (klen <= 8 || klen - 8 >= sizeof id)
            continue;
        memcpy(id, key + 8, klen - 8);
        id[klen - 8] = '\0';
        memcpy(last, key, klen);
        *last_len = klen;
        n++;
        if (!visit(arg, id)) {
            rocksdb_iter_next(r.it);
            *more = rocksdb_iter_valid(r.it);
            break;
        }
    }
    range_close(&r);
    return NORN_OK;
}

int store_revlog_scan(Store *s, uint64_t from, size_t max, StoreDeltaVisit visit, void *arg)
{
    Key lo;
    key_revision(&lo, from);
    RangeIter r;
    range_open(s, CF_REVLOG, &r, &lo, NULL);
    rocksdb_iter_seek(r.it, (const char *)lo.b, lo.len);
    int rc = NORN_OK;
    for (size_t i = 0; i < max && rocksdb_iter_valid(r.it); i++, rocksdb_iter_next(r.it)) {
        size_t vlen;
        const char *v = rocksdb_iter_value(r.it, &vlen);
        Norn__V1__SessionDelta *d = norn__v1__session_delta__unpack(NULL, vlen, (const uint8_t *)v);
        if (!d) {
            rc = NORN_ERR_STORAGE;
            break;
        }
        if (!visit(arg, d))
            break;
    }
    range_close(&r);
    return rc;
}

uint64_t store_revlog_oldest(Store *s)
{
    RangeIter r;
    range_open(s, CF_REVLOG, &r, NULL, NULL);
    rocksdb_iter_seek_to_first(r.it);
    uint64_t rev = 0;
    size_t klen;
    if (rocksdb_iter_valid(r.it)) {
        const char *k = rocksdb_iter_key(r.it, &klen);
        if (klen == 8)
            rev = key_get_u64((const uint8_t *)k);
    }
    range_close(&r);
    return rev;
}

int store_config_get(Store *s, Norn__V1__Config **out)
{
    Key k;
    key_session(&k, META_CONFIG);
    return get_message(s, CF_META, &k, &norn__v1__config__descriptor, (ProtobufCMessage **)out);
}

/* ---- runs ------------------------------------------------------------------ */

int store_run_get(Store *s, const char *run_id, Norn__V1__Run **out)
{
    Key k;
    if (key_run(&k, run_id))
        return NORN_ERR_INVALID;
    return get_message(s, CF_RUNS, &k, &norn__v1__run__descriptor, (ProtobufCMessage **)out);
}

static int run_matches(const StoreRunQuery *q, const Norn__V1__Run *run)
{
    if (q->agent_id && *q->agent_id && strcmp(run->agent_id, q->agent_id) != 0)
        return 0;
    return !q->state || (int)run->state == q->state;
}

int store_runs_scan(Store *s, const StoreRunQuery *q, StoreRunVisit visit, void *arg, uint8_t *last,
                    size_t *last_len, int *more)
{
    Key lo = {.b = {KEY_RUN_BY_TIME}, .len = 1}, hi;
    key_prefix_end(&lo, &hi);
    RangeIter r;
    range_open(s, CF_RUNS, &r, &lo, &hi);
    if (q->resume && q->resume_len && q->resume_len <= KEY_MAX) {
        rocksdb_iter_seek(r.it, (const char *)q->resume, q->resume_len);
        size_t klen;
        if (rocksdb_iter_valid(r.it)) {
            const char *key = rocksdb_iter_key(r.it, &klen);
            if (klen == q->resume_len && memcmp(key, q->resume, klen) == 0)
                rocksdb_iter_next(r.it);
        }
    } else {
        rocksdb_iter_seek(r.it, (const char *)lo.b, lo.len);
    }
    size_t scanned = 0;
    int rc = NORN_OK;
    *more = 0;
    *last_len = 0;
    for (; rocksdb_iter_valid(r.it); rocksdb_iter_next(r.it)) {
        if (scanned == q->max_scan) {
            *more = 1;
            break;
        }
        size_t klen;
        const char *key = rocksdb_iter_key(r.it, &klen);
        scanned++;
        if (klen > KEY_MAX)
            continue;
        memcpy(last, key, klen);
        *last_len = klen;
        char id[KEY_MAX];
        if (klen <= 9 || klen - 9 >= sizeof id)
            continue;
        memcpy(id, key + 9, klen - 9);
        id[klen - 9] = '\0';
        Norn__V1__Run *run = NULL;
        int g = store_run_get(s, id, &run);
        if (g == NORN_ERR_NOT_FOUND)
            continue; /* cannot happen: the row is written with its run */
        if (g != NORN_OK) {
            rc = g;
            break;
        }
        if (!run_matches(q, run)) {
            norn__v1__run__free_unpacked(run, NULL);
            continue;
        }
        if (!visit(arg, run)) {
            rocksdb_iter_next(r.it);
            *more = rocksdb_iter_valid(r.it);
            break;
        }
    }
    range_close(&r);
    return rc;
}

/* ---- writes --------------------------------------------------------------- */

StoreTxn *store_txn_begin(Store *s)
{
    StoreTxn *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    pthread_mutex_lock(&s->write_mu);
    t->s = s;
    t->wb = rocksdb_writebatch_create();
    pthread_mutex_lock(&s->state_mu);
    t->revision = s->revision + 1;
    t->audit_seq = s->audit_seq;
    t->counters = s->counters;
    pthread_mutex_unlock(&s->state_mu);
    t->now_micros = now_micros();
    return t;
}

uint64_t store_txn_last_revision(const StoreTxn *t)
{
    return t->n_deltas ? t->revision + t->n_deltas - 1 : 0;
}

uint64_t store_txn_revision(const StoreTxn *t)
{
    return t->revision;
}
StoreCounters *store_txn_counters(StoreTxn *t)
{
    return &t->counters;
}
uint64_t store_txn_now_micros(const StoreTxn *t)
{
    return t->now_micros;
}

static void txn_note_deleted(StoreTxn *t, const char *id)
{
    char **d = realloc(t->deleted, (t->n_deleted + 1) * sizeof *d);
    if (!d) {
        t->failed = 1;
        return;
    }
    t->deleted = d;
    d[t->n_deleted++] = strdup(id);
}

static int txn_deleted(const StoreTxn *t, const char *id)
{
    for (size_t i = 0; i < t->n_deleted; i++)
        if (t->deleted[i] && strcmp(t->deleted[i], id) == 0)
            return 1;
    return 0;
}

static void put_key(StoreTxn *t, int cf, const Key *k, const void *v, size_t vlen)
{
    rocksdb_writebatch_put_cf(t->wb, t->s->cf[cf], (const char *)k->b, k->len, v, vlen);
}

static void del_key(StoreTxn *t, int cf, const Key *k)
{
    rocksdb_writebatch_delete_cf(t->wb, t->s->cf[cf], (const char *)k->b, k->len);
}

static int put_message(StoreTxn *t, int cf, const Key *k, const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t stackbuf[4096];
    uint8_t *buf = len <= sizeof stackbuf ? stackbuf : malloc(len);
    if (!buf) {
        t->failed = 1;
        return NORN_ERR_NO_MEMORY;
    }
    protobuf_c_message_pack(m, buf);
    put_key(t, cf, k, buf, len);
    if (buf != stackbuf)
        free(buf);
    return NORN_OK;
}

/* The index rows of a session: by time, agent name, agent id, swarm. A
 * missing agent id or swarm gives an empty key (no row). */
typedef struct SessionIdx {
    Key time, agent, agent_id, swarm;
} SessionIdx;

static int index_keys(const Norn__V1__Session *s, SessionIdx *x)
{
    uint64_t us = store_ts_micros(s->started_at);
    x->agent_id.len = x->swarm.len = 0;
    if (key_by_time(&x->time, us, s->session_id) ||
        key_by_name(&x->agent, s->agent_name, us, s->session_id))
        return -1;
    if (s->agent_id && *s->agent_id && key_by_name(&x->agent_id, s->agent_id, us, s->session_id))
        return -1;
    if (s->swarm_id && *s->swarm_id && key_by_name(&x->swarm, s->swarm_id, us, s->session_id))
        return -1;
    return 0;
}

static int same_key(const Key *a, const Key *b)
{
    return a->len == b->len && memcmp(a->b, b->b, a->len) == 0;
}

static void replace_row(StoreTxn *t, int cf, const Key *old, const Key *now)
{
    if (old->len && !same_key(old, now))
        del_key(t, cf, old);
    if (now->len)
        put_key(t, cf, now, "", 0);
}

/* A swarm exists while it has members: the first member that names it
 * records the swarm with its start time (swarms, swarms_by_time). */
static void swarm_note_member(StoreTxn *t, const Norn__V1__Session *s)
{
    if (!s->swarm_id || !*s->swarm_id)
        return;
    Key k;
    if (key_session(&k, s->swarm_id))
        return;
    size_t len = 0;
    char *err = NULL;
    char *v = get_raw(t->s, CF_SWARMS, &k, &len, &err);
    rocksdb_free(err);
    if (v) {
        rocksdb_free(v);
        return;
    }
    uint64_t us = store_ts_micros(s->started_at);
    uint8_t b[8];
    key_put_u64(b, us);
    put_key(t, CF_SWARMS, &k, b, 8);
    Key tk;
    if (key_by_time(&tk, us, s->swarm_id) == 0)
        put_key(t, CF_SWARMS_BY_TIME, &tk, "", 0);
}

/* Drops the swarm record when `gone` was its last member. */
static void swarm_forget_member(StoreTxn *t, const Norn__V1__Session *gone)
{
    if (!gone->swarm_id || !*gone->swarm_id)
        return;
    Key prefix;
    if (key_name_prefix(&prefix, gone->swarm_id))
        return;
    RangeIter r;
    prefix_range(t->s, CF_BY_SWARM, &r, &prefix);
    int others = 0;
    for (; rocksdb_iter_valid(r.it) && !others; rocksdb_iter_next(r.it)) {
        size_t klen;
        const char *key = rocksdb_iter_key(r.it, &klen);
        char id[200];
        if (key_index_session_id((const uint8_t *)key, klen, prefix.len, id, sizeof id) > 0 &&
            strcmp(id, gone->session_id) != 0 && !txn_deleted(t, id))
            others = 1;
    }
    range_close(&r);
    if (others)
        return;
    Key k;
    key_session(&k, gone->swarm_id);
    size_t len = 0;
    char *err = NULL;
    char *v = get_raw(t->s, CF_SWARMS, &k, &len, &err);
    rocksdb_free(err);
    if (v && len == 8) {
        Key tk;
        if (key_by_time(&tk, key_get_u64((const uint8_t *)v), gone->swarm_id) == 0)
            del_key(t, CF_SWARMS_BY_TIME, &tk);
    }
    rocksdb_free(v);
    del_key(t, CF_SWARMS, &k);
}

int store_txn_put_session(StoreTxn *t, const Norn__V1__Session *s, const Norn__V1__Session *prev)
{
    Key k;
    SessionIdx now, old;
    if (key_session(&k, s->session_id) || index_keys(s, &now)) {
        t->failed = 1;
        return NORN_ERR_INVALID;
    }
    Norn__V1__Session summary = *s;
    summary.n_steps = 0;
    summary.steps = NULL;
    summary.n_issues = 0;
    summary.issues = NULL;
    int rc = put_message(t, CF_SESSIONS, &k, &summary.base);
    if (rc)
        return rc;
    Key none = {.len = 0};
    if (!prev || index_keys(prev, &old) != 0)
        old.time = old.agent = old.agent_id = old.swarm = none;
    replace_row(t, CF_BY_TIME, &old.time, &now.time);
    replace_row(t, CF_BY_AGENT, &old.agent, &now.agent);
    replace_row(t, CF_BY_AGENT_ID, &old.agent_id, &now.agent_id);
    replace_row(t, CF_BY_SWARM, &old.swarm, &now.swarm);
    swarm_note_member(t, s);
    return NORN_OK;
}

int store_txn_put_step(StoreTxn *t, const char *id, const Norn__V1__Step *step)
{
    Key k;
    if (key_step(&k, id, step->step_number)) {
        t->failed = 1;
        return NORN_ERR_INVALID;
    }
    return put_message(t, CF_STEPS, &k, &step->base);
}

int store_txn_put_tool_use(StoreTxn *t, const char *id, const char *tool_use_id, uint32_t step)
{
    Key k;
    if (key_tool_use(&k, id, tool_use_id)) {
        t->failed = 1;
        return NORN_ERR_INVALID;
    }
    uint8_t v[4];
    key_put_u32(v, step);
    put_key(t, CF_TOOL_USES, &k, v, 4);
    return NORN_OK;
}

int store_txn_put_issue(StoreTxn *t, const char *id, uint32_t seq, const Norn__V1__Issue *issue)
{
    Key k;
    if (key_issue(&k, id, seq)) {
        t->failed = 1;
        return NORN_ERR_INVALID;
    }
    return put_message(t, CF_ISSUES, &k, &issue->base);
}

int store_txn_add_audit(StoreTxn *t, Norn__V1__AuditEvent *ev)
{
    uint64_t us = store_ts_micros(ev->timestamp);
    if (!us)
        us = t->now_micros;
    uint64_t seq = ++t->audit_seq;
    Key k, idx[4];
    size_t n_idx;
    key_audit(&k, us, seq);
    if (audit_idx_keys(ev, us, seq, idx, &n_idx)) {
        t->failed = 1;
        return NORN_ERR_INVALID;
    }
    char idbuf[48];
    char *saved = ev->event_id;
    /* The id is the key itself, so delete-by-id needs no other index. */
    token_encode(k.b, k.len, idbuf, sizeof idbuf);
    ev->event_id = idbuf;
    int rc = put_message(t, CF_AUDIT, &k, &ev->base);
    ev->event_id = saved;
    if (rc)
        return rc;
    for (size_t i = 0; i < n_idx; i++)
        put_key(t, CF_AUDIT_IDX, &idx[i], "", 0);
    t->counters.audit_events++;
    return NORN_OK;
}

int store_txn_delete_audit(StoreTxn *t, const uint8_t key[16])
{
    Norn__V1__AuditEvent *ev = NULL;
    int rc = store_audit_get(t->s, key, &ev);
    if (rc != NORN_OK)
        return rc;
    Key k = {.len = 16}, idx[4];
    size_t n_idx = 0;
    memcpy(k.b, key, 16);
    if (audit_idx_keys(ev, key_get_u64(key), key_get_u64(key + 8), idx, &n_idx) == 0)
        for (size_t i = 0; i < n_idx; i++)
            del_key(t, CF_AUDIT_IDX, &idx[i]);
    norn__v1__audit_event__free_unpacked(ev, NULL);
    del_key(t, CF_AUDIT, &k);
    if (t->counters.audit_events)
        t->counters.audit_events--;
    return NORN_OK;
}

int store_txn_add_delta(StoreTxn *t, Norn__V1__SessionDelta *d)
{
    Key k;
    d->revision = t->revision + t->n_deltas;
    key_revision(&k, d->revision);
    t->n_deltas++;
    return put_message(t, CF_REVLOG, &k, &d->base);
}

static int marker_key(Key *k, const char *kind, const char *id)
{
    size_t kl = strlen(kind), il = strlen(id);
    if (2 + kl + il > KEY_MAX)
        return -1;
    k->len = 0;
    k->b[k->len++] = 'w';
    memcpy(k->b + k->len, kind, kl);
    k->len += kl;
    k->b[k->len++] = 0;
    memcpy(k->b + k->len, id, il);
    k->len += il;
    return 0;
}

int store_txn_put_marker(StoreTxn *t, const char *kind, const char *id)
{
    Key k;
    if (marker_key(&k, kind, id)) {
        t->failed = 1;
        return NORN_ERR_INVALID;
    }
    put_key(t, CF_META, &k, "", 0);
    return NORN_OK;
}

int store_txn_delete_marker(StoreTxn *t, const char *kind, const char *id)
{
    Key k;
    if (marker_key(&k, kind, id)) {
        t->failed = 1;
        return NORN_ERR_INVALID;
    }
    del_key(t, CF_META, &k);
    return NORN_OK;
}

int store_txn_delete_markers(StoreTxn *t, const char *kind, const char *prefix)
{
    Key lo, hi;
    if (marker_key(&lo, kind, prefix) || key_prefix_end(&lo, &hi) != 0) {
        t->failed = 1;
        return NORN_ERR_INVALID;
    }
    rocksdb_writebatch_delete_range_cf(t->wb, t->s->cf[CF_META], (const char *)lo.b, lo.len,
                                       (const char *)hi.b, hi.len);
    return NORN_OK;
}

int store_markers_scan(Store *s, const char *kind, StoreMarkerVisit visit, void *arg)
{
    Key prefix;
    if (marker_key(&prefix, kind, ""))
        return NORN_ERR_INVALID;
    RangeIter r;
    prefix_range(s, CF_META, &r, &prefix);
    for (; rocksdb_iter_valid(r.it); rocksdb_iter_next(r.it)) {
        size_t klen;
        const char *key = rocksdb_iter_key(r.it, &klen);
        char id[KEY_MAX + 1];
        size_t n = klen - prefix.len;
        memcpy(id, key + prefix.len, n);
        id[n] = 0;
        if (!visit(arg, id))
            break;
    }
    range_close(&r);
    return NORN_OK;
}

int store_txn_put_config(StoreTxn *t, const Norn__V1__Config *c)
{
    Key k;
    key_session(&k, META_CONFIG);
    return put_message(t, CF_META, &k, &c->base);
}

int store_txn_put_agent(StoreTxn *t, const Norn__V1__Agent *a)
{
    Key k, nk;
    if (agent_key(&k, a->agent_id) || agent_name_key(&nk, (int)a->source, a->name)) {
        t->failed = 1;
        return NORN_ERR_INVALID;
    }
    put_key(t, CF_AGENTS, &nk, a->agent_id, strlen(a->agent_id));
    return put_message(t, CF_AGENTS, &k, &a->base);
}

int store_txn_delete_agent(StoreTxn *t, const Norn__V1__Agent *a)
{
    Key k, nk;
    if (agent_key(&k, a->agent_id) || agent_name_key(&nk, (int)a->source, a->name)) {
        t->failed = 1;
        return NORN_ERR_INVALID;
    }
    del_key(t, CF_AGENTS, &k);
    del_key(t, CF_AGENTS, &nk);
    return NORN_OK;
}

int store_txn_put_run(StoreTxn *t, const Norn__V1__Run *run)
{
    Key k, tk;
    uint64_t queued = store_ts_micros(run->queued_at);
    if (!queued || key_run(&k, run->run_id) || key_run_by_time(&tk, queued, run->run_id)) {
        t->failed = 1;
        return NORN_ERR_INVALID;
    }
    int rc = put_message(t, CF_RUNS, &k, &run->base);
    if (rc)
        return rc;
    put_key(t, CF_RUNS, &tk, "", 0);
    return NORN_OK;
}

int store_txn_trim_revlog(StoreTxn *t, uint64_t keep_from)
{
    Key lo, hi;
    key_revision(&lo, 0);
    key_revision(&hi, keep_from);
    rocksdb_writebatch_delete_range_cf(t->wb, t->s->cf[CF_REVLOG], (const char *)lo.b, lo.len,
                                       (const char *)hi.b, hi.len);
    return NORN_OK;
}

static void delete_prefix(StoreTxn *t, int cf, const Key *prefix)
{
    Key end;
    if (key_prefix_end(prefix, &end) != 0)
        return;
    rocksdb_writebatch_delete_range_cf(t->wb, t->s->cf[cf], (const char *)prefix->b, prefix->len,
                                       (const char *)end.b, end.len);
}

int store_txn_delete_session(StoreTxn *t, const Norn__V1__Session *s)
{
    Key k, prefix;
    SessionIdx x;
    if (key_session(&k, s->session_id) || index_keys(s, &x) ||
        key_session_prefix(&prefix, s->session_id)) {
        t->failed = 1;
        return NORN_ERR_INVALID;
    }
    txn_note_deleted(t, s->session_id);
    del_key(t, CF_SESSIONS, &k);
    del_key(t, CF_BY_TIME, &x.time);
    del_key(t, CF_BY_AGENT, &x.agent);
    if (x.agent_id.len)
        del_key(t, CF_BY_AGENT_ID, &x.agent_id);
    if (x.swarm.len)
        del_key(t, CF_BY_SWARM, &x.swarm);
    delete_prefix(t, CF_STEPS, &prefix);
    delete_prefix(t, CF_TOOL_USES, &prefix);
    delete_prefix(t, CF_ISSUES, &prefix);

    /* Audit rows live in time order; the per-session index names them. */
    Key aprefix;
    audit_idx_prefix(&aprefix, STORE_AUDIT_BY_SESSION, s->session_id);
    RangeIter r;
    prefix_range(t->s, CF_AUDIT_IDX, &r, &aprefix);
    for (; rocksdb_iter_valid(r.it); rocksdb_iter_next(r.it)) {
        size_t klen;
        const char *key = rocksdb_iter_key(r.it, &klen);
        if (klen == aprefix.len + 16)
            store_txn_delete_audit(t, (const uint8_t *)key + aprefix.len);
    }
    range_close(&r);
    swarm_forget_member(t, s);
    return NORN_OK;
}

static void put_u64_meta(StoreTxn *t, const char *name, uint64_t v)
{
    Key k;
    key_session(&k, name);
    uint8_t b[8];
    key_put_u64(b, v);
    put_key(t, CF_META, &k, b, 8);
}

static void release(StoreTxn *t)
{
    for (size_t i = 0; i < t->n_deleted; i++)
        free(t->deleted[i]);
    free(t->deleted);
    rocksdb_writebatch_destroy(t->wb);
    pthread_mutex_unlock(&t->s->write_mu);
    free(t);
}

int store_txn_commit(StoreTxn *t, char *err, size_t errlen)
{
    if (t->failed) {
        snprintf(err, errlen, "transaction was not built completely");
        release(t);
        return NORN_ERR_INTERNAL;
    }
    Store *s = t->s;
    uint64_t last = t->revision + t->n_deltas - 1;
    if (t->n_deltas)
        put_u64_meta(t, META_REVISION, last);
    put_u64_meta(t, META_AUDIT_SEQ, t->audit_seq);
    uint8_t cbuf[COUNTER_WORDS * 8];
    const uint64_t *c = (const uint64_t *)&t->counters;
    for (size_t i = 0; i < COUNTER_WORDS; i++)
        key_put_u64(cbuf + i * 8, c[i]);
    Key ck;
    key_session(&ck, META_COUNTERS);
    put_key(t, CF_META, &ck, cbuf, sizeof cbuf);

    char *rerr = NULL;
    rocksdb_write(s->db, s->wopts, t->wb, &rerr);
    if (rerr) {
        snprintf(err, errlen, "write failed: %s", rerr);
        rocksdb_free(rerr);
        release(t);
        return NORN_ERR_STORAGE;
    }
    pthread_mutex_lock(&s->state_mu);
    if (t->n_deltas)
        s->revision = last;
    s->audit_seq = t->audit_seq;
    s->counters = t->counters;
    pthread_mutex_unlock(&s->state_mu);
    release(t);
    return NORN_OK;
}

void store_txn_abort(StoreTxn *t)
{
    release(t);
}
