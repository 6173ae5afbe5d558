/*
 * session_service.h — norn.v1.SessionService: ingest (OpenSession,
 * BeginStep, EndStep, RecordSteps, Ingest, CompleteSession) and queries
 * (GetSession, ListSessions, ListSteps, DeleteSession) on the store.
 *
 * Every mutating RPC is one store transaction: the step, the session
 * summary, issues, audit rows, index rows, counters and the revision-log
 * entry commit together or not at all.
 */
#ifndef NORN_SESSION_SERVICE_H
#define NORN_SESSION_SERVICE_H

#include <stdint.h>

#include "config.h"
#include "rpc_server.h"
#include "store.h"
#include "watch.h"
#include "evaluator.h"

typedef struct SessionService SessionService;

/* Called after each committed revision (the watch hub subscribes here). */
typedef void (*CommitHook)(void *arg, uint64_t revision);

SessionService *session_service_new(Store *store, ConfigHolder *config);
void session_service_on_commit(SessionService *ss, CommitHook hook, void *arg);
/* WatchSessions is served by this hub. */
void session_service_set_watch(SessionService *ss, WatchHub *hub);
int session_service_register(SessionService *ss, RpcServer *srv);

/* Removes a session and everything it owns inside a caller's transaction:
 * counters, its DELETED revision (one per session, so a swarm or agent
 * delete of N sessions consumes N revisions in one batch). */
void session_service_delete_in_txn(SessionService *ss, StoreTxn *t, const Norn__V1__Session *s);
/* Commits a transaction built with the above and tells the watch hub.
 * RPC_OK, or the RPC code with a message in err. */
int session_service_commit(SessionService *ss, StoreTxn *t, char *err, size_t errlen);
/* One Ingest item (open, begin_step, end_step, record_steps, complete),
 * exactly as the Ingest stream runs it, for in-process producers such as
 * the executor's events pipe. The response (free with
 * protobuf_c_message_free_unpacked) or NULL with the status and message
 * the stream would have answered. */
Norn__V1__IngestResponse *session_service_ingest(SessionService *ss,
                                                 const Norn__V1__IngestRequest *req, RpcCode *code,
                                                 char *msg, size_t cap);

/* Records that session `id` is the session of agent run `run_id`: one
 * commit with an UPDATED delta, so watchers see it. RPC_OK, or the code
 * with a message in err. */
int session_service_set_run(SessionService *ss, const char *id, const char *run_id, char *err,
                            size_t errlen);

/* The AI judge: hooks through which it loads and applies its work, and
 * the judge to queue steps and sessions on (NULL: none). */
void session_service_evaluator_hooks(SessionService *ss, EvaluatorHooks *h);
void session_service_set_evaluator(SessionService *ss, Evaluator *ev);
void session_service_free(SessionService *ss);

#endif
