/*
 * rpc_server.c — the gRPC C-core server adapter (see rpc_server.h).
 *
 * Threading: every worker owns one completion queue and arms its own
 * requests on it, so all events of a call arrive on one thread. Services may
 * also send on streaming calls from other threads (the watch hub does), so
 * each call has a mutex that serialises grpc_call_start_batch and the send
 * queue. Handlers run on the worker thread without adapter locks held.
 *
 * Call lifetime: the adapter holds one reference from the moment a call
 * arrives until RECV_CLOSE_ON_SERVER has completed (the call is over:
 * status sent, or cancelled) and no batch is outstanding. Services may hold
 * more references (rpc_call_ref); memory goes with the last one.
 */
#include "rpc_server.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

/* How long a stream that stopped sending waits to be told it was cancelled
 * before its end handler runs (only when initial metadata was already sent). */
#define HALF_CLOSE_WAIT_MS 20

enum TagKind {
    TAG_NEW_CALL,
    TAG_RECV_CLOSE,
    TAG_RECV_MSG,
    TAG_SEND,
    TAG_STATUS,
    TAG_HALF_CLOSE,
    TAG_SHUTDOWN,
};

typedef struct Tag {
    enum TagKind kind;
    void *obj;
} Tag;

typedef struct Registered {
    const RpcMethod *method;
    const void *handlers;
    void *ud;
    void *grpc_handle;
    int is_public;
} Registered;

typedef struct Worker Worker;

/* One armed grpc_server_request_*call: per worker, per method, plus one
 * generic slot that catches unknown methods. */
typedef struct RequestSlot {
    Tag tag;
    Worker *worker;
    Registered *reg; /* NULL = generic */
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_byte_buffer *payload;
    grpc_call_details details;
} RequestSlot;

/* A stream whose client sent no more messages, waiting to learn whether
 * that was a half-close or a cancellation (see handle_recv_msg). */
typedef struct HalfClose {
    struct HalfClose *next;
    struct RpcCall *call;
    gpr_timespec due;
} HalfClose;

struct Worker {
    RpcServer *srv;
    grpc_completion_queue *cq;
    pthread_t thread;
    RequestSlot *slots;
    size_t n_slots;
    HalfClose *half_closes; /* touched only by this worker's thread, oldest first */
};

typedef struct SendItem {
    struct SendItem *next;
    grpc_byte_buffer *bb;
    size_t len;
} SendItem;

typedef struct ArenaChunk {
    struct ArenaChunk *next;
    size_t used, cap;
    max_align_t data[];
} ArenaChunk;

typedef struct Adopted {
    struct Adopted *next;
    ProtobufCMessage *msg;
} Adopted;

typedef struct DoneCallback {
    struct DoneCallback *next;
    void (*fn)(void *);
    void *arg;
} DoneCallback;

struct RpcCall {
    RpcServer *srv;
    Worker *worker;
    Registered *reg;
    grpc_call *call;
    gpr_timespec deadline; /* monotonic */
    grpc_metadata_array md;
    atomic_int refs;
    struct RpcCall *live_prev, *live_next;

    pthread_mutex_t mu; /* guards everything below */
    int outstanding;    /* batches started, not yet completed */
    int recv_close_done;
    int cancelled; /* set by RECV_CLOSE_ON_SERVER */
    int done;      /* call over: on_done has been (or is being) run */
    int initial_md_sent;
    int send_in_flight;
    int finish_requested;
    int status_started;
    RpcCode finish_code;
    char *finish_message;
    SendItem *q_head, *q_tail;
    size_t q_bytes;
    DoneCallback *on_done;
    grpc_metadata *trailers;
    size_t n_trailers, cap_trailers;

    /* Receive side: touched only by the owning worker thread. */
    grpc_byte_buffer *recv_buf;
    grpc_byte_buffer *send_buf_in_flight;
    ProtobufCMessage *request; /* unary / server-stream request, freed at end */
    int handler_pending;       /* server-stream/bidi handler returned PENDING */
    char *error_message;       /* set by rpc_fail */
    void *state;
    void (*state_free)(void *);
    Adopted *adopted;
    ArenaChunk *arena;
    gpr_timespec started;

    Tag t_recv_close, t_recv_msg, t_send, t_status, t_half_close;
};

struct RpcServer {
    RpcServerOptions opts;
    char *api_key;
    grpc_server *server;
    int port;
    Worker *workers;
    int n_workers;
    Registered *regs;
    size_t n_regs, cap_regs;
    char **public_services;
    size_t n_public;
    int started;
    atomic_int shutting_down;

    pthread_mutex_t mu; /* live list, shutdown flag */
    pthread_cond_t cv;
    RpcCall *live;
    int shutdown_done;
    Tag shutdown_tag;

    atomic_uint_fast64_t n_started, n_unauth, n_unimpl;
    atomic_int_fast64_t n_live;
};

/* ---- small helpers --------------------------------------------------- */

static void call_unref_internal(RpcCall *c);

static grpc_byte_buffer *pack_message(const ProtobufCMessage *msg, size_t *len_out)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    grpc_slice s = grpc_slice_malloc(len);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    if (len_out)
        *len_out = len;
    return bb;
}

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return 0;
    }
    return -1;
}

/* Walks the wire bytes of a message and names the first string field
 * (dotted path) that holds a NUL byte. 1 when found. */
static int find_nul_string(const ProtobufCMessageDescriptor *d, const uint8_t *p,
                           const uint8_t *end, char *path, size_t cap, int depth)
{
    while (p < end && depth < 32) {
        uint64_t key, len;
        if (read_varint(&p, end, &key))
            return 0;
        unsigned wt = key & 7;
        if (wt == 0) {
            if (read_varint(&p, end, &len))
                return 0;
            continue;
        }
        if (wt == 1 || wt == 5) {
            p += wt == 1 ? 8 : 4;
            continue;
        }
        if (wt != 2 || read_varint(&p, end, &len) || len > (uint64_t)(end - p))
            return 0;
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field(d, (unsigned)(key >> 3));
        if (f && f->type == PROTOBUF_C_TYPE_STRING && memchr(p, 0, len)) {
            snprintf(path, cap, "%s", f->name);
            return 1;
        }
        if (f && f->type == PROTOBUF_C_TYPE_MESSAGE) {
            char inner[200];
            if (find_nul_string(f->descriptor, p, p + len, inner, sizeof inner, depth + 1)) {
                snprintf(path, cap, "%s.%s", f->name, inner);
                return 1;
            }
        }
        p += len;
    }
    return 0;
}

/* Unpacks a request. protobuf-c keeps strings as C strings, so a string
 * with a NUL byte would be cut short without a word: such a request is
 * refused and `why` names the field. */
static ProtobufCMessage *unpack_message(const ProtobufCMessageDescriptor *desc,
                                        grpc_byte_buffer *bb, char *why, size_t why_cap)
{
    grpc_byte_buffer_reader r;
    snprintf(why, why_cap, "request is not a valid %s", desc->name);
    if (!grpc_byte_buffer_reader_init(&r, bb))
        return NULL;
    grpc_slice s = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    size_t len = GRPC_SLICE_LENGTH(s);
    const uint8_t *data = GRPC_SLICE_START_PTR(s);
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, len, data);
    char field[240];
    if (m && find_nul_string(desc, data, data + len, field, sizeof field, 0)) {
        snprintf(why, why_cap, "%s: contains a NUL byte, which Norn does not accept in text",
                 field);
        protobuf_c_message_free_unpacked(m, NULL);
        m = NULL;
    }
    grpc_slice_unref(s);
    return m;
}

static const char *md_lookup(const grpc_metadata_array *md, const char *key)
{
    size_t klen = strlen(key);
    for (size_t i = 0; i < md->count; i++) {
        const grpc_slice *k = &md->metadata[i].key;
        if (GRPC_SLICE_LENGTH(*k) == klen && memcmp(GRPC_SLICE_START_PTR(*k), key, klen) == 0)
            return (const char *)&md->metadata[i].value; /* caller converts */
    }
    return NULL;
}

/* ---- arena ----------------------------------------------------------- */

void *rpc_call_alloc(RpcCall *c, size_t size)
{
    size = (size + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    ArenaChunk *a = c->arena;
    if (!a || a->cap - a->used < size) {
        size_t cap = size > 8192 ? size : 8192;
        a = malloc(sizeof *a + cap);
        if (!a)
            abort(); /* per-call memory is small and bounded by message limits */
        a->cap = cap;
        a->used = 0;
        a->next = c->arena;
        c->arena = a;
    }
    void *p = (char *)a->data + a->used;
    a->used += size;
    memset(p, 0, size);
    return p;
}

char *rpc_call_strdup(RpcCall *c, const char *s)
{
    size_t n = strlen(s);
    char *d = rpc_call_alloc(c, n + 1);
    memcpy(d, s, n + 1);
    return d;
}

/* ---- public call API -------------------------------------------------- */

RpcCode rpc_fail(RpcCall *c, RpcCode code, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    c->error_message = rpc_call_strdup(c, buf);
    return code;
}

void rpc_call_add_trailer(RpcCall *c, const char *key, const char *value)
{
    pthread_mutex_lock(&c->mu);
    if (c->n_trailers == c->cap_trailers) {
        size_t cap = c->cap_trailers ? c->cap_trailers * 2 : 4;
        grpc_metadata *t = realloc(c->trailers, cap * sizeof *t);
        if (!t) {
            pthread_mutex_unlock(&c->mu);
            return;
        }
        c->trailers = t;
        c->cap_trailers = cap;
    }
    grpc_metadata *m = &c->trailers[c->n_trailers++];
    memset(m, 0, sizeof *m);
    m->key = grpc_slice_from_copied_string(key);
    m->value = grpc_slice_from_copied_string(value);
    pthread_mutex_unlock(&c->mu);
}

const char *rpc_call_metadata(const RpcCall *c, const char *key)
{
    const grpc_slice *v = (const grpc_slice *)md_lookup(&c->md, key);
    if (!v)
        return NULL;
    /* Copy into the arena so callers get a C string. */
    RpcCall *mc = (RpcCall *)c;
    size_t n = GRPC_SLICE_LENGTH(*v);
    char *s = rpc_call_alloc(mc, n + 1);
    memcpy(s, GRPC_SLICE_START_PTR(*v), n);
    s[n] = '\0';
    return s;
}

int64_t rpc_call_remaining_ms(const RpcCall *c)
{
    gpr_timespec dl = gpr_convert_clock_type(c->deadline, GPR_CLOCK_MONOTONIC);
    if (gpr_time_cmp(dl, gpr_inf_future(GPR_CLOCK_MONOTONIC)) == 0)
        return INT64_MAX;
    gpr_timespec left = gpr_time_sub(dl, gpr_now(GPR_CLOCK_MONOTONIC));
    return gpr_time_to_millis(left);
}

uint64_t rpc_call_connection_key(RpcCall *c)
{
    char *peer = grpc_call_get_peer(c->call);
    uint64_t h = 1469598103934665603u; /* FNV-1a */
    for (const char *p = peer; p && *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211u;
    gpr_free(peer);
    return h;
}

const RpcMethod *rpc_call_method(const RpcCall *c)
{
    return c->reg ? c->reg->method : NULL;
}

void rpc_call_adopt(RpcCall *c, ProtobufCMessage *msg)
{
    if (!msg)
        return;
    Adopted *a = rpc_call_alloc(c, sizeof *a);
    a->msg = msg;
    a->next = c->adopted;
    c->adopted = a;
}

void rpc_call_set_state(RpcCall *c, void *state, void (*free_fn)(void *))
{
    c->state = state;
    c->state_free = free_fn;
}

void *rpc_call_state(const RpcCall *c)
{
    return c->state;
}

void rpc_call_ref(RpcCall *c)
{
    atomic_fetch_add(&c->refs, 1);
}

void rpc_call_unref(RpcCall *c)
{
    call_unref_internal(c);
}

int rpc_call_is_done(RpcCall *c)
{
    pthread_mutex_lock(&c->mu);
    int d = c->done;
    pthread_mutex_unlock(&c->mu);
    return d;
}

void rpc_call_on_done(RpcCall *c, void (*fn)(void *), void *arg)
{
    pthread_mutex_lock(&c->mu);
    if (c->done) {
        pthread_mutex_unlock(&c->mu);
        fn(arg);
        return;
    }
    DoneCallback *d = malloc(sizeof *d);
    if (d) {
        d->fn = fn;
        d->arg = arg;
        d->next = c->on_done;
        c->on_done = d;
    }
    pthread_mutex_unlock(&c->mu);
}

size_t rpc_call_queued_bytes(RpcCall *c)
{
    pthread_mutex_lock(&c->mu);
    size_t n = c->q_bytes;
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* ---- the send side ---------------------------------------------------- */

static void start_batch_locked(RpcCall *c, const grpc_op *ops, size_t n, Tag *tag)
{
    grpc_call_error e = grpc_call_start_batch(c->call, ops, n, tag, NULL);
    if (e != GRPC_CALL_OK) {
        /* Only a programming error gets here; make it loud. */
        log_error("grpc_batch_failed", "error=%d kind=%d", (int)e, (int)tag->kind);
        abort();
    }
    c->outstanding++;
}

static void fill_initial_md(RpcCall *c, grpc_op *op)
{
    memset(op, 0, sizeof *op);
    op->op = GRPC_OP_SEND_INITIAL_METADATA;
    c->initial_md_sent = 1;
}

/* Moves the send side forward: one message at a time, then the status. */
static void pump_locked(RpcCall *c)
{
    if (c->send_in_flight || c->status_started || c->done)
        return;
    grpc_op ops[3];
    size_t n = 0;
    if (c->q_head) {
        if (!c->initial_md_sent)
            fill_initial_md(c, &ops[n++]);
        /* The last message and the status travel in one batch (the whole
         * reply of a unary call). */
        int last = c->finish_requested && !c->q_head->next;
        SendItem *it = c->q_head;
        c->q_head = it->next;
        if (!c->q_head)
            c->q_tail = NULL;
        c->q_bytes -= it->len;
        c->send_buf_in_flight = it->bb;
        free(it);
        memset(&ops[n], 0, sizeof ops[n]);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = c->send_buf_in_flight;
        n++;
        if (!last) {
            c->send_in_flight = 1;
            start_batch_locked(c, ops, n, &c->t_send);
            return;
        }
    } else if (!c->finish_requested) {
        return;
    } else if (!c->initial_md_sent) {
        fill_initial_md(c, &ops[n++]);
    }
    memset(&ops[n], 0, sizeof ops[n]);
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)c->finish_code;
    ops[n].data.send_status_from_server.trailing_metadata_count = c->n_trailers;
    ops[n].data.send_status_from_server.trailing_metadata = c->trailers;
    grpc_slice details = grpc_slice_from_copied_string(c->finish_message ? c->finish_message : "");
    ops[n].data.send_status_from_server.status_details = c->finish_message ? &details : NULL;
    n++;
    c->status_started = 1;
    start_batch_locked(c, ops, n, &c->t_status);
    grpc_slice_unref(details);
}

struct RpcPacked {
    grpc_slice slice;
};

RpcPacked *rpc_packed_new(const ProtobufCMessage *msg)
{
    RpcPacked *p = malloc(sizeof *p);
    if (!p)
        return NULL;
    size_t len = protobuf_c_message_get_packed_size(msg);
    p->slice = grpc_slice_malloc(len);
    protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(p->slice));
    return p;
}

void rpc_packed_free(RpcPacked *p)
{
    if (!p)
        return;
    grpc_slice_unref(p->slice);
    free(p);
}

size_t rpc_packed_size(const RpcPacked *p)
{
    return GRPC_SLICE_LENGTH(p->slice);
}

/* Queues a byte buffer (taking it) unless the call is over or its queue is
 * past the limit. */
static RpcCode enqueue(RpcCall *c, grpc_byte_buffer *bb, size_t len)
{
    pthread_mutex_lock(&c->mu);
    if (c->done || c->finish_requested) {
        pthread_mutex_unlock(&c->mu);
        grpc_byte_buffer_destroy(bb);
        return RPC_CANCELLED;
    }
    if (c->q_bytes + len > c->srv->opts.max_stream_queue_bytes && c->q_head) {
        pthread_mutex_unlock(&c->mu);
        grpc_byte_buffer_destroy(bb);
        return RPC_RESOURCE_EXHAUSTED;
    }
    SendItem *it = malloc(sizeof *it);
    if (!it) {
        pthread_mutex_unlock(&c->mu);
        grpc_byte_buffer_destroy(bb);
        return RPC_RESOURCE_EXHAUSTED;
    }
    it->bb = bb;
    it->len = len;
    it->next = NULL;
    if (c->q_tail)
        c->q_tail->next = it;
    else
        c->q_head = it;
    c->q_tail = it;
    c->q_bytes += len;
    pump_locked(c);
    pthread_mutex_unlock(&c->mu);
    return RPC_OK;
}

RpcCode rpc_call_send(RpcCall *c, const ProtobufCMessage *msg)
{
    size_t len;
    grpc_byte_buffer *bb = pack_message(msg, &len);
    return enqueue(c, bb, len);
}

RpcCode rpc_call_send_packed(RpcCall *c, const RpcPacked *p)
{
    grpc_slice s = p->slice;
    /* The buffer takes its own reference to the shared slice. */
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    return enqueue(c, bb, GRPC_SLICE_LENGTH(s));
}

static void finish_locked(RpcCall *c, RpcCode code, const char *message)
{
    if (c->finish_requested || c->done)
        return;
    c->finish_requested = 1;
    c->finish_code = code;
    c->finish_message = message && *message ? strdup(message) : NULL;
    pump_locked(c);
}

void rpc_call_finish(RpcCall *c, RpcCode code, const char *message)
{
    pthread_mutex_lock(&c->mu);
    finish_locked(c, code, message);
    pthread_mutex_unlock(&c->mu);
}

/* ---- call lifecycle -------------------------------------------------- */

static void call_free(RpcCall *c)
{
    RpcServer *srv = c->srv;
    if (c->state_free)
        c->state_free(c->state);
    if (c->request)
        protobuf_c_message_free_unpacked(c->request, NULL);
    for (Adopted *a = c->adopted; a; a = a->next)
        protobuf_c_message_free_unpacked(a->msg, NULL);
    for (SendItem *it = c->q_head, *n; it; it = n) {
        n = it->next;
        grpc_byte_buffer_destroy(it->bb);
        free(it);
    }
    for (DoneCallback *d = c->on_done, *n; d; d = n) {
        n = d->next;
        free(d);
    }
    for (size_t i = 0; i < c->n_trailers; i++) {
        grpc_slice_unref(c->trailers[i].key);
        grpc_slice_unref(c->trailers[i].value);
    }
    free(c->trailers);
    free(c->finish_message);
    for (ArenaChunk *a = c->arena, *n; a; a = n) {
        n = a->next;
        free(a);
    }
    grpc_metadata_array_destroy(&c->md);
    if (c->call)
        grpc_call_unref(c->call);
    pthread_mutex_destroy(&c->mu);

    pthread_mutex_lock(&srv->mu);
    if (c->live_prev)
        c->live_prev->live_next = c->live_next;
    else
        srv->live = c->live_next;
    if (c->live_next)
        c->live_next->live_prev = c->live_prev;
    atomic_fetch_sub(&srv->n_live, 1);
    pthread_cond_broadcast(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
    free(c);
}

static void call_unref_internal(RpcCall *c)
{
    if (atomic_fetch_sub(&c->refs, 1) == 1)
        call_free(c);
}

/* Runs the on_done callbacks once; called without c->mu held. */
static void run_done_callbacks(DoneCallback *list)
{
    while (list) {
        DoneCallback *n = list->next;
        list->fn(list->arg);
        free(list);
        list = n;
    }
}

/* After any batch completes: if the call is over and quiet, drop the
 * adapter's reference. Returns with c possibly freed. */
static void batch_completed(RpcCall *c)
{
    pthread_mutex_lock(&c->mu);
    c->outstanding--;
    DoneCallback *cbs = NULL;
    if (c->recv_close_done && !c->done) {
        c->done = 1;
        cbs = c->on_done;
        c->on_done = NULL;
    }
    int release = c->recv_close_done && c->outstanding == 0;
    pthread_mutex_unlock(&c->mu);
    run_done_callbacks(cbs);
    if (release) {
        if (log_enabled(LOG_DEBUG)) {
            gpr_timespec d = gpr_time_sub(gpr_now(GPR_CLOCK_MONOTONIC), c->started);
            log_debug("rpc", "method=%s code=%s cancelled=%d ms=%.3f",
                      c->reg ? c->reg->method->path : "(unknown)",
                      rpc_code_name(c->finish_requested ? c->finish_code : RPC_CANCELLED),
                      c->cancelled, (double)d.tv_sec * 1e3 + d.tv_nsec / 1e6);
        }
        call_unref_internal(c);
    }
}

static RpcCall *call_new(Worker *w, RequestSlot *slot)
{
    RpcCall *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    c->srv = w->srv;
    c->worker = w;
    c->reg = slot->reg;
    c->call = slot->call;
    c->deadline = slot->deadline;
    c->md = slot->md; /* take the metadata array */
    grpc_metadata_array_init(&slot->md);
    c->started = gpr_now(GPR_CLOCK_MONOTONIC);
    atomic_init(&c->refs, 1);
    pthread_mutex_init(&c->mu, NULL);
    c->t_recv_close = (Tag){TAG_RECV_CLOSE, c};
    c->t_recv_msg = (Tag){TAG_RECV_MSG, c};
    c->t_send = (Tag){TAG_SEND, c};
    c->t_status = (Tag){TAG_STATUS, c};
    c->t_half_close = (Tag){TAG_HALF_CLOSE, c};

    RpcServer *srv = w->srv;
    pthread_mutex_lock(&srv->mu);
    c->live_next = srv->live;
    if (srv->live)
        srv->live->live_prev = c;
    srv->live = c;
    atomic_fetch_add(&srv->n_live, 1);
    pthread_mutex_unlock(&srv->mu);
    atomic_fetch_add(&srv->n_started, 1);
    return c;
}

static void start_recv_close(RpcCall *c)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    pthread_mutex_lock(&c->mu);
    start_batch_locked(c, &op, 1, &c->t_recv_close);
    pthread_mutex_unlock(&c->mu);
}

static void start_recv_msg(RpcCall *c)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv_buf;
    pthread_mutex_lock(&c->mu);
    if (!c->finish_requested && !c->done)
        start_batch_locked(c, &op, 1, &c->t_recv_msg);
    pthread_mutex_unlock(&c->mu);
}

static void finish_with_error(RpcCall *c, RpcCode code)
{
    if (code == RPC_PENDING) /* only streaming handlers may keep a call open */
        code = rpc_fail(c, RPC_INTERNAL, "handler left a unary call open");
    if (code == RPC_OK)
        rpc_call_finish(c, RPC_OK, NULL);
    else
        rpc_call_finish(c, code, c->error_message ? c->error_message : rpc_code_name(code));
}

/* Unary: one batch carries initial metadata, the response and the status. */
static void send_unary_reply(RpcCall *c, RpcCode code, ProtobufCMessage *resp)
{
    if (code != RPC_OK) {
        finish_with_error(c, code);
        return;
    }
    size_t len = protobuf_c_message_get_packed_size(resp);
    if (len > c->srv->opts.max_send_bytes) {
        rpc_call_finish(c, RPC_RESOURCE_EXHAUSTED,
                        "response larger than the server's message limit");
        return;
    }
    pthread_mutex_lock(&c->mu);
    SendItem *it = malloc(sizeof *it);
    if (!it)
        abort();
    it->bb = pack_message(resp, &it->len);
    it->next = NULL;
    c->q_head = c->q_tail = it;
    c->q_bytes = it->len;
    /* Queue message and status; pump sends the message, then the status
     * goes out when the message completes. */
    finish_locked(c, RPC_OK, NULL);
    pthread_mutex_unlock(&c->mu);
}

static int authorized(RpcServer *srv, RpcCall *c)
{
    if (!srv->api_key || (c->reg && c->reg->is_public))
        return 1;
    const char *key = srv->api_key;
    size_t klen = strlen(key);
    const grpc_slice *v = (const grpc_slice *)md_lookup(&c->md, "authorization");
    if (v) {
        const char *p = (const char *)GRPC_SLICE_START_PTR(*v);
        size_t n = GRPC_SLICE_LENGTH(*v);
        if (n > 7 && strncasecmp(p, "bearer ", 7) == 0)
            return ct_equal(p + 7, n - 7, key, klen);
        return 0;
    }
    v = (const grpc_slice *)md_lookup(&c->md, "x-api-key");
    if (v)
        return ct_equal((const char *)GRPC_SLICE_START_PTR(*v), GRPC_SLICE_LENGTH(*v), key, klen);
    return 0;
}

static void handle_new_call(Worker *w, RequestSlot *slot)
{
    RpcServer *srv = w->srv;
    RpcCall *c = call_new(w, slot);
    grpc_byte_buffer *payload = slot->payload;
    slot->payload = NULL;
    slot->call = NULL;
    start_recv_close(c);

    if (!authorized(srv, c)) {
        atomic_fetch_add(&srv->n_unauth, 1);
        if (payload)
            grpc_byte_buffer_destroy(payload);
        rpc_call_finish(
            c, RPC_UNAUTHENTICATED,
            "missing or wrong API key (send 'authorization: Bearer KEY' or 'x-api-key')");
        return;
    }
    if (!c->reg) {
        atomic_fetch_add(&srv->n_unimpl, 1);
        char *m = grpc_slice_to_c_string(slot->details.method);
        char msg[300];
        snprintf(msg, sizeof msg, "unknown method %.200s", m);
        gpr_free(m);
        rpc_call_finish(c, RPC_UNIMPLEMENTED, msg);
        return;
    }
    const RpcMethod *m = c->reg->method;
    if (m->kind == RPC_KIND_UNARY || m->kind == RPC_KIND_SERVER_STREAM) {
        if (!payload) {
            rpc_call_finish(c, RPC_INVALID_ARGUMENT, "request message missing");
            return;
        }
        char why[320];
        c->request = unpack_message(m->input, payload, why, sizeof why);
        grpc_byte_buffer_destroy(payload);
        if (!c->request) {
            rpc_call_finish(c, RPC_INVALID_ARGUMENT, why);
            return;
        }
        if (m->kind == RPC_KIND_UNARY) {
            ProtobufCMessage *resp = rpc_call_alloc(c, m->output->sizeof_message);
            protobuf_c_message_init(m->output, resp);
            RpcCode code = m->invoke(c->reg->handlers, c->reg->ud, c, c->request, resp);
            if (code == RPC_PENDING) /* answered later: rpc_call_send + rpc_call_finish */
                c->handler_pending = 1;
            else
                send_unary_reply(c, code, resp);
        } else {
            RpcCode code = m->invoke(c->reg->handlers, c->reg->ud, c, c->request, NULL);
            if (code == RPC_PENDING)
                c->handler_pending = 1;
            else
                finish_with_error(c, code);
        }
        return;
    }
    start_recv_msg(c);
}

/* A client-stream or bidi message arrived (or the client half-closed). */
static void handle_recv_msg(RpcCall *c, int ok)
{
    grpc_byte_buffer *bb = c->recv_buf;
    c->recv_buf = NULL;
    const RpcMethod *m = c->reg->method;
    if (!ok) {
        if (bb)
            grpc_byte_buffer_destroy(bb);
        return; /* the call is being torn down; RECV_CLOSE tells the rest */
    }
    pthread_mutex_lock(&c->mu);
    int over = c->finish_requested || c->done;
    pthread_mutex_unlock(&c->mu);
    if (over) {
        if (bb)
            grpc_byte_buffer_destroy(bb);
        return;
    }
    if (bb) {
        char why[320];
        ProtobufCMessage *req = unpack_message(m->input, bb, why, sizeof why);
        grpc_byte_buffer_destroy(bb);
        if (!req) {
            rpc_fail(c, RPC_INVALID_ARGUMENT, "%s", why);
            finish_with_error(c, RPC_INVALID_ARGUMENT);
            return;
        }
        RpcCode code = m->invoke(c->reg->handlers, c->reg->ud, c, req, NULL);
        protobuf_c_message_free_unpacked(req, NULL);
        if (code != RPC_OK) {
            finish_with_error(c, code);
            return;
        }
        start_recv_msg(c);
        return;
    }
    /* No message: the client half-closed, or the call was cancelled (client
     * cancel, deadline) - the C core reports both alike, and the end handler
     * must run only for the first. While initial metadata is unsent, sending
     * it tells them apart: it fails on a cancelled call. Otherwise the call
     * waits briefly for RECV_CLOSE_ON_SERVER, which a cancellation completes
     * right away and a half-close never does. */
    pthread_mutex_lock(&c->mu);
    if (!c->initial_md_sent && !c->finish_requested) {
        grpc_op op;
        fill_initial_md(c, &op);
        start_batch_locked(c, &op, 1, &c->t_half_close);
        pthread_mutex_unlock(&c->mu);
        return;
    }
    pthread_mutex_unlock(&c->mu);
    HalfClose *h = malloc(sizeof *h);
    if (!h)
        abort();
    rpc_call_ref(c);
    h->call = c;
    h->next = NULL;
    h->due = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                          gpr_time_from_millis(HALF_CLOSE_WAIT_MS, GPR_TIMESPAN));
    HalfClose **tail = &c->worker->half_closes;
    while (*tail)
        tail = &(*tail)->next;
    *tail = h;
}

static void handle_half_close(RpcCall *c);

/* Runs the waiting half-closes that are due; returns when the next one is. */
static gpr_timespec run_due_half_closes(Worker *w)
{
    gpr_timespec now = gpr_now(GPR_CLOCK_MONOTONIC);
    while (w->half_closes && gpr_time_cmp(w->half_closes->due, now) <= 0) {
        HalfClose *h = w->half_closes;
        w->half_closes = h->next;
        handle_half_close(h->call);
        rpc_call_unref(h->call);
        free(h);
    }
    return w->half_closes ? w->half_closes->due : gpr_inf_future(GPR_CLOCK_MONOTONIC);
}

static void handle_half_close(RpcCall *c)
{
    pthread_mutex_lock(&c->mu);
    int over = c->recv_close_done || c->finish_requested || c->done;
    pthread_mutex_unlock(&c->mu);
    /* A call past its deadline was cancelled by the server's own timer. */
    if (over || rpc_call_remaining_ms(c) <= 0)
        return;
    const RpcMethod *m = c->reg->method;
    if (m->kind == RPC_KIND_CLIENT_STREAM) {
        ProtobufCMessage *resp = rpc_call_alloc(c, m->output->sizeof_message);
        protobuf_c_message_init(m->output, resp);
        RpcCode code = m->invoke_end(c->reg->handlers, c->reg->ud, c, NULL, resp);
        send_unary_reply(c, code, resp);
    } else {
        RpcCode code = m->invoke_end(c->reg->handlers, c->reg->ud, c, NULL, NULL);
        if (code == RPC_PENDING)
            c->handler_pending = 1;
        else
            finish_with_error(c, code);
    }
}

static void arm_slot(Worker *w, RequestSlot *s)
{
    RpcServer *srv = w->srv;
    grpc_call_error e;
    s->call = NULL;
    s->payload = NULL;
    grpc_metadata_array_init(&s->md);
    if (s->reg) {
        e = grpc_server_request_registered_call(
            srv->server, s->reg->grpc_handle, &s->call, &s->deadline, &s->md,
            s->reg->method->kind == RPC_KIND_UNARY || s->reg->method->kind == RPC_KIND_SERVER_STREAM
                ? &s->payload
                : NULL,
            w->cq, w->cq, &s->tag);
    } else {
        grpc_call_details_init(&s->details);
        e = grpc_server_request_call(srv->server, &s->call, &s->details, &s->md, w->cq, w->cq,
                                     &s->tag);
    }
    if (e != GRPC_CALL_OK) {
        log_error("grpc_request_failed", "error=%d", (int)e);
        abort();
    }
}

static void slot_reset(RequestSlot *s)
{
    grpc_metadata_array_destroy(&s->md);
    if (!s->reg)
        grpc_call_details_destroy(&s->details);
}

static void *worker_main(void *arg)
{
    Worker *w = arg;
    RpcServer *srv = w->srv;
    for (;;) {
        gpr_timespec next_due = run_due_half_closes(w);
        grpc_event ev = grpc_completion_queue_next(w->cq, next_due, NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        Tag *tag = ev.tag;
        switch (tag->kind) {
        case TAG_NEW_CALL: {
            RequestSlot *s = tag->obj;
            if (!ev.success) {
                /* Server shutting down: the slot is not re-armed. */
                if (s->payload)
                    grpc_byte_buffer_destroy(s->payload);
                slot_reset(s);
                break;
            }
            handle_new_call(w, s);
            slot_reset(s);
            if (!atomic_load(&srv->shutting_down))
                arm_slot(w, s);
            break;
        }
        case TAG_RECV_CLOSE: {
            RpcCall *c = tag->obj;
            pthread_mutex_lock(&c->mu);
            c->recv_close_done = 1;
            pthread_mutex_unlock(&c->mu);
            batch_completed(c);
            break;
        }
        case TAG_RECV_MSG: {
            RpcCall *c = tag->obj;
            handle_recv_msg(c, ev.success);
            batch_completed(c);
            break;
        }
        case TAG_HALF_CLOSE: {
            RpcCall *c = tag->obj;
            if (ev.success) /* initial metadata went out: the client is there */
                handle_half_close(c);
            batch_completed(c);
            break;
        }
        case TAG_SEND: {
            RpcCall *c = tag->obj;
            pthread_mutex_lock(&c->mu);
            grpc_byte_buffer_destroy(c->send_buf_in_flight);
            c->send_buf_in_flight = NULL;
            c->send_in_flight = 0;
            if (ev.success)
                pump_locked(c);
            pthread_mutex_unlock(&c->mu);
            batch_completed(c);
            break;
        }
        case TAG_STATUS: {
            RpcCall *c = tag->obj;
            pthread_mutex_lock(&c->mu);
            if (c->send_buf_in_flight)
                grpc_byte_buffer_destroy(c->send_buf_in_flight);
            c->send_buf_in_flight = NULL;
            pthread_mutex_unlock(&c->mu);
            batch_completed(c);
            break;
        }
        case TAG_SHUTDOWN:
            pthread_mutex_lock(&srv->mu);
            srv->shutdown_done = 1;
            pthread_cond_broadcast(&srv->cv);
            pthread_mutex_unlock(&srv->mu);
            break;
        }
    }
    while (w->half_closes) { /* calls that ended with the server */
        HalfClose *h = w->half_closes;
        w->half_closes = h->next;
        rpc_call_unref(h->call);
        free(h);
    }
    return NULL;
}

/* ---- server ----------------------------------------------------------- */

void rpc_server_options_init(RpcServerOptions *o)
{
    memset(o, 0, sizeof *o);
    o->listen = "127.0.0.1:50051";
    o->threads = 2;
    o->max_recv_bytes = 4u << 20;
    o->max_send_bytes = 16u << 20;
    o->max_stream_queue_bytes = 4u << 20;
    o->keepalive_time_ms = 60000;
    o->keepalive_timeout_ms = 20000;
    o->min_client_ping_ms = 10000;
    o->max_connection_age_grace_ms = 30000;
}

static grpc_server_credentials *make_credentials(const RpcServerOptions *o, char *err,
                                                 size_t errlen)
{
    if (!o->tls_cert_pem && !o->tls_key_pem)
        return grpc_insecure_server_credentials_create();
    if (!o->tls_cert_pem || !o->tls_key_pem) {
        snprintf(err, errlen, "TLS needs both a certificate and a key");
        return NULL;
    }
    grpc_ssl_pem_key_cert_pair pair = {o->tls_key_pem, o->tls_cert_pem};
    return grpc_ssl_server_credentials_create_ex(
        o->tls_client_ca_pem, &pair, 1,
        o->tls_client_ca_pem ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                             : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
        NULL);
}

static grpc_arg int_arg(const char *key, int64_t v)
{
    grpc_arg a;
    memset(&a, 0, sizeof a);
    a.type = GRPC_ARG_INTEGER;
    a.key = (char *)key;
    a.value.integer = v > INT32_MAX ? INT32_MAX : (int)v;
    return a;
}

RpcServer *rpc_server_create(const RpcServerOptions *o, char *err, size_t errlen)
{
    if (o->threads < 1 || o->threads > 64) {
        snprintf(err, errlen, "threads must be between 1 and 64 (got %d)", o->threads);
        return NULL;
    }
    RpcServer *srv = calloc(1, sizeof *srv);
    if (!srv) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    srv->opts = *o;
    srv->api_key = o->api_key && *o->api_key ? strdup(o->api_key) : NULL;
    srv->opts.api_key = NULL;
    srv->opts.tls_cert_pem = srv->opts.tls_key_pem = srv->opts.tls_client_ca_pem = NULL;
    srv->opts.listen = NULL;
    pthread_mutex_init(&srv->mu, NULL);
    pthread_cond_init(&srv->cv, NULL);
    srv->shutdown_tag = (Tag){TAG_SHUTDOWN, srv};
    grpc_init();

    grpc_arg args[12];
    size_t n = 0;
    args[n++] = int_arg(GRPC_ARG_ALLOW_REUSEPORT, 0); /* a busy port must be an error */
    args[n++] = int_arg(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, (int64_t)o->max_recv_bytes);
    args[n++] = int_arg(GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, (int64_t)o->max_send_bytes);
    args[n++] = int_arg(GRPC_ARG_KEEPALIVE_TIME_MS, o->keepalive_time_ms);
    args[n++] = int_arg(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, o->keepalive_timeout_ms);
    /* Long-lived idle watchers ping to keep NATs and proxies open: accept
     * that at min_client_ping_ms even with no call in progress. */
    args[n++] = int_arg(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    args[n++] =
        int_arg(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, o->min_client_ping_ms);
    args[n++] = int_arg(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 2);
    if (o->max_connection_age_ms > 0) {
        args[n++] = int_arg(GRPC_ARG_MAX_CONNECTION_AGE_MS, o->max_connection_age_ms);
        args[n++] = int_arg(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS, o->max_connection_age_grace_ms);
    }
    grpc_channel_args cargs = {n, args};
    srv->server = grpc_server_create(&cargs, NULL);

    grpc_server_credentials *creds = make_credentials(o, err, errlen);
    if (!creds) {
        rpc_server_destroy(srv);
        return NULL;
    }
    srv->port = grpc_server_add_http2_port(srv->server, o->listen, creds);
    grpc_server_credentials_release(creds);
    if (srv->port == 0) {
        snprintf(err, errlen,
                 "cannot listen on %s: address invalid or already in use (is another nornd "
                 "running?)",
                 o->listen);
        rpc_server_destroy(srv);
        return NULL;
    }
    return srv;
}

int rpc_server_add_service(RpcServer *srv, const RpcService *svc, const void *handlers, void *ud)
{
    if (srv->started)
        return -1;
    for (size_t i = 0; i < svc->n_methods; i++) {
        if (srv->n_regs == srv->cap_regs) {
            size_t cap = srv->cap_regs ? srv->cap_regs * 2 : 32;
            Registered *r = realloc(srv->regs, cap * sizeof *r);
            if (!r)
                return -1;
            srv->regs = r;
            srv->cap_regs = cap;
        }
        const RpcMethod *m = &svc->methods[i];
        Registered *r = &srv->regs[srv->n_regs++];
        r->method = m;
        r->handlers = handlers;
        r->ud = ud;
        r->is_public = 0;
        for (size_t p = 0; p < srv->n_public; p++) {
            size_t l = strlen(srv->public_services[p]);
            if (strncmp(m->path + 1, srv->public_services[p], l) == 0 && m->path[l + 1] == '/')
                r->is_public = 1;
        }
        r->grpc_handle = grpc_server_register_method(srv->server, m->path, NULL,
                                                     m->kind == RPC_KIND_UNARY ||
                                                             m->kind == RPC_KIND_SERVER_STREAM
                                                         ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER
                                                         : GRPC_SRM_PAYLOAD_NONE,
                                                     0);
        if (!r->grpc_handle)
            return -1;
    }
    return 0;
}

void rpc_server_set_public(RpcServer *srv, const char *service_name)
{
    char **p = realloc(srv->public_services, (srv->n_public + 1) * sizeof *p);
    if (!p)
        return;
    srv->public_services = p;
    p[srv->n_public++] = strdup(service_name);
    size_t l = strlen(service_name);
    for (size_t i = 0; i < srv->n_regs; i++) {
        const char *path = srv->regs[i].method->path;
        if (strncmp(path + 1, service_name, l) == 0 && path[l + 1] == '/')
            srv->regs[i].is_public = 1;
    }
}

int rpc_server_port(const RpcServer *srv)
{
    return srv->port;
}

int rpc_server_start(RpcServer *srv, char *err, size_t errlen)
{
    srv->n_workers = srv->opts.threads;
    srv->workers = calloc((size_t)srv->n_workers, sizeof *srv->workers);
    if (!srv->workers) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < srv->n_workers; i++) {
        Worker *w = &srv->workers[i];
        w->srv = srv;
        w->cq = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(srv->server, w->cq, NULL);
    }
    grpc_server_start(srv->server);
    srv->started = 1;
    for (int i = 0; i < srv->n_workers; i++) {
        Worker *w = &srv->workers[i];
        w->n_slots = srv->n_regs + 1;
        w->slots = calloc(w->n_slots, sizeof *w->slots);
        if (!w->slots) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        for (size_t k = 0; k < w->n_slots; k++) {
            RequestSlot *s = &w->slots[k];
            s->tag = (Tag){TAG_NEW_CALL, s};
            s->worker = w;
            s->reg = k < srv->n_regs ? &srv->regs[k] : NULL;
            arm_slot(w, s);
        }
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            snprintf(err, errlen, "cannot start worker thread");
            return -1;
        }
    }
    return 0;
}

int rpc_server_shutdown(RpcServer *srv, int64_t grace_ms)
{
    if (!srv->started || atomic_exchange(&srv->shutting_down, 1))
        return 0;
    grpc_server_shutdown_and_notify(srv->server, srv->workers[0].cq, &srv->shutdown_tag);

    /* Open streams end now with UNAVAILABLE: clients reconnect elsewhere. */
    pthread_mutex_lock(&srv->mu);
    size_t n = 0;
    for (RpcCall *c = srv->live; c; c = c->live_next)
        n++;
    RpcCall **streams = calloc(n ? n : 1, sizeof *streams);
    size_t k = 0;
    for (RpcCall *c = srv->live; c && streams; c = c->live_next) {
        if (c->reg && c->reg->method->kind != RPC_KIND_UNARY) {
            rpc_call_ref(c);
            streams[k++] = c;
        }
    }
    pthread_mutex_unlock(&srv->mu);
    for (size_t i = 0; i < k; i++) {
        rpc_call_finish(streams[i], RPC_UNAVAILABLE, "server is shutting down");
        rpc_call_unref(streams[i]);
    }
    free(streams);

    /* Unary calls in flight get the grace period. */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += grace_ms / 1000;
    until.tv_nsec += (grace_ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    int cancelled = 0;
    pthread_mutex_lock(&srv->mu);
    while (!srv->shutdown_done) {
        if (pthread_cond_timedwait(&srv->cv, &srv->mu, &until) != 0 && !srv->shutdown_done) {
            cancelled = (int)atomic_load(&srv->n_live);
            pthread_mutex_unlock(&srv->mu);
            log_warn("drain_timeout", "grace_ms=%lld cancelling=%d", (long long)grace_ms,
                     cancelled);
            grpc_server_cancel_all_calls(srv->server);
            pthread_mutex_lock(&srv->mu);
            while (!srv->shutdown_done)
                pthread_cond_wait(&srv->cv, &srv->mu);
            break;
        }
    }
    /* Every call is over now; wait (bounded) for services that held
     * references to let go of them in their on_done callbacks. */
    struct timespec settle;
    clock_gettime(CLOCK_REALTIME, &settle);
    settle.tv_sec += 5;
    while (atomic_load(&srv->n_live) > 0) {
        if (pthread_cond_timedwait(&srv->cv, &srv->mu, &settle) != 0) {
            log_warn("drain_calls_held", "calls=%lld", (long long)atomic_load(&srv->n_live));
            break;
        }
    }
    pthread_mutex_unlock(&srv->mu);

    for (int i = 0; i < srv->n_workers; i++)
        grpc_completion_queue_shutdown(srv->workers[i].cq);
    for (int i = 0; i < srv->n_workers; i++)
        pthread_join(srv->workers[i].thread, NULL);
    return cancelled;
}

void rpc_server_destroy(RpcServer *srv)
{
    if (!srv)
        return;
    if (srv->started)
        rpc_server_shutdown(srv, 0);
    if (srv->server)
        grpc_server_destroy(srv->server);
    for (int i = 0; i < srv->n_workers; i++) {
        if (srv->workers[i].cq)
            grpc_completion_queue_destroy(srv->workers[i].cq);
        free(srv->workers[i].slots);
    }
    free(srv->workers);
    free(srv->regs);
    for (size_t i = 0; i < srv->n_public; i++)
        free(srv->public_services[i]);
    free(srv->public_services);
    free(srv->api_key);
    pthread_cond_destroy(&srv->cv);
    pthread_mutex_destroy(&srv->mu);
    free(srv);
    grpc_shutdown();
}

void rpc_server_counters(RpcServer *srv, RpcServerCounters *out)
{
    out->calls_started = atomic_load(&srv->n_started);
    out->calls_unauthenticated = atomic_load(&srv->n_unauth);
    out->calls_unimplemented = atomic_load(&srv->n_unimpl);
    out->calls_live = atomic_load(&srv->n_live);
}
