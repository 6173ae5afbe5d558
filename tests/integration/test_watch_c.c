/*
 * test_watch_c.c — SessionService/WatchSessions end to end through the
 * generated C stubs against a real nornd: the send_initial snapshot, then
 * initial_end, then gap-free deltas while another thread ingests over the
 * bidi Ingest stream; resuming with start_revision across a restart of
 * nornd on the same data dir; progress messages (and what they promise
 * under a filter); the DELETED delta; and client cancellation, which must
 * leave the server and the other watchers healthy.
 *
 * Every watch call carries a deadline, so a missing message fails the test
 * with DEADLINE_EXCEEDED instead of hanging it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "grpc/health/v1/health.grpc-c.h"
#include "harness.h"
#include "norn/v1/session_service.grpc-c.h"

#define CALL_TIMEOUT_MS 10000
#define WATCH_TIMEOUT_MS 10000

typedef struct Fixture {
    NorndProc proc;
    RpcChannel *ch;
} Fixture;

static RpcChannel *channel_to(const char *target)
{
    char err[256];
    RpcChannel *ch = rpc_channel_open(target, NULL, err, sizeof err);
    assert_non_null(ch);
    return ch;
}

static int setup(void **state)
{
    Fixture *f = calloc(1, sizeof *f);
    if (!f || nornd_spawn(&f->proc, NULL, NULL) != 0) {
        free(f);
        return -1;
    }
    char err[256];
    f->ch = rpc_channel_open(f->proc.target, NULL, err, sizeof err);
    if (!f->ch) {
        nornd_stop(&f->proc, SIGKILL);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    Fixture *f = *state;
    rpc_channel_close(f->ch);
    /* A clean drain (exit 0) also proves no watcher was left stuck. */
    int rc = nornd_stop(&f->proc, SIGTERM);
    free(f);
    return rc == 0 ? 0 : -1;
}

static const RpcCallOptions CO = {.timeout_ms = CALL_TIMEOUT_MS};
static const RpcCallOptions WO = {.timeout_ms = WATCH_TIMEOUT_MS};

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- unary helpers (main thread only: they assert) -------------------------------------- */

static uint64_t open_session(RpcChannel *ch, const char *id, const char *agent)
{
    Norn__V1__OpenSessionRequest req = NORN__V1__OPEN_SESSION_REQUEST__INIT;
    req.session_id = (char *)id;
    req.agent_name = (char *)agent;
    Norn__V1__OpenSessionResponse *resp = NULL;
    RpcStatus st;
    RpcCode code = norn__v1__session_service__open_session__call(ch, &req, &resp, &CO, &st);
    if (code != RPC_OK)
        fail_msg("OpenSession(%s): %s %s", id, rpc_code_name(code), st.message ? st.message : "");
    rpc_status_clear(&st);
    uint64_t rev = resp->session->revision;
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rev;
}

static uint64_t begin_step(RpcChannel *ch, const char *sid, const char *tuid, const char *query)
{
    Google__Protobuf__Value v = GOOGLE__PROTOBUF__VALUE__INIT;
    v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
    v.string_value = (char *)query;
    Google__Protobuf__Struct__FieldsEntry e = GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT;
    e.key = "query";
    e.value = &v;
    Google__Protobuf__Struct__FieldsEntry *ep = &e;
    Google__Protobuf__Struct in = GOOGLE__PROTOBUF__STRUCT__INIT;
    in.n_fields = 1;
    in.fields = &ep;
    Norn__V1__BeginStepRequest req = NORN__V1__BEGIN_STEP_REQUEST__INIT;
    req.session_id = (char *)sid;
    req.tool_use_id = (char *)tuid;
    req.tool_name = "search";
    req.tool_input = &in;
    Norn__V1__BeginStepResponse *resp = NULL;
    RpcStatus st;
    RpcCode code = norn__v1__session_service__begin_step__call(ch, &req, &resp, &CO, &st);
    if (code != RPC_OK)
        fail_msg("BeginStep(%s): %s %s", sid, rpc_code_name(code), st.message ? st.message : "");
    rpc_status_clear(&st);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    /* The revision of that change: the session's, read back. */
    Norn__V1__GetSessionRequest g = NORN__V1__GET_SESSION_REQUEST__INIT;
    g.session_id = (char *)sid;
    Norn__V1__GetSessionResponse *gr = NULL;
    assert_int_equal(norn__v1__session_service__get_session__call(ch, &g, &gr, &CO, &st), RPC_OK);
    rpc_status_clear(&st);
    uint64_t rev = gr->session->revision;
    protobuf_c_message_free_unpacked(&gr->base, NULL);
    return rev;
}

static uint64_t delete_session(RpcChannel *ch, const char *sid)
{
    Norn__V1__DeleteSessionRequest req = NORN__V1__DELETE_SESSION_REQUEST__INIT;
    req.session_id = (char *)sid;
    Norn__V1__DeleteSessionResponse *resp = NULL;
    RpcStatus st;
    assert_int_equal(norn__v1__session_service__delete_session__call(ch, &req, &resp, &CO, &st),
                     RPC_OK);
    rpc_status_clear(&st);
    uint64_t rev = resp->revision;
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rev;
}

/* The store's current revision, as ListSessions reports it. */
static uint64_t current_revision(RpcChannel *ch)
{
    Norn__V1__ListSessionsRequest req = NORN__V1__LIST_SESSIONS_REQUEST__INIT;
    req.page_size = 1;
    Norn__V1__ListSessionsResponse *resp = NULL;
    RpcStatus st;
    assert_int_equal(norn__v1__session_service__list_sessions__call(ch, &req, &resp, &CO, &st),
                     RPC_OK);
    rpc_status_clear(&st);
    uint64_t rev = resp->revision;
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return rev;
}

static Norn__V1__WatchSessionsResponse *watch_next(RpcClientCall *c)
{
    Norn__V1__WatchSessionsResponse *r = NULL;
    int got = norn__v1__session_service__watch_sessions__read(c, &r);
    if (got != 1) {
        RpcStatus st;
        RpcCode code = rpc_stream_finish(c, &st);
        fail_msg("watch ended early (read %d): %s %s", got, rpc_code_name(code),
                 st.message ? st.message : "");
    }
    return r;
}

static Norn__V1__SessionDelta *expect_delta(RpcClientCall *c, uint64_t rev,
                                            Norn__V1__DeltaKind kind, const char *sid,
                                            Norn__V1__WatchSessionsResponse **holder)
{
    Norn__V1__WatchSessionsResponse *r = watch_next(c);
    if (r->event_case != NORN__V1__WATCH_SESSIONS_RESPONSE__EVENT_DELTA)
        fail_msg("expected delta %llu, got event %d", (unsigned long long)rev, r->event_case);
    Norn__V1__SessionDelta *d = r->delta;
    if (d->revision != rev || d->kind != kind || strcmp(d->session->session_id, sid) != 0)
        fail_msg("expected delta rev %llu kind %d of %s, got rev %llu kind %d of %s",
                 (unsigned long long)rev, kind, sid, (unsigned long long)d->revision, d->kind,
                 d->session->session_id);
    *holder = r;
    return d;
}

static void finish_expect(RpcClientCall *c, RpcCode want)
{
    RpcStatus st;
    RpcCode code = rpc_stream_finish(c, &st);
    if (code != want)
        fail_msg("stream ended %s (%s), expected %s", rpc_code_name(code),
                 st.message ? st.message : "", rpc_code_name(want));
    rpc_status_clear(&st);
}

/* ---- an ingesting thread: one Ingest stream, no asserts (it reports) ------------------ */

typedef struct Ingester {
    RpcChannel *ch;
    const char *sid;
    const char *agent;
    int pairs;      /* BeginStep/EndStep pairs after the open */
    int answered;   /* responses read */
    int errors;     /* responses with `error`, or out of order */
    RpcCode status; /* of the stream */
    char why[256];
} Ingester;

/* The commits one ingester makes: open, pairs x (begin, end), record (2
 * steps), complete. */
static int ingester_commits(const Ingester *in)
{
    return 1 + 2 * in->pairs + 1 + 1;
}

static void *ingest_main(void *arg)
{
    Ingester *in = arg;
    RpcCallOptions o = {.timeout_ms = 20000};
    RpcClientCall *c = norn__v1__session_service__ingest__start(in->ch, &o);
    uint64_t rid = 0;
    Norn__V1__IngestRequest r = NORN__V1__INGEST_REQUEST__INIT;

    Norn__V1__OpenSessionRequest open = NORN__V1__OPEN_SESSION_REQUEST__INIT;
    open.session_id = (char *)in->sid;
    open.agent_name = (char *)in->agent;
    r.request_id = ++rid;
    r.payload_case = NORN__V1__INGEST_REQUEST__PAYLOAD_OPEN;
    r.open = &open;
    int bad = norn__v1__session_service__ingest__write(c, &r);

    for (int i = 0; i < in->pairs && !bad; i++) {
        char tu[32], q[64];
        snprintf(tu, sizeof tu, "%s-tu-%d", in->sid, i);
        snprintf(q, sizeof q, "question number %d", i);
        Google__Protobuf__Value v = GOOGLE__PROTOBUF__VALUE__INIT;
        v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
        v.string_value = q;
        Google__Protobuf__Struct__FieldsEntry e = GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT;
        e.key = "query";
        e.value = &v;
        Google__Protobuf__Struct__FieldsEntry *ep = &e;
        Google__Protobuf__Struct input = GOOGLE__PROTOBUF__STRUCT__INIT;
        input.n_fields = 1;
        input.fields = &ep;
        Norn__V1__BeginStepRequest b = NORN__V1__BEGIN_STEP_REQUEST__INIT;
        b.session_id = (char *)in->sid;
        b.tool_use_id = tu;
        b.tool_name = i % 2 ? "search" : "lookup";
        b.tool_input = &input;
        norn__v1__ingest_request__init(&r);
        r.request_id = ++rid;
        r.payload_case = NORN__V1__INGEST_REQUEST__PAYLOAD_BEGIN_STEP;
        r.begin_step = &b;
        bad |= norn__v1__session_service__ingest__write(c, &r);
        Norn__V1__EndStepRequest e2 = NORN__V1__END_STEP_REQUEST__INIT;
        e2.session_id = (char *)in->sid;
        e2.tool_use_id = tu;
        e2.result_text = "an answer";
        e2.result_status = NORN__V1__RESULT_STATUS__RESULT_STATUS_SUCCESS;
        norn__v1__ingest_request__init(&r);
        r.request_id = ++rid;
        r.payload_case = NORN__V1__INGEST_REQUEST__PAYLOAD_END_STEP;
        r.end_step = &e2;
        bad |= norn__v1__session_service__ingest__write(c, &r);
    }

    Norn__V1__Step steps[2];
    Norn__V1__Step *sp[2] = {&steps[0], &steps[1]};
    char rtu[2][48];
    for (int i = 0; i < 2; i++) {
        norn__v1__step__init(&steps[i]);
        snprintf(rtu[i], sizeof rtu[i], "%s-rec-%d", in->sid, i);
        steps[i].tool_use_id = rtu[i];
        steps[i].tool_name = i ? "write_file" : "read_file";
        steps[i].result_text = "done";
    }
    Norn__V1__RecordStepsRequest rec = NORN__V1__RECORD_STEPS_REQUEST__INIT;
    rec.session_id = (char *)in->sid;
    rec.n_steps = 2;
    rec.steps = sp;
    norn__v1__ingest_request__init(&r);
    r.request_id = ++rid;
    r.payload_case = NORN__V1__INGEST_REQUEST__PAYLOAD_RECORD_STEPS;
    r.record_steps = &rec;
    bad |= norn__v1__session_service__ingest__write(c, &r);

    Norn__V1__CompleteSessionRequest comp = NORN__V1__COMPLETE_SESSION_REQUEST__INIT;
    comp.session_id = (char *)in->sid;
    comp.status = NORN__V1__SESSION_STATUS__SESSION_STATUS_COMPLETED;
    norn__v1__ingest_request__init(&r);
    r.request_id = ++rid;
    r.payload_case = NORN__V1__INGEST_REQUEST__PAYLOAD_COMPLETE;
    r.complete = &comp;
    bad |= norn__v1__session_service__ingest__write(c, &r);
    rpc_stream_writes_done(c);

    Norn__V1__IngestResponse *resp;
    while (norn__v1__session_service__ingest__read(c, &resp) == 1) {
        in->answered++;
        if (resp->payload_case == NORN__V1__INGEST_RESPONSE__PAYLOAD_ERROR) {
            if (!in->errors)
                snprintf(in->why, sizeof in->why, "request %llu: %s",
                         (unsigned long long)resp->request_id, resp->error->message);
            in->errors++;
        } else if (resp->request_id != (uint64_t)in->answered) {
            in->errors++;
        }
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    }
    RpcStatus st;
    in->status = rpc_stream_finish(c, &st);
    if (in->status != RPC_OK && !in->why[0])
        snprintf(in->why, sizeof in->why, "%s", st.message ? st.message : "");
    rpc_status_clear(&st);
    if (bad && !in->errors)
        in->errors = 1;
    return NULL;
}

static void ingester_check(const Ingester *in)
{
    if (in->status != RPC_OK || in->errors || in->answered != ingester_commits(in))
        fail_msg("ingester %s: status %s, %d errors, %d of %d answered (%s)", in->sid,
                 rpc_code_name(in->status), in->errors, in->answered, ingester_commits(in),
                 in->why);
}

/* The kind of the k-th commit of an ingester (0-based). */
static Norn__V1__DeltaKind ingester_kind(const Ingester *in, int k)
{
    if (k == 0)
        return NORN__V1__DELTA_KIND__DELTA_KIND_CREATED;
    if (k <= 2 * in->pairs)
        return k % 2 ? NORN__V1__DELTA_KIND__DELTA_KIND_STEP_ADDED
                     : NORN__V1__DELTA_KIND__DELTA_KIND_STEP_UPDATED;
    if (k == 2 * in->pairs + 1)
        return NORN__V1__DELTA_KIND__DELTA_KIND_STEP_ADDED; /* RecordSteps */
    return NORN__V1__DELTA_KIND__DELTA_KIND_COMPLETED;
}

/* ---- the snapshot, then gap-free deltas while another thread ingests ------------------- */

static void test_watch_initial_then_live_deltas(void **state)
{
    Fixture *f = *state;
    const char *pre[4] = {"snap-a", "snap-b", "snap-c", "snap-d"};
    for (int i = 0; i < 4; i++)
        open_session(f->ch, pre[i], i == 3 ? "someone-else" : "watched");
    assert_int_equal(current_revision(f->ch), 4);

    Ingester in = {.ch = f->ch, .sid = "live-1", .agent = "watched", .pairs = 5};
    const int n = ingester_commits(&in); /* revisions 5 .. 4 + n */

    /* W1: everything, with a snapshot and with steps. W2: from revision 5,
     * without steps. Both are open before the ingest starts. */
    Norn__V1__WatchSessionsRequest wr = NORN__V1__WATCH_SESSIONS_REQUEST__INIT;
    wr.send_initial = 1;
    wr.include_steps = 1;
    RpcClientCall *w1 = norn__v1__session_service__watch_sessions__start(f->ch, &wr, &WO);
    Norn__V1__WatchSessionsRequest wr2 = NORN__V1__WATCH_SESSIONS_REQUEST__INIT;
    wr2.start_revision = 5;
    RpcClientCall *w2 = norn__v1__session_service__watch_sessions__start(f->ch, &wr2, &WO);
    assert_non_null(w1);
    assert_non_null(w2);

    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, ingest_main, &in), 0);

    /* The snapshot: the four sessions (and live-1 if the snapshot caught
     * it), each at or below initial_end's revision. */
    int seen[4] = {0}, live_in_snapshot = 0;
    uint64_t snap_rev = 0;
    uint64_t max_initial_rev = 0;
    for (;;) {
        Norn__V1__WatchSessionsResponse *r = watch_next(w1);
        if (r->event_case == NORN__V1__WATCH_SESSIONS_RESPONSE__EVENT_INITIAL_END) {
            snap_rev = r->initial_end->revision;
            protobuf_c_message_free_unpacked(&r->base, NULL);
            break;
        }
        assert_int_equal(r->event_case, NORN__V1__WATCH_SESSIONS_RESPONSE__EVENT_INITIAL);
        const Norn__V1__Session *s = r->initial;
        int known = 0;
        for (int i = 0; i < 4; i++)
            if (strcmp(s->session_id, pre[i]) == 0)
                seen[i]++, known = 1;
        if (strcmp(s->session_id, "live-1") == 0)
            live_in_snapshot++, known = 1;
        assert_true(known);
        assert_int_equal(s->n_steps, 0); /* summaries */
        if (s->revision > max_initial_rev)
            max_initial_rev = s->revision;
        protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    for (int i = 0; i < 4; i++)
        assert_int_equal(seen[i], 1);
    assert_true(snap_rev >= 4 && snap_rev <= 4 + (uint64_t)n);
    assert_true(max_initial_rev <= snap_rev);
    assert_int_equal(live_in_snapshot, snap_rev >= 5);

    /* Then every later revision, in order, each exactly once. */
    for (uint64_t rev = snap_rev + 1; rev <= 4 + (uint64_t)n; rev++) {
        Norn__V1__WatchSessionsResponse *h;
        int k = (int)(rev - 5);
        Norn__V1__SessionDelta *d = expect_delta(w1, rev, ingester_kind(&in, k), "live-1", &h);
        assert_int_equal(d->session->revision, rev);
        assert_string_equal(d->session->agent_name, "watched");
        assert_int_equal(d->session->n_steps, 0);
        if (d->kind == NORN__V1__DELTA_KIND__DELTA_KIND_STEP_ADDED && k <= 2 * in.pairs) {
            assert_int_equal(d->n_steps, 1);
            assert_int_equal(d->steps[0]->status, NORN__V1__STEP_STATUS__STEP_STATUS_RUNNING);
            assert_int_equal(d->steps[0]->step_number, (uint32_t)(k + 1) / 2);
        } else if (d->kind == NORN__V1__DELTA_KIND__DELTA_KIND_STEP_UPDATED) {
            assert_int_equal(d->n_steps, 1);
            assert_int_equal(d->steps[0]->status, NORN__V1__STEP_STATUS__STEP_STATUS_SUCCESS);
            assert_string_equal(d->steps[0]->result_text, "an answer");
        } else if (d->kind == NORN__V1__DELTA_KIND__DELTA_KIND_STEP_ADDED) {
            assert_int_equal(d->n_steps, 2); /* one revision, never split */
            assert_int_equal(d->steps[1]->step_number, (uint32_t)in.pairs + 2);
        } else if (d->kind == NORN__V1__DELTA_KIND__DELTA_KIND_COMPLETED) {
            assert_int_equal(d->session->status,
                             NORN__V1__SESSION_STATUS__SESSION_STATUS_COMPLETED);
            assert_int_equal(d->session->total_steps, (uint32_t)in.pairs + 2);
            assert_int_equal(d->n_steps, 0);
        }
        protobuf_c_message_free_unpacked(&h->base, NULL);
    }

    /* W2 saw all n of them, from revision 5, without steps. */
    for (int k = 0; k < n; k++) {
        Norn__V1__WatchSessionsResponse *h;
        Norn__V1__SessionDelta *d =
            expect_delta(w2, 5 + (uint64_t)k, ingester_kind(&in, k), "live-1", &h);
        assert_int_equal(d->n_steps, 0);
        protobuf_c_message_free_unpacked(&h->base, NULL);
    }
    pthread_join(th, NULL);
    ingester_check(&in);

    /* One more change from here reaches both, right after the last. */
    uint64_t rev = open_session(f->ch, "after-ingest", "watched");
    assert_int_equal(rev, 5 + (uint64_t)n);
    Norn__V1__WatchSessionsResponse *h;
    expect_delta(w1, rev, NORN__V1__DELTA_KIND__DELTA_KIND_CREATED, "after-ingest", &h);
    protobuf_c_message_free_unpacked(&h->base, NULL);
    expect_delta(w2, rev, NORN__V1__DELTA_KIND__DELTA_KIND_CREATED, "after-ingest", &h);
    protobuf_c_message_free_unpacked(&h->base, NULL);

    rpc_stream_cancel(w1);
    finish_expect(w1, RPC_CANCELLED);
    rpc_stream_cancel(w2);
    finish_expect(w2, RPC_CANCELLED);
}

typedef struct BlockedReader {
    RpcClientCall *c;
    int read_result;
    int got_message;
} BlockedReader;

static void *blocked_read_main(void *arg)
{
    BlockedReader *b = arg;
    Norn__V1__WatchSessionsResponse *r = NULL;
    b->read_result = norn__v1__session_service__watch_sessions__read(b->c, &r);
    if (r) {
        b->got_message = 1;
        protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    return NULL;
}

/* ---- resume with start_revision across a restart ------------------------------------------- */

static void test_watch_resume_across_restart(void **state)
{
    Fixture *f = *state;
    open_session(f->ch, "keep-1", "resumer");
    open_session(f->ch, "gone-1", "resumer");
    uint64_t seen_up_to = current_revision(f->ch); /* what a watcher had seen: 2 */
    assert_int_equal(seen_up_to, 2);
    /* Changes the watcher misses while it (and then nornd) is away. */
    uint64_t r_step = begin_step(f->ch, "keep-1", "k-1", "first question");
    uint64_t r_del = delete_session(f->ch, "gone-1");
    uint64_t r_new = open_session(f->ch, "new-1", "resumer");
    assert_int_equal(r_step, 3);
    assert_int_equal(r_del, 4);
    assert_int_equal(r_new, 5);

    /* nornd restarts on the same data dir (graceful stop, new port). */
    rpc_channel_close(f->ch);
    f->ch = NULL;
    int old_port = f->proc.port;
    assert_int_equal(nornd_restart(&f->proc, NULL, NULL), 0);
    f->ch = channel_to(f->proc.target);
    (void)old_port;
    assert_int_equal(current_revision(f->ch), 5);

    /* Resume from seen_up_to + 1: the missed deltas come from the stored
     * revision log, in order, then live ones follow without a gap. */
    Norn__V1__WatchSessionsRequest wr = NORN__V1__WATCH_SESSIONS_REQUEST__INIT;
    wr.start_revision = seen_up_to + 1;
    wr.include_steps = 1;
    RpcClientCall *w = norn__v1__session_service__watch_sessions__start(f->ch, &wr, &WO);
    Norn__V1__WatchSessionsResponse *h;
    Norn__V1__SessionDelta *d =
        expect_delta(w, 3, NORN__V1__DELTA_KIND__DELTA_KIND_STEP_ADDED, "keep-1", &h);
    assert_int_equal(d->n_steps, 1);
    assert_string_equal(d->steps[0]->tool_use_id, "k-1");
    protobuf_c_message_free_unpacked(&h->base, NULL);
    d = expect_delta(w, 4, NORN__V1__DELTA_KIND__DELTA_KIND_DELETED, "gone-1", &h);
    assert_string_equal(d->session->agent_name, "resumer");
    protobuf_c_message_free_unpacked(&h->base, NULL);
    expect_delta(w, 5, NORN__V1__DELTA_KIND__DELTA_KIND_CREATED, "new-1", &h);
    protobuf_c_message_free_unpacked(&h->base, NULL);

    /* Live changes after the restart continue the sequence. */
    assert_int_equal(begin_step(f->ch, "keep-1", "k-2", "second question"), 6);
    d = expect_delta(w, 6, NORN__V1__DELTA_KIND__DELTA_KIND_STEP_ADDED, "keep-1", &h);
    assert_int_equal(d->steps[0]->step_number, 2); /* numbering survived the restart */
    protobuf_c_message_free_unpacked(&h->base, NULL);
    assert_int_equal(open_session(f->ch, "new-2", "resumer"), 7);
    expect_delta(w, 7, NORN__V1__DELTA_KIND__DELTA_KIND_CREATED, "new-2", &h);
    protobuf_c_message_free_unpacked(&h->base, NULL);

    /* A second restart while a watcher is open (a reader blocked on it):
     * the drain ends its stream with UNAVAILABLE, and it resumes exactly
     * where it stopped. */
    BlockedReader br = {w, -2, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, blocked_read_main, &br), 0);
    sleep_ms(100);
    assert_int_equal(nornd_restart(&f->proc, NULL, NULL), 0);
    pthread_join(th, NULL);
    assert_int_equal(br.read_result, 0);
    assert_false(br.got_message);
    finish_expect(w, RPC_UNAVAILABLE);
    rpc_channel_close(f->ch);
    f->ch = channel_to(f->proc.target);
    assert_int_equal(begin_step(f->ch, "keep-1", "k-3", "third question"), 8);
    wr.start_revision = 8;
    w = norn__v1__session_service__watch_sessions__start(f->ch, &wr, &WO);
    expect_delta(w, 8, NORN__V1__DELTA_KIND__DELTA_KIND_STEP_ADDED, "keep-1", &h);
    protobuf_c_message_free_unpacked(&h->base, NULL);

    /* From the very beginning too: nothing was compacted. */
    Norn__V1__WatchSessionsRequest all = NORN__V1__WATCH_SESSIONS_REQUEST__INIT;
    all.start_revision = 1;
    RpcClientCall *wa = norn__v1__session_service__watch_sessions__start(f->ch, &all, &WO);
    const char *ids[8] = {"keep-1", "gone-1", "keep-1", "gone-1",
                          "new-1",  "keep-1", "new-2",  "keep-1"};
    for (uint64_t rev = 1; rev <= 8; rev++) {
        Norn__V1__WatchSessionsResponse *r = watch_next(wa);
        assert_int_equal(r->event_case, NORN__V1__WATCH_SESSIONS_RESPONSE__EVENT_DELTA);
        assert_int_equal(r->delta->revision, rev);
        assert_string_equal(r->delta->session->session_id, ids[rev - 1]);
        protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    rpc_stream_cancel(wa);
    finish_expect(wa, RPC_CANCELLED);
    rpc_stream_cancel(w);
    finish_expect(w, RPC_CANCELLED);

    /* The data survived both restarts. */
    Norn__V1__GetSessionRequest g = NORN__V1__GET_SESSION_REQUEST__INIT;
    g.session_id = "keep-1";
    g.include_steps = 1;
    Norn__V1__GetSessionResponse *gr = NULL;
    RpcStatus st;
    assert_int_equal(norn__v1__session_service__get_session__call(f->ch, &g, &gr, &CO, &st),
                     RPC_OK);
    rpc_status_clear(&st);
    assert_int_equal(gr->session->n_steps, 3);
    assert_int_equal(gr->session->revision, 8);
    protobuf_c_message_free_unpacked(&gr->base, NULL);
    g.session_id = "gone-1";
    assert_int_equal(norn__v1__session_service__get_session__call(f->ch, &g, &gr, &CO, &st),
                     RPC_NOT_FOUND);
    rpc_status_clear(&st);
}

/* ---- progress ---------------------------------------------------------------------------- */

static void test_watch_progress(void **state)
{
    Fixture *f = *state;
    open_session(f->ch, "p-1", "progress-agent");
    open_session(f->ch, "p-2", "someone-else");
    uint64_t cur = current_revision(f->ch);
    assert_int_equal(cur, 2);

    RpcStatus st;
    Norn__V1__WatchSessionsRequest bad = NORN__V1__WATCH_SESSIONS_REQUEST__INIT;
    bad.progress_interval_ms = 50; /* below the 100 ms minimum */
    RpcClientCall *b = norn__v1__session_service__watch_sessions__start(f->ch, &bad, &WO);
    Norn__V1__WatchSessionsResponse *none = NULL;
    assert_int_equal(norn__v1__session_service__watch_sessions__read(b, &none), 0);
    assert_int_equal(rpc_stream_finish(b, &st), RPC_INVALID_ARGUMENT);
    assert_non_null(strstr(st.message, "progress_interval_ms"));
    rpc_status_clear(&st);

    /* Idle: a progress message at about the interval, naming the current
     * revision. */
    Norn__V1__WatchSessionsRequest wr = NORN__V1__WATCH_SESSIONS_REQUEST__INIT;
    wr.agent_name = "progress-agent";
    wr.progress_interval_ms = 150;
    uint64_t t0 = now_ms();
    RpcClientCall *w = norn__v1__session_service__watch_sessions__start(f->ch, &wr, &WO);
    Norn__V1__WatchSessionsResponse *r = watch_next(w);
    uint64_t waited = now_ms() - t0;
    assert_int_equal(r->event_case, NORN__V1__WATCH_SESSIONS_RESPONSE__EVENT_PROGRESS);
    assert_int_equal(r->progress->revision, cur);
    assert_true(waited >= 100);
    assert_true(waited < 3000);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    /* ...and again, not just once. */
    r = watch_next(w);
    assert_int_equal(r->event_case, NORN__V1__WATCH_SESSIONS_RESPONSE__EVENT_PROGRESS);
    assert_int_equal(r->progress->revision, cur);
    protobuf_c_message_free_unpacked(&r->base, NULL);

    /* A change the filter does not match is no delta, but progress moves
     * past it: everything up to that revision has been delivered. */
    uint64_t other = begin_step(f->ch, "p-2", "o-1", "not for this watcher");
    assert_int_equal(other, cur + 1);
    for (int i = 0;; i++) {
        assert_true(i < 20);
        r = watch_next(w);
        assert_int_equal(r->event_case, NORN__V1__WATCH_SESSIONS_RESPONSE__EVENT_PROGRESS);
        uint64_t pr = r->progress->revision;
        protobuf_c_message_free_unpacked(&r->base, NULL);
        assert_true(pr == cur || pr == other);
        if (pr == other)
            break;
    }

    /* A matching change: its delta, then progress at its revision. */
    uint64_t mine = begin_step(f->ch, "p-1", "m-1", "for this watcher");
    assert_int_equal(mine, other + 1);
    Norn__V1__WatchSessionsResponse *h;
    expect_delta(w, mine, NORN__V1__DELTA_KIND__DELTA_KIND_STEP_ADDED, "p-1", &h);
    protobuf_c_message_free_unpacked(&h->base, NULL);
    r = watch_next(w);
    assert_int_equal(r->event_case, NORN__V1__WATCH_SESSIONS_RESPONSE__EVENT_PROGRESS);
    assert_int_equal(r->progress->revision, mine);
    protobuf_c_message_free_unpacked(&r->base, NULL);

    /* Without progress_interval_ms an idle watch stays silent. */
    Norn__V1__WatchSessionsRequest quiet = NORN__V1__WATCH_SESSIONS_REQUEST__INIT;
    RpcCallOptions short_o = {.timeout_ms = 600};
    RpcClientCall *q = norn__v1__session_service__watch_sessions__start(f->ch, &quiet, &short_o);
    assert_int_equal(norn__v1__session_service__watch_sessions__read(q, &none), 0);
    assert_null(none);
    finish_expect(q, RPC_DEADLINE_EXCEEDED);

    rpc_stream_cancel(w);
    finish_expect(w, RPC_CANCELLED);
}

/* ---- the DELETED delta -------------------------------------------------------------------- */

static void test_watch_deleted_delta(void **state)
{
    Fixture *f = *state;
    open_session(f->ch, "del-1", "del-agent");
    open_session(f->ch, "del-2", "del-agent");
    begin_step(f->ch, "del-1", "x-1", "before the watch");

    /* Only del-1 (and an id that does not exist), with a snapshot. */
    char *ids[2] = {"del-1", "never-existed"};
    Norn__V1__WatchSessionsRequest wr = NORN__V1__WATCH_SESSIONS_REQUEST__INIT;
    wr.n_session_ids = 2;
    wr.session_ids = ids;
    wr.send_initial = 1;
    wr.include_steps = 1;
    RpcClientCall *w = norn__v1__session_service__watch_sessions__start(f->ch, &wr, &WO);
    Norn__V1__WatchSessionsResponse *r = watch_next(w);
    assert_int_equal(r->event_case, NORN__V1__WATCH_SESSIONS_RESPONSE__EVENT_INITIAL);
    assert_string_equal(r->initial->session_id, "del-1");
    assert_int_equal(r->initial->total_steps, 1);
    assert_int_equal(r->initial->revision, 3);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    r = watch_next(w);
    assert_int_equal(r->event_case, NORN__V1__WATCH_SESSIONS_RESPONSE__EVENT_INITIAL_END);
    assert_int_equal(r->initial_end->revision, 3);
    protobuf_c_message_free_unpacked(&r->base, NULL);

    uint64_t r_other = begin_step(f->ch, "del-2", "y-1", "another session"); /* filtered out */
    uint64_t r_del = delete_session(f->ch, "del-1");
    assert_int_equal(r_other, 4);
    assert_int_equal(r_del, 5);
    delete_session(f->ch, "del-2"); /* filtered out too */

    Norn__V1__WatchSessionsResponse *h;
    Norn__V1__SessionDelta *d =
        expect_delta(w, r_del, NORN__V1__DELTA_KIND__DELTA_KIND_DELETED, "del-1", &h);
    /* Only the identity and updated_at are left. */
    assert_string_equal(d->session->agent_name, "del-agent");
    assert_non_null(d->session->updated_at);
    assert_true(d->session->updated_at->seconds > 0);
    assert_int_equal(d->session->total_steps, 0);
    assert_int_equal(d->session->status, NORN__V1__SESSION_STATUS__SESSION_STATUS_UNSPECIFIED);
    assert_int_equal(d->n_steps, 0);
    assert_int_equal(d->n_issues, 0);
    protobuf_c_message_free_unpacked(&h->base, NULL);

    /* Re-creating the id is a new CREATED delta for the same watcher. */
    uint64_t r_again = open_session(f->ch, "del-1", "del-agent");
    assert_int_equal(r_again, 7);
    expect_delta(w, r_again, NORN__V1__DELTA_KIND__DELTA_KIND_CREATED, "del-1", &h);
    protobuf_c_message_free_unpacked(&h->base, NULL);

    rpc_stream_cancel(w);
    finish_expect(w, RPC_CANCELLED);
}

/* ---- cancellation -----------------------------------------------------------------------------
 */

static int health_serving(RpcChannel *ch)
{
    Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    req.service = "norn.v1.SessionService";
    Grpc__Health__V1__HealthCheckResponse *resp = NULL;
    RpcStatus st;
    RpcCode code = grpc__health__v1__health__check__call(ch, &req, &resp, &CO, &st);
    rpc_status_clear(&st);
    int ok = code == RPC_OK &&
             resp->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    if (resp)
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    return ok;
}

static void test_watch_cancel_leaves_server_healthy(void **state)
{
    Fixture *f = *state;
    open_session(f->ch, "c-1", "canceller");

    /* 1: a reader blocked in read on another thread; cancel wakes it. */
    Norn__V1__WatchSessionsRequest wr = NORN__V1__WATCH_SESSIONS_REQUEST__INIT;
    BlockedReader br = {norn__v1__session_service__watch_sessions__start(f->ch, &wr, &WO), -2, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, blocked_read_main, &br), 0);
    sleep_ms(200);
    uint64_t t0 = now_ms();
    rpc_stream_cancel(br.c);
    pthread_join(th, NULL);
    assert_true(now_ms() - t0 < 2000);
    assert_int_equal(br.read_result, 0);
    assert_false(br.got_message);
    finish_expect(br.c, RPC_CANCELLED);

    /* 2: cancelled right after the snapshot. */
    wr.send_initial = 1;
    RpcClientCall *w2 = norn__v1__session_service__watch_sessions__start(f->ch, &wr, &WO);
    Norn__V1__WatchSessionsResponse *r = watch_next(w2);
    assert_int_equal(r->event_case, NORN__V1__WATCH_SESSIONS_RESPONSE__EVENT_INITIAL);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    rpc_stream_cancel(w2);
    finish_expect(w2, RPC_CANCELLED);

    /* 3: cancelled mid-flow while another thread ingests; a second watcher
     * opened at the same time misses nothing. */
    uint64_t start = current_revision(f->ch) + 1;
    Norn__V1__WatchSessionsRequest from = NORN__V1__WATCH_SESSIONS_REQUEST__INIT;
    from.start_revision = start;
    from.include_steps = 1;
    RpcClientCall *quitter = norn__v1__session_service__watch_sessions__start(f->ch, &from, &WO);
    RpcClientCall *stayer = norn__v1__session_service__watch_sessions__start(f->ch, &from, &WO);
    Ingester in = {.ch = f->ch, .sid = "c-live", .agent = "canceller", .pairs = 25};
    const int n = ingester_commits(&in);
    pthread_t ith;
    assert_int_equal(pthread_create(&ith, NULL, ingest_main, &in), 0);
    for (int k = 0; k < 3; k++) {
        Norn__V1__WatchSessionsResponse *h;
        expect_delta(quitter, start + (uint64_t)k, ingester_kind(&in, k), "c-live", &h);
        protobuf_c_message_free_unpacked(&h->base, NULL);
    }
    rpc_stream_cancel(quitter);
    finish_expect(quitter, RPC_CANCELLED);
    for (int k = 0; k < n; k++) {
        Norn__V1__WatchSessionsResponse *h;
        expect_delta(stayer, start + (uint64_t)k, ingester_kind(&in, k), "c-live", &h);
        protobuf_c_message_free_unpacked(&h->base, NULL);
    }
    pthread_join(ith, NULL);
    ingester_check(&in);

    /* The server is fine: health, unary calls, and a new watcher that gets
     * the next change, as does the one that stayed. */
    assert_true(health_serving(f->ch));
    Norn__V1__WatchSessionsRequest fresh = NORN__V1__WATCH_SESSIONS_REQUEST__INIT;
    fresh.send_initial = 1;
    RpcClientCall *w4 = norn__v1__session_service__watch_sessions__start(f->ch, &fresh, &WO);
    int initial = 0;
    uint64_t snap = 0;
    for (;;) {
        r = watch_next(w4);
        if (r->event_case == NORN__V1__WATCH_SESSIONS_RESPONSE__EVENT_INITIAL_END) {
            snap = r->initial_end->revision;
            protobuf_c_message_free_unpacked(&r->base, NULL);
            break;
        }
        initial++;
        protobuf_c_message_free_unpacked(&r->base, NULL);
    }
    assert_int_equal(initial, 2); /* c-1, c-live */
    assert_int_equal(snap, start - 1 + (uint64_t)n);
    uint64_t rev = open_session(f->ch, "c-after", "canceller");
    assert_int_equal(rev, snap + 1);
    Norn__V1__WatchSessionsResponse *h;
    expect_delta(w4, rev, NORN__V1__DELTA_KIND__DELTA_KIND_CREATED, "c-after", &h);
    protobuf_c_message_free_unpacked(&h->base, NULL);
    expect_delta(stayer, rev, NORN__V1__DELTA_KIND__DELTA_KIND_CREATED, "c-after", &h);
    protobuf_c_message_free_unpacked(&h->base, NULL);

    /* Many watchers opened and cancelled in a burst leave nothing behind:
     * the last one still works, and the drain at teardown exits cleanly. */
    for (int i = 0; i < 20; i++) {
        RpcClientCall *c = norn__v1__session_service__watch_sessions__start(f->ch, &wr, &WO);
        if (i % 2) { /* half of them after the first message */
            r = watch_next(c);
            protobuf_c_message_free_unpacked(&r->base, NULL);
        }
        rpc_stream_cancel(c);
        finish_expect(c, RPC_CANCELLED);
    }
    rev = open_session(f->ch, "c-last", "canceller");
    expect_delta(w4, rev, NORN__V1__DELTA_KIND__DELTA_KIND_CREATED, "c-last", &h);
    protobuf_c_message_free_unpacked(&h->base, NULL);
    expect_delta(stayer, rev, NORN__V1__DELTA_KIND__DELTA_KIND_CREATED, "c-last", &h);
    protobuf_c_message_free_unpacked(&h->base, NULL);
    assert_true(health_serving(f->ch));

    rpc_stream_cancel(w4);
    finish_expect(w4, RPC_CANCELLED);
    rpc_stream_cancel(stayer);
    finish_expect(stayer, RPC_CANCELLED);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_watch_initial_then_live_deltas, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_resume_across_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_progress, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_deleted_delta, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_cancel_leaves_server_healthy, setup, teardown),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
