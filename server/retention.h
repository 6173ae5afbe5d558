/*
 * retention.h — removes sessions and audit events older than the
 * configured log_retention_days, in bounded chunks on its own thread (the
 * original never cleaned up, §12.4 F14). Each chunk is one transaction, so
 * readers and watchers see whole deletions.
 */
#ifndef NORN_RETENTION_H
#define NORN_RETENTION_H

#include <stdint.h>

#include "config.h"
#include "session_service.h"
#include "store.h"

typedef struct Retention Retention;

/* Runs a pass shortly after start and then every interval_ms. */
Retention *retention_start(Store *store, ConfigHolder *config, SessionService *sessions,
                           int64_t interval_ms);
void retention_stop(Retention *r);

/* One pass now, on the caller's thread: returns what it removed. */
void retention_run_once(Retention *r, uint64_t *sessions, uint64_t *events);

#endif
