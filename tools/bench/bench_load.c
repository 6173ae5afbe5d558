/*
 * bench_load.c — `norn-bench load`: fills a data dir with synthetic
 * sessions through the store API, while nornd is not running.
 *
 * What is written is what nornd itself writes for a session that was
 * opened, given K steps and completed (or left active):
 *   - the session summary (store_txn_put_session, which also writes its
 *     index rows and the swarm record),
 *   - K steps with their tool-use rows (--steps, default 0),
 *   - the audit rows: session start, one tool call per step, session end,
 *   - the store counters (sessions, by status, by quality, score sums,
 *     steps), adjusted exactly as the session service adjusts them.
 * Sessions are written oldest first, --batch per transaction, with
 * started_at spread evenly (with jitter) over the last --days days and ids
 * in the server's format (26 characters, time-ordered).
 *
 * Every session gets a revision of its own with its revision-log entry: a
 * CREATED delta for a session still active, COMPLETED for one that ended,
 * as if the server had kept only each session's last change. A
 * transaction hands out consecutive revisions, so batching does not change
 * them. At the end the log is trimmed the way the server's watch hub trims
 * it (by count and by age, from the stored config or its defaults), so a
 * server started on the data dir finds it in its steady state. The store
 * records a swarm when the first member it sees in committed data names
 * it, so the transaction ends right after a swarm's first member.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "bench.h"
#include "error.h"
#include "store.h"

typedef struct LoadOpts {
    const char *data_dir;
    uint64_t sessions;
    uint64_t agents;
    uint64_t swarms;
    uint64_t swarm_pct;
    uint64_t batch;
    uint64_t steps;
    double days;
    uint64_t seed;
    int have_seed;
} LoadOpts;

static void usage(FILE *out)
{
    fputs("usage: norn-bench load --data-dir DIR --sessions N [options]\n"
          "\n"
          "Bulk-loads N synthetic sessions into nornd's data dir (DIR/db) through the\n"
          "store API, exactly as the server would store and index them. nornd must not\n"
          "be running on DIR. Appends to an existing store.\n"
          "\n"
          "options:\n"
          "  --data-dir DIR      nornd's --data-dir (created if missing)\n"
          "  --sessions N        sessions to add\n"
          "  --agents A          distinct agent names agent-000.. (default 20)\n"
          "  --swarms W          distinct swarm ids swarm-0000.. (default 50)\n"
          "  --swarm-percent P   share of sessions that belong to a swarm (default 20)\n"
          "  --steps K           steps stored per session (default 0)\n"
          "  --days D            started_at spread over the last D days (default 30)\n"
          "  --batch B           sessions per transaction (default 1000)\n"
          "  --seed S            random seed (default: random)\n"
          "  -h, --help          this text\n",
          out);
}

static int ensure_dir(const char *path)
{
    if (mkdir(path, 0700) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            return 0;
    }
    fprintf(stderr, "norn-bench load: %s: %s\n", path, strerror(errno ? errno : ENOTDIR));
    return -1;
}

static void set_ts(Google__Protobuf__Timestamp *ts, uint64_t micros)
{
    google__protobuf__timestamp__init(ts);
    ts->seconds = (int64_t)(micros / 1000000u);
    ts->nanos = (int32_t)(micros % 1000000u) * 1000;
}

/* The server's id format: 10 characters of milliseconds and 16 of
 * randomness, Crockford base32, so ids sort by creation time. */
static void make_id(char out[27], uint64_t micros, uint64_t *rng)
{
    static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    uint64_t ms = micros / 1000u;
    for (int i = 9; i >= 0; i--) {
        out[i] = alphabet[ms & 31];
        ms >>= 5;
    }
    uint64_t a = bench_rand(rng), b = bench_rand(rng);
    for (int i = 0; i < 12; i++, a >>= 5)
        out[10 + i] = alphabet[a & 31];
    for (int i = 0; i < 4; i++, b >>= 5)
        out[22 + i] = alphabet[b & 31];
    out[26] = '\0';
}

/* The session service's counters_apply(+1): a session's contribution to
 * the status, quality and score counters. */
static void count_session(StoreCounters *c, const Norn__V1__Session *s)
{
    if ((unsigned)s->status < STORE_STATUS_SLOTS)
        c->by_status[s->status]++;
    if ((unsigned)s->overall_quality < STORE_QUALITY_SLOTS)
        c->by_quality[s->overall_quality]++;
    if (s->optional_efficiency_score_case ==
        NORN__V1__SESSION__OPTIONAL_EFFICIENCY_SCORE_EFFICIENCY_SCORE) {
        c->efficiency_scored++;
        c->efficiency_sum += (uint64_t)(s->efficiency_score < 0 ? 0 : s->efficiency_score);
    }
    if (s->optional_security_score_case ==
        NORN__V1__SESSION__OPTIONAL_SECURITY_SCORE_SECURITY_SCORE) {
        int32_t score = s->security_score < 0     ? 0
                        : s->security_score > 100 ? 100
                                                  : s->security_score;
        c->security_scored++;
        c->security_sum += (uint64_t)score;
        c->security_hist[score]++;
    }
}

static const char *quality_name(Norn__V1__SessionQuality q)
{
    static const char *const names[] = {"UNSPECIFIED", "EXCELLENT", "GOOD",   "POOR",
                                        "FAILED",      "STUCK",     "PENDING"};
    return (unsigned)q < 7 ? names[q] : "UNKNOWN";
}

static void audit(StoreTxn *t, const Norn__V1__Session *s, uint64_t micros,
                  Norn__V1__AuditEventType type, Norn__V1__AuditSeverity sev, const char *summary)
{
    Norn__V1__AuditEvent ev = NORN__V1__AUDIT_EVENT__INIT;
    Google__Protobuf__Timestamp ts;
    set_ts(&ts, micros);
    ev.timestamp = &ts;
    ev.event_type = type;
    ev.session_id = s->session_id;
    ev.agent_name = s->agent_name;
    ev.model = s->model;
    ev.summary = (char *)summary;
    ev.severity = sev;
    store_txn_add_audit(t, &ev);
}

static const char *const models[] = {"claude-sonnet-4", "gpt-4.1", "nova-2-lite", "llama-3.3-70b"};
static const char *const tools[] = {"read_file", "web_search", "run_sql", "http_get"};
static const char *const tasks[] = {
    "Summarise last week's support tickets and flag the urgent ones",
    "Find the cheapest flight from Oslo to Lisbon next month",
    "Reconcile the March invoices against the bank statement",
    "Write a status report from the open pull requests",
    "Answer the customer's question about the refund policy",
};

/* Writes K steps of session s (already numbered 1..K in its counts). */
static void put_steps(StoreTxn *t, Norn__V1__Session *s, uint64_t k, uint64_t start, uint64_t end,
                      uint64_t *rng)
{
    uint64_t span = end > start ? end - start : 1;
    for (uint64_t i = 1; i <= k; i++) {
        Norn__V1__Step st = NORN__V1__STEP__INIT;
        Google__Protobuf__Struct input = GOOGLE__PROTOBUF__STRUCT__INIT;
        Google__Protobuf__Struct__FieldsEntry e[2], *ep[2] = {&e[0], &e[1]};
        Google__Protobuf__Value v[2];
        Google__Protobuf__Timestamp t0, t1;
        char id[27], tu[40], path[96], result[256], summary[128];
        uint64_t s0 = start + span * (i - 1) / k, s1 = start + span * i / k;
        make_id(id, s0, rng);
        snprintf(tu, sizeof tu, "toolu_%llu", (unsigned long long)i);
        snprintf(path, sizeof path, "/srv/data/%s/part-%llu.json", s->session_id,
                 (unsigned long long)i);
        snprintf(result, sizeof result,
                 "ok: %llu records from %s; lorem ipsum dolor sit amet, consectetur adipiscing "
                 "elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua.",
                 (unsigned long long)(bench_rand(rng) % 1000), path);
        for (int f = 0; f < 2; f++) {
            google__protobuf__struct__fields_entry__init(&e[f]);
            google__protobuf__value__init(&v[f]);
            e[f].value = &v[f];
        }
        e[0].key = "path";
        v[0].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
        v[0].string_value = path;
        e[1].key = "limit";
        v[1].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
        v[1].number_value = 100;
        input.n_fields = 2;
        input.fields = ep;
        set_ts(&t0, s0);
        set_ts(&t1, s1);
        st.step_id = id;
        st.step_number = (uint32_t)i;
        st.tool_use_id = tu;
        st.tool_name = (char *)tools[i % 4];
        st.tool_input = &input;
        st.result_text = result;
        st.result_status = NORN__V1__RESULT_STATUS__RESULT_STATUS_SUCCESS;
        st.status = NORN__V1__STEP_STATUS__STEP_STATUS_SUCCESS;
        st.execution_time_ms = (double)(s1 - s0) / 1000.0;
        st.started_at = &t0;
        st.ended_at = &t1;
        store_txn_put_step(t, s->session_id, &st);
        store_txn_put_tool_use(t, s->session_id, tu, (uint32_t)i);
        snprintf(summary, sizeof summary,
                 "%s() \u2192 SUCCESS  |  Security: N/A%%  Relevance: N/A%%", st.tool_name);
        audit(t, s, s1, NORN__V1__AUDIT_EVENT_TYPE__AUDIT_EVENT_TYPE_TOOL_CALL,
              NORN__V1__AUDIT_SEVERITY__AUDIT_SEVERITY_INFO, summary);
    }
}

/* Builds and writes one session with its revision-log entry (at
 * `revision`, the transaction's next one); *swarm is its swarm's number or
 * -1. Returns 0, or -1 when the store refused it. */
static int put_session(StoreTxn *t, const LoadOpts *o, uint64_t started, uint64_t now,
                       uint64_t revision, int *swarm_no, uint64_t *updated_out, uint64_t *rng)
{
    StoreCounters *c = store_txn_counters(t);
    Norn__V1__Session s = NORN__V1__SESSION__INIT;
    Norn__V1__TaskDefinition task = NORN__V1__TASK_DEFINITION__INIT;
    Norn__V1__TokenUsage tokens = NORN__V1__TOKEN_USAGE__INIT;
    Norn__V1__ToolAnalysis ta = NORN__V1__TOOL_ANALYSIS__INIT, *tap = &ta;
    Google__Protobuf__Timestamp ts_start, ts_end, ts_upd;
    char id[27], agent[32], swarm[32], task_id[40], eval[400], expl[160], summary[300];
    char *recs[2] = {"Cache the tool results between steps",
                     "Stop after the answer is found instead of re-checking"};
    uint64_t r = bench_rand(rng);

    make_id(id, started, rng);
    snprintf(agent, sizeof agent, "agent-%03llu", (unsigned long long)(r % o->agents));
    r /= o->agents;
    s.session_id = id;
    s.agent_name = agent;
    s.model = (char *)models[r % 4];
    r /= 4;
    snprintf(task_id, sizeof task_id, "task-%s", id);
    task.task_id = task_id;
    task.description = (char *)tasks[r % 5];
    r /= 5;
    s.task = &task;
    s.system_prompt = "You are a helpful assistant for the operations team. Use the tools you "
                      "are given; never reveal credentials; ask before destructive actions.";
    s.guard_mode = NORN__V1__GUARD_MODE__GUARD_MODE_MONITOR;
    if (o->swarms && r % 100 < o->swarm_pct) {
        r /= 100;
        *swarm_no = (int)(r % o->swarms);
        snprintf(swarm, sizeof swarm, "swarm-%04d", *swarm_no);
        s.swarm_id = swarm;
        s.swarm_order = (uint32_t)(1 + r / o->swarms % 3);
    }
    r = bench_rand(rng);
    set_ts(&ts_start, started);
    s.started_at = &ts_start;
    uint64_t duration = (uint64_t)(5 + r % 600) * 1000000u; /* 5 s .. 10 min */
    r /= 600;
    uint64_t ended = started + duration;
    int active = ended > now; /* still running: started in the last minutes */
    s.total_steps = (uint32_t)o->steps;
    s.successful_steps = (uint32_t)o->steps;
    tokens.input_tokens = 2000 + r % 20000;
    tokens.output_tokens = 200 + r % 3000;
    tokens.total_tokens = tokens.input_tokens + tokens.output_tokens;
    s.token_usage = &tokens;
    s.overall_quality = NORN__V1__SESSION_QUALITY__QUALITY_PENDING;
    s.evaluation_state = NORN__V1__EVALUATION_STATE__EVALUATION_STATE_NOT_REQUESTED;
    uint64_t updated = started;
    if (active) {
        s.status = NORN__V1__SESSION_STATUS__SESSION_STATUS_ACTIVE;
    } else {
        r = bench_rand(rng);
        unsigned q = (unsigned)(r % 100);
        r /= 100;
        s.status = q < 92 ? NORN__V1__SESSION_STATUS__SESSION_STATUS_COMPLETED
                          : NORN__V1__SESSION_STATUS__SESSION_STATUS_TERMINATED;
        set_ts(&ts_end, ended);
        s.ended_at = &ts_end;
        s.total_execution_time_ms = (double)duration / 1000.0;
        s.final_text = "Done. The summary is in the report above.";
        updated = ended;
        s.optional_efficiency_score_case =
            NORN__V1__SESSION__OPTIONAL_EFFICIENCY_SCORE_EFFICIENCY_SCORE;
        s.efficiency_score = (int32_t)(40 + r % 61);
        r /= 61;
        if (s.status == NORN__V1__SESSION_STATUS__SESSION_STATUS_TERMINATED) {
            s.overall_quality = NORN__V1__SESSION_QUALITY__QUALITY_STUCK;
            s.loop_detected = 1;
            s.terminated_by_guard = 1;
            s.termination_reason =
                "Session terminated by Intervene mode [INFINITE_LOOP]: the same call repeated "
                "8 times";
        } else if (q < 85) {
            /* Evaluated by the AI. */
            static const Norn__V1__SessionQuality qs[] = {
                NORN__V1__SESSION_QUALITY__QUALITY_EXCELLENT,
                NORN__V1__SESSION_QUALITY__QUALITY_GOOD, NORN__V1__SESSION_QUALITY__QUALITY_GOOD,
                NORN__V1__SESSION_QUALITY__QUALITY_POOR, NORN__V1__SESSION_QUALITY__QUALITY_FAILED};
            s.overall_quality = qs[r % 5];
            r /= 5;
            s.evaluation_state = NORN__V1__EVALUATION_STATE__EVALUATION_STATE_DONE;
            s.optional_security_score_case =
                NORN__V1__SESSION__OPTIONAL_SECURITY_SCORE_SECURITY_SCORE;
            s.security_score = (int32_t)(50 + r % 51);
            r /= 51;
            s.optional_task_completion_case =
                NORN__V1__SESSION__OPTIONAL_TASK_COMPLETION_TASK_COMPLETION;
            s.task_completion = s.overall_quality != NORN__V1__SESSION_QUALITY__QUALITY_FAILED;
            s.optional_completion_confidence_case =
                NORN__V1__SESSION__OPTIONAL_COMPLETION_CONFIDENCE_COMPLETION_CONFIDENCE;
            s.completion_confidence = (int32_t)(60 + r % 41);
            snprintf(eval, sizeof eval,
                     "The agent understood the task (%s) and used the tools in a sensible "
                     "order. It verified the result before answering. Minor inefficiency: one "
                     "lookup was repeated with the same arguments.",
                     task.description);
            s.ai_evaluation = eval;
            snprintf(expl, sizeof expl, "%u steps for a task that needs about %u.", s.total_steps,
                     s.total_steps ? s.total_steps : 3);
            s.efficiency_explanation = expl;
            ta.tool = (char *)tools[r % 4];
            ta.usage = "correct";
            ta.note = "Used with focused arguments.";
            s.n_tool_analysis = 1;
            s.tool_analysis = &tap;
            s.n_recommendations = 2;
            s.recommendations = recs;
        }
    }
    set_ts(&ts_upd, updated);
    s.updated_at = &ts_upd;
    *updated_out = updated;
    s.revision = revision;
    s.invocation_first_step = 1; /* as OpenSession sets them for a new session */
    s.invocation_first_issue = 1;

    c->sessions++;
    c->steps += o->steps;
    count_session(c, &s);
    if (store_txn_put_session(t, &s, NULL) != NORN_OK)
        return -1;
    snprintf(summary, sizeof summary, "Session started \u2013 %.80s", task.description);
    audit(t, &s, started, NORN__V1__AUDIT_EVENT_TYPE__AUDIT_EVENT_TYPE_SESSION_START,
          NORN__V1__AUDIT_SEVERITY__AUDIT_SEVERITY_INFO, summary);
    if (o->steps)
        put_steps(t, &s, o->steps, started, active ? now : ended, rng);
    if (!active) {
        char eff[16], sec[16];
        snprintf(eff, sizeof eff, "%d%%", s.efficiency_score);
        if (s.optional_security_score_case)
            snprintf(sec, sizeof sec, "%d%%", s.security_score);
        else
            snprintf(sec, sizeof sec, "N/A");
        snprintf(summary, sizeof summary,
                 "Session ended \u2013 Quality: %s, Efficiency: %s, Security: %s",
                 quality_name(s.overall_quality), eff, sec);
        Norn__V1__AuditSeverity sev =
            s.overall_quality == NORN__V1__SESSION_QUALITY__QUALITY_EXCELLENT ||
                    s.overall_quality == NORN__V1__SESSION_QUALITY__QUALITY_GOOD
                ? NORN__V1__AUDIT_SEVERITY__AUDIT_SEVERITY_INFO
            : s.overall_quality == NORN__V1__SESSION_QUALITY__QUALITY_POOR
                ? NORN__V1__AUDIT_SEVERITY__AUDIT_SEVERITY_WARNING
                : NORN__V1__AUDIT_SEVERITY__AUDIT_SEVERITY_CRITICAL;
        audit(t, &s, ended, NORN__V1__AUDIT_EVENT_TYPE__AUDIT_EVENT_TYPE_SESSION_END, sev, summary);
    }
    Norn__V1__SessionDelta d = NORN__V1__SESSION_DELTA__INIT;
    d.kind = active ? NORN__V1__DELTA_KIND__DELTA_KIND_CREATED
                    : NORN__V1__DELTA_KIND__DELTA_KIND_COMPLETED;
    d.session = &s;
    if (store_txn_add_delta(t, &d) != NORN_OK || d.revision != revision)
        return -1;
    return 0;
}

/* Drops the loaded revision-log entries the server would have dropped:
 * all but the last `max_entries`, and the leading run older than the age
 * cutoff (age_keep is the first revision after it); the newest is kept. */
static int trim_revlog(Store *store, uint64_t first_rev, uint64_t last_rev, uint64_t age_keep,
                       uint64_t max_entries)
{
    uint64_t keep_from = first_rev;
    if (age_keep > keep_from)
        keep_from = age_keep;
    if (max_entries && last_rev >= max_entries && last_rev - max_entries + 1 > keep_from)
        keep_from = last_rev - max_entries + 1;
    if (keep_from > last_rev)
        keep_from = last_rev;
    if (keep_from <= first_rev)
        return BENCH_OK;
    StoreTxn *t = store_txn_begin(store);
    char err[512];
    if (!t || store_txn_trim_revlog(t, keep_from) != NORN_OK ||
        store_txn_commit(t, err, sizeof err) != NORN_OK) {
        fputs("norn-bench load: cannot trim the revision log\n", stderr);
        return BENCH_FAILED;
    }
    printf("revision log           kept %llu..%llu (as the server trims it)\n",
           (unsigned long long)keep_from, (unsigned long long)last_rev);
    return BENCH_OK;
}

int bench_load(int argc, char **argv)
{
    LoadOpts o = {
        .agents = 20,
        .swarms = 50,
        .swarm_pct = 20,
        .batch = 1000,
        .days = 30,
    };
    enum { O_DIR = 256, O_N, O_AGENTS, O_SWARMS, O_PCT, O_STEPS, O_DAYS, O_BATCH, O_SEED };
    static const struct option longopts[] = {
        {"data-dir", required_argument, NULL, O_DIR},
        {"sessions", required_argument, NULL, O_N},
        {"agents", required_argument, NULL, O_AGENTS},
        {"swarms", required_argument, NULL, O_SWARMS},
        {"swarm-percent", required_argument, NULL, O_PCT},
        {"steps", required_argument, NULL, O_STEPS},
        {"days", required_argument, NULL, O_DAYS},
        {"batch", required_argument, NULL, O_BATCH},
        {"seed", required_argument, NULL, O_SEED},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case O_DIR: o.data_dir = optarg; break;
        case O_N: bad = bench_parse_u64("--sessions", optarg, 1, 1000000000, &o.sessions); break;
        case O_AGENTS: bad = bench_parse_u64("--agents", optarg, 1, 100000, &o.agents); break;
        case O_SWARMS: bad = bench_parse_u64("--swarms", optarg, 0, 100000, &o.swarms); break;
        case O_PCT: bad = bench_parse_u64("--swarm-percent", optarg, 0, 100, &o.swarm_pct); break;
        case O_STEPS: bad = bench_parse_u64("--steps", optarg, 0, 10000, &o.steps); break;
        case O_DAYS: bad = bench_parse_double("--days", optarg, 0.001, 36500, &o.days); break;
        case O_BATCH: bad = bench_parse_u64("--batch", optarg, 1, 100000, &o.batch); break;
        case O_SEED:
            bad = bench_parse_u64("--seed", optarg, 0, UINT64_MAX, &o.seed);
            o.have_seed = 1;
            break;
        case 'h': usage(stdout); return BENCH_OK;
        default: usage(stderr); return BENCH_USAGE;
        }
        if (bad)
            return BENCH_USAGE;
    }
    if (optind != argc) {
        fprintf(stderr, "norn-bench load: unexpected argument '%s'\n", argv[optind]);
        return BENCH_USAGE;
    }
    if (!o.data_dir || !o.sessions) {
        fputs("norn-bench load: --data-dir and --sessions are required\n", stderr);
        usage(stderr);
        return BENCH_USAGE;
    }
    if (!o.have_seed && getrandom(&o.seed, sizeof o.seed, 0) != (ssize_t)sizeof o.seed)
        o.seed = bench_wall_micros();

    char db_dir[4096];
    snprintf(db_dir, sizeof db_dir, "%s/db", o.data_dir);
    if (ensure_dir(o.data_dir) != 0)
        return BENCH_FAILED;
    StoreOptions so;
    store_options_init(&so);
    Store *store = NULL;
    char err[512];
    if (store_open(db_dir, &so, &store, err, sizeof err) != NORN_OK) {
        fprintf(stderr, "norn-bench load: %s\n(is nornd running on this data dir?)\n", err);
        return BENCH_FAILED;
    }
    uint8_t *swarm_seen = calloc(o.swarms ? o.swarms : 1, 1);
    if (!swarm_seen) {
        fputs("norn-bench load: out of memory\n", stderr);
        store_close(store);
        return BENCH_FAILED;
    }

    uint64_t now = bench_wall_micros();
    uint64_t span = (uint64_t)(o.days * 86400e6);
    uint64_t first = now > span ? now - span : 1;
    uint64_t step = span / o.sessions ? span / o.sessions : 1;
    uint64_t rng = o.seed;
    printf("load: %llu sessions into %s, %llu agents, %llu swarms (%llu%% of sessions), "
           "%llu steps each, over %.1f days, %llu per transaction, seed %llu\n",
           (unsigned long long)o.sessions, db_dir, (unsigned long long)o.agents,
           (unsigned long long)o.swarms, (unsigned long long)o.swarm_pct,
           (unsigned long long)o.steps, o.days, (unsigned long long)o.batch,
           (unsigned long long)o.seed);
    fflush(stdout);

    /* The watch hub's trimming rules (server/watch.c), with the stored
     * config's limits or the defaults. */
    uint64_t max_entries = 100000, max_age_s = 86400;
    Norn__V1__Config *cfg = NULL;
    if (store_config_get(store, &cfg) == NORN_OK) {
        max_entries = cfg->revlog_max_entries;
        max_age_s = cfg->revlog_max_age_seconds;
        norn__v1__config__free_unpacked(cfg, NULL);
    }
    uint64_t cutoff = now - max_age_s * 1000000u;
    uint64_t first_rev = 0, last_rev = 0, age_keep = 0;
    int old_prefix = 1;

    uint64_t t0 = bench_now_ns(), next_report = o.sessions / 10;
    uint64_t done = 0;
    int rc = BENCH_OK;
    while (done < o.sessions && rc == BENCH_OK) {
        StoreTxn *t = store_txn_begin(store);
        if (!t) {
            fputs("norn-bench load: out of memory\n", stderr);
            rc = BENCH_FAILED;
            break;
        }
        uint64_t n = 0;
        while (done + n < o.sessions && n < o.batch) {
            uint64_t i = done + n;
            uint64_t started = first + i * step + bench_rand(&rng) % step;
            int swarm_no = -1;
            uint64_t rev = store_txn_revision(t) + n, updated = 0;
            if (put_session(t, &o, started, now, rev, &swarm_no, &updated, &rng) != 0) {
                rc = BENCH_FAILED;
                break;
            }
            n++;
            if (!first_rev)
                first_rev = rev;
            last_rev = rev;
            /* The hub's age rule drops the leading run of entries older than
             * the cutoff. */
            if (old_prefix && updated < cutoff)
                age_keep = rev + 1;
            else
                old_prefix = 0;
            if (swarm_no >= 0 && !swarm_seen[swarm_no]) {
                swarm_seen[swarm_no] = 1;
                break; /* commit the swarm's first member before the others */
            }
        }
        if (rc != BENCH_OK) {
            store_txn_abort(t);
            fputs("norn-bench load: the store refused a session\n", stderr);
            break;
        }
        if (store_txn_commit(t, err, sizeof err) != NORN_OK) {
            fprintf(stderr, "norn-bench load: commit failed: %s\n", err);
            rc = BENCH_FAILED;
            break;
        }
        done += n;
        if (next_report && done >= next_report && done < o.sessions) {
            double s = (double)(bench_now_ns() - t0) / 1e9;
            fprintf(stderr, "  %llu sessions, %.1f s, %.0f sessions/s\n", (unsigned long long)done,
                    s, (double)done / s);
            next_report += o.sessions / 10;
        }
    }
    double secs = (double)(bench_now_ns() - t0) / 1e9;
    if (rc == BENCH_OK && last_rev)
        rc = trim_revlog(store, first_rev, last_rev, age_keep, max_entries);
    StoreCounters counters;
    uint64_t revision;
    store_counters(store, &counters, &revision);
    printf("loaded                 %llu sessions in %.2f s (%.0f sessions/s)\n",
           (unsigned long long)done, secs, secs > 0 ? (double)done / secs : 0.0);
    printf(
        "store now              %llu sessions (%llu active, %llu completed, %llu "
        "terminated), %llu steps, %llu audit events, revision %llu\n",
        (unsigned long long)counters.sessions,
        (unsigned long long)counters.by_status[NORN__V1__SESSION_STATUS__SESSION_STATUS_ACTIVE],
        (unsigned long long)counters.by_status[NORN__V1__SESSION_STATUS__SESSION_STATUS_COMPLETED],
        (unsigned long long)counters.by_status[NORN__V1__SESSION_STATUS__SESSION_STATUS_TERMINATED],
        (unsigned long long)counters.steps, (unsigned long long)counters.audit_events,
        (unsigned long long)revision);
    free(swarm_seen);
    uint64_t tc = bench_now_ns();
    store_close(store);
    printf("store closed in        %.2f s\n", (double)(bench_now_ns() - tc) / 1e9);
    return rc;
}
