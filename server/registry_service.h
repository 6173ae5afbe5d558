/*
 * registry_service.h — the agent registry (norn.v1.AgentService: Register,
 * Get, List, Delete), swarms (norn.v1.SwarmService) and the audit log
 * (norn.v1.AuditService), all served from the store's indexes. ImportAgent
 * is handed to the importer (agent_import.h), which also owns the agents'
 * workspaces that DeleteAgent removes. Runs (the executor) are not part of
 * this module.
 */
#ifndef NORN_REGISTRY_SERVICE_H
#define NORN_REGISTRY_SERVICE_H

#include "agent_import.h"
#include "config.h"
#include "rpc_server.h"
#include "run_service.h"
#include "session_service.h"
#include "store.h"
#include "swarm_analysis.h"

typedef struct Registry Registry;

Registry *registry_new(Store *store, ConfigHolder *config, SessionService *sessions);
/* Serves ImportAgent through `importer` and makes DeleteAgent remove the
 * agent's workspace; without one (NULL), ImportAgent is UNIMPLEMENTED. Call
 * before registry_register; the importer must outlive the server's calls. */
void registry_set_importer(Registry *r, AgentImporter *importer);
/* Lets AgentService answer the four run RPCs through `rs` (NULL: they
 * answer UNAVAILABLE). */
void registry_set_runs(Registry *r, RunService *rs);
/* Serves AnalyzeSwarm (and GetSwarm's cached analysis) through `sa`;
 * without one, AnalyzeSwarm answers FAILED_PRECONDITION. */
void registry_set_swarm_analyzer(Registry *r, SwarmAnalyzer *sa);
int registry_register(Registry *r, RpcServer *srv);
void registry_free(Registry *r);

/* The alignment score of a swarm (reference §5, restored): the tasks of
 * members 2..n, each compared with member 1's task as word sets (lower
 * case, split on whitespace, punctuation kept) by Jaccard |A∩B|/|A∪B|; an
 * empty first task counts 1.0 for every member, an empty later task 0.0;
 * the mean, rounded to 3 decimals. Fewer than two members: 1.0. Exposed for
 * unit tests. */
double swarm_alignment_score(const char *const *tasks, size_t n);

/* Worst quality by the original's priority FAILED > STUCK > POOR > PENDING
 * > GOOD > EXCELLENT; PENDING when none is known. */
int swarm_worst_quality(const int *qualities, size_t n);

#endif
