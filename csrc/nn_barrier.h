/* A barrier for the threads of one parallel region that gives the core back.
 *
 * libgomp's `omp barrier` spins up to GOMP_SPINCOUNT (300,000 rounds, a few
 * milliseconds) before it sleeps. When a thread of the team has been descheduled
 * (another process on the cores, two trainings at once) every barrier of a step
 * then burns those milliseconds on a core the late thread could have run on: a
 * 0.5 ms step took 65 ms. This one spins for NN_BARRIER_SPIN_CYCLES (~20 us), then
 * sleeps on a futex (Linux; elsewhere it yields), so a late thread gets a core at
 * once. On idle cores the waits are shorter than the spin and it costs what
 * libgomp's does.
 *
 * Centralized and generation-counted: thread i of n calls nn_barrier_wait(b, n);
 * the last to arrive resets the count, advances the generation and wakes the
 * sleepers. Arrivals are acq_rel, the advance a release and the waiters' loads
 * acquires: everything written before the barrier by any thread is visible after
 * it to all. b must be zeroed before the region starts (nn_barrier_init).
 */
#ifndef NNCORE_BARRIER_H
#define NNCORE_BARRIER_H

#include <limits.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#else
#include <sched.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define NN_BARRIER_TICKS() __rdtsc()
#define NN_BARRIER_PAUSE() _mm_pause()
#define NN_BARRIER_SPIN_CYCLES 60000ULL     /* TSC ticks: ~20 us at 3 GHz */
#else
#define NN_BARRIER_TICKS() 0ULL
#define NN_BARRIER_PAUSE() ((void)0)
#define NN_BARRIER_SPIN_CYCLES 0ULL          /* no cheap clock: count rounds instead */
#endif
#define NN_BARRIER_SPIN_ROUNDS 20000

typedef struct {
    int count;        /* threads arrived in this generation */
    int generation;   /* advanced by the last arrival */
    int sleepers;     /* threads in futex_wait (or about to be) */
} nn_barrier_t;

static inline void nn_barrier_init(nn_barrier_t* b) {
    b->count = 0;
    b->generation = 0;
    b->sleepers = 0;
}

static inline void nn_barrier_sleep(int* addr, int value) {
#if defined(__linux__)
    syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, value, NULL, NULL, 0);
#else
    (void)addr; (void)value;
    sched_yield();
#endif
}

static inline void nn_barrier_wake(int* addr) {
#if defined(__linux__)
    syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
#else
    (void)addr;
#endif
}

static inline void nn_barrier_wait(nn_barrier_t* b, int n) {
    int gen = __atomic_load_n(&b->generation, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&b->count, 1, __ATOMIC_ACQ_REL) == n) {
        __atomic_store_n(&b->count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->generation, gen + 1, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&b->sleepers, __ATOMIC_SEQ_CST) != 0)
            nn_barrier_wake(&b->generation);
        return;
    }
    unsigned long long t0 = NN_BARRIER_TICKS();
    for (int round = 0; ; round++) {
        if (__atomic_load_n(&b->generation, __ATOMIC_ACQUIRE) != gen)
            return;
        NN_BARRIER_PAUSE();
        if (NN_BARRIER_SPIN_CYCLES ? NN_BARRIER_TICKS() - t0 > NN_BARRIER_SPIN_CYCLES
                                   : round >= NN_BARRIER_SPIN_ROUNDS)
            break;
    }
    /* Dekker with the last arrival: it advances the generation, then reads
     * sleepers; this thread counts itself in, then re-reads the generation (the
     * futex re-checks it atomically). One of the two sees the other. */
    __atomic_add_fetch(&b->sleepers, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&b->generation, __ATOMIC_SEQ_CST) == gen)
        nn_barrier_sleep(&b->generation, gen);
    __atomic_sub_fetch(&b->sleepers, 1, __ATOMIC_RELEASE);
}

#endif
