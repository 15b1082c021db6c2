/* t.h - a tiny assert header for the C unit tests: CHECK counts and
 * reports failures with file:line; T_DONE prints "N passed, N failed". */
#ifndef MW_T_H
#define MW_T_H

#include <stdio.h>
#include <string.h>

static int t_passed, t_failed;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (cond) {                                                                    \
            t_passed++;                                                                \
        } else {                                                                       \
            t_failed++;                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
        }                                                                              \
    } while (0)

#define CHECK_STR(got, want)                                                           \
    do {                                                                               \
        const char *g_ = (got), *w_ = (want);                                          \
        if (g_ && w_ && strcmp(g_, w_) == 0) {                                         \
            t_passed++;                                                                \
        } else {                                                                       \
            t_failed++;                                                                \
            fprintf(stderr, "%s:%d: got \"%s\", want \"%s\"\n", __FILE__, __LINE__,    \
                    g_ ? g_ : "(null)", w_ ? w_ : "(null)");                           \
        }                                                                              \
    } while (0)

#define T_DONE()                                                                       \
    do {                                                                               \
        printf("%d passed, %d failed\n", t_passed, t_failed);                          \
        return t_failed ? 1 : 0;                                                       \
    } while (0)

#endif
