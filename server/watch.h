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
 *
 * Delivery runs on a process-wide pool of sender threads (the "feeds"
 * below) that Health/Watch uses too: every watch-like stream is a feed
 * owned by one sender, chosen by its connection, so one thread writes to a
 * connection and the fan-out spreads over the cores. The hub thread only
 * reads the log and wakes the senders.
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

/* ---- feeds: the delivery machinery every watch stream rides on ---------------- */

/* Senders: min(cores, 8), or NORN_WATCH_SENDERS (1..8) when set. A sender
 * runs a pass over its feeds when kicked and every 50 ms. */

typedef struct WatchFeed WatchFeed;

/* Sends what is due on one feed; runs on the feed's sender thread, one
 * pass at a time, and must not block. `now_ms` is CLOCK_MONOTONIC. */
typedef void (*WatchPump)(void *ctx, WatchFeed *feed, uint64_t now_ms);

/* Takes a reference on the sender pool; every user of feeds holds one for
 * as long as it has feeds. 0, or -1 when the threads cannot start. */
int watch_senders_acquire(void);
/* Drops it; the last one stops the threads. */
void watch_senders_release(void);
/* Wakes every sender for a pass and waits until each has finished one that
 * began after this call: whatever the pumps send for state changed before
 * the call is queued on its stream when this returns. */
void watch_senders_flush(void);

/* Registers a stream whose handler returns RPC_PENDING next: takes a
 * reference on `call`, and its sender pumps it from now on (a first pass
 * is started at once). When the call is over the feed leaves its sender and
 * free_ctx(ctx) runs. `owner` names who registered it (watch_feeds_drop).
 * 0, or -1 when out of memory (then nothing is taken). */
int watch_feed_add(RpcCall *call, void *owner, WatchPump pump, void *ctx, void (*free_ctx)(void *));

/* The feed's call (valid while the feed is). */
RpcCall *watch_feed_call(const WatchFeed *f);

typedef enum WatchRoom {
    WATCH_ROOM_OK,      /* under queue_bytes: send */
    WATCH_ROOM_FULL,    /* full: send nothing now, the pump runs again later */
    WATCH_ROOM_STALLED, /* full for a second while behind: end the stream */
} WatchRoom;
/* The pacing and cut-off rule of every watch stream: a stream whose queue
 * holds queue_bytes or more is paced; one that stays full for a second
 * while `behind` (it is missing something it cannot be spared) is not
 * reading, and the caller ends it with RESOURCE_EXHAUSTED. */
WatchRoom watch_feed_room(WatchFeed *f, size_t queue_bytes, int behind, uint64_t now_ms);

/* Removes the feeds `owner` registered whose calls are still listed (only
 * calls the server failed to end while draining), unrefs their calls and
 * frees their contexts. */
void watch_feeds_drop(void *owner);

/* Figures for tests and benchmarks. */
typedef struct WatchStats {
    size_t watchers;
    uint64_t delivered; /* messages handed to watchers */
    uint64_t cut_off;   /* watchers ended for lagging */
    uint64_t revision;  /* last revision fanned out */
} WatchStats;
void watch_hub_stats(WatchHub *h, WatchStats *out);

#endif
