/*
 * health.c — grpc.health.v1.Health on the generated handler table.
 *
 * Watch streams ride on the watch hub's feeds (watch.h): the sender that
 * owns a stream's connection sends the status whenever it differs from the
 * last one sent, through the same bounded queue, pacing and cut-off rule as
 * WatchSessions. A status change updates the table and wakes the senders;
 * the setter returns once the new status is queued on every watching
 * stream, so a drain's NOT_SERVING goes out before the streams end. A
 * stream leaves when its call is over (client gone, deadline, drain).
 */
#include "health.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.grpc-c.h"
#include "log.h"
#include "watch.h"

#define MAX_SERVICE_NAME 200
/* Status messages are a few bytes: a stream with this much unsent is not
 * reading. */
#define WATCH_QUEUE_BYTES 4096

typedef struct ServiceStatus {
    struct ServiceStatus *next;
    char *name;
    HealthStatus status;
} ServiceStatus;

/* One Watch stream; touched only by its feed's sender. */
typedef struct Watcher {
    Health *h;
    char service[MAX_SERVICE_NAME + 1];
    int last_sent; /* wire value last sent, -1 = none */
    int done;
} Watcher;

struct Health {
    pthread_mutex_t mu; /* the status table */
    ServiceStatus *services;
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

static void cut_off(Watcher *w, RpcCall *call)
{
    rpc_call_finish(call, RPC_RESOURCE_EXHAUSTED, "health watcher is not reading its stream");
    w->done = 1;
    log_info("health_watcher_cut_off", "service=\"%s\"", w->service);
}

/* The WatchPump of a Watch stream: sends the current status if it changed
 * since the last send. */
static void watcher_pump(void *ctx, WatchFeed *f, uint64_t now)
{
    Watcher *w = ctx;
    if (w->done)
        return;
    Health *h = w->h;
    pthread_mutex_lock(&h->mu);
    WireStatus st = wire_status_locked(h, w->service);
    pthread_mutex_unlock(&h->mu);
    if ((int)st == w->last_sent)
        return;
    RpcCall *call = watch_feed_call(f);
    WatchRoom room = watch_feed_room(f, WATCH_QUEUE_BYTES, 1, now);
    if (room == WATCH_ROOM_STALLED)
        cut_off(w, call);
    if (room != WATCH_ROOM_OK)
        return;
    Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    resp.status = st;
    RpcCode rc = grpc__health__v1__health__watch__send(call, &resp);
    if (rc == RPC_OK)
        w->last_sent = (int)st;
    else if (rc == RPC_CANCELLED)
        w->done = 1; /* the call is over; its feed goes */
    else
        cut_off(w, call);
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
    w->last_sent = -1;
    strcpy(w->service, req->service);
    /* Its sender sends the current status first. */
    if (watch_feed_add(call, h, watcher_pump, w, free) != 0) {
        free(w);
        return rpc_fail(call, RPC_RESOURCE_EXHAUSTED, "out of memory");
    }
    return RPC_PENDING;
}

static const Grpc__Health__V1__Health_Handlers health_handlers = {
    .check = health_check,
    .watch = health_watch,
};

Health *health_new(void)
{
    if (watch_senders_acquire() != 0)
        return NULL;
    Health *h = calloc(1, sizeof *h);
    if (!h) {
        watch_senders_release();
        return NULL;
    }
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
    pthread_mutex_unlock(&h->mu);
    watch_senders_flush();
}

void health_set_all(Health *h, HealthStatus st)
{
    pthread_mutex_lock(&h->mu);
    for (ServiceStatus *s = h->services; s; s = s->next)
        s->status = st;
    pthread_mutex_unlock(&h->mu);
    watch_senders_flush();
}

void health_free(Health *h)
{
    if (!h)
        return;
    /* Streams still listed belong to calls the server has ended. */
    watch_feeds_drop(h);
    for (ServiceStatus *s = h->services, *n; s; s = n) {
        n = s->next;
        free(s->name);
        free(s);
    }
    pthread_mutex_destroy(&h->mu);
    free(h);
    watch_senders_release();
}
