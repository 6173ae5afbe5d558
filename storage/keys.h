/*
 * keys.h — the byte layout of every RocksDB key Norn writes. Pure functions,
 * no RocksDB: numbers are big-endian so byte order is numeric order, and a
 * session id is followed by a 0x00 byte so one session's rows form a prefix
 * that no other id shares (ids never contain 0x00).
 *
 *   sessions          id                                  -> Session (summary)
 *   steps             id 00 step_number(u32)              -> Step
 *   tool_uses         id 00 tool_use_id                   -> step_number(u32)
 *   issues            id 00 seq(u32)                      -> Issue
 *   by_time           inv_micros(u64) id                  -> ""
 *   by_agent          agent 00 inv_micros(u64) id         -> ""
 *   by_swarm          swarm 00 inv_micros(u64) id         -> ""
 *   audit             micros(u64) seq(u64)                -> AuditEvent
 *   audit_idx         kind name 00 micros(u64) seq(u64)  -> ""  (kind: s session,
 *                     a agent, t event type, v severity)
 *   sessions_by_agent_id  agent_id 00 inv_micros(u64) id  -> ""
 *   swarms            swarm_id                            -> first member's start (u64)
 *   swarms_by_time    inv_micros(u64) swarm_id            -> ""
 *   agents            "a" id -> Agent; "n" source name    -> id
 *   revlog            revision(u64)                       -> SessionDelta
 *   runs              "r" run_id -> Run; "t" inv_micros(u64) run_id -> ""
 *                     (queued_at order, newest first)
 *   meta              name                                -> value
 *
 * inv_micros = UINT64_MAX - microseconds since the epoch, so a forward
 * scan returns the newest first.
 */
#ifndef NORN_KEYS_H
#define NORN_KEYS_H

#include <stddef.h>
#include <stdint.h>

#define KEY_MAX 600 /* ids are <= 128 bytes, names <= 256 */

typedef struct Key {
    uint8_t b[KEY_MAX];
    size_t len;
} Key;

void key_put_u32(uint8_t *p, uint32_t v);
void key_put_u64(uint8_t *p, uint64_t v);
uint32_t key_get_u32(const uint8_t *p);
uint64_t key_get_u64(const uint8_t *p);

/* Builders: each starts a fresh key. They return -1 when a part is too long. */
int key_session(Key *k, const char *id);
int key_session_prefix(Key *k, const char *id); /* id 00 */
int key_step(Key *k, const char *id, uint32_t step);
int key_tool_use(Key *k, const char *id, const char *tool_use_id);
int key_issue(Key *k, const char *id, uint32_t seq);
int key_by_time(Key *k, uint64_t micros, const char *id);
int key_by_name(Key *k, const char *name, uint64_t micros, const char *id); /* agent, swarm */
int key_name_prefix(Key *k, const char *name);                              /* name 00 */
int key_audit(Key *k, uint64_t micros, uint64_t seq);
int key_revision(Key *k, uint64_t rev);
/* Runs (one family, two row kinds): the record, and its queued-time row. */
#define KEY_RUN_RECORD 'r'
#define KEY_RUN_BY_TIME 't'
int key_run(Key *k, const char *run_id);
int key_run_by_time(Key *k, uint64_t queued_micros, const char *run_id);

/* The exclusive upper bound of all keys starting with prefix (prefix with
 * its last byte incremented, carrying). -1 when none exists (all 0xff). */
int key_prefix_end(const Key *prefix, Key *end);

/* Splits an index key "[name 00] inv_micros id" (name_prefix_len bytes of
 * prefix) into the session id; returns its length or -1. */
int key_index_session_id(const uint8_t *key, size_t len, size_t name_prefix_len, char *id,
                         size_t cap);

/* Opaque page tokens: URL-safe base64 of a small binary record. */
size_t token_encode(const uint8_t *data, size_t len, char *out, size_t cap);
/* -1 on malformed input. */
int token_decode(const char *s, uint8_t *out, size_t cap, size_t *len);

#endif
