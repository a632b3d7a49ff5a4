/*
 * clock.c — see clock.h.
 */
#include "clock.h"

#include <time.h>

static uint64_t s_read(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts) < 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t clock_real_us(void)
{
    return s_read(CLOCK_REALTIME);
}

uint64_t clock_mono_us(void)
{
    return s_read(CLOCK_MONOTONIC);
}
