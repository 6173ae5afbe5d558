/*
 * admin_service.h — norn.v1.ConfigService (GetConfig, UpdateConfig with a
 * field mask, validated and persisted) and norn.v1.StatsService (GetStats
 * from the store's counters: a few keys, never a scan).
 */
#ifndef NORN_ADMIN_SERVICE_H
#define NORN_ADMIN_SERVICE_H

#include "config.h"
#include "evaluator.h"
#include "run_service.h"
#include "rpc_server.h"
#include "store.h"

typedef struct AdminService AdminService;

AdminService *admin_service_new(Store *store, ConfigHolder *config);
/* GetStats reports the AI judge's figures (NULL: none). */
void admin_service_set_evaluator(AdminService *a, Evaluator *ev);
/* GetStats reports queued and running agent runs (NULL: none). */
void admin_service_set_runs(AdminService *a, RunService *rs);
int admin_service_register(AdminService *a, RpcServer *srv);
void admin_service_free(AdminService *a);

#endif
