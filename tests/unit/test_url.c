/* test_url.c - percent-decoding, path segments, dot resolution, queries. */
#include "t.h"
#include "url.h"

static const char *seg(struct mw_path *p, size_t i, char *out)
{
    memcpy(out, p->text.data + p->segs[i].off, p->segs[i].len);
    out[p->segs[i].len] = '\0';
    return out;
}

static void check_path(const char *target, int want_rc, const char *want_text, size_t want_nsegs)
{
    struct mw_path p;
    mw_path_init(&p);
    int rc = mw_path_parse(&p, target, strlen(target));
    CHECK(rc == want_rc);
    if (rc == MW_URL_OK && want_rc == MW_URL_OK) {
        char text[256];
        memcpy(text, p.text.data, p.text.len);
        text[p.text.len] = '\0';
        CHECK_STR(text, want_text);
        CHECK(p.nsegs == want_nsegs);
    }
    mw_path_free(&p);
}

int main(void)
{
    check_path("/", MW_URL_OK, "/", 0);
    check_path("/a/b", MW_URL_OK, "/a/b", 2);
    check_path("/a/b/", MW_URL_OK, "/a/b/", 2);
    check_path("/a%20b?x=1", MW_URL_OK, "/a b", 1);
    check_path("/a/./b/../c", MW_URL_OK, "/a/c", 2);
    check_path("/a/%2e%2E/c", MW_URL_OK, "/c", 1);
    check_path("/..", MW_URL_EABOVEROOT, NULL, 0);
    check_path("/a/../../b", MW_URL_EABOVEROOT, NULL, 0);
    check_path("/%2e%2e/etc", MW_URL_EABOVEROOT, NULL, 0);
    check_path("/a%00b", MW_URL_ENUL, NULL, 0);
    check_path("/a%zz", MW_URL_EBADESCAPE, NULL, 0);
    check_path("/a%4", MW_URL_EBADESCAPE, NULL, 0);
    check_path("/a%", MW_URL_EBADESCAPE, NULL, 0);
    check_path("noslash", MW_URL_EFORM, NULL, 0);
    check_path("http://example.com/x/y?q", MW_URL_OK, "/x/y", 2);
    check_path("*", MW_URL_OK, "*", 0);

    /* paths decoded on the stack (up to 256 bytes) and on the heap, at
     * and around the limit: the same answer */
    for (size_t len = 250; len <= 600; len += 1) {
        char target[700], want[700];
        size_t n = 0, w = 0;
        target[n++] = '/';
        while (n + 4 <= len) { /* "ab/.." pieces and %41 escapes */
            memcpy(target + n, "%41b/", 5);
            n += 5;
            memcpy(want + w, "/Ab", 3);
            w += 3;
        }
        target[n++] = 'z';
        want[w++] = '/';
        want[w++] = 'z';
        want[w] = '\0';
        struct mw_path lp;
        mw_path_init(&lp);
        int rc = mw_path_parse(&lp, target, n);
        CHECK(rc == MW_URL_OK && lp.text.len == w && memcmp(lp.text.data, want, w) == 0);
        mw_path_free(&lp);
    }
    check_path("/a/b/../../c/./d/..", MW_URL_OK, "/c/", 1);

    /* %2F decodes inside one segment and never splits */
    struct mw_path p;
    mw_path_init(&p);
    CHECK(mw_path_parse(&p, "/files/a%2Fb/c", 14) == MW_URL_OK);
    char buf[64];
    CHECK(p.nsegs == 3);
    CHECK_STR(seg(&p, 1, buf), "a/b");
    mw_path_free(&p);

    /* query pairs, '+' as space in values decoded by the caller */
    const char *qs = "a=1&b=x+y&&c&a=2&d=%41";
    size_t pos = 0, n = 0;
    struct mw_span k, v;
    const char *keys[] = {"a", "b", "c", "a", "d"};
    while (mw_query_next(qs, strlen(qs), &pos, &k, &v)) {
        CHECK(n < 5 && k.len == strlen(keys[n]) && memcmp(qs + k.off, keys[n], k.len) == 0);
        n++;
    }
    CHECK(n == 5);
    char out[16];
    size_t olen;
    CHECK(mw_url_decode("x+y%41%zz", 9, out, &olen, 1, 0) == MW_URL_OK);
    out[olen] = '\0';
    CHECK_STR(out, "x yA%zz");
    CHECK(mw_url_decode("%zz", 3, out, &olen, 0, 1) == MW_URL_EBADESCAPE);
    T_DONE();
}
