/*
 * watch.h — the watch hub behind SessionService/WatchSessions.
 *
 * The etcd/Kubernetes model: every commit has a revision and a revision-log
 * entry (a SessionDelta) written in the same batch. One hub thread walks
 * the log in revision order and fans each delta out to the watchers whose
 * filter matches, packing each delta once. Delivery is in revision order
 * with no gaps; a watcher that stops reading only fills its own bounded
 * queue, and once it lags more than the hub's window behind it is cut off
 * with RESOURCE_EXHAUSTED and trailer norn-resume-revision, so it never
 * slows ingest or other watchers. The hub also sends periodic progress
 * messages and trims the log by count and age.
 */
#ifndef NORN_WATCH_H
#define NORN_WATCH_H

#include <stdint.h>

#include "config.h"
#include "norn/v1/session_service.pb-c.h"
#include "rpc.h"
#include "store.h"

typedef struct WatchHub WatchHub;

typedef struct WatchLimits {
    size_t queue_bytes;     /* per watcher: packed, not yet on the wire */
    uint64_t max_lag;       /* revisions a watcher may fall behind */
    size_t max_initial;     /* sessions in a send_initial snapshot */
    uint32_t trim_every_ms; /* how often the revision log is trimmed */
} WatchLimits;

void watch_limits_default(WatchLimits *l);

WatchHub *watch_hub_new(Store *store, ConfigHolder *config, const WatchLimits *limits);
/* Stops the hub thread; call after the RPC server has drained. */
void watch_hub_free(WatchHub *h);

/* A commit happened (the session service's CommitHook). Never blocks on
 * watchers. */
void watch_hub_publish(void *hub, uint64_t revision);

/* The WatchSessions handler body: validates, sends the snapshot when
 * asked, registers the watcher and returns RPC_PENDING, or an error. */
RpcCode watch_hub_watch(WatchHub *h, RpcCall *call, const Norn__V1__WatchSessionsRequest *req);

/* Figures for tests and benchmarks. */
typedef struct WatchStats {
    size_t watchers;
    uint64_t delivered; /* messages handed to watchers */
    uint64_t cut_off;   /* watchers ended for lagging */
    uint64_t revision;  /* last revision fanned out */
} WatchStats;
void watch_hub_stats(WatchHub *h, WatchStats *out);

#endif
