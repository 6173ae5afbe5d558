/*
 * agent_import.h — AgentService.ImportAgent: a small pool of import workers
 * behind a bounded queue, so the gRPC completion-queue threads never wait on
 * git, discovery or the model (issue 8, item 1).
 *
 * One import: RESOLVING, FETCHING, CHECKOUT (git_import_run into a staging
 * workspace <data_dir>/agents/.import-<id>/src, mirrors in
 * <data_dir>/mirrors), DISCOVERY (discovery_run), TASK_GENERATION (the
 * evaluator when AI is on, else or on any failure the deterministic task of
 * §8.7), REGISTERING (the staging workspace is renamed to
 * <data_dir>/agents/<agent_id> and the Agent written in one store
 * transaction). Progress goes to the caller's stream; the last message is
 * the Agent. On any failure, or when the client goes away, the workspace is
 * removed and nothing is registered.
 */
#ifndef NORN_AGENT_IMPORT_H
#define NORN_AGENT_IMPORT_H

#include <stddef.h>
#include <stdint.h>

#include "evaluator.h"
#include "norn/v1/agent_service.pb-c.h"
#include "rpc.h"
#include "store.h"

#define AGENT_IMPORT_DEFAULT_MAX_BYTES (100ull << 20)
#define AGENT_IMPORT_DEFAULT_MAX_SECONDS 120u

typedef struct AgentImporter AgentImporter;

typedef struct AgentImportOptions {
    const char *data_dir;     /* workspaces in data_dir/agents, mirrors in data_dir/mirrors */
    uint64_t max_bytes;       /* bytes received per import (0 = the default, 100 MiB); the
                                 files written may be 4 times that */
    uint32_t max_seconds;     /* the git part of an import (0 = the default, 120) */
    unsigned workers;         /* import threads (0 = 2) */
    size_t queue_capacity;    /* imports waiting for a worker (0 = 16) */
    unsigned task_timeout_ms; /* wait for the model's test task (0 = 60000) */
} AgentImportOptions;

/* Creates data_dir/agents, removes staging workspaces a crash left there and
 * starts the workers. `ev` may be NULL or disabled (then every task is the
 * deterministic one); store and ev must outlive the importer. Call
 * git_import_global_init() first. NULL with err set on failure. */
AgentImporter *agent_importer_new(const AgentImportOptions *o, Store *store, Evaluator *ev,
                                  char *err, size_t errlen);

/* The ImportAgent handler: validates `req` (INVALID_ARGUMENT naming the
 * field), queues the import (RESOURCE_EXHAUSTED when the queue is full,
 * UNAVAILABLE once stopping) and returns RPC_PENDING; a worker streams the
 * progress and finishes the call. Never blocks on I/O. */
RpcCode agent_importer_handle(AgentImporter *im, RpcCall *call,
                              const Norn__V1__ImportAgentRequest *req);

/* Removes data_dir/agents/<agent_id> recursively: symbolic links are
 * removed, never followed, and no other file system is entered. A missing
 * workspace is not an error. Returns 0, NORN_ERR_INVALID for an id that
 * cannot name a workspace ("", ".", "..", a leading '.', a '/'), or
 * NORN_ERR_INTERNAL with err set when something could not be removed. */
int agent_importer_remove_workspace(AgentImporter *im, const char *agent_id, char *err,
                                    size_t errlen);

/* Stops taking imports, cancels those running and waiting (their calls end
 * with UNAVAILABLE) and joins the workers. Call it while the RPC server
 * still exists (the workers hold call references); the handler answers
 * UNAVAILABLE afterwards. Idempotent. */
void agent_importer_stop(AgentImporter *im);

/* Stops (if not yet) and frees. NULL is fine. */
void agent_importer_free(AgentImporter *im);

#endif
