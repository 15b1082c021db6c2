/* test_head.c - packed request heads read back exactly as the live
 * request: every varint length form, common and uncommon names, repeats,
 * empty values, and header lookups and tokens through both views. */
#include "t.h"
#include "head.h"
#include "http.h"

#include <stddef.h>
#include <stdlib.h>

/* A live request as llhttp would leave it: spans into one buffer. */
struct fake {
    struct mw_req req;
    struct mw_req_header hdrs[16];
    char text[70000];
    size_t len;
};

static struct mw_req_span put(struct fake *f, const char *s, size_t n)
{
    struct mw_req_span sp = {(uint32_t)f->len, (uint32_t)n};
    memcpy(f->text + f->len, s, n);
    f->len += n;
    return sp;
}

static void fake_init(struct fake *f, const char *method, const char *target)
{
    memset(f, 0, sizeof *f);
    f->req.method = put(f, method, strlen(method));
    f->req.target = put(f, target, strlen(target));
    f->req.hdrs = f->hdrs;
    f->req.http_major = 1;
    f->req.http_minor = 1;
    f->req.seq = 42;
}

static void fake_header(struct fake *f, const char *name, const char *value, size_t vlen)
{
    struct mw_req_header *h = &f->hdrs[f->req.nhdrs++];
    h->name = put(f, name, strlen(name));
    h->value = put(f, value, vlen);
    f->req.hbuf.data = f->text;
    f->req.hbuf.len = f->len;
}

static int same_headers(const struct mw_head_view *a, const struct mw_head_view *b)
{
    struct mw_hdr_iter ia, ib;
    struct mw_hdr ha, hb;
    mw_hdr_iter_init(&ia, a);
    mw_hdr_iter_init(&ib, b);
    for (;;) {
        int ra = mw_hdr_next(&ia, &ha), rb = mw_hdr_next(&ib, &hb);
        if (ra != rb) return 0;
        if (!ra) return 1;
        if (ha.nlen != hb.nlen || memcmp(ha.name, hb.name, ha.nlen) != 0) return 0;
        if (ha.vlen != hb.vlen || memcmp(ha.value, hb.value, ha.vlen) != 0) return 0;
    }
}

static struct mw_head *pack(struct fake *f)
{
    f->req.hbuf.data = f->text;
    f->req.hbuf.len = f->len;
    static const struct mw_hdr params[] = {{"room", "lobby", 4, 5}, {"rest", "a/b c", 4, 5}};
    size_t n = mw_head_size(&f->req, params, 2);
    void *mem = malloc(n);
    struct mw_head *h = mw_head_pack(mem, &f->req, params, 2);
    CHECK(offsetof(struct mw_head, data) + h->len == n); /* the size asked for is the size used */
    return h;
}

int main(void)
{
    static struct fake f;
    static char big[20000];
    memset(big, 'v', sizeof big);

    fake_init(&f, "GET", "/chat/room?x=1");
    fake_header(&f, "host", "example.com", 11);
    fake_header(&f, "upgrade", "websocket", 9);
    fake_header(&f, "connection", "keep-alive, Upgrade", 19);
    fake_header(&f, "x-odd-name", "odd", 3);
    fake_header(&f, "x-multi", "one", 3);
    fake_header(&f, "x-multi", "two", 3);
    fake_header(&f, "x-empty", "", 0);
    fake_header(&f, "x-127", big, 127);     /* one-byte length */
    fake_header(&f, "x-128", big, 128);     /* two bytes */
    fake_header(&f, "x-16384", big, 16384); /* three bytes */
    struct mw_head *h = pack(&f);

    struct mw_head_view live, kept;
    mw_head_view_req(&live, &f.req);
    mw_head_view_packed(&kept, h);
    CHECK(kept.method_len == 3 && memcmp(kept.method, "GET", 3) == 0);
    CHECK(kept.target_len == 14 && memcmp(kept.target, "/chat/room?x=1", 14) == 0);
    CHECK(kept.seq == 42 && kept.http_major == 1 && kept.http_minor == 1);
    CHECK(kept.conn == NULL);
    CHECK(same_headers(&live, &kept));
    /* the route parameters come back after the headers, in order */
    struct mw_hdr prm;
    const uint8_t *pit = mw_head_next_param(&kept, kept.params, &prm);
    CHECK(pit && prm.nlen == 4 && memcmp(prm.name, "room", 4) == 0 && prm.vlen == 5 &&
          memcmp(prm.value, "lobby", 5) == 0);
    pit = mw_head_next_param(&kept, pit, &prm);
    CHECK(pit && prm.vlen == 5 && memcmp(prm.value, "a/b c", 5) == 0);
    CHECK(mw_head_next_param(&kept, pit, &prm) == NULL);

    struct mw_buf b;
    mw_buf_init(&b);
    CHECK(mw_head_header(&kept, "x-multi", 7, &b));
    b.data[b.len] = '\0';
    CHECK_STR(b.data, "one, two");
    b.len = 0;
    CHECK(mw_head_header(&kept, "x-empty", 7, &b) && b.len == 0);
    CHECK(mw_head_header(&kept, "x-16384", 7, &b) && b.len == 16384);
    CHECK(!mw_head_header(&kept, "x-absent", 8, &b));
    CHECK(mw_head_has_token(&kept, "connection", "upgrade"));
    CHECK(mw_head_has_token(&live, "connection", "UPGRADE"));
    CHECK(!mw_head_has_token(&kept, "connection", "close"));
    mw_buf_free(&b);
    free(h);

    /* a typical handshake: common names take one byte each, so the packed
     * head is smaller than the text llhttp delivered */
    fake_init(&f, "GET", "/ws");
    fake_header(&f, "host", "127.0.0.1:9301", 14);
    fake_header(&f, "upgrade", "websocket", 9);
    fake_header(&f, "connection", "Upgrade", 7);
    fake_header(&f, "sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==", 24);
    fake_header(&f, "sec-websocket-version", "13", 2);
    h = pack(&f);
    CHECK(h->len < f.len);
    free(h);

    /* no headers at all */
    fake_init(&f, "GET", "/");
    h = pack(&f);
    mw_head_view_packed(&kept, h);
    struct mw_hdr_iter it;
    struct mw_hdr hd;
    mw_hdr_iter_init(&it, &kept);
    CHECK(!mw_hdr_next(&it, &hd));
    CHECK(kept.target_len == 1 && kept.target[0] == '/');
    free(h);

    T_DONE();
}
