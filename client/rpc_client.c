/*
 * rpc_client.c — the gRPC C-core client transport behind the generated
 * stubs (the client half of the adapter; the only client code calling
 * grpc_*). Calls are synchronous: each call owns a pluck completion queue,
 * so any number of threads can use one channel at once. Stream sets are
 * the exception: their calls share one completion queue that the reading
 * threads poll.
 */
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc.h"
#include "util.h"

#define MAX_PEM_BYTES (1u << 20)

struct RpcChannel {
    grpc_channel *ch;
    char *auth_value; /* "Bearer KEY" or NULL */
};

struct RpcClientCall {
    RpcChannel *ch;
    const RpcMethod *method;
    grpc_call *call;
    grpc_completion_queue *cq;
    grpc_metadata_array initial_md, trailing_md;
    grpc_metadata *send_md;
    size_t n_send_md;
    grpc_status_code status;
    grpc_slice details;
    int status_received;
    int initial_md_received;
    int broken;
    int writes_done;
    char tag_write, tag_read, tag_finish; /* distinct addresses used as tags */
};

void rpc_status_clear(RpcStatus *st)
{
    if (!st)
        return;
    free(st->message);
    for (size_t i = 0; i < st->n_trailers; i++) {
        free(st->trailers[i].key);
        free(st->trailers[i].value);
    }
    free(st->trailers);
    memset(st, 0, sizeof *st);
}

const char *rpc_status_trailer(const RpcStatus *st, const char *key)
{
    for (size_t i = 0; i < st->n_trailers; i++)
        if (strcmp(st->trailers[i].key, key) == 0)
            return st->trailers[i].value;
    return NULL;
}

static char *slice_to_str(grpc_slice s)
{
    size_t n = GRPC_SLICE_LENGTH(s);
    char *r = malloc(n + 1);
    if (r) {
        memcpy(r, GRPC_SLICE_START_PTR(s), n);
        r[n] = '\0';
    }
    return r;
}

RpcChannel *rpc_channel_open(const char *target, const RpcChannelOptions *o, char *err,
                             size_t errlen)
{
    RpcChannelOptions none;
    memset(&none, 0, sizeof none);
    if (!o)
        o = &none;
    grpc_init();
    grpc_channel_credentials *creds = NULL;
    if (o->use_tls) {
        char *ca = NULL, *cert = NULL, *key = NULL;
        if (o->tls_ca_file && !(ca = read_file_limited(o->tls_ca_file, MAX_PEM_BYTES, NULL))) {
            snprintf(err, errlen, "cannot read CA file %s", o->tls_ca_file);
            grpc_shutdown();
            return NULL;
        }
        if (o->tls_cert_file || o->tls_key_file) {
            cert =
                o->tls_cert_file ? read_file_limited(o->tls_cert_file, MAX_PEM_BYTES, NULL) : NULL;
            key = o->tls_key_file ? read_file_limited(o->tls_key_file, MAX_PEM_BYTES, NULL) : NULL;
            if (!cert || !key) {
                snprintf(err, errlen, "client TLS needs a readable certificate and key");
                free(ca);
                free(cert);
                free(key);
                grpc_shutdown();
                return NULL;
            }
        }
        grpc_ssl_pem_key_cert_pair pair = {key, cert};
        creds = grpc_ssl_credentials_create(ca, cert ? &pair : NULL, NULL, NULL);
        free(ca);
        free(cert);
        free(key);
    } else {
        creds = grpc_insecure_credentials_create();
    }
    grpc_arg args[2];
    size_t n = 0;
    memset(args, 0, sizeof args);
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[n].value.integer = o->max_recv_bytes ? (int)o->max_recv_bytes : 64 << 20;
    n++;
    if (o->tls_server_name) {
        args[n].type = GRPC_ARG_STRING;
        args[n].key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
        args[n].value.string = (char *)o->tls_server_name;
        n++;
    }
    grpc_channel_args cargs = {n, args};
    RpcChannel *ch = calloc(1, sizeof *ch);
    if (!ch) {
        grpc_channel_credentials_release(creds);
        grpc_shutdown();
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    ch->ch = grpc_channel_create(target, creds, &cargs);
    grpc_channel_credentials_release(creds);
    if (o->api_key && *o->api_key) {
        size_t l = strlen(o->api_key) + 8;
        ch->auth_value = malloc(l);
        if (ch->auth_value)
            snprintf(ch->auth_value, l, "Bearer %s", o->api_key);
    }
    return ch;
}

void rpc_channel_close(RpcChannel *ch)
{
    if (!ch)
        return;
    grpc_channel_destroy(ch->ch);
    free(ch->auth_value);
    free(ch);
    grpc_shutdown();
}

static grpc_byte_buffer *pack(const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    grpc_slice s = grpc_slice_malloc(len);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

static ProtobufCMessage *unpack(const ProtobufCMessageDescriptor *d, grpc_byte_buffer *bb)
{
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, bb))
        return NULL;
    grpc_slice s = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    ProtobufCMessage *m =
        protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
    grpc_slice_unref(s);
    return m;
}

static gpr_timespec deadline_of(const RpcCallOptions *o)
{
    if (!o || o->timeout_ms <= 0)
        return gpr_inf_future(GPR_CLOCK_REALTIME);
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                        gpr_time_from_millis(o->timeout_ms, GPR_TIMESPAN));
}

static void wait_tag(grpc_completion_queue *cq, void *tag)
{
    grpc_completion_queue_pluck(cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
}

static RpcClientCall *call_create(RpcChannel *ch, const RpcMethod *m, const RpcCallOptions *o)
{
    RpcClientCall *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->ch = ch;
    c->method = m;
    c->cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_slice method = grpc_slice_from_static_string(m->path);
    c->call = grpc_channel_create_call(ch->ch, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq, method, NULL,
                                       deadline_of(o), NULL);
    grpc_metadata_array_init(&c->initial_md);
    grpc_metadata_array_init(&c->trailing_md);
    size_t extra = o ? o->n_metadata : 0;
    c->send_md = calloc(extra + 1, sizeof *c->send_md);
    if (ch->auth_value) {
        c->send_md[c->n_send_md].key = grpc_slice_from_static_string("authorization");
        c->send_md[c->n_send_md].value = grpc_slice_from_copied_string(ch->auth_value);
        c->n_send_md++;
    }
    for (size_t i = 0; i < extra; i++) {
        c->send_md[c->n_send_md].key = grpc_slice_from_copied_string(o->metadata[i].key);
        c->send_md[c->n_send_md].value = grpc_slice_from_copied_string(o->metadata[i].value);
        c->n_send_md++;
    }
    return c;
}

static void call_destroy(RpcClientCall *c)
{
    for (size_t i = 0; i < c->n_send_md; i++) {
        grpc_slice_unref(c->send_md[i].key);
        grpc_slice_unref(c->send_md[i].value);
    }
    free(c->send_md);
    grpc_metadata_array_destroy(&c->initial_md);
    grpc_metadata_array_destroy(&c->trailing_md);
    if (c->status_received)
        grpc_slice_unref(c->details);
    grpc_call_unref(c->call);
    grpc_completion_queue_shutdown(c->cq);
    while (grpc_completion_queue_pluck(c->cq, NULL, gpr_inf_past(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(c->cq);
    free(c);
}

static void fill_status(RpcClientCall *c, RpcStatus *st)
{
    if (!st)
        return;
    memset(st, 0, sizeof *st);
    st->code = (RpcCode)c->status;
    if (GRPC_SLICE_LENGTH(c->details))
        st->message = slice_to_str(c->details);
    if (c->trailing_md.count) {
        st->trailers = calloc(c->trailing_md.count, sizeof *st->trailers);
        for (size_t i = 0; st->trailers && i < c->trailing_md.count; i++) {
            st->trailers[i].key = slice_to_str(c->trailing_md.metadata[i].key);
            st->trailers[i].value = slice_to_str(c->trailing_md.metadata[i].value);
            st->n_trailers++;
        }
    }
}

RpcCode rpc_unary(RpcChannel *ch, const RpcMethod *m, const ProtobufCMessage *req,
                  ProtobufCMessage **resp, const RpcCallOptions *o, RpcStatus *st)
{
    *resp = NULL;
    RpcClientCall *c = call_create(ch, m, o);
    if (!c)
        return RPC_RESOURCE_EXHAUSTED;
    grpc_byte_buffer *send = pack(req), *recv = NULL;
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = c->n_send_md;
    ops[0].data.send_initial_metadata.metadata = c->send_md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = send;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->initial_md;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &recv;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &c->trailing_md;
    ops[5].data.recv_status_on_client.status = &c->status;
    ops[5].data.recv_status_on_client.status_details = &c->details;
    grpc_call_error e = grpc_call_start_batch(c->call, ops, 6, c, NULL);
    if (e == GRPC_CALL_OK) {
        wait_tag(c->cq, c);
        c->status_received = 1;
    }
    grpc_byte_buffer_destroy(send);
    RpcCode code;
    if (e != GRPC_CALL_OK) {
        code = RPC_INTERNAL;
        if (st) {
            memset(st, 0, sizeof *st);
            st->code = code;
            st->message = strdup("client could not start the call");
        }
    } else {
        fill_status(c, st);
        code = (RpcCode)c->status;
        if (code == RPC_OK) {
            *resp = recv ? unpack(m->output, recv) : NULL;
            if (!*resp) {
                code = RPC_INTERNAL;
                if (st) {
                    st->code = code;
                    free(st->message);
                    st->message = strdup("server sent no valid response message");
                }
            }
        }
    }
    if (recv)
        grpc_byte_buffer_destroy(recv);
    call_destroy(c);
    return code;
}

/* Runs one batch to completion on the call's own queue. Each kind of
 * operation has its own tag so a reader and a writer thread can wait at once. */
static int run_batch(RpcClientCall *c, const grpc_op *ops, size_t n, void *tag)
{
    if (grpc_call_start_batch(c->call, ops, n, tag, NULL) != GRPC_CALL_OK)
        return -1;
    grpc_event ev =
        grpc_completion_queue_pluck(c->cq, tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    return ev.success ? 0 : -1;
}

RpcClientCall *rpc_stream_start(RpcChannel *ch, const RpcMethod *m, const ProtobufCMessage *req,
                                const RpcCallOptions *o)
{
    RpcClientCall *c = call_create(ch, m, o);
    if (!c)
        return NULL;
    grpc_op ops[3];
    size_t n = 0;
    memset(ops, 0, sizeof ops);
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[n].data.send_initial_metadata.count = c->n_send_md;
    ops[n].data.send_initial_metadata.metadata = c->send_md;
    n++;
    grpc_byte_buffer *send = NULL;
    if (req) {
        send = pack(req);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = send;
        n++;
        ops[n].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        n++;
        c->writes_done = 1;
    }
    /* Initial metadata is received with the first read (or at finish): a
     * quiet stream may not send it for a long time. */
    if (run_batch(c, ops, n, &c->tag_write) != 0)
        c->broken = 1;
    if (send)
        grpc_byte_buffer_destroy(send);
    return c;
}

int rpc_stream_write(RpcClientCall *c, const ProtobufCMessage *msg)
{
    if (c->broken || c->writes_done)
        return -1;
    grpc_byte_buffer *bb = pack(msg);
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = bb;
    int r = run_batch(c, &op, 1, &c->tag_write);
    grpc_byte_buffer_destroy(bb);
    if (r != 0)
        c->broken = 1;
    return r;
}

int rpc_stream_writes_done(RpcClientCall *c)
{
    if (c->writes_done)
        return 0;
    c->writes_done = 1;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    return run_batch(c, &op, 1, &c->tag_write);
}

int rpc_stream_read(RpcClientCall *c, ProtobufCMessage **out)
{
    *out = NULL;
    grpc_byte_buffer *bb = NULL;
    grpc_op ops[2];
    size_t n = 0;
    memset(ops, 0, sizeof ops);
    if (!c->initial_md_received) {
        ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[n].data.recv_initial_metadata.recv_initial_metadata = &c->initial_md;
        n++;
        c->initial_md_received = 1;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n].data.recv_message.recv_message = &bb;
    n++;
    if (run_batch(c, ops, n, &c->tag_read) != 0 || !bb)
        return 0;
    *out = unpack(c->method->output, bb);
    grpc_byte_buffer_destroy(bb);
    return *out ? 1 : -1;
}

void rpc_stream_cancel(RpcClientCall *c)
{
    grpc_call_cancel(c->call, NULL);
}

RpcCode rpc_stream_finish(RpcClientCall *c, RpcStatus *st)
{
    grpc_op ops[2];
    size_t n = 0;
    memset(ops, 0, sizeof ops);
    if (!c->initial_md_received) {
        ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[n].data.recv_initial_metadata.recv_initial_metadata = &c->initial_md;
        n++;
        c->initial_md_received = 1;
    }
    ops[n].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[n].data.recv_status_on_client.trailing_metadata = &c->trailing_md;
    ops[n].data.recv_status_on_client.status = &c->status;
    ops[n].data.recv_status_on_client.status_details = &c->details;
    n++;
    RpcCode code;
    if (run_batch(c, ops, n, &c->tag_finish) == 0) {
        c->status_received = 1;
        fill_status(c, st);
        code = (RpcCode)c->status;
    } else {
        code = RPC_INTERNAL;
        if (st) {
            memset(st, 0, sizeof *st);
            st->code = code;
            st->message = strdup("client could not receive the status");
        }
    }
    call_destroy(c);
    return code;
}

/* ---- stream sets ---------------------------------------------------------------- */

enum SetTagKind { SET_TAG_START, SET_TAG_READ, SET_TAG_STATUS };

typedef struct SetTag {
    enum SetTagKind kind;
    struct SetCall *call;
} SetTag;

typedef struct SetCall {
    struct SetCall *prev, *next;
    RpcStreamSet *set;
    const RpcMethod *method;
    void *user;
    grpc_call *call;
    grpc_metadata_array initial_md, trailing_md;
    grpc_metadata *send_md;
    size_t n_send_md;
    grpc_byte_buffer *sent, *recv;
    grpc_status_code status;
    grpc_slice details;
    int outstanding; /* batches started, not completed; under set->mu */
    SetTag t_start, t_read, t_status;
} SetCall;

struct RpcStreamSet {
    grpc_completion_queue *cq;
    pthread_mutex_t mu; /* the call list and each call's outstanding count */
    SetCall *calls;
};

RpcStreamSet *rpc_stream_set_new(void)
{
    RpcStreamSet *set = calloc(1, sizeof *set);
    if (!set)
        return NULL;
    grpc_init();
    set->cq = grpc_completion_queue_create_for_next(NULL);
    pthread_mutex_init(&set->mu, NULL);
    return set;
}

static void set_call_free(SetCall *c)
{
    for (size_t i = 0; i < c->n_send_md; i++) {
        grpc_slice_unref(c->send_md[i].key);
        grpc_slice_unref(c->send_md[i].value);
    }
    free(c->send_md);
    grpc_metadata_array_destroy(&c->initial_md);
    grpc_metadata_array_destroy(&c->trailing_md);
    grpc_slice_unref(c->details);
    if (c->sent)
        grpc_byte_buffer_destroy(c->sent);
    if (c->recv)
        grpc_byte_buffer_destroy(c->recv);
    grpc_call_unref(c->call);
    free(c);
}

/* A batch of c completed: forget c when it was the last. */
static void set_call_batch_done(RpcStreamSet *set, SetCall *c)
{
    pthread_mutex_lock(&set->mu);
    int last = --c->outstanding == 0;
    if (last) {
        if (c->prev)
            c->prev->next = c->next;
        else
            set->calls = c->next;
        if (c->next)
            c->next->prev = c->prev;
    }
    pthread_mutex_unlock(&set->mu);
    if (last)
        set_call_free(c);
}

static int set_call_read(SetCall *c)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv;
    pthread_mutex_lock(&c->set->mu);
    c->outstanding++;
    pthread_mutex_unlock(&c->set->mu);
    if (grpc_call_start_batch(c->call, &op, 1, &c->t_read, NULL) == GRPC_CALL_OK)
        return 0;
    set_call_batch_done(c->set, c);
    return -1;
}

int rpc_stream_set_start(RpcStreamSet *set, RpcChannel *ch, const RpcMethod *m,
                         const ProtobufCMessage *req, const RpcCallOptions *o, void *user)
{
    SetCall *c = calloc(1, sizeof *c);
    if (!c)
        return -1;
    c->set = set;
    c->method = m;
    c->user = user;
    c->t_start = (SetTag){SET_TAG_START, c};
    c->t_read = (SetTag){SET_TAG_READ, c};
    c->t_status = (SetTag){SET_TAG_STATUS, c};
    c->details = grpc_empty_slice();
    grpc_metadata_array_init(&c->initial_md);
    grpc_metadata_array_init(&c->trailing_md);
    size_t extra = o ? o->n_metadata : 0;
    c->send_md = calloc(extra + 1, sizeof *c->send_md);
    c->call = grpc_channel_create_call(ch->ch, NULL, GRPC_PROPAGATE_DEFAULTS, set->cq,
                                       grpc_slice_from_static_string(m->path), NULL, deadline_of(o),
                                       NULL);
    if (!c->send_md || !c->call) {
        free(c->send_md);
        c->send_md = NULL;
        if (!c->call) {
            grpc_metadata_array_destroy(&c->initial_md);
            grpc_metadata_array_destroy(&c->trailing_md);
            free(c);
            return -1;
        }
        set_call_free(c);
        return -1;
    }
    if (ch->auth_value) {
        c->send_md[c->n_send_md].key = grpc_slice_from_static_string("authorization");
        c->send_md[c->n_send_md].value = grpc_slice_from_copied_string(ch->auth_value);
        c->n_send_md++;
    }
    for (size_t i = 0; i < extra; i++) {
        c->send_md[c->n_send_md].key = grpc_slice_from_copied_string(o->metadata[i].key);
        c->send_md[c->n_send_md].value = grpc_slice_from_copied_string(o->metadata[i].value);
        c->n_send_md++;
    }
    c->sent = pack(req);
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = c->n_send_md;
    ops[0].data.send_initial_metadata.metadata = c->send_md;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = c->sent;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->initial_md;
    grpc_op st;
    memset(&st, 0, sizeof st);
    st.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    st.data.recv_status_on_client.trailing_metadata = &c->trailing_md;
    st.data.recv_status_on_client.status = &c->status;
    st.data.recv_status_on_client.status_details = &c->details;
    /* Listed (with one batch counted) before any batch can complete. */
    pthread_mutex_lock(&set->mu);
    c->outstanding = 1;
    c->next = set->calls;
    if (set->calls)
        set->calls->prev = c;
    set->calls = c;
    pthread_mutex_unlock(&set->mu);
    if (grpc_call_start_batch(c->call, ops, 4, &c->t_start, NULL) != GRPC_CALL_OK) {
        set_call_batch_done(set, c);
        return -1;
    }
    pthread_mutex_lock(&set->mu);
    c->outstanding++;
    pthread_mutex_unlock(&set->mu);
    if (grpc_call_start_batch(c->call, &st, 1, &c->t_status, NULL) != GRPC_CALL_OK) {
        /* Without a status batch the stream could never end: cancel it. */
        grpc_call_cancel(c->call, NULL);
        set_call_batch_done(set, c);
        return -1;
    }
    set_call_read(c);
    return 0;
}

int rpc_stream_set_next(RpcStreamSet *set, int64_t timeout_ms, RpcStreamEvent *ev)
{
    memset(ev, 0, sizeof *ev);
    gpr_timespec until =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
    for (;;) {
        grpc_event e = grpc_completion_queue_next(set->cq, until, NULL);
        if (e.type != GRPC_OP_COMPLETE)
            return 0;
        SetTag *t = e.tag;
        SetCall *c = t->call;
        switch (t->kind) {
        case SET_TAG_START:
            grpc_byte_buffer_destroy(c->sent);
            c->sent = NULL;
            set_call_batch_done(set, c);
            break;
        case SET_TAG_READ: {
            grpc_byte_buffer *bb = c->recv;
            c->recv = NULL;
            if (!e.success || !bb) { /* no more messages: the status follows */
                if (bb)
                    grpc_byte_buffer_destroy(bb);
                set_call_batch_done(set, c);
                break;
            }
            ProtobufCMessage *msg = unpack(c->method->output, bb);
            grpc_byte_buffer_destroy(bb);
            void *user = c->user;
            if (!msg)
                grpc_call_cancel(c->call, NULL);
            else if (set_call_read(c) != 0)
                grpc_call_cancel(c->call, NULL);
            set_call_batch_done(set, c);
            if (msg) {
                ev->user = user;
                ev->msg = msg;
                return 1;
            }
            break;
        }
        case SET_TAG_STATUS:
            ev->user = c->user;
            ev->status.code = (RpcCode)c->status;
            if (GRPC_SLICE_LENGTH(c->details))
                ev->status.message = slice_to_str(c->details);
            if (c->trailing_md.count) {
                ev->status.trailers = calloc(c->trailing_md.count, sizeof *ev->status.trailers);
                for (size_t i = 0; ev->status.trailers && i < c->trailing_md.count; i++) {
                    ev->status.trailers[i].key = slice_to_str(c->trailing_md.metadata[i].key);
                    ev->status.trailers[i].value = slice_to_str(c->trailing_md.metadata[i].value);
                    ev->status.n_trailers++;
                }
            }
            set_call_batch_done(set, c);
            return 1;
        }
    }
}

void rpc_stream_set_cancel(RpcStreamSet *set)
{
    pthread_mutex_lock(&set->mu);
    for (SetCall *c = set->calls; c; c = c->next)
        grpc_call_cancel(c->call, NULL);
    pthread_mutex_unlock(&set->mu);
}

void rpc_stream_set_free(RpcStreamSet *set)
{
    if (!set)
        return;
    rpc_stream_set_cancel(set);
    for (;;) {
        pthread_mutex_lock(&set->mu);
        int open = set->calls != NULL;
        pthread_mutex_unlock(&set->mu);
        if (!open)
            break;
        RpcStreamEvent ev;
        if (rpc_stream_set_next(set, 100, &ev)) {
            if (ev.msg)
                protobuf_c_message_free_unpacked(ev.msg, NULL);
            rpc_status_clear(&ev.status);
        }
    }
    grpc_completion_queue_shutdown(set->cq);
    while (grpc_completion_queue_next(set->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(set->cq);
    pthread_mutex_destroy(&set->mu);
    free(set);
    grpc_shutdown();
}
