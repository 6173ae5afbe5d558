/*
 * store.h — Norn's RocksDB store: the only code that calls rocksdb_*.
 *
 * Values are protobuf bytes (norn.v1 messages); keys are laid out in keys.h.
 * Every change a reader can see is made inside a StoreTxn and committed as
 * one WriteBatch together with the counters and the next revision, so
 * readers never see half a change and a crash loses nothing acknowledged
 * (the WAL is on; a SIGKILL after commit keeps the batch).
 *
 * Writers are serialised: store_txn_begin takes the store's write lock and
 * commit/abort releases it, so a read-modify-write inside a transaction
 * sees no other writer. Reads outside a transaction see committed data.
 */
#ifndef NORN_STORE_H
#define NORN_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "norn/v1/agent_service.pb-c.h"
#include "norn/v1/audit_service.pb-c.h"
#include "norn/v1/common.pb-c.h"
#include "norn/v1/config_service.pb-c.h"
#include "norn/v1/session_service.pb-c.h"

typedef struct Store Store;
typedef struct StoreTxn StoreTxn;

typedef struct StoreOptions {
    size_t block_cache_bytes; /* shared by every column family */
    int sync_writes;          /* fsync each commit (power-loss safe; slower) */
} StoreOptions;

void store_options_init(StoreOptions *o);

/* Opens (creating if needed) the store in `dir`. NORN_OK or an error with a
 * message in err (e.g. another process holds the lock). */
int store_open(const char *dir, const StoreOptions *o, Store **out, char *err, size_t errlen);
void store_close(Store *s);

/* ---- counters: exact totals kept in the same batches as the data ----- */

enum {
    STORE_QUALITY_SLOTS = 8, /* Norn__V1__SessionQuality values */
    STORE_STATUS_SLOTS = 4,  /* Norn__V1__SessionStatus values */
    STORE_ISSUE_SLOTS = 32,  /* Norn__V1__IssueType values */
};

typedef struct StoreCounters {
    uint64_t sessions;
    uint64_t by_status[STORE_STATUS_SLOTS];
    uint64_t by_quality[STORE_QUALITY_SLOTS];
    uint64_t steps;
    uint64_t issues;
    uint64_t issues_by_type[STORE_ISSUE_SLOTS];
    uint64_t efficiency_scored; /* sessions with an efficiency score */
    uint64_t efficiency_sum;
    uint64_t security_scored;
    uint64_t security_sum;
    uint64_t agents; /* registered agents */
    /* Sessions by security score 0..100: critical threats are counted under
     * the threshold in force when asked, not when each session was written. */
    uint64_t security_hist[101];
    uint64_t audit_events;
} StoreCounters;

/* The committed counters and revision, read together. */
void store_counters(Store *s, StoreCounters *out, uint64_t *revision);

/* ---- reads (committed data) -------------------------------------------- */

/* A consistent view as of one revision: reads through it see exactly the
 * commits up to *revision (watch snapshots need that, with no gap or
 * duplicate at the seam). */
typedef struct StoreSnapshot StoreSnapshot;
StoreSnapshot *store_snapshot_open(Store *s, uint64_t *revision);
void store_snapshot_close(Store *s, StoreSnapshot *snap);
/* store_session_get through a snapshot (NULL = latest). */
int store_session_get_at(Store *s, const StoreSnapshot *snap, const char *id,
                         Norn__V1__Session **out);

/* *out is a message to free with protobuf_c_message_free_unpacked.
 * NORN_ERR_NOT_FOUND when absent. */
int store_session_get(Store *s, const char *id, Norn__V1__Session **out);
int store_step_get(Store *s, const char *id, uint32_t step, Norn__V1__Step **out);
int store_tool_use_get(Store *s, const char *id, const char *tool_use_id, uint32_t *step);

/* Up to `limit` steps of session `id` with step_number >= from, in order.
 * *next is the step number to continue from, or 0 when there are no more. */
int store_steps_scan(Store *s, const char *id, uint32_t from, size_t limit, Norn__V1__Step ***out,
                     size_t *n, uint32_t *next);
int store_issues_scan(Store *s, const char *id, Norn__V1__Issue ***out, size_t *n);
void store_free_steps(Norn__V1__Step **steps, size_t n);
void store_free_issues(Norn__V1__Issue **issues, size_t n);

/* Session listing through one index, newest first. */
typedef enum StoreIndex {
    STORE_BY_TIME = 1,
    STORE_BY_AGENT = 2, /* by agent name */
    STORE_BY_SWARM = 3,
    STORE_BY_AGENT_ID = 4,
} StoreIndex;

typedef struct StoreListQuery {
    StoreIndex index;
    const char *name;       /* agent name or swarm id for those indexes */
    uint64_t before_micros; /* 0 = no bound: sessions started before this */
    uint64_t after_micros;  /* 0 = no bound: sessions started at or after this */
    const uint8_t *resume;  /* index key to continue after (from a page token), or NULL */
    size_t resume_len;
    size_t max_scan;               /* index entries examined at most in this call */
    const StoreSnapshot *snapshot; /* NULL = latest */
} StoreListQuery;

/* Calls `visit` for each session in index order until it returns 0 (page
 * full) or max_scan entries were examined. Sets *last to the last examined
 * index key (to resume after) and *more when the index may hold more. */
typedef int (*StoreVisit)(void *arg, Norn__V1__Session *session);
int store_sessions_scan(Store *s, const StoreListQuery *q, StoreVisit visit, void *arg,
                        uint8_t *last, size_t *last_len, int *more);

/* Audit events, newest first, through the time-ordered family or one of
 * its indexes (session, agent name, event type, severity), between two
 * times. `last` receives the key (micros ‖ seq, 16 bytes) of the last event
 * examined, to resume after. */
typedef enum StoreAuditIndex {
    STORE_AUDIT_BY_TIME = 0,
    STORE_AUDIT_BY_SESSION = 's',
    STORE_AUDIT_BY_AGENT = 'a',
    STORE_AUDIT_BY_TYPE = 't',     /* name: the AuditEventType number in decimal */
    STORE_AUDIT_BY_SEVERITY = 'v', /* name: the AuditSeverity number in decimal */
} StoreAuditIndex;

typedef struct StoreAuditQuery {
    StoreAuditIndex index;
    const char *name;
    uint64_t after_micros;  /* inclusive; 0 = no bound */
    uint64_t before_micros; /* exclusive; 0 = no bound */
    const uint8_t *resume;  /* 16-byte key to continue after, or NULL */
    size_t max_scan;
} StoreAuditQuery;

typedef int (*StoreAuditVisit)(void *arg, Norn__V1__AuditEvent *ev, const uint8_t key[16]);
int store_audit_scan(Store *s, const StoreAuditQuery *q, StoreAuditVisit visit, void *arg,
                     uint8_t last[16], int *more);
int store_audit_get(Store *s, const uint8_t key[16], Norn__V1__AuditEvent **out);

/* Agents, in id order from `after` (exclusive; NULL = first). */
int store_agent_get(Store *s, const char *agent_id, Norn__V1__Agent **out);
/* The id of the agent registered under (source, name), if any. */
int store_agent_by_name(Store *s, int source, const char *name, char *id, size_t cap);
typedef int (*StoreAgentVisit)(void *arg, Norn__V1__Agent *a);
int store_agents_scan(Store *s, const char *after, size_t max, StoreAgentVisit visit, void *arg,
                      int *more);

/* Swarms, newest first (by their first member's start). `last` holds the
 * index key to resume after. */
typedef int (*StoreSwarmVisit)(void *arg, const char *swarm_id);
int store_swarms_scan(Store *s, const uint8_t *resume, size_t resume_len, size_t max,
                      StoreSwarmVisit visit, void *arg, uint8_t *last, size_t *last_len, int *more);

/* Revision log entries from `from` (inclusive), in order. */
typedef int (*StoreDeltaVisit)(void *arg, Norn__V1__SessionDelta *d);
int store_revlog_scan(Store *s, uint64_t from, size_t max, StoreDeltaVisit visit, void *arg);
/* Oldest revision still in the log (0 when empty). */
uint64_t store_revlog_oldest(Store *s);

/* Runs (AgentService.RunAgent). store_run_get: NORN_ERR_NOT_FOUND when
 * absent; *out is freed with protobuf_c_message_free_unpacked. */
int store_run_get(Store *s, const char *run_id, Norn__V1__Run **out);

/* Run listing, newest first by queued_at. Filters combine with AND. */
typedef struct StoreRunQuery {
    const char *agent_id;  /* NULL or "" = any agent */
    int state;             /* Norn__V1__RunState; 0 = any */
    const uint8_t *resume; /* index key to continue after (from a page token), or NULL */
    size_t resume_len;
    size_t max_scan; /* index entries examined at most in this call */
} StoreRunQuery;

/* Calls `visit` with each matching run (the visitor owns it) until it
 * returns 0 (page full) or max_scan entries were examined. Sets *last to the
 * last examined index key (≤ KEY_MAX bytes, to resume after) and *more when
 * the index may hold more. */
typedef int (*StoreRunVisit)(void *arg, Norn__V1__Run *run);
int store_runs_scan(Store *s, const StoreRunQuery *q, StoreRunVisit visit, void *arg, uint8_t *last,
                    size_t *last_len, int *more);

/* Config blob (NORN_ERR_NOT_FOUND when never saved). */
int store_config_get(Store *s, Norn__V1__Config **out);

/* ---- writes -------------------------------------------------------------- */

/* Begins a transaction (takes the write lock). Its revision is the next
 * one; it is consumed only if the transaction sets a revision-log entry
 * (store_txn_set_delta), so revisions have no gaps. */
StoreTxn *store_txn_begin(Store *s);
uint64_t store_txn_revision(const StoreTxn *t);
/* The last revision the transaction will commit (0 when it adds none). */
uint64_t store_txn_last_revision(const StoreTxn *t);
/* The counters as this transaction will commit them: adjust in place. */
StoreCounters *store_txn_counters(StoreTxn *t);
/* Current time in microseconds, fixed for the whole transaction. */
uint64_t store_txn_now_micros(const StoreTxn *t);

/* Writes the session summary (steps and issues are not stored in it) and
 * keeps its index rows in step with `prev` (NULL for a new session). */
int store_txn_put_session(StoreTxn *t, const Norn__V1__Session *s, const Norn__V1__Session *prev);
int store_txn_put_step(StoreTxn *t, const char *id, const Norn__V1__Step *step);
int store_txn_put_tool_use(StoreTxn *t, const char *id, const char *tool_use_id, uint32_t step);
int store_txn_put_issue(StoreTxn *t, const char *id, uint32_t seq, const Norn__V1__Issue *issue);
/* Appends an audit event (its event_id is set from time and sequence when empty). */
int store_txn_add_audit(StoreTxn *t, Norn__V1__AuditEvent *ev);
/* Adds a revision-log entry: it gets the next revision of this transaction
 * (store_txn_revision() for the first), which is written into d->revision. */
int store_txn_add_delta(StoreTxn *t, Norn__V1__SessionDelta *d);
/* Removes a session with its steps, tool-use index, issues, audit rows and
 * index rows. */
int store_txn_delete_session(StoreTxn *t, const Norn__V1__Session *s);
int store_txn_put_config(StoreTxn *t, const Norn__V1__Config *c);

/* Pending-work markers: written in the transaction of the change that asks
 * for work done off the request path (e.g. "eval" for a session evaluation),
 * deleted in the transaction that finishes it, and listed at start-up, so
 * work a crash interrupted is queued again. Meta family, key "w" kind 00 id. */
int store_txn_put_marker(StoreTxn *t, const char *kind, const char *id);
int store_txn_delete_marker(StoreTxn *t, const char *kind, const char *id);
/* Deletes every marker of `kind` whose id starts with `prefix`. */
int store_txn_delete_markers(StoreTxn *t, const char *kind, const char *prefix);
typedef int (*StoreMarkerVisit)(void *arg, const char *id); /* 0 stops */
int store_markers_scan(Store *s, const char *kind, StoreMarkerVisit visit, void *arg);
/* Deletes one audit event and its index rows. */
int store_txn_delete_audit(StoreTxn *t, const uint8_t key[16]);
int store_txn_put_agent(StoreTxn *t, const Norn__V1__Agent *a);
int store_txn_delete_agent(StoreTxn *t, const Norn__V1__Agent *a);
/* Writes a run and its queued-time index row (queued_at must be set and
 * never changes for a run). Runs are not in the revision log. */
int store_txn_put_run(StoreTxn *t, const Norn__V1__Run *run);
/* Drops revision-log entries older than `keep_from`. */
int store_txn_trim_revlog(StoreTxn *t, uint64_t keep_from);

/* Commits everything as one WriteBatch and releases the lock. On failure
 * nothing is written (NORN_ERR_STORAGE, message in err). */
int store_txn_commit(StoreTxn *t, char *err, size_t errlen);
void store_txn_abort(StoreTxn *t);

/* Microseconds of a Timestamp (0 for NULL). */
uint64_t store_ts_micros(const Google__Protobuf__Timestamp *ts);

#endif
