/*
 * health.c — grpc.health.v1.Health on the generated handler table.
 *
 * Watchers are kept in a list under one mutex; a status change sends the
 * new status to every watcher of that service. A watcher leaves the list in
 * its call's on_done callback (client gone, deadline, drain).
 */
#include "health.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.grpc-c.h"

#define MAX_SERVICE_NAME 200

typedef struct ServiceStatus {
    struct ServiceStatus *next;
    char *name;
    HealthStatus status;
} ServiceStatus;

typedef struct Watcher {
    struct Watcher *prev, *next;
    Health *h;
    RpcCall *call;
    char service[MAX_SERVICE_NAME + 1];
    int last_sent; /* wire value last sent, -1 = none */
} Watcher;

struct Health {
    pthread_mutex_t mu;
    ServiceStatus *services;
    Watcher *watchers;
};

typedef Grpc__Health__V1__HealthCheckResponse__ServingStatus WireStatus;

static ServiceStatus *find_locked(Health *h, const char *name)
{
    for (ServiceStatus *s = h->services; s; s = s->next)
        if (strcmp(s->name, name) == 0)
            return s;
    return NULL;
}

static WireStatus wire_status_locked(Health *h, const char *name)
{
    ServiceStatus *s = find_locked(h, name);
    if (!s)
        return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
    return s->status == HEALTH_SERVING
               ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
               : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
}

/* Sends the current status to a watcher if it changed since the last send. */
static void notify_locked(Health *h, Watcher *w)
{
    WireStatus st = wire_status_locked(h, w->service);
    if ((int)st == w->last_sent)
        return;
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = st;
    if (grpc__health__v1__health__watch__send(w->call, &resp) == RPC_OK)
        w->last_sent = (int)st;
}

static RpcCode health_check(void *ud, RpcCall *call,
                            const Grpc__Health__V1__HealthCheckRequest *req,
                            Grpc__Health__V1__HealthCheckResponse *resp)
{
    Health *h = ud;
    pthread_mutex_lock(&h->mu);
    WireStatus st = wire_status_locked(h, req->service);
    pthread_mutex_unlock(&h->mu);
    if (st == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN)
        return rpc_fail(call, RPC_NOT_FOUND, "unknown service '%.200s'", req->service);
    resp->status = st;
    return RPC_OK;
}

static void watcher_done(void *arg)
{
    Watcher *w = arg;
    Health *h = w->h;
    pthread_mutex_lock(&h->mu);
    if (w->prev)
        w->prev->next = w->next;
    else
        h->watchers = w->next;
    if (w->next)
        w->next->prev = w->prev;
    pthread_mutex_unlock(&h->mu);
    rpc_call_unref(w->call);
    free(w);
}

static RpcCode health_watch(void *ud, RpcCall *call,
                            const Grpc__Health__V1__HealthCheckRequest *req)
{
    Health *h = ud;
    if (strlen(req->service) > MAX_SERVICE_NAME)
        return rpc_fail(call, RPC_INVALID_ARGUMENT, "service: longer than %d bytes",
                        MAX_SERVICE_NAME);
    Watcher *w = calloc(1, sizeof *w);
    if (!w)
        return rpc_fail(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
    w->h = h;
    w->call = call;
    w->last_sent = -1;
    strcpy(w->service, req->service);
    rpc_call_ref(call);
    pthread_mutex_lock(&h->mu);
    w->next = h->watchers;
    if (h->watchers)
        h->watchers->prev = w;
    h->watchers = w;
    notify_locked(h, w);
    pthread_mutex_unlock(&h->mu);
    rpc_call_on_done(call, watcher_done, w);
    return RPC_PENDING;
}

static const Grpc__Health__V1__Health_Handlers health_handlers = {
    .check = health_check,
    .watch = health_watch,
};

Health *health_new(void)
{
    Health *h = calloc(1, sizeof *h);
    if (h)
        pthread_mutex_init(&h->mu, NULL);
    return h;
}

int health_register(Health *h, RpcServer *srv)
{
    if (grpc__health__v1__health__serve(srv, &health_handlers, h) != 0)
        return -1;
    rpc_server_set_public(srv, grpc__health__v1__health__rpc.name);
    return 0;
}

static void set_locked(Health *h, const char *service, HealthStatus st)
{
    ServiceStatus *s = find_locked(h, service);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s || !(s->name = strdup(service))) {
            free(s);
            return;
        }
        s->next = h->services;
        h->services = s;
    }
    s->status = st;
}

void health_set(Health *h, const char *service, HealthStatus st)
{
    pthread_mutex_lock(&h->mu);
    set_locked(h, service, st);
    for (Watcher *w = h->watchers; w; w = w->next)
        if (strcmp(w->service, service) == 0)
            notify_locked(h, w);
    pthread_mutex_unlock(&h->mu);
}

void health_set_all(Health *h, HealthStatus st)
{
    pthread_mutex_lock(&h->mu);
    for (ServiceStatus *s = h->services; s; s = s->next)
        s->status = st;
    for (Watcher *w = h->watchers; w; w = w->next)
        notify_locked(h, w);
    pthread_mutex_unlock(&h->mu);
}

void health_free(Health *h)
{
    if (!h)
        return;
    for (ServiceStatus *s = h->services, *n; s; s = n) {
        n = s->next;
        free(s->name);
        free(s);
    }
    pthread_mutex_destroy(&h->mu);
    free(h);
}
