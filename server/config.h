/*
 * config.h — the live settings (norn.v1.Config): defaults, validation and
 * a thread-safe current copy. Persisted by the ConfigService through the
 * store; every other module reads a snapshot with config_get.
 */
#ifndef NORN_CONFIG_H
#define NORN_CONFIG_H

#include "norn/v1/config_service.pb-c.h"

typedef struct ConfigHolder ConfigHolder;

/* The original's defaults (reference §1.9) plus Norn's limits. */
void config_defaults(Norn__V1__Config *c);
/* NULL when every field is acceptable, else a message naming the field. */
const char *config_validate(const Norn__V1__Config *c, char *buf, size_t cap);

ConfigHolder *config_holder_new(const Norn__V1__Config *initial);
void config_holder_free(ConfigHolder *h);
/* A copy of the scalar settings (string fields point into the holder and
 * stay valid until the next config_set). */
void config_get(ConfigHolder *h, Norn__V1__Config *out);
/* Replaces the settings (deep copy). */
void config_set(ConfigHolder *h, const Norn__V1__Config *c);

#endif
