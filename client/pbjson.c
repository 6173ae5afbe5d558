/* pbjson.c — see pbjson.h. */
#include "pbjson.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "google/protobuf/struct.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"

static json_t *encode_value(const Google__Protobuf__Value *v);

static json_t *encode_struct(const Google__Protobuf__Struct *s)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < s->n_fields; i++)
        json_object_set_new(o, s->fields[i]->key, encode_value(s->fields[i]->value));
    return o;
}

static json_t *encode_value(const Google__Protobuf__Value *v)
{
    if (!v)
        return json_null();
    switch (v->kind_case) {
    case GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE: return json_real(v->number_value);
    case GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE: return json_string(v->string_value);
    case GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE: return json_boolean(v->bool_value);
    case GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE: return encode_struct(v->struct_value);
    case GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE: {
        json_t *a = json_array();
        for (size_t i = 0; a && v->list_value && i < v->list_value->n_values; i++)
            json_array_append_new(a, encode_value(v->list_value->values[i]));
        return a;
    }
    default: return json_null();
    }
}

static json_t *encode_timestamp(const Google__Protobuf__Timestamp *ts)
{
    time_t secs = (time_t)ts->seconds;
    struct tm tm;
    char buf[64];
    gmtime_r(&secs, &tm);
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    if (ts->nanos)
        snprintf(buf + n, sizeof buf - n, ".%06dZ", ts->nanos / 1000);
    else
        snprintf(buf + n, sizeof buf - n, "Z");
    return json_string(buf);
}

const char *pbjson_enum_name(const ProtobufCEnumDescriptor *d, int value)
{
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(d, value);
    return ev ? ev->name : "UNKNOWN";
}

static json_t *encode_base64(const ProtobufCBinaryData *b)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t out_len = (b->len + 2) / 3 * 4;
    char *out = malloc(out_len + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < b->len; i += 3) {
        uint32_t v = (uint32_t)b->data[i] << 16;
        if (i + 1 < b->len)
            v |= (uint32_t)b->data[i + 1] << 8;
        if (i + 2 < b->len)
            v |= b->data[i + 2];
        out[o++] = tbl[v >> 18 & 63];
        out[o++] = tbl[v >> 12 & 63];
        out[o++] = i + 1 < b->len ? tbl[v >> 6 & 63] : '=';
        out[o++] = i + 2 < b->len ? tbl[v & 63] : '=';
    }
    out[o] = '\0';
    json_t *s = json_string(out);
    free(out);
    return s;
}

static json_t *encode_scalar(const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32: return json_integer(*(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32: return json_integer(*(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64: return json_integer(*(const int64_t *)p);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: return json_integer((json_int_t) * (const uint64_t *)p);
    case PROTOBUF_C_TYPE_FLOAT: return json_real(*(const float *)p);
    case PROTOBUF_C_TYPE_DOUBLE: return json_real(*(const double *)p);
    case PROTOBUF_C_TYPE_BOOL: return json_boolean(*(const protobuf_c_boolean *)p);
    case PROTOBUF_C_TYPE_ENUM: return json_string(pbjson_enum_name(f->descriptor, *(const int *)p));
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return json_string(s ? s : "");
    }
    case PROTOBUF_C_TYPE_BYTES: return encode_base64((const ProtobufCBinaryData *)p);
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
        return m ? pbjson_encode(m) : json_null();
    }
    }
    return json_null();
}

static size_t scalar_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE: return 8;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    default: return 4;
    }
}

json_t *pbjson_encode(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (d == &google__protobuf__timestamp__descriptor)
        return encode_timestamp((const Google__Protobuf__Timestamp *)m);
    if (d == &google__protobuf__struct__descriptor)
        return encode_struct((const Google__Protobuf__Struct *)m);
    if (d == &google__protobuf__value__descriptor)
        return encode_value((const Google__Protobuf__Value *)m);
    json_t *o = json_object();
    if (!o)
        return NULL;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *base = (const char *)m + f->offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
            if (!n)
                continue;
            const char *arr = *(char *const *)base;
            json_t *a = json_array();
            size_t sz = scalar_size(f->type);
            for (size_t k = 0; a && k < n; k++)
                json_array_append_new(a, encode_scalar(f, arr + k * sz));
            json_object_set_new(o, f->name, a);
            continue;
        }
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t which = *(const uint32_t *)((const char *)m + f->quantifier_offset);
            if (which != f->id)
                continue;
        } else if (f->type == PROTOBUF_C_TYPE_MESSAGE && !*(void *const *)base) {
            continue;
        }
        json_object_set_new(o, f->name, encode_scalar(f, base));
    }
    return o;
}
