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

typedef struct SessionService SessionService;

/* Called after each committed revision (the watch hub subscribes here). */
typedef void (*CommitHook)(void *arg, uint64_t revision);

SessionService *session_service_new(Store *store, ConfigHolder *config);
void session_service_on_commit(SessionService *ss, CommitHook hook, void *arg);
/* WatchSessions is served by this hub. */
void session_service_set_watch(SessionService *ss, WatchHub *hub);
int session_service_register(SessionService *ss, RpcServer *srv);
void session_service_free(SessionService *ss);

#endif
