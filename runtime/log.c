/* log.c - stderr logging. A whole line is formatted first and written with
 * one call, so lines from different sources never interleave. */
#include "log.h"
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static enum mw_log_level current_level = MW_LOG_INFO;

void mw_log_set_level(enum mw_log_level level)
{
    current_level = level;
}

enum mw_log_level mw_log_get_level(void)
{
    return current_level;
}

void mw_log(enum mw_log_level level, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (level < current_level) return;

    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    localtime_r(&tv.tv_sec, &tm);

    struct mw_buf line;
    mw_buf_init(&line);
    mw_buf_appendf(&line, "%04d-%02d-%02d %02d:%02d:%02d.%03d [%s] ", tm.tm_year + 1900,
                   tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                   (int)(tv.tv_usec / 1000), names[level]);
    va_list ap;
    va_start(ap, fmt);
    mw_buf_vappendf(&line, fmt, ap);
    va_end(ap);
    mw_buf_appendc(&line, '\n');
    ssize_t off = 0;
    while ((size_t)off < line.len) {
        ssize_t w = write(2, line.data + off, line.len - (size_t)off);
        if (w <= 0) break;
        off += w;
    }
    mw_buf_free(&line);
}
