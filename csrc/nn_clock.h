/* A monotonic clock in seconds, for runs that return to Python on a deadline. */
#ifndef NNCORE_CLOCK_H
#define NNCORE_CLOCK_H

#if defined(_WIN32)
#include <windows.h>
static inline double nn_seconds(void) {
    LARGE_INTEGER f, c;
    QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&c);
    return (double)c.QuadPart / (double)f.QuadPart;
}
#else
#include <time.h>
static inline double nn_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
#endif

#endif
