/*
 * pbjson.h — protobuf-c messages as JSON (jansson), driven by the
 * descriptors, so every message prints without per-type code. Follows the
 * proto3 JSON mapping with the original field names kept (snake_case, as
 * --preserving_proto_field_names does): enums by name, Timestamp as RFC 3339,
 * Struct/Value/ListValue as plain JSON, bytes as base64, unset oneof arms
 * and empty repeated fields omitted, other scalars always present.
 */
#ifndef NORN_PBJSON_H
#define NORN_PBJSON_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

/* New reference; NULL only on allocation failure. */
json_t *pbjson_encode(const ProtobufCMessage *m);

/* The .proto name of an enum value ("QUALITY_GOOD"), or "UNKNOWN". */
const char *pbjson_enum_name(const ProtobufCEnumDescriptor *d, int value);

#endif
