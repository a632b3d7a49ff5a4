/*
 * clock.h — the two clocks pushbrokerd uses.
 *
 * Contract: clock_real_us() is wall-clock time in microseconds since the Unix
 * epoch; it stamps messages (clients see it) and drives history age trimming,
 * because "older than history_age" is a statement about publish times.
 * clock_mono_us() never jumps; it drives link liveness and the tick, so that
 * a clock step cannot forget every child at once.
 */
#ifndef PUSHBROKERD_CLOCK_H
#define PUSHBROKERD_CLOCK_H

#include <stdint.h>

uint64_t clock_real_us(void);
uint64_t clock_mono_us(void);

#endif
