/*
 * swarm_analysis.h — AnalyzeSwarm: the AI pipeline analysis of a swarm
 * (reference §5), asked of the model through the evaluator and cached per
 * swarm revision.
 *
 * The RPC never blocks a completion-queue thread: a cache miss queues a
 * one-shot Converse call and answers when the model does (the call stays
 * open meanwhile). A cached analysis is served while the swarm is
 * unchanged: the same members, none of them changed since (their highest
 * revision is the cache key), all completed.
 */
#ifndef NORN_SWARM_ANALYSIS_H
#define NORN_SWARM_ANALYSIS_H

#include <stddef.h>
#include <stdint.h>

#include "evaluator.h"
#include "norn/v1/swarm_service.pb-c.h"
#include "rpc.h"

typedef struct SwarmAnalyzer SwarmAnalyzer;

SwarmAnalyzer *swarm_analyzer_new(Evaluator *ev);
/* Call after evaluator_stop (which ends the analyses still waiting for the
 * model) and after the RPC server is destroyed. */
void swarm_analyzer_free(SwarmAnalyzer *sa);

/* The cached analysis for this swarm state (a malloc'd copy with cached
 * set), or NULL. `members` are the swarm's sessions. */
Norn__V1__SwarmAnalysis *swarm_analyzer_cached(SwarmAnalyzer *sa, const char *swarm_id,
                                               Norn__V1__Session *const *members, size_t n);

/* Answers AnalyzeSwarm for `members` (sessions in swarm order, with their
 * steps for the "Tools used" lines): from the cache unless `refresh`, else
 * through the model. Returns RPC_OK with resp filled, RPC_PENDING (the call
 * is finished later), or an error (FAILED_PRECONDITION when AI evaluation
 * is off, RESOURCE_EXHAUSTED when the judge's queue is full). */
RpcCode swarm_analyzer_serve(SwarmAnalyzer *sa, RpcCall *call, const char *swarm_id,
                             Norn__V1__Session *const *members, size_t n, int refresh,
                             Norn__V1__AnalyzeSwarmResponse *resp);

/* The swarm was deleted: drop its analysis. */
void swarm_analyzer_forget(SwarmAnalyzer *sa, const char *swarm_id);

#endif
