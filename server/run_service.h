/*
 * run_service.h — AgentService runs (RunAgent, GetRun, ListRuns, CancelRun)
 * on the executor (server/executor): every run is a Run record in the store
 * and a session fed by the run's events pipe (or the agent's own gRPC calls).
 *
 * A run's life
 *   RunAgent stores the Run QUEUED (with a reserved session id) and queues
 *   it. Before an agent's first run, its virtualenv
 *   <data_dir>/agents/<agent_id>/venv is built by a run of its own
 *   (executor_venv_argv: venv --system-site-packages, pip install -r
 *   requirements.txt when the agent has one); runs of that agent wait for
 *   it. When the agent's process starts the run turns RUNNING and the server
 *   opens the session (agent name and id, task, guard mode). The agent runs
 *   as `<venv>/bin/python <main_file>` in a per-run copy of its files,
 *   <data_dir>/runs/<run_id> (the copy is made by the run's own shell, never
 *   by the server), so a run cannot change the agent's files. A step the
 *   judge answers TERMINATE kills the run's process group. At the end the
 *   Run gets its final state, exit code or signal, log tail and error, and
 *   the session is completed when the agent did not complete it.
 *
 * Restart policy: run_service_new marks every run stored QUEUED or RUNNING
 * (a server that died) FAILED with the reason, completes their sessions and
 * puts their agents back from RUNNING.
 */
#ifndef NORN_RUN_SERVICE_H
#define NORN_RUN_SERVICE_H

#include <stddef.h>

#include "config.h"
#include "norn/v1/agent_service.pb-c.h"
#include "rpc_server.h"
#include "session_service.h"
#include "store.h"

typedef struct RunServiceOptions {
    const char *data_dir;     /* agents in data_dir/agents, run workspaces in data_dir/runs */
    const char *wrapper_path; /* the norn-run-wrapper executable */
    const char *python;       /* interpreter that builds the venvs; NULL = /usr/bin/python3 */
    unsigned slots;           /* concurrent runs; 0 = the config's executor_slots */
    unsigned queue;           /* queued runs; 0 = the config's executor_queue */
    long run_uid;             /* run agents as this uid/gid (root server); -1 = unchanged */
    long run_gid;
} RunServiceOptions;

typedef struct RunService RunService;

/* Applies the restart policy, then starts the executor. NULL with err set
 * on failure. store, config and sessions must outlive the service. */
RunService *run_service_new(const RunServiceOptions *o, Store *store, ConfigHolder *config,
                            SessionService *sessions, char *err, size_t errlen);

/* The address agents reach the server on (NORN_ENDPOINT), e.g.
 * "127.0.0.1:50051"; known once the RPC server listens. Copied. */
void run_service_set_endpoint(RunService *rs, const char *endpoint);

/* Runs queued and running right now (for stats). */
void run_service_counts(RunService *rs, unsigned *queued, unsigned *running);

/* The handlers, called by AgentService (registry_service.c). */
RpcCode run_service_run_agent(RunService *rs, RpcCall *call, const Norn__V1__RunAgentRequest *req,
                              Norn__V1__RunAgentResponse *resp);
RpcCode run_service_get_run(RunService *rs, RpcCall *call, const Norn__V1__GetRunRequest *req,
                            Norn__V1__GetRunResponse *resp);
RpcCode run_service_list_runs(RunService *rs, RpcCall *call, const Norn__V1__ListRunsRequest *req,
                              Norn__V1__ListRunsResponse *resp);
RpcCode run_service_cancel_run(RunService *rs, RpcCall *call, const Norn__V1__CancelRunRequest *req,
                               Norn__V1__CancelRunResponse *resp);

/* Stops the executor: runs still queued or running are killed and recorded
 * FAILED ("the server shut down"), their sessions completed. Call it before
 * the session service is freed. NULL is fine. */
void run_service_free(RunService *rs);

#endif
