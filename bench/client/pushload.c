/* pushload.c - load client for the "sse" and "longpoll" benchmark sections.
 *
 * One libuv loop, one thread (pin it to the client core). It opens N client
 * connections plus one publisher connection to a server that implements the
 * bench endpoints (bench/apps/pubsub.lua, bench/peers/node_pubsub.js):
 *
 *   GET  /events            SSE stream of channel "bench", events with id:
 *   GET  /poll?since=ID     long poll: JSON list of {"id":..,"data":..}
 *   POST /publish?data=D    publishes D, answers with the message id
 *
 * Modes:
 *   sse    N SSE subscribers; one warm-up message proves every one of them
 *          is subscribed, then M messages are published and every event at
 *          every client is timestamped and accounted for.
 *   poll   N long-poll loops (since = the last id seen), same accounting.
 *   idle   opens N SSE streams and reports the server's RSS growth per
 *          connection (/proc/PID/status VmRSS and smaps_rollup).
 *
 * Message data is "SEQ:T:xxxx" where T is the publish time in microseconds
 * on this process's monotonic clock (uv_hrtime), taken just before the
 * publish request is written; a receive is timestamped once per read
 * callback, before its bytes are parsed. Latency = receive - T.
 *
 * Publishing (--interval-ms):
 *   > 0  paced, open loop: a schedule from the first publish (a late timer
 *        catches up; each request carries its own send time);
 *     0  burst: all M publish requests written at once, back to back;
 *   < 0  closed loop: the next publish when the previous one is answered.
 * The run ends when every client has every message, or --drain seconds
 * after the last publish, or at --timeout.
 *
 * Output: one JSON object (stdout or --out). Exit 0 when the run completed
 * (lost messages are reported, not an error), 1 on setup failure. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

/* ------------------------------------------------------------- options */

enum { MODE_SSE, MODE_POLL, MODE_IDLE, MODE_WS, MODE_WSIDLE, MODE_ECHO };
#define IS_IDLE (opt.mode == MODE_IDLE || opt.mode == MODE_WSIDLE)
#define IS_WS (opt.mode == MODE_WS || opt.mode == MODE_WSIDLE || opt.mode == MODE_ECHO)

static struct {
    int mode;
    const char *host;
    int port;
    int clients;
    int messages;
    double interval_ms;
    int payload;
    int parallel;
    int server_pid;
    int server_cpu, client_cpu;
    double timeout_s, drain_s, settle_s;
    const char *out;
    const char *label;
    const char *path;      /* WebSocket modes: the upgrade path */
    double seconds;        /* echo: measured seconds */
    double warmup_s;       /* echo: unmeasured seconds first */
} opt = {
    .path = "/ws", .seconds = 10, .warmup_s = 1,
    .mode = MODE_SSE, .host = "127.0.0.1", .clients = 1000, .messages = 200,
    .interval_ms = 5, .payload = 64, .parallel = 200, .server_cpu = -1, .client_cpu = -1,
    .timeout_s = 180, .drain_s = 30, .settle_s = 2,
};

/* ---------------------------------------------------------------- state */

enum { PH_CONNECT, PH_WARM, PH_RUN, PH_DONE };

enum { HP_HEAD, HP_BODY_CL, HP_BODY_CHUNKED, HP_BODY_EOF, HP_WS };
enum { CS_SIZE, CS_EXT, CS_DATA, CS_DATA_END, CS_TRAILER };

#define HEAD_MAX 4096
#define LINE_MAX_BYTES 4096

struct httpin {
    int phase;
    char head[HEAD_MAX];
    size_t hlen;
    int status;
    long long clen;        /* body bytes left (HP_BODY_CL) */
    int cst;               /* chunk decoder state */
    unsigned long long csize;
    int tline;             /* bytes in the current trailer line */
};

struct conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    int idx;               /* client index, -1 for the publisher */
    int connected, ready, closed, failed;
    struct httpin in;
    /* SSE */
    char line[LINE_MAX_BYTES];
    size_t llen;
    long long ev_id;
    int ev_seq;            /* -1 warm-up, -2 none/unparsable */
    uint64_t ev_ts;
    int ev_has;
    /* accounting */
    long long last_id;     /* highest id seen */
    int got;               /* distinct measured messages */
    int warm;
    /* long poll */
    char *body;
    size_t blen, bcap;
    char req[512];
    /* WebSocket (server -> client frames) */
    uint8_t wh[14];
    size_t whl, wneed;
    uint64_t wlen, wgot;
    int wop, wfin, wmasked;
    int msg_op;            /* opcode of the data message being reassembled */
    size_t mlen;           /* bytes of it kept in line[] (it may be longer) */
    uint64_t mtotal;
    uint8_t ctl[126];
    size_t ctll;
    /* echo */
    uint64_t echo_sent;
};

static uv_loop_t *loop;
static struct conn *clients;
static struct conn pubc;
static int phase = PH_CONNECT;
static uint64_t now_us;            /* receive time of the bytes being parsed */

static int n_started, n_connected, n_ready, n_connect_errors, n_closed_early;
static int n_http_errors, n_parse_errors, n_warm, n_failed;
static int n_complete;
static long long delivered, duplicates, out_of_order, unexpected;
static int pub_sent, pub_acked, pub_errors, pub_in_flight;
static uint8_t *seen;              /* clients x messages receive counts */
static uint32_t *lat;              /* one per delivery, microseconds */
static size_t nlat;
static uint64_t *pub_time;         /* per seq: send time (us) */
static uint64_t *seq_last;         /* per seq: latest receive (us) */
static uint64_t t_start, t_ready, t_warm_sent, t_run, t_first_pub, t_last_pub, t_last_recv, t_end;
static uint64_t sched_start;
static const char *end_reason = "";
static char *padding;
static char nonce[24];             /* tags this run's messages */
static size_t nonce_len;
static long long stale;            /* messages of an earlier run */

static uv_timer_t tick_timer, deadline_timer, settle_timer;
static int idle_stage; /* idle mode: 0 while the baseline is taken, then 1 */

/* ------------------------------------------------------------- helpers */

static uint64_t mono_us(void)
{
    return uv_hrtime() / 1000;
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "pushload: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[pushload %.3fs] ", (mono_us() - t_start) / 1e6);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory");
    return p;
}

static void *xcalloc(size_t n, size_t m)
{
    void *p = calloc(n ? n : 1, m ? m : 1);
    if (!p) die("out of memory");
    return p;
}

/* /proc/PID/stat utime+stime in clock ticks, -1 when gone. */
static long long proc_ticks(int pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return -1;
    p += 2;
    /* fields from 3 (state); utime is field 14, stime 15 */
    unsigned long long ut = 0, st = 0;
    int field = 3;
    for (char *tok = strtok(p, " "); tok; tok = strtok(NULL, " "), field++) {
        if (field == 14) ut = strtoull(tok, NULL, 10);
        if (field == 15) {
            st = strtoull(tok, NULL, 10);
            break;
        }
    }
    return (long long)(ut + st);
}

/* The cpuN line of /proc/stat as comma-separated ticks ("" if absent). */
static void core_stat(int cpu, char *out, size_t outlen)
{
    out[0] = 0;
    if (cpu < 0) return;
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return;
    char line[512], want[16];
    int wl = snprintf(want, sizeof want, "cpu%d ", cpu);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, want, (size_t)wl) == 0) {
            char *p = line + wl, *o = out;
            while (*p == ' ') p++;
            for (; *p && *p != '\n' && (size_t)(o - out) < outlen - 1; p++) *o++ = *p == ' ' ? ',' : *p;
            *o = 0;
            break;
        }
    }
    fclose(f);
}

/* kB value of `key` in a /proc file of "Key:   123 kB" lines, or -1. */
static long long proc_kb(int pid, const char *file, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/%s", pid, file);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t kl = strlen(key);
    long long v = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            v = strtoll(line + kl + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

static double cpu_self_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

struct sample {
    long long server_ticks;
    double client_cpu_s;
    char server_core[256], client_core[256];
    uint64_t t;
};

static struct sample s_begin, s_end;

static void take_sample(struct sample *s)
{
    s->t = mono_us();
    s->server_ticks = opt.server_pid > 0 ? proc_ticks(opt.server_pid) : -1;
    s->client_cpu_s = cpu_self_s();
    core_stat(opt.server_cpu, s->server_core, sizeof s->server_core);
    core_stat(opt.client_cpu, s->client_core, sizeof s->client_core);
}

/* ----------------------------------------------------------- writing */

struct wreq {
    uv_write_t req;
    char data[];
};

static void on_written(uv_write_t *req, int status)
{
    (void)status; /* a failed write shows up as a read error / close */
    free(req);
}

/* Writes bytes, trying the socket first; copies what must wait. */
static void send_bytes(struct conn *c, const char *data, size_t len)
{
    if (c->closed) return;
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == (int)len) return;
    if (n < 0 && n != UV_EAGAIN) return; /* reported by the read side */
    if (n < 0) n = 0;
    struct wreq *w = xmalloc(sizeof *w + len - (size_t)n);
    memcpy(w->data, data + n, len - (size_t)n);
    b = uv_buf_init(w->data, (unsigned)(len - (size_t)n));
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) free(w);
}

/* ------------------------------------------------------------ finishing */

static void report_and_exit(void);

static void finish(const char *reason)
{
    if (phase == PH_DONE) return;
    end_reason = reason;
    phase = PH_DONE;
    t_end = mono_us();
    take_sample(&s_end);
    uv_stop(loop);
}

/* ----------------------------------------------------------- publishing */

static void publish(int seq)
{
    char buf[512 + 4096];
    uint64_t t = mono_us();
    char data[64];
    int dl = seq < 0 ? snprintf(data, sizeof data, "%s.w:%" PRIu64 ":", nonce, t)
                     : snprintf(data, sizeof data, "%s.%d:%" PRIu64 ":", nonce, seq, t);
    int pad = opt.payload - dl;
    if (pad < 0) pad = 0;
    int n = snprintf(buf, sizeof buf,
                     "POST /publish?data=%s%.*s HTTP/1.1\r\nHost: %s:%d\r\nContent-Length: 0\r\n\r\n",
                     data, pad, padding, opt.host, opt.port);
    if (seq >= 0) {
        pub_time[seq] = t;
        if (pub_sent == 0) t_first_pub = t;
        t_last_pub = t;
        pub_sent++;
    }
    pub_in_flight++;
    send_bytes(&pubc, buf, (size_t)n);
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
    if (phase != PH_RUN || opt.interval_ms <= 0) return;
    uint64_t now = mono_us();
    while (pub_sent < opt.messages &&
           sched_start + (uint64_t)(pub_sent * opt.interval_ms * 1000.0) <= now)
        publish(pub_sent);
    if (pub_sent == opt.messages) uv_timer_stop(&tick_timer);
}

static const char *pacing_name(void)
{
    return opt.interval_ms > 0 ? "paced" : opt.interval_ms == 0 ? "burst" : "closed-loop";
}

static void start_run(void)
{
    phase = PH_RUN;
    note("all %d clients have the warm-up message; publishing %d messages (%s)", opt.clients,
         opt.messages, pacing_name());
    take_sample(&s_begin);
    t_run = s_begin.t;
    if (opt.messages == 0) {
        finish("done");
        return;
    }
    if (opt.interval_ms > 0) {
        sched_start = mono_us();
        publish(pub_sent);
        uv_timer_start(&tick_timer, on_tick, 1, 1);
    } else if (opt.interval_ms == 0) {
        while (pub_sent < opt.messages) publish(pub_sent);
    } else {
        publish(0);
    }
}

static void on_publish_answered(struct conn *c)
{
    pub_in_flight--;
    if (c->in.status != 200) pub_errors++;
    pub_acked++;
    if (phase == PH_RUN && opt.interval_ms < 0 && pub_sent < opt.messages && pub_in_flight == 0)
        publish(pub_sent);
}

/* ------------------------------------------------------------ accounting */

static void got_message(struct conn *c, int seq, uint64_t ts, long long id)
{
    if (id >= 0) {
        if (id <= c->last_id) out_of_order++;
        else c->last_id = id;
    }
    if (seq == -1) {
        if (!c->warm) {
            c->warm = 1;
            if (++n_warm == opt.clients && phase == PH_WARM) start_run();
        }
        return;
    }
    if (seq < 0 || seq >= opt.messages) {
        unexpected++;
        return;
    }
    uint8_t *cell = &seen[(size_t)c->idx * (size_t)opt.messages + (size_t)seq];
    if (*cell) {
        duplicates++;
        if (*cell < 255) (*cell)++;
        return;
    }
    *cell = 1;
    delivered++;
    uint64_t l = now_us > ts ? now_us - ts : 0;
    lat[nlat++] = l > UINT32_MAX ? UINT32_MAX : (uint32_t)l;
    if (now_us > seq_last[seq]) seq_last[seq] = now_us;
    t_last_recv = now_us;
    if (++c->got == opt.messages) {
        if (++n_complete == opt.clients) finish("done");
    }
}

/* "RUN.SEQ:T:..." or "RUN.w:T:..."; 1 for another run's message (a
 * server's history may hold some), -1 when malformed. */
static int parse_data(const char *p, size_t len, int *seq, uint64_t *ts)
{
    const char *e = p + len;
    if (len < nonce_len + 1 || memcmp(p, nonce, nonce_len) != 0 || p[nonce_len] != '.') return 1;
    p += nonce_len + 1;
    if (p < e && *p == 'w') {
        *seq = -1;
        p++;
    } else {
        int v = 0, nd = 0;
        while (p < e && *p >= '0' && *p <= '9') v = v * 10 + (*p++ - '0'), nd++;
        if (!nd) return -1;
        *seq = v;
    }
    if (p >= e || *p != ':') return -1;
    p++;
    uint64_t t = 0;
    int nd = 0;
    while (p < e && *p >= '0' && *p <= '9') t = t * 10 + (uint64_t)(*p++ - '0'), nd++;
    if (!nd) return -1;
    *ts = t;
    return 0;
}

/* ------------------------------------------------------------ SSE parse */

static void sse_line(struct conn *c, char *s, size_t len)
{
    if (len && s[len - 1] == '\r') len--;
    if (len == 0) {
        if (c->ev_has) got_message(c, c->ev_seq, c->ev_ts, c->ev_id);
        c->ev_has = 0;
        c->ev_id = -1;
        return;
    }
    if (s[0] == ':') return; /* comment, heartbeat */
    char *colon = memchr(s, ':', len);
    size_t nl = colon ? (size_t)(colon - s) : len;
    char *v = colon ? colon + 1 : s + len;
    size_t vl = len - (size_t)(v - s);
    if (vl && *v == ' ') v++, vl--;
    if (nl == 4 && memcmp(s, "data", 4) == 0) {
        int seq;
        uint64_t ts;
        int rc = parse_data(v, vl, &seq, &ts);
        if (rc == 0) {
            c->ev_seq = seq;
            c->ev_ts = ts;
            c->ev_has = 1;
        } else if (rc > 0) {
            stale++;
        } else {
            n_parse_errors++;
        }
    } else if (nl == 2 && memcmp(s, "id", 2) == 0) {
        /* moonwire lists one id per channel; one channel here */
        long long id = 0;
        size_t i = 0;
        for (; i < vl && v[i] >= '0' && v[i] <= '9'; i++) id = id * 10 + (v[i] - '0');
        c->ev_id = i ? id : -1;
    }
}

static void sse_body(struct conn *c, const char *p, size_t n)
{
    while (n) {
        const char *nlp = memchr(p, '\n', n);
        size_t take = nlp ? (size_t)(nlp - p) : n;
        if (c->llen == 0 && nlp) {
            /* the whole line is in this read: parse it in place */
            char tmp[LINE_MAX_BYTES];
            size_t k = take < sizeof tmp ? take : sizeof tmp - 1;
            memcpy(tmp, p, k);
            sse_line(c, tmp, k);
        } else {
            size_t room = sizeof c->line - c->llen;
            size_t k = take < room ? take : room;
            memcpy(c->line + c->llen, p, k);
            c->llen += k;
            if (nlp) {
                sse_line(c, c->line, c->llen);
                c->llen = 0;
            }
        }
        if (!nlp) return;
        n -= take + 1;
        p += take + 1;
    }
}

/* ------------------------------------------------------- long-poll parse */

static void send_poll(struct conn *c)
{
    int n = snprintf(c->req, sizeof c->req, "GET /poll?since=%lld HTTP/1.1\r\nHost: %s:%d\r\n\r\n",
                     c->last_id < 0 ? 0 : c->last_id, opt.host, opt.port);
    send_bytes(c, c->req, (size_t)n);
}

/* [{"id":7,"data":"3:123:xx","kind":"text"}, ...] in any key order. */
static void poll_answer(struct conn *c)
{
    if (c->in.status != 200) {
        n_http_errors++;
    } else {
        const char *p = c->body, *e = c->body + c->blen;
        while (p < e) {
            const char *o = memchr(p, '{', (size_t)(e - p));
            if (!o) break;
            const char *ce = memchr(o, '}', (size_t)(e - o));
            if (!ce) {
                n_parse_errors++;
                break;
            }
            long long id = -1;
            int seq = -2, rc = -1;
            uint64_t ts = 0;
            const char *k = memmem(o, (size_t)(ce - o), "\"id\":", 5);
            if (k) id = strtoll(k + 5, NULL, 10);
            k = memmem(o, (size_t)(ce - o), "\"data\":\"", 8);
            if (k) {
                k += 8;
                const char *q = memchr(k, '"', (size_t)(ce - k));
                if (q) rc = parse_data(k, (size_t)(q - k), &seq, &ts);
            }
            if (rc > 0 && id >= 0) {
                stale++;
                if (id > c->last_id) c->last_id = id;
            } else if (id < 0 || rc != 0) {
                n_parse_errors++;
            } else {
                got_message(c, seq, ts, id);
            }
            p = ce + 1;
        }
    }
    c->blen = 0;
    if (phase != PH_DONE) send_poll(c);
}

static void poll_body(struct conn *c, const char *p, size_t n)
{
    if (c->blen + n > c->bcap) {
        size_t cap = c->bcap ? c->bcap * 2 : 1024;
        while (cap < c->blen + n) cap *= 2;
        c->body = realloc(c->body, cap);
        if (!c->body) die("out of memory");
        c->bcap = cap;
    }
    memcpy(c->body + c->blen, p, n);
    c->blen += n;
}

/* ---------------------------------------------------------- HTTP parse */

static void connect_more(void);
static void check_all_ready(void);


/* ------------------------------------------------------------ WebSocket */

static const char ws_key[] = "dGhlIHNhbXBsZSBub25jZQ==";

static int ws_upgrade_request(char *buf, size_t len)
{
    return snprintf(buf, len,
                    "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                    opt.path, opt.host, opt.port, ws_key);
}

/* A masked client frame (payload <= 125 bytes) into out; returns its size. */
static size_t ws_frame(uint8_t *out, int op, const uint8_t *payload, size_t len, uint32_t seed)
{
    uint8_t mask[4] = {(uint8_t)(seed * 2654435761u >> 24), (uint8_t)(seed >> 3), (uint8_t)(seed * 31 + 7),
                       (uint8_t)(seed ^ 0x5a)};
    out[0] = (uint8_t)(0x80 | op);
    out[1] = (uint8_t)(0x80 | len);
    memcpy(out + 2, mask, 4);
    for (size_t i = 0; i < len; i++) out[6 + i] = payload[i] ^ mask[i & 3];
    return 6 + len;
}

/* echo mode */
static uint8_t *echo_payload;
static size_t echo_len;
static long long echo_count, echo_bad;
static uint32_t *elat;
static size_t nelat, celat;
static uv_timer_t echo_timer;

static void echo_send(struct conn *c)
{
    uint8_t f[6 + 125];
    size_t n = ws_frame(f, 1, echo_payload, echo_len, (uint32_t)c->idx + 1u);
    c->echo_sent = mono_us();
    send_bytes(c, (const char *)f, n);
}

static void echo_got(struct conn *c)
{
    if (c->msg_op != 1 || c->mtotal != echo_len) echo_bad++;
    if (phase == PH_RUN) {
        echo_count++;
        if (nelat == celat) {
            celat = celat ? celat * 2 : 1 << 20;
            elat = realloc(elat, celat * sizeof *elat);
            if (!elat) die("out of memory");
        }
        uint64_t l = now_us - c->echo_sent;
        elat[nelat++] = l > UINT32_MAX ? UINT32_MAX : (uint32_t)l;
    }
    if (phase == PH_WARM || phase == PH_RUN) echo_send(c);
}

static void ws_message(struct conn *c)
{
    if (opt.mode == MODE_ECHO) {
        echo_got(c);
        return;
    }
    if (c->idx < 0) return;
    int seq;
    uint64_t ts;
    int rc = parse_data(c->line, c->mlen, &seq, &ts);
    if (rc == 0) got_message(c, seq, ts, -1);
    else if (rc > 0) stale++;
    else n_parse_errors++;
}

static void conn_lost(struct conn *c, const char *why);

static void ws_frame_done(struct conn *c)
{
    int op = c->wop;
    if (op >= 8) {
        if (op == 9) { /* ping: pong with the same payload */
            uint8_t f[6 + 125];
            size_t n = ws_frame(f, 10, c->ctl, c->ctll, (uint32_t)c->idx);
            send_bytes(c, (const char *)f, n);
        } else if (op == 8) {
            uint8_t f[6 + 2];
            size_t n = ws_frame(f, 8, c->ctl, c->ctll >= 2 ? 2 : 0, (uint32_t)c->idx);
            send_bytes(c, (const char *)f, n);
            conn_lost(c, "WebSocket closed by the server");
        }
        return;
    }
    if (c->wfin) {
        ws_message(c);
        c->mlen = 0;
        c->mtotal = 0;
    }
}

/* Server frames, incrementally over any read boundaries. */
static void ws_feed(struct conn *c, const char *p, size_t n)
{
    while (n && !c->closed) {
        if (c->wneed == 0 || c->whl < c->wneed) {
            if (c->wneed == 0) c->wneed = 2;
            while (n && c->whl < c->wneed) {
                c->wh[c->whl++] = (uint8_t)*p++;
                n--;
                if (c->whl == 2) {
                    int l7 = c->wh[1] & 0x7f;
                    c->wneed = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + ((c->wh[1] & 0x80) ? 4 : 0);
                }
            }
            if (c->whl < c->wneed) return;
            int l7 = c->wh[1] & 0x7f;
            uint64_t len = (uint64_t)l7;
            if (l7 == 126) len = (uint64_t)c->wh[2] << 8 | c->wh[3];
            else if (l7 == 127) {
                len = 0;
                for (int i = 0; i < 8; i++) len = len << 8 | c->wh[2 + i];
            }
            c->wlen = len;
            c->wgot = 0;
            c->wfin = c->wh[0] >> 7;
            c->wmasked = c->wh[1] >> 7; /* a server must not mask; tolerated */
            int op = c->wh[0] & 0x0f;
            c->wop = op;
            if (op >= 8) c->ctll = 0;
            else if (op != 0) {
                c->msg_op = op;
                c->mlen = 0;
                c->mtotal = 0;
            }
            if (len == 0) {
                ws_frame_done(c);
                c->whl = 0;
                c->wneed = 0;
            }
            continue;
        }
        uint64_t left = c->wlen - c->wgot;
        size_t take = left < n ? (size_t)left : n;
        if (c->wop >= 8) {
            size_t room = sizeof c->ctl - c->ctll;
            size_t k = take < room ? take : room;
            memcpy(c->ctl + c->ctll, p, k);
            c->ctll += k;
        } else {
            size_t room = sizeof c->line - c->mlen;
            size_t k = take < room ? take : room;
            memcpy(c->line + c->mlen, p, k);
            c->mlen += k;
            c->mtotal += take;
        }
        c->wgot += take;
        p += take;
        n -= take;
        if (c->wgot == c->wlen) {
            c->whl = 0;
            c->wneed = 0;
            ws_frame_done(c);
        }
    }
}

static void echo_stop(uv_timer_t *t)
{
    (void)t;
    finish("done");
}

static void echo_begin_measure(uv_timer_t *t)
{
    (void)t;
    phase = PH_RUN;
    take_sample(&s_begin);
    t_run = s_begin.t;
    note("echo: measuring for %.1fs", opt.seconds);
    uv_timer_start(&echo_timer, echo_stop, (uint64_t)(opt.seconds * 1000), 0);
}

static void echo_start(void)
{
    phase = PH_WARM;
    note("echo: %d connections, %zu-byte text frames, warming up %.1fs", n_ready, echo_len, opt.warmup_s);
    for (int i = 0; i < opt.clients; i++)
        if (clients[i].ready && !clients[i].closed) echo_send(&clients[i]);
    uv_timer_start(&echo_timer, echo_begin_measure, (uint64_t)(opt.warmup_s * 1000), 0);
}

static void on_headers(struct conn *c)
{
    int want = IS_WS ? 101 : 200;
    if (c->idx < 0) {
        /* idle mode: the baseline SSE stream */
        if (IS_IDLE && !c->ready) {
            if (c->in.status != want) die("GET %s answered %d", IS_WS ? opt.path : "/events", c->in.status);
            c->ready = 1;
        }
        return;
    }
    if (opt.mode != MODE_POLL && !c->ready && !c->failed) {
        if (c->in.status != want) {
            n_http_errors++;
            n_failed++;
            c->failed = 1;
        } else {
            c->ready = 1;
            n_ready++;
        }
        connect_more();
        check_all_ready();
    }
}

static void on_body(struct conn *c, const char *p, size_t n)
{
    if (c->idx < 0) return; /* publish answers: the id, not needed */
    if (opt.mode == MODE_POLL) poll_body(c, p, n);
    else sse_body(c, p, n);
}

static void on_message_end(struct conn *c)
{
    if (c->idx < 0) on_publish_answered(c);
    else if (opt.mode == MODE_POLL) poll_answer(c);
    /* an SSE stream that ends is seen as a close */
}

static int parse_head(struct conn *c)
{
    struct httpin *h = &c->in;
    h->head[h->hlen] = 0;
    if (strncmp(h->head, "HTTP/1.", 7) != 0 || h->hlen < 12) return -1;
    h->status = atoi(h->head + 9);
    int chunked = 0;
    long long clen = -1;
    for (char *l = strstr(h->head, "\r\n"); l && l[2]; l = strstr(l + 2, "\r\n")) {
        char *f = l + 2;
        if (strncasecmp(f, "content-length:", 15) == 0) clen = strtoll(f + 15, NULL, 10);
        else if (strncasecmp(f, "transfer-encoding:", 18) == 0) {
            char *eol = strstr(f, "\r\n");
            char *ck = strcasestr(f, "chunked");
            if (ck && (!eol || ck < eol)) chunked = 1;
        }
    }
    if (h->status == 101) {
        h->phase = HP_WS;
    } else if (chunked) {
        h->phase = HP_BODY_CHUNKED;
        h->cst = CS_SIZE;
        h->csize = 0;
    } else if (clen >= 0) {
        h->phase = HP_BODY_CL;
        h->clen = clen;
    } else {
        h->phase = HP_BODY_EOF;
    }
    on_headers(c);
    return 0;
}

static void message_done(struct conn *c)
{
    c->in.phase = HP_HEAD;
    c->in.hlen = 0;
    on_message_end(c);
}

static void http_feed(struct conn *c, const char *p, size_t n)
{
    struct httpin *h = &c->in;
    while (n && !c->closed) {
        switch (h->phase) {
        case HP_HEAD: {
            /* copy up to the end of the head, byte-wise search on the copy */
            size_t room = HEAD_MAX - 1 - h->hlen;
            size_t take = n < room ? n : room;
            size_t old = h->hlen;
            memcpy(h->head + h->hlen, p, take);
            h->hlen += take;
            size_t from = old >= 3 ? old - 3 : 0;
            char *end = memmem(h->head + from, h->hlen - from, "\r\n\r\n", 4);
            if (!end) {
                if (h->hlen >= HEAD_MAX - 1) {
                    n_parse_errors++;
                    c->failed = 1;
                    return;
                }
                return;
            }
            size_t used = (size_t)(end + 4 - h->head) - old;
            h->hlen = (size_t)(end + 4 - h->head);
            p += used;
            n -= used;
            if (parse_head(c) != 0) {
                n_parse_errors++;
                c->failed = 1;
                return;
            }
            if (h->phase == HP_BODY_CL && h->clen == 0) message_done(c);
            break;
        }
        case HP_BODY_CL: {
            size_t take = (unsigned long long)h->clen < n ? (size_t)h->clen : n;
            on_body(c, p, take);
            p += take;
            n -= take;
            h->clen -= (long long)take;
            if (h->clen == 0) message_done(c);
            break;
        }
        case HP_BODY_EOF:
            on_body(c, p, n);
            return;
        case HP_WS:
            ws_feed(c, p, n);
            return;
        case HP_BODY_CHUNKED:
            switch (h->cst) {
            case CS_SIZE:
            case CS_EXT: {
                char ch = *p++;
                n--;
                if (ch == '\n') {
                    if (h->csize == 0) {
                        h->cst = CS_TRAILER;
                        h->tline = 0;
                    } else {
                        h->cst = CS_DATA;
                    }
                } else if (h->cst == CS_SIZE && isxdigit((unsigned char)ch)) {
                    h->csize = h->csize * 16 + (unsigned)(isdigit((unsigned char)ch) ? ch - '0' : (tolower(ch) - 'a' + 10));
                } else if (ch != '\r') {
                    h->cst = CS_EXT;
                }
                break;
            }
            case CS_DATA: {
                size_t take = h->csize < n ? (size_t)h->csize : n;
                on_body(c, p, take);
                p += take;
                n -= take;
                h->csize -= take;
                if (h->csize == 0) h->cst = CS_DATA_END;
                break;
            }
            case CS_DATA_END: {
                char ch = *p++;
                n--;
                if (ch == '\n') {
                    h->cst = CS_SIZE;
                    h->csize = 0;
                }
                break;
            }
            case CS_TRAILER: {
                char ch = *p++;
                n--;
                if (ch == '\n') {
                    if (h->tline == 0) message_done(c);
                    else h->tline = 0;
                } else if (ch != '\r') {
                    h->tline++;
                }
                break;
            }
            }
            break;
        }
    }
}

/* ----------------------------------------------------------- connections */

static char rbuf[256 * 1024];

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(rbuf, sizeof rbuf);
}

static void conn_lost(struct conn *c, const char *why)
{
    if (c->closed) return;
    c->closed = 1;
    if (phase != PH_DONE) {
        if (c->idx < 0) {
            note("publisher connection lost: %s", why);
            finish("publisher connection lost");
        } else {
            n_closed_early++;
            if (n_closed_early <= 5) note("client %d connection lost: %s", c->idx, why);
        }
    }
    uv_read_stop((uv_stream_t *)&c->tcp);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    if (nread == 0) return;
    now_us = mono_us();
    if (nread < 0) {
        conn_lost(c, nread == UV_EOF ? "closed by the server" : uv_strerror((int)nread));
        return;
    }
    http_feed(c, buf->base, (size_t)nread);
    if (c->failed && !c->closed) conn_lost(c, "bad response");
}

static void on_connect(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    if (status < 0) {
        n_connect_errors++;
        c->failed = 1;
        c->closed = 1;
        if (n_connect_errors <= 5) note("connect failed: %s", uv_strerror(status));
        if (c->idx < 0) die("publisher could not connect: %s", uv_strerror(status));
        connect_more();
        check_all_ready();
        return;
    }
    c->connected = 1;
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (c->idx < 0 && IS_IDLE) {
        int n = IS_WS ? ws_upgrade_request(c->req, sizeof c->req)
                      : snprintf(c->req, sizeof c->req,
                                 "GET /events HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n\r\n",
                                 opt.host, opt.port);
        send_bytes(c, c->req, (size_t)n);
    }
    if (c->idx >= 0) {
        n_connected++;
        if (opt.mode == MODE_POLL) {
            send_poll(c);
            c->ready = 1;
            n_ready++;
        } else {
            int n = IS_WS ? ws_upgrade_request(c->req, sizeof c->req)
                          : snprintf(c->req, sizeof c->req,
                                     "GET /events HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n\r\n",
                                     opt.host, opt.port);
            send_bytes(c, c->req, (size_t)n);
        }
        connect_more();
    }
    check_all_ready();
}

static struct sockaddr_in server_addr;

static void start_conn(struct conn *c)
{
    uv_tcp_init(loop, &c->tcp);
    c->tcp.data = c;
    c->creq.data = c;
    c->last_id = -1;
    c->ev_id = -1;
    c->in.phase = HP_HEAD;
    int rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&server_addr, on_connect);
    if (rc) die("uv_tcp_connect: %s (raise ulimit -n?)", uv_strerror(rc));
}

/* Keeps at most opt.parallel connects (and for SSE, heads) outstanding,
 * so the listen backlog never overflows into SYN retries. */
static void connect_more(void)
{
    while (n_started < opt.clients) {
        if (IS_IDLE && idle_stage == 0) break;
        int outstanding = n_started - n_connect_errors - n_failed -
                          (opt.mode == MODE_POLL ? n_connected : n_ready);
        if (outstanding >= opt.parallel) break;
        start_conn(&clients[n_started]);
        n_started++;
    }
}

/* ------------------------------------------------------------ idle mode */

static long long rss_before_kb, rss_after_kb, rss_anon_before_kb, rss_anon_after_kb;
static long long pss_before_kb, pss_after_kb, priv_before_kb, priv_after_kb;

static void read_mem(long long *rss, long long *anon, long long *pss, long long *priv)
{
    *rss = proc_kb(opt.server_pid, "status", "VmRSS");
    *anon = proc_kb(opt.server_pid, "status", "RssAnon");
    *pss = proc_kb(opt.server_pid, "smaps_rollup", "Pss");
    long long pd = proc_kb(opt.server_pid, "smaps_rollup", "Private_Dirty");
    long long pc = proc_kb(opt.server_pid, "smaps_rollup", "Private_Clean");
    *priv = pd >= 0 && pc >= 0 ? pd + pc : -1;
}

static void on_settled(uv_timer_t *t)
{
    (void)t;
    read_mem(&rss_after_kb, &rss_anon_after_kb, &pss_after_kb, &priv_after_kb);
    t_end = mono_us();
    note("idle: RSS %lld kB -> %lld kB with %d %s connections", rss_before_kb, rss_after_kb, n_ready, IS_WS ? "WebSocket" : "SSE");
    finish("done");
}

/* ------------------------------------------------------------ readiness */

static int all_ready_done;

static void check_all_ready(void)
{
    if (phase != PH_CONNECT || all_ready_done) return;
    if (n_ready + n_connect_errors + n_failed < opt.clients) return;
    if (IS_IDLE && !pubc.ready) return;
    all_ready_done = 1;
    t_ready = mono_us();
    note("%d/%d clients ready (%d connect errors, %d HTTP errors) in %.2fs", n_ready, opt.clients,
         n_connect_errors, n_http_errors, (t_ready - t_start) / 1e6);
    if (IS_IDLE) {
        uv_timer_start(&settle_timer, on_settled, (uint64_t)(opt.settle_s * 1000), 0);
        return;
    }
    if (n_ready < opt.clients) {
        finish("not every client connected");
        return;
    }
    if (opt.mode == MODE_ECHO) {
        echo_start();
        return;
    }
    phase = PH_WARM;
    t_warm_sent = mono_us();
    publish(-1);
}

/* In idle mode the publisher struct is a first SSE stream that stays open
 * while the baseline is read, so one-time set-up is not charged to the N. */
static void idle_first_ready(uv_timer_t *t);

static uv_timer_t idle_timer;

static void idle_poll_first(uv_timer_t *t)
{
    (void)t;
    if (!pubc.ready) return;
    /* let the server finish whatever the first stream started */
    uv_timer_stop(&idle_timer);
    uv_timer_start(&settle_timer, idle_first_ready, 300, 0);
}

static void idle_first_ready(uv_timer_t *t)
{
    (void)t;
    read_mem(&rss_before_kb, &rss_anon_before_kb, &pss_before_kb, &priv_before_kb);
    note("idle: baseline RSS %lld kB with one %s connection", rss_before_kb, IS_WS ? "WebSocket" : "SSE");
    idle_stage = 1;
    connect_more();
    check_all_ready();
}

/* --------------------------------------------------------------- timers */

static void on_deadline(uv_timer_t *t)
{
    (void)t;
    if (phase == PH_DONE) return;
    if (phase == PH_WARM && opt.mode == MODE_WS && mono_us() - t_warm_sent > 500000) {
        t_warm_sent = mono_us();
        publish(-1);
    }
    if (phase == PH_RUN && opt.mode != MODE_ECHO && pub_sent == opt.messages) {
        uint64_t now = mono_us();
        if (now < t_last_pub + (uint64_t)(opt.drain_s * 1e6)) return;
        finish("drain timeout");
        return;
    }
    if ((mono_us() - t_start) / 1e6 > opt.timeout_s) {
        note("timeout in phase %d: %d ready, %d warm", phase, n_ready, n_warm);
        finish("timeout");
    }
}

/* --------------------------------------------------------------- report */

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_u32(const uint32_t *v, size_t n, double p)
{
    if (!n) return -1;
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    if (i >= n) i = n - 1;
    return v[i];
}

static void json_num(FILE *f, const char *k, double v, int last)
{
    if (v != v) fprintf(f, "  \"%s\": null%s\n", k, last ? "" : ",");
    else fprintf(f, "  \"%s\": %.6g%s\n", k, v, last ? "" : ",");
}

static void report_and_exit(void)
{
    FILE *f = stdout;
    if (opt.out) {
        f = fopen(opt.out, "w");
        if (!f) die("cannot write %s", opt.out);
    }
    const double NaN = 0.0 / 0.0;
    fprintf(f, "{\n");
    static const char *const mode_names[] = {"sse", "poll", "idle", "ws", "ws-idle", "echo"};
    fprintf(f, "  \"mode\": \"%s\",\n", mode_names[opt.mode]);
    fprintf(f, "  \"label\": \"%s\",\n", opt.label ? opt.label : "");
    fprintf(f, "  \"end_reason\": \"%s\",\n", end_reason);
    json_num(f, "clients", opt.clients, 0);
    json_num(f, "ready", n_ready, 0);
    json_num(f, "connect_errors", n_connect_errors, 0);
    json_num(f, "http_errors", n_http_errors, 0);
    json_num(f, "parse_errors", n_parse_errors, 0);
    json_num(f, "closed_early", n_closed_early, 0);
    json_num(f, "connect_s", t_ready ? (t_ready - t_start) / 1e6 : NaN, 0);
    if (IS_IDLE) {
        json_num(f, "server_pid", opt.server_pid, 0);
        json_num(f, "rss_before_kb", (double)rss_before_kb, 0);
        json_num(f, "rss_after_kb", (double)rss_after_kb, 0);
        json_num(f, "rss_anon_before_kb", (double)rss_anon_before_kb, 0);
        json_num(f, "rss_anon_after_kb", (double)rss_anon_after_kb, 0);
        json_num(f, "pss_before_kb", (double)pss_before_kb, 0);
        json_num(f, "pss_after_kb", (double)pss_after_kb, 0);
        json_num(f, "private_before_kb", (double)priv_before_kb, 0);
        json_num(f, "private_after_kb", (double)priv_after_kb, 0);
        double per = n_ready > 0 && rss_after_kb >= 0 && rss_before_kb >= 0
                         ? (double)(rss_after_kb - rss_before_kb) * 1024.0 / n_ready : NaN;
        json_num(f, "bytes_per_conn", per, 0);
        json_num(f, "settle_s", opt.settle_s, 1);
        fprintf(f, "}\n");
        if (f != stdout) fclose(f);
        exit(0);
    }
    if (opt.mode == MODE_ECHO) {
        qsort(elat, nelat, sizeof *elat, cmp_u32);
        double meas = (s_end.t - s_begin.t) / 1e6;
        json_num(f, "payload_bytes", (double)echo_len, 0);
        json_num(f, "warmup_s", opt.warmup_s, 0);
        json_num(f, "roundtrips", (double)echo_count, 0);
        json_num(f, "bad_echoes", (double)echo_bad, 0);
        json_num(f, "roundtrips_per_s", meas > 0 ? echo_count / meas : NaN, 0);
        json_num(f, "latency_p50_us", pct_u32(elat, nelat, 50), 0);
        json_num(f, "latency_p99_us", pct_u32(elat, nelat, 99), 0);
        json_num(f, "latency_max_us", nelat ? elat[nelat - 1] : NaN, 0);
        json_num(f, "measured_s", meas, 0);
        json_num(f, "server_cpu_s",
                 s_begin.server_ticks >= 0 && s_end.server_ticks >= 0
                     ? (s_end.server_ticks - s_begin.server_ticks) / (double)sysconf(_SC_CLK_TCK) : NaN, 0);
        json_num(f, "client_cpu_s", s_end.client_cpu_s - s_begin.client_cpu_s, 0);
        fprintf(f, "  \"server_core_before\": \"%s\",\n", s_begin.server_core);
        fprintf(f, "  \"server_core_after\": \"%s\",\n", s_end.server_core);
        fprintf(f, "  \"client_core_before\": \"%s\",\n", s_begin.client_core);
        fprintf(f, "  \"client_core_after\": \"%s\",\n", s_end.client_core);
        json_num(f, "clk_tck", (double)sysconf(_SC_CLK_TCK), 1);
        fprintf(f, "}\n");
        if (f != stdout) fclose(f);
        exit(0);
    }
    long long expected = (long long)opt.clients * opt.messages;
    qsort(lat, nlat, sizeof *lat, cmp_u32);
    double sum = 0;
    for (size_t i = 0; i < nlat; i++) sum += lat[i];
    /* per message: time from its publish to its last receive (fan-out span) */
    uint64_t *span = xcalloc((size_t)opt.messages + 1, sizeof *span);
    size_t nspan = 0;
    for (int s = 0; s < pub_sent; s++)
        if (seq_last[s]) span[nspan++] = seq_last[s] - pub_time[s];
    qsort(span, nspan, sizeof *span, cmp_u64);
    double run_s = t_last_recv > t_first_pub ? (t_last_recv - t_first_pub) / 1e6 : NaN;
    double meas_s = (s_end.t - s_begin.t) / 1e6;
    fprintf(f, "  \"interval_ms\": %g,\n", opt.interval_ms);
    fprintf(f, "  \"pacing\": \"%s\",\n", pacing_name());
    json_num(f, "messages", opt.messages, 0);
    json_num(f, "payload_bytes", opt.payload, 0);
    json_num(f, "warm_clients", n_warm, 0);
    json_num(f, "warmup_s", t_run > t_warm_sent ? (t_run - t_warm_sent) / 1e6 : NaN, 0);
    json_num(f, "published", pub_sent, 0);
    json_num(f, "publish_acked", pub_acked, 0);
    json_num(f, "publish_errors", pub_errors, 0);
    json_num(f, "publish_span_s", pub_sent > 1 ? (t_last_pub - t_first_pub) / 1e6 : 0, 0);
    json_num(f, "expected", (double)expected, 0);
    json_num(f, "delivered", (double)delivered, 0);
    json_num(f, "lost", (double)(expected - delivered), 0);
    json_num(f, "duplicates", (double)duplicates, 0);
    json_num(f, "out_of_order", (double)out_of_order, 0);
    json_num(f, "unexpected", (double)unexpected, 0);
    json_num(f, "stale", (double)stale, 0);
    json_num(f, "run_s", run_s, 0);
    json_num(f, "delivery_rate", run_s > 0 ? delivered / run_s : NaN, 0);
    json_num(f, "latency_p50_us", pct_u32(lat, nlat, 50), 0);
    json_num(f, "latency_p90_us", pct_u32(lat, nlat, 90), 0);
    json_num(f, "latency_p99_us", pct_u32(lat, nlat, 99), 0);
    json_num(f, "latency_p999_us", pct_u32(lat, nlat, 99.9), 0);
    json_num(f, "latency_max_us", nlat ? lat[nlat - 1] : NaN, 0);
    json_num(f, "latency_mean_us", nlat ? sum / nlat : NaN, 0);
    json_num(f, "fanout_span_p50_us", nspan ? (double)span[nspan / 2] : NaN, 0);
    json_num(f, "fanout_span_max_us", nspan ? (double)span[nspan - 1] : NaN, 0);
    json_num(f, "measured_s", meas_s, 0);
    json_num(f, "server_cpu_s",
             s_begin.server_ticks >= 0 && s_end.server_ticks >= 0
                 ? (s_end.server_ticks - s_begin.server_ticks) / (double)sysconf(_SC_CLK_TCK) : NaN, 0);
    json_num(f, "client_cpu_s", s_end.client_cpu_s - s_begin.client_cpu_s, 0);
    fprintf(f, "  \"server_core_before\": \"%s\",\n", s_begin.server_core);
    fprintf(f, "  \"server_core_after\": \"%s\",\n", s_end.server_core);
    fprintf(f, "  \"client_core_before\": \"%s\",\n", s_begin.client_core);
    fprintf(f, "  \"client_core_after\": \"%s\",\n", s_end.client_core);
    json_num(f, "clk_tck", (double)sysconf(_SC_CLK_TCK), 1);
    fprintf(f, "}\n");
    if (f != stdout) fclose(f);
    exit(0);
}

/* ----------------------------------------------------------------- main */

static void usage(void)
{
    fprintf(stderr,
            "usage: pushload --mode sse|poll|idle|ws|ws-idle|echo --port P [--clients N] [--messages M]\n"
            "                [--interval-ms MS (0: burst, -1: closed loop)] [--payload BYTES]\n"
            "                [--parallel K] [--path /ws] [--seconds S (echo)] [--warmup S (echo)]\n"
            "                [--server-pid PID] [--server-cpu C] [--client-cpu C]\n"
            "                [--timeout S] [--drain S] [--settle S] [--label L] [--out FILE]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--mode")) {
            if (!strcmp(v, "sse")) opt.mode = MODE_SSE;
            else if (!strcmp(v, "poll")) opt.mode = MODE_POLL;
            else if (!strcmp(v, "idle")) opt.mode = MODE_IDLE;
            else if (!strcmp(v, "ws")) opt.mode = MODE_WS;
            else if (!strcmp(v, "ws-idle")) opt.mode = MODE_WSIDLE;
            else if (!strcmp(v, "echo")) opt.mode = MODE_ECHO;
            else usage();
        } else if (!strcmp(a, "--host")) opt.host = v;
        else if (!strcmp(a, "--port")) opt.port = atoi(v);
        else if (!strcmp(a, "--clients")) opt.clients = atoi(v);
        else if (!strcmp(a, "--messages")) opt.messages = atoi(v);
        else if (!strcmp(a, "--interval-ms")) opt.interval_ms = atof(v);
        else if (!strcmp(a, "--payload")) opt.payload = atoi(v);
        else if (!strcmp(a, "--parallel")) opt.parallel = atoi(v);
        else if (!strcmp(a, "--server-pid")) opt.server_pid = atoi(v);
        else if (!strcmp(a, "--server-cpu")) opt.server_cpu = atoi(v);
        else if (!strcmp(a, "--client-cpu")) opt.client_cpu = atoi(v);
        else if (!strcmp(a, "--timeout")) opt.timeout_s = atof(v);
        else if (!strcmp(a, "--drain")) opt.drain_s = atof(v);
        else if (!strcmp(a, "--settle")) opt.settle_s = atof(v);
        else if (!strcmp(a, "--label")) opt.label = v;
        else if (!strcmp(a, "--path")) opt.path = v;
        else if (!strcmp(a, "--seconds")) opt.seconds = atof(v);
        else if (!strcmp(a, "--warmup")) opt.warmup_s = atof(v);
        else if (!strcmp(a, "--out")) opt.out = v;
        else usage();
    }
    if (opt.port <= 0 || opt.clients <= 0 || opt.messages < 0 || opt.parallel <= 0) usage();
    if (opt.payload > 2048) opt.payload = 2048;
    if (IS_IDLE && opt.server_pid <= 0) die("--mode idle needs --server-pid");

    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)opt.clients + 64)
        die("open-file limit %llu is too low for %d clients (ulimit -n)",
            (unsigned long long)rl.rlim_cur, opt.clients);

    nonce_len = (size_t)snprintf(nonce, sizeof nonce, "r%x%x", (unsigned)getpid(),
                                 (unsigned)(uv_hrtime() & 0xffffff));
    padding = xmalloc((size_t)opt.payload + 1);
    memset(padding, 'x', (size_t)opt.payload);
    padding[opt.payload] = 0;
    clients = xcalloc((size_t)opt.clients, sizeof *clients);
    for (int i = 0; i < opt.clients; i++) clients[i].idx = i;
    if (opt.mode != MODE_IDLE) {
        seen = xcalloc((size_t)opt.clients * (size_t)(opt.messages ? opt.messages : 1), 1);
        lat = xcalloc((size_t)opt.clients * (size_t)(opt.messages ? opt.messages : 1), sizeof *lat);
        pub_time = xcalloc((size_t)opt.messages + 1, sizeof *pub_time);
        seq_last = xcalloc((size_t)opt.messages + 1, sizeof *seq_last);
    }

    loop = uv_default_loop();
    if (uv_ip4_addr(opt.host, opt.port, &server_addr) != 0) die("bad host %s", opt.host);
    uv_timer_init(loop, &tick_timer);
    uv_timer_init(loop, &deadline_timer);
    uv_timer_init(loop, &settle_timer);
    uv_timer_init(loop, &idle_timer);
    uv_timer_init(loop, &echo_timer);
    if (opt.mode == MODE_ECHO) {
        echo_len = opt.payload > 125 ? 125 : (size_t)opt.payload;
        echo_payload = xmalloc(echo_len + 1);
        for (size_t i = 0; i < echo_len; i++) echo_payload[i] = (uint8_t)('a' + i % 26);
    }
    t_start = mono_us();
    uv_timer_start(&deadline_timer, on_deadline, 100, 100);

    /* the publisher (idle mode: the first SSE stream) connects first */
    pubc.idx = -1;
    if (opt.mode != MODE_ECHO) start_conn(&pubc); /* echo publishes nothing */
    if (IS_IDLE) {
        uv_timer_start(&idle_timer, idle_poll_first, 10, 10);
    } else {
        connect_more();
    }
    uv_run(loop, UV_RUN_DEFAULT);
    if (phase != PH_DONE) finish("loop ended");
    report_and_exit();
    return 0;
}
