/*
 * ids.h — identifiers: validation of caller-chosen ids and generation of
 * server ids that are unique without coordination and sort by time
 * (ULID-like: 48 bits of milliseconds + 80 random bits, Crockford base32).
 */
#ifndef NORN_IDS_H
#define NORN_IDS_H

#include <stddef.h>

#define ID_MAX_LEN 128
#define ID_GEN_LEN 26

/* 1 when s matches [A-Za-z0-9._:-]{1,128}: safe as a key, never a path. */
int id_valid(const char *s);
/* Writes a new 26-character id and its NUL into out (>= 27 bytes). */
void id_generate(char *out);

#endif
