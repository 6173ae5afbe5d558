/*
 * msg.h — building protobuf-c messages by hand with malloc, so they can be
 * freed like unpacked ones (protobuf_c_message_free_unpacked): every string
 * and submessage is its own allocation. Allocation failure aborts: these are
 * small, bounded by request limits, and a half-built verdict helps no one.
 */
#ifndef NORN_MSG_H
#define NORN_MSG_H

#include <stdint.h>

#include "google/protobuf/timestamp.pb-c.h"
#include "norn/v1/common.pb-c.h"

void *msg_alloc(size_t size);
char *msg_strdup(const char *s);
/* Replaces *field (freeing the old value unless it is the empty default). */
void msg_set_str(char **field, const char *value);
Google__Protobuf__Timestamp *msg_timestamp(uint64_t micros);
uint64_t msg_micros(const Google__Protobuf__Timestamp *ts);
/* Copies at most `max_chars` code points of `src` into dst (cap bytes with
 * its NUL), never splitting a UTF-8 sequence, so a cut string stays valid
 * UTF-8 (protobuf strings must be). Returns dst. */
char *msg_utf8_cut(char *dst, size_t cap, const char *src, size_t max_chars);
/* Deep copy through pack/unpack. NULL in, NULL out. */
ProtobufCMessage *msg_clone(const ProtobufCMessage *m);
/* Appends a pointer to a repeated message field. */
void msg_append(void ***arr, size_t *n, void *item);
void msg_append_str(char ***arr, size_t *n, const char *s);

#endif
