/*
 * health.h — grpc.health.v1.Health: Check and Watch.
 *
 * "" is the whole server; each registered service name has its own status.
 * While draining, everything is NOT_SERVING and watchers are told so before
 * their streams end. Watch streams are fed by the watch hub's sender
 * threads (watch.h), like WatchSessions.
 */
#ifndef NORN_HEALTH_H
#define NORN_HEALTH_H

#include "rpc_server.h"

typedef struct Health Health;

typedef enum HealthStatus {
    HEALTH_SERVING = 1,
    HEALTH_NOT_SERVING = 2,
} HealthStatus;

/* NULL when out of memory or the watch senders cannot start. */
Health *health_new(void);
/* Serves the Health service on srv (public: no API key needed). */
int health_register(Health *h, RpcServer *srv);
/* Declares `service` ("" = the server) and sets its status; returns once
 * a change is queued on every stream watching it. Must not be called from
 * a watch sender thread. */
void health_set(Health *h, const char *service, HealthStatus st);
/* Every service NOT_SERVING: the first step of a drain. */
void health_set_all(Health *h, HealthStatus st);
void health_free(Health *h);

#endif
